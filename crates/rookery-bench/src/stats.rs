//! Measurements: the process clock, failure tallies, login and message counters, latency
//! histograms, and the final report as text or one JSON object.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process (a monotonic clock shared by all clients).
pub fn now_nanos() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Latencies are recorded in microseconds, from 1 µs to one hour, to 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Counts of failures by reason.
#[derive(Default, Debug)]
pub struct Reasons(BTreeMap<String, u64>);

impl Reasons {
    pub fn add(&mut self, reason: &str) {
        // Keep keys short and few: detail past this point is rarely shared between failures.
        let key: String = reason.chars().take(120).collect();
        *self.0.entry(key).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// Outcome of the registration phase.
#[derive(Default, Debug)]
pub struct RegisterStats {
    pub created: u64,
    pub existed: u64,
    pub failures: Reasons,
    pub wall: Duration,
}

/// Outcome of the login phase, tallied by the main task alone.
pub struct LoginStats {
    pub ok: u64,
    pub failures: Reasons,
    pub wall: Duration,
    times: Histogram<u64>,
}

impl Default for LoginStats {
    fn default() -> Self {
        LoginStats {
            ok: 0,
            failures: Reasons::default(),
            wall: Duration::ZERO,
            times: histogram(),
        }
    }
}

impl LoginStats {
    pub fn record_ok(&mut self, time: Duration) {
        self.ok += 1;
        self.times.saturating_record(time.as_micros().max(1) as u64);
    }
}

/// Messaging counters, updated concurrently by every client.
pub struct Traffic {
    pub planned: AtomicU64,
    pub sent: AtomicU64,
    pub skipped: AtomicU64,
    pub send_errors: AtomicU64,
    pub delivered: AtomicU64,
    pub bounced: AtomicU64,
    pub malformed: AtomicU64,
    /// Deliveries each sent message should make: 1 for chat, the occupant count in a room.
    pub fanout: AtomicU64,
    pub disconnects: Mutex<Reasons>,
    latency: Mutex<Histogram<u64>>,
    /// The worst latency (µs) of the messages sent in each quarter second of the process clock:
    /// shows whether a high p99 is a steady queue or a stall at one moment.
    worst: Mutex<Vec<u64>>,
    all_sent: AtomicBool,
    drained: Notify,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            planned: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            bounced: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            fanout: AtomicU64::new(1),
            disconnects: Mutex::new(Reasons::default()),
            latency: Mutex::new(histogram()),
            worst: Mutex::new(Vec::new()),
            all_sent: AtomicBool::new(false),
            drained: Notify::new(),
        }
    }
}

impl Traffic {
    /// A message stamped at `sent_at` (process clock) arrived `latency_ns` later.
    pub fn record_delivery(&self, sent_at: u64, latency_ns: u64) {
        let micros = (latency_ns / 1000).max(1);
        self.latency
            .lock()
            .expect("latency histogram poisoned")
            .saturating_record(micros);
        let slot = (sent_at / QUARTER_SECOND_NS) as usize;
        let mut worst = self.worst.lock().expect("latency timeline poisoned");
        if worst.len() <= slot {
            worst.resize(slot + 1, 0);
        }
        worst[slot] = worst[slot].max(micros);
        let delivered = self.delivered.fetch_add(1, Ordering::SeqCst) + 1;
        if self.all_sent.load(Ordering::SeqCst) && delivered >= self.expected() {
            self.drained.notify_one();
        }
    }

    /// Deliveries due for the messages sent so far.
    pub fn expected(&self) -> u64 {
        self.sent.load(Ordering::SeqCst) * self.fanout.load(Ordering::SeqCst)
    }

    pub fn disconnect(&self, reason: &str) {
        self.disconnects
            .lock()
            .expect("disconnect tally poisoned")
            .add(reason);
    }

    /// Called once no more messages will be sent; resolves when all sent ones have arrived.
    pub async fn all_delivered(&self) {
        self.all_sent.store(true, Ordering::SeqCst);
        while self.delivered.load(Ordering::SeqCst) < self.expected() {
            self.drained.notified().await;
        }
    }
}

/// The server while the sessions were held idle (`--hold` with `--server-pid`).
pub struct Idle {
    pub sessions: u64,
    /// Before the logins.
    pub before: crate::procstat::Sample,
    /// At the end of the hold.
    pub held: crate::procstat::Sample,
    /// CPU time the server used during the hold.
    pub cpu_at_rest: Duration,
    pub hold: Duration,
}

impl Idle {
    pub fn bytes_per_session(&self) -> f64 {
        if self.sessions == 0 {
            return 0.0;
        }
        self.held.rss_bytes.saturating_sub(self.before.rss_bytes) as f64 / self.sessions as f64
    }

    pub fn cpu_percent(&self) -> f64 {
        if self.hold.is_zero() {
            return 0.0;
        }
        100.0 * self.cpu_at_rest.as_secs_f64() / self.hold.as_secs_f64()
    }
}

