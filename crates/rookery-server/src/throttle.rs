//! Counting events per key in a sliding window: registrations per address, failed logins per
//! account, subscription requests per sender. Memory stays bounded: keys whose events all left
//! the window are dropped when the map grows.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept before quiet ones are swept.
const SWEEP_AT: usize = 10_000;

pub struct Window<K> {
    span: Duration,
    events: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: Hash + Eq + Clone> Window<K> {
    pub fn new(span: Duration) -> Window<K> {
        Window {
            span,
            events: Mutex::default(),
        }
    }

    /// Events of `key` within the window.
    pub fn count(&self, key: &K) -> usize {
        self.count_at(key, Instant::now())
    }

    /// Records an event of `key`; returns how many there are in the window, this one included.
    pub fn hit(&self, key: K) -> usize {
        self.hit_at(key, Instant::now())
    }

    /// The time until the oldest event of `key` leaves the window (when one more may pass).
    pub fn retry_after(&self, key: &K) -> Duration {
        let map = self.events.lock().expect("window lock");
        map.get(key)
            .and_then(|q| q.front())
            .map(|t| self.span.saturating_sub(t.elapsed()))
            .unwrap_or_default()
    }

    pub fn clear(&self, key: &K) {
        self.events.lock().expect("window lock").remove(key);
    }

    fn count_at(&self, key: &K, now: Instant) -> usize {
        let mut map = self.events.lock().expect("window lock");
        match map.get_mut(key) {
            Some(q) => {
                prune(q, now, self.span);
                q.len()
            }
            None => 0,
        }
    }

    fn hit_at(&self, key: K, now: Instant) -> usize {
        let mut map = self.events.lock().expect("window lock");
        if map.len() >= SWEEP_AT && !map.contains_key(&key) {
            let span = self.span;
            map.retain(|_, q| {
                prune(q, now, span);
                !q.is_empty()
            });
        }
        let q = map.entry(key).or_default();
        prune(q, now, self.span);
        q.push_back(now);
        q.len()
    }
}

fn prune(q: &mut VecDeque<Instant>, now: Instant, span: Duration) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= span) {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_leave_the_window_and_quiet_keys_are_swept() {
        let w = Window::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(w.hit_at("a", t0), 1);
        assert_eq!(w.hit_at("a", t0 + Duration::from_secs(30)), 2);
        assert_eq!(w.count_at(&"a", t0 + Duration::from_secs(59)), 2);
        assert_eq!(w.count_at(&"a", t0 + Duration::from_secs(61)), 1);
        assert_eq!(w.count_at(&"b", t0), 0);
        let w = Window::new(Duration::from_secs(1));
        for i in 0..SWEEP_AT {
            w.hit_at(i, t0);
        }
        w.hit_at(SWEEP_AT, t0 + Duration::from_secs(2));
        assert_eq!(w.events.lock().unwrap().len(), 1);
    }
}
