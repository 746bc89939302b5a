//! Session inboxes: the bounded queue from the router to a session's task. A lean MPSC channel,
//! because every signed-in session holds one whether or not anything arrives: this one costs a
//! few dozen bytes while empty, tokio's about 1.8 KiB (cache-padded fields and a first block of
//! 32 slots).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use tokio::sync::Notify;

/// Past this many slots an emptied queue gives its memory back.
const KEEP_SLOTS: usize = 256;

struct State<T> {
    queue: VecDeque<T>,
    senders: usize,
    /// The receiver closed or went away: nothing more is accepted.
    closed: bool,
    waker: Option<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// Senders waiting for room.
    space: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves the queue consistent (no invariant spans it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a value was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The inbox holds `capacity` values.
    Full,
    /// The receiver is closed or gone.
    Closed,
}

pub struct Sender<T>(Arc<Shared<T>>);
pub struct Receiver<T>(Arc<Shared<T>>);

/// An inbox holding at most `capacity` values.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            senders: 1,
            closed: false,
            waker: None,
        }),
        capacity: capacity.max(1),
        space: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queues `value` now, or says why not.
    pub fn try_send(&self, value: T) -> Result<(), SendError> {
        self.offer(value).map_err(|(e, _)| e)
    }

    fn offer(&self, value: T) -> Result<(), (SendError, T)> {
        let mut st = self.0.lock();
        if st.closed {
            return Err((SendError::Closed, value));
        }
        if st.queue.len() >= self.0.capacity {
            return Err((SendError::Full, value));
        }
        st.queue.push_back(value);
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queues `value`, waiting for room; fails only once the receiver is closed or gone.
    pub async fn send(&self, mut value: T) -> Result<(), SendError> {
        loop {
            let room = self.0.space.notified();
            tokio::pin!(room);
            // Registered before trying, so room made in between is not missed.
            room.as_mut().enable();
            match self.offer(value) {
                Ok(()) => return Ok(()),
                Err((SendError::Closed, _)) => return Err(SendError::Closed),
                Err((SendError::Full, v)) => value = v,
            }
            room.await;
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.senders -= 1;
        let waker = if st.senders == 0 {
            st.waker.take()
        } else {
            None
        };
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inbox::Sender")
    }
}

/// Nothing queued (or, after `close`, nothing left).
#[derive(Debug, PartialEq, Eq)]
pub struct Empty;

impl<T> Receiver<T> {
    /// The next value; None once every sender is gone (or the inbox closed) and it is empty.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut st = self.0.lock();
            if let Some(v) = self.take(&mut st) {
                return Poll::Ready(Some(v));
            }
            if st.senders == 0 || st.closed {
                return Poll::Ready(None);
            }
            match &st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => st.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    pub fn try_recv(&mut self) -> Result<T, Empty> {
        let mut st = self.0.lock();
        self.take(&mut st).ok_or(Empty)
    }

    fn take(&self, st: &mut MutexGuard<'_, State<T>>) -> Option<T> {
        let was_full = st.queue.len() >= self.0.capacity;
        let v = st.queue.pop_front()?;
        if st.queue.is_empty() && st.queue.capacity() > KEEP_SLOTS {
            st.queue = VecDeque::new();
        }
        if was_full {
            self.0.space.notify_waiters();
        }
        Some(v)
    }

    /// Accepts nothing more; what is queued can still be taken with `try_recv`.
    pub fn close(&mut self) {
        self.0.lock().closed = true;
        self.0.space.notify_waiters();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.closed = true;
        let dropped = std::mem::take(&mut st.queue);
        drop(st);
        drop(dropped);
        self.0.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_in_order_and_ends_when_senders_are_gone() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        tx2.try_send(2).unwrap();
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(Empty));
        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        drop(tx);
        tx2.try_send(3).unwrap();
        assert_eq!(waiting.await.unwrap(), Some(3));
        drop(tx2);
    }

    #[tokio::test]
    async fn a_sender_with_no_receiver_left_or_none_is_told() {
        let (tx, mut rx) = channel::<u32>(1);
        drop(tx.clone());
        let pending = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(pending.await.unwrap(), None);

        let (tx, rx) = channel::<u32>(1);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(SendError::Closed));
        assert_eq!(tx.send(1).await, Err(SendError::Closed));
    }

    #[tokio::test]
    async fn full_inboxes_refuse_or_make_senders_wait_for_room() {
        let (tx, mut rx) = channel(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(SendError::Full));
        let tx2 = tx.clone();
        let blocked = tokio::spawn(async move { tx2.send(3).await });
        // The test runtime has one thread: the spawned sender has run once it yields back.
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished(), "waits while the inbox is full");
        assert_eq!(rx.recv().await, Some(1));
        blocked.await.unwrap().unwrap();
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
    }

    #[tokio::test]
    async fn close_refuses_new_values_and_keeps_queued_ones() {
        let (tx, mut rx) = channel(4);
        tx.try_send(1).unwrap();
        let tx2 = tx.clone();
        rx.close();
        assert_eq!(tx.try_send(2), Err(SendError::Closed));
        assert_eq!(tx2.send(2).await, Err(SendError::Closed));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.recv().await, None);
    }

    #[test]
    fn an_emptied_queue_gives_back_large_buffers() {
        let (tx, mut rx) = channel(1024);
        for i in 0..1000 {
            tx.try_send(i).unwrap();
        }
        while rx.try_recv().is_ok() {}
        assert!(rx.0.lock().queue.capacity() <= KEEP_SLOTS);
    }
}
