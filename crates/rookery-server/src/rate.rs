//! Read-rate limits: a token bucket (bytes or stanzas) holding one second's worth, paid for by
//! waiting before the next read (so a fast sender is slowed, never cut off); per connection
//! (`ByteRate`) or shared by every connection from one address (`SharedRate`).

use std::time::{Duration, Instant};

pub struct ByteRate {
    per_second: f64,
    tokens: f64,
    last: Instant,
    /// Bytes read beyond the rate, as time to wait before reading again.
    debt: Duration,
}

impl ByteRate {
    /// None for an unlimited rate (0).
    pub fn new(per_second: u64) -> Option<ByteRate> {
        (per_second > 0).then(|| ByteRate {
            per_second: per_second as f64,
            tokens: per_second as f64,
            last: Instant::now(),
            debt: Duration::ZERO,
        })
    }

    pub fn charge(&mut self, n: usize) {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second) - n as f64;
        self.last = now;
        if self.tokens < 0.0 {
            self.debt = Duration::from_secs_f64(-self.tokens / self.per_second);
        }
    }

    /// The wait owed now, cleared (for a bucket shared by connections that each wait their own).
    fn take_debt(&mut self) -> Duration {
        std::mem::take(&mut self.debt)
    }

    /// Waits off the debt. Cancel-safe: the debt is only cleared once the wait is over.
    pub async fn pay(&mut self) {
        pay(Some(self), Duration::ZERO).await
    }
}

/// Waits off what a connection owes: its own bucket's debt plus `shared`, its share of an
/// address's bucket. Cancel-safe: the debt is only cleared once the wait is over. The timer is
/// boxed: waits are rare, and the future awaiting this one is held by every idle connection.
pub async fn pay(own: Option<&mut ByteRate>, shared: Duration) {
    let owed = own.as_ref().map_or(Duration::ZERO, |r| r.debt) + shared;
    if owed.is_zero() {
        return;
    }
    let wait = Box::pin(tokio::time::sleep(owed));
    wait.await;
    if let Some(r) = own {
        r.debt = Duration::ZERO;
    }
}

/// A bucket every connection from one address draws from: each charge returns the wait that
/// connection owes before reading again.
pub struct SharedRate(std::sync::Mutex<ByteRate>);

impl SharedRate {
    /// None for an unlimited rate (0).
    pub fn new(per_second: u64) -> Option<std::sync::Arc<SharedRate>> {
        ByteRate::new(per_second).map(|r| std::sync::Arc::new(SharedRate(std::sync::Mutex::new(r))))
    }

    pub fn charge(&self, n: usize) -> Duration {
        let mut r = self.0.lock().expect("rate lock");
        r.charge(n);
        r.take_debt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_one_second_of_rate_owes_the_excess() {
        let mut r = ByteRate::new(1000).unwrap();
        r.charge(1000);
        assert!(r.debt.is_zero());
        r.charge(500);
        let owed = r.debt.as_secs_f64();
        assert!((0.45..=0.5).contains(&owed), "{owed}");
        assert!(ByteRate::new(0).is_none());
    }

    #[test]
    fn connections_sharing_a_bucket_each_owe_their_part() {
        let shared = SharedRate::new(1000).unwrap();
        assert!(shared.charge(1000).is_zero());
        let first = shared.charge(500).as_secs_f64();
        let second = shared.charge(500).as_secs_f64();
        assert!((0.45..=0.5).contains(&first), "{first}");
        assert!((0.95..=1.0).contains(&second), "{second}");
        assert!(SharedRate::new(0).is_none());
    }
}