/// Everything the run measured.
pub struct Report {
    pub clients: usize,
    pub register: Option<RegisterStats>,
    pub login: LoginStats,
    pub duration: Duration,
    pub target_rate: u64,
    /// Messages delivered by the end of the messaging window (the rest came during the grace).
    pub delivered_in_window: u64,
    pub traffic: Arc<Traffic>,
    pub idle: Option<Idle>,
}

fn per_sec(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

fn max_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.max() as f64 / 1000.0
    }
}

impl Report {
    fn counters(&self) -> [u64; 7] {
        let t = &self.traffic;
        let sent = t.sent.load(Ordering::SeqCst);
        let delivered = t.delivered.load(Ordering::SeqCst);
        [
            t.planned.load(Ordering::SeqCst),
            sent,
            t.skipped.load(Ordering::SeqCst) + t.send_errors.load(Ordering::SeqCst),
            delivered,
            t.expected().saturating_sub(delivered),
            t.bounced.load(Ordering::SeqCst),
            t.malformed.load(Ordering::SeqCst),
        ]
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        if let Some(r) = &self.register {
            let _ = writeln!(
                s,
                "register: {} created, {} already existed, {} failed in {:.2} s",
                r.created,
                r.existed,
                r.failures.total(),
                r.wall.as_secs_f64()
            );
            write_reasons(&mut s, &r.failures);
        }
        let l = &self.login;
        let _ = writeln!(
            s,
            "logins: {} ok, {} failed of {} in {:.2} s = {:.1} logins/s \
             (login time p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)",
            l.ok,
            l.failures.total(),
            self.clients,
            l.wall.as_secs_f64(),
            per_sec(l.ok, l.wall),
            ms(&l.times, 0.5),
            ms(&l.times, 0.99),
            max_ms(&l.times)
        );
        write_reasons(&mut s, &l.failures);
        if let Some(i) = &self.idle {
            let _ = writeln!(
                s,
                "idle: {} sessions held {} s: server RSS {:.1} MiB before the logins, {:.1} MiB \
                 held = {:.1} KiB per session; CPU at rest {:.2}%",
                i.sessions,
                i.hold.as_secs(),
                i.before.rss_bytes as f64 / 1048576.0,
                i.held.rss_bytes as f64 / 1048576.0,
                i.bytes_per_session() / 1024.0,
                i.cpu_percent()
            );
        }
        let [planned, sent, unsent, delivered, lost, bounced, malformed] = self.counters();
        let _ = writeln!(
            s,
            "messages: target {}/s for {} s: {} planned, {} sent, {} not sent, {} delivered, \
             {} lost, {} bounced, {} malformed",
            self.target_rate,
            self.duration.as_secs(),
            planned,
            sent,
            unsent,
            delivered,
            lost,
            bounced,
            malformed
        );
        let fanout = self.traffic.fanout.load(Ordering::SeqCst);
        if fanout > 1 {
            let _ = writeln!(s, "room: each message goes to {fanout} occupants");
        }
        let _ = writeln!(
            s,
            "throughput: {:.1} sent/s, {:.1} delivered/s (in window; {} arrived in the grace period)",
            per_sec(sent, self.duration),
            per_sec(self.delivered_in_window, self.duration),
            delivered.saturating_sub(self.delivered_in_window)
        );
        let h = self
            .traffic
            .latency
            .lock()
            .expect("latency histogram poisoned");
        let _ = writeln!(
            s,
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            ms(&h, 0.5),
            ms(&h, 0.9),
            ms(&h, 0.99),
            max_ms(&h)
        );
        let d = self
            .traffic
            .disconnects
            .lock()
            .expect("disconnect tally poisoned");
        if d.total() > 0 {
            let _ = writeln!(s, "disconnects during messaging: {}", d.total());
            write_reasons(&mut s, &d);
        }
        s
    }

