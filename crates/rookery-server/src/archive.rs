//! The batching archive writer shared by XEP-0313 users and rooms: messages queue here and are
//! written in one transaction per batch; queries flush first so they see every earlier message,
//! and stream management acknowledgements (XEP-0198 `<a/>`) wait for the batch, so what a client
//! was told is handled survives a crash.

use crate::metrics::AtomicHistogram;
use rookery_core::storage::{Archived, Storage};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

enum Write {
    Message(String, Archived),
    Flush(oneshot::Sender<()>),
}

pub struct ArchiveWriter {
    tx: OnceLock<mpsc::Sender<Write>>,
    /// How long each batch takes to write.
    latency: AtomicHistogram,
}

impl ArchiveWriter {
    pub fn new(latency: AtomicHistogram) -> ArchiveWriter {
        ArchiveWriter {
            tx: OnceLock::new(),
            latency,
        }
    }

    fn sender(&self, storage: &Arc<dyn Storage>) -> &mpsc::Sender<Write> {
        self.tx.get_or_init(|| {
            // Deep enough to absorb bursts without making senders wait on the disk.
            let (tx, rx) = mpsc::channel(65536);
            tokio::spawn(write_loop(storage.clone(), rx, self.latency.clone()));
            tx
        })
    }

    pub async fn append(&self, storage: &Arc<dyn Storage>, owner: String, m: Archived) {
        let _ = self.sender(storage).send(Write::Message(owner, m)).await;
    }

    /// Waits until everything queued so far is written.
    pub async fn flush(&self, storage: &Arc<dyn Storage>) {
        let (tx, rx) = oneshot::channel();
        if self.sender(storage).send(Write::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn write_loop(
    storage: Arc<dyn Storage>,
    mut rx: mpsc::Receiver<Write>,
    latency: AtomicHistogram,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(w) = next.take() {
            match w {
                Write::Message(o, m) => batch.push((o, m)),
                Write::Flush(tx) => flushes.push(tx),
            }
            if batch.len() < 512 {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let started = std::time::Instant::now();
            if let Err(e) = storage.archive_append(&batch).await {
                tracing::error!(%e, n = batch.len(), "archive write failed");
            }
            latency.observe(started.elapsed());
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}