    pub fn json(&self) -> String {
        let mut j = Json::default();
        j.num("clients", self.clients as f64);
        if let Some(r) = &self.register {
            j.num("registered", r.created as f64);
            j.num("register_existed", r.existed as f64);
            j.num("register_failures", r.failures.total() as f64);
            j.reasons("register_failure_reasons", &r.failures);
            j.num("register_seconds", r.wall.as_secs_f64());
        }
        let l = &self.login;
        j.num("logins", l.ok as f64);
        j.num("login_failures", l.failures.total() as f64);
        j.reasons("login_failure_reasons", &l.failures);
        j.num("login_seconds", l.wall.as_secs_f64());
        j.num("logins_per_sec", per_sec(l.ok, l.wall));
        j.num("login_ms_p50", ms(&l.times, 0.5));
        j.num("login_ms_p99", ms(&l.times, 0.99));
        j.num("login_ms_max", max_ms(&l.times));
        if let Some(i) = &self.idle {
            j.num("idle_sessions", i.sessions as f64);
            j.num("idle_seconds", i.hold.as_secs_f64());
            j.num("rss_before_bytes", i.before.rss_bytes as f64);
            j.num("rss_held_bytes", i.held.rss_bytes as f64);
            j.num("rss_bytes_per_session", i.bytes_per_session());
            j.num("cpu_percent_at_rest", i.cpu_percent());
        }
        let [planned, sent, unsent, delivered, lost, bounced, malformed] = self.counters();
        j.num("duration_seconds", self.duration.as_secs_f64());
        j.num("target_rate", self.target_rate as f64);
        j.num("planned", planned as f64);
        j.num("sent", sent as f64);
        j.num("not_sent", unsent as f64);
        j.num("delivered", delivered as f64);
        j.num("delivered_in_window", self.delivered_in_window as f64);
        j.num("lost", lost as f64);
        j.num("bounced", bounced as f64);
        j.num("malformed", malformed as f64);
        j.num("fanout", self.traffic.fanout.load(Ordering::SeqCst) as f64);
        j.num("sent_per_sec", per_sec(sent, self.duration));
        j.num(
            "delivered_per_sec",
            per_sec(self.delivered_in_window, self.duration),
        );
        let h = self
            .traffic
            .latency
            .lock()
            .expect("latency histogram poisoned");
        j.num("latency_ms_p50", ms(&h, 0.5));
        j.num("latency_ms_p90", ms(&h, 0.9));
        j.num("latency_ms_p99", ms(&h, 0.99));
        j.num("latency_ms_max", max_ms(&h));
        let worst = self
            .traffic
            .worst
            .lock()
            .expect("latency timeline poisoned");
        let first = worst.iter().position(|&w| w > 0).unwrap_or(worst.len());
        j.nums(
            "latency_ms_worst_per_quarter_second",
            worst[first..].iter().map(|&w| w as f64 / 1000.0),
        );
        let d = self
            .traffic
            .disconnects
            .lock()
            .expect("disconnect tally poisoned");
        j.num("disconnects", d.total() as f64);
        j.reasons("disconnect_reasons", &d);
        j.finish()
    }
}

fn write_reasons(s: &mut String, r: &Reasons) {
    for (reason, n) in &r.0 {
        let _ = writeln!(s, "  {n:>7}  {reason}");
    }
}

/// A flat JSON object writer: numbers and reason tallies are all the report holds.
#[derive(Default)]
struct Json(String);

const QUARTER_SECOND_NS: u64 = 250_000_000;

impl Json {
    fn nums(&mut self, k: &str, vs: impl Iterator<Item = f64>) {
        self.key(k);
        self.0.push('[');
        for (i, v) in vs.enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            let _ = write!(self.0, "{v:.1}");
        }
        self.0.push(']');
    }

    fn key(&mut self, k: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        json_str(&mut self.0, k);
        self.0.push(':');
    }

    fn num(&mut self, k: &str, v: f64) {
        self.key(k);
        if !v.is_finite() {
            self.0.push('0');
        } else if v.fract() == 0.0 && v.abs() < 9e15 {
            let _ = write!(self.0, "{}", v as i64);
        } else {
            let _ = write!(self.0, "{v:.3}");
        }
    }

    fn reasons(&mut self, k: &str, r: &Reasons) {
        self.key(k);
        self.0.push('{');
        for (i, (reason, n)) in r.0.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            json_str(&mut self.0, reason);
            let _ = write!(self.0, ":{n}");
        }
        self.0.push('}');
    }

    fn finish(mut self) -> String {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        self.0
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_report_is_one_flat_object() {
        let mut login = LoginStats::default();
        login.record_ok(Duration::from_millis(12));
        login.failures.add("sasl: failure: \"not-authorized\"\n");
        login.wall = Duration::from_secs(2);
        let traffic = Traffic::default();
        traffic.sent.store(3, Ordering::SeqCst);
        traffic.record_delivery(0, 1_500_000);
        traffic.record_delivery(300_000_000, 2_500_000);
        let report = Report {
            clients: 2,
            register: None,
            login,
            duration: Duration::from_secs(1),
            target_rate: 3,
            delivered_in_window: 2,
            idle: None,
            traffic: Arc::new(traffic),
        };
        let j = report.json();
        assert!(j.starts_with("{\"clients\":2,"), "{j}");
        assert!(j.contains("\"logins\":1,"), "{j}");
        assert!(j.contains("\"logins_per_sec\":0.500,"), "{j}");
        assert!(
            j.contains("\"sasl: failure: \\\"not-authorized\\\"\\u000a\":1"),
            "{j}"
        );
        assert!(j.contains("\"lost\":1,"), "{j}");
        assert!(j.contains("\"delivered_per_sec\":2,"), "{j}");
        // Sent in the first and the second quarter second.
        assert!(
            j.contains("\"latency_ms_worst_per_quarter_second\":[1.5,2.5],"),
            "{j}"
        );
        assert!(
            j.ends_with("\"disconnects\":0,\"disconnect_reasons\":{}}"),
            "{j}"
        );
        assert!(report.text().contains("2 delivered, 1 lost"));
    }

    #[tokio::test]
    async fn all_delivered_resolves_once_deliveries_catch_up() {
        let t = Arc::new(Traffic::default());
        t.sent.store(2, Ordering::SeqCst);
        t.record_delivery(0, 1000);
        let t2 = t.clone();
        let waiter = tokio::spawn(async move { t2.all_delivered().await });
        tokio::task::yield_now().await;
        t.record_delivery(0, 1000);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("drained")
            .unwrap();
    }
}
