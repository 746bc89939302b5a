//! Prometheus metrics in the OpenMetrics text exposition format (OpenMetrics 1.0), served at
//! `GET /metrics` on the HTTP listeners.
//!
//! We use `prometheus-client` (the Prometheus organisation's Rust client) rather than `metrics` +
//! `metrics-exporter-prometheus`: its registry is an explicit value owned by the `Server` (tests run
//! several servers in one process, and a global recorder would mix their numbers), and every
//! labelled child is created once here, so the hot path holds plain `Counter`/`Gauge` clones and
//! costs one relaxed atomic add with no label lookup. Its own `Histogram` takes a mutex per
//! observation, so histograms are ours: fixed buckets of atomics (`AtomicHistogram`), encoded
//! through the crate's `EncodeMetric`.
//!
//! What is counted where: connections when a listener accepts or an outgoing s2s stream
//! authenticates (a guard keeps the open gauge right however the task ends), client stanzas in
//! `c2s/stream.rs`, SASL outcomes in `c2s/sasl.rs`, routing latency in `router.rs` (from when the
//! client's bytes were read to when the message sat in the recipient session's inbox), storage
//! latency around archive batch writes and the offline queue. Sessions, MUC rooms and occupants
//! and the process's resident memory are read when scraped.

use async_trait::async_trait;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Labels = Vec<(&'static str, &'static str)>;

/// How a connection reached us (or we reached out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// c2s with STARTTLS.
    Tcp,
    /// c2s with direct TLS (XEP-0368).
    Tls,
    Websocket,
    Bosh,
    S2sIn,
    S2sOut,
    Component,
}

impl Transport {
    const ALL: [Transport; 7] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Websocket,
        Transport::Bosh,
        Transport::S2sIn,
        Transport::S2sOut,
        Transport::Component,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Websocket => "websocket",
            Transport::Bosh => "bosh",
            Transport::S2sIn => "s2s-in",
            Transport::S2sOut => "s2s-out",
            Transport::Component => "component",
        }
    }
}

/// Storage operations whose latency is measured.
#[derive(Clone, Copy, Debug)]
pub enum StorageOp {
    ArchiveBatch,
    OfflinePush,
    OfflineTake,
}

impl StorageOp {
    const ALL: [StorageOp; 3] = [
        StorageOp::ArchiveBatch,
        StorageOp::OfflinePush,
        StorageOp::OfflineTake,
    ];

    fn as_str(self) -> &'static str {
        match self {
            StorageOp::ArchiveBatch => "archive_batch",
            StorageOp::OfflinePush => "offline_push",
            StorageOp::OfflineTake => "offline_take",
        }
    }
}

const KINDS: [&str; 3] = ["message", "presence", "iq"];
const MECHANISMS: [&str; 6] = [
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
    "other",
];

/// Upper bounds (seconds) for in-memory work such as routing a message.
const FAST_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];
/// Upper bounds (seconds) for storage round trips.
const STORAGE_BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A histogram with fixed buckets of atomics: observing is a few relaxed adds, no lock.
#[derive(Clone, Debug)]
pub struct AtomicHistogram(Arc<HistInner>);

#[derive(Debug)]
struct HistInner {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), plus one for +Inf.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        AtomicHistogram(Arc::new(HistInner {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .0
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.0.bounds.len());
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Per-bucket counts: the encoder accumulates them.
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.0.buckets.len());
        for (i, b) in self.0.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            total += n;
            let bound = self.0.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, n));
        }
        // The count is the buckets' total, so a scrape racing an observation stays consistent.
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Adds to scrape-time gauges (MUC rooms and occupants) from a module's own state.
#[async_trait]
pub trait Sampler: Send + Sync {
    async fn sample(&self, metrics: &Metrics);
}

pub struct Metrics {
    registry: Registry,
    connections_total: [Counter; 7],
    connections_open: [Gauge; 7],
    stanzas_in: [Counter; 3],
    stanzas_out: [Counter; 3],
    /// Per mechanism: (successes, failures).
    auth: [(Counter, Counter); 6],
    pub routing: AtomicHistogram,
    storage: [AtomicHistogram; 3],
    sessions: Gauge,
    pub muc_rooms: Gauge,
    pub muc_occupants: Gauge,
    resident_memory: Gauge,
    started: Instant,
    uptime: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn family<M: Clone + prometheus_client::registry::Metric + TypedMetric + EncodeMetric>(
    reg: &mut Registry,
    name: &str,
    help: &str,
    key: &'static str,
    values: &[&'static str],
    make: fn() -> M,
) -> Vec<M>
where
    Family<Labels, M, fn() -> M>: prometheus_client::registry::Metric,
{
    let f: Family<Labels, M, fn() -> M> = Family::new_with_constructor(make);
    let children = values
        .iter()
        .map(|v| f.get_or_create_owned(&vec![(key, *v)]))
        .collect();
    reg.register(name, help, f);
    children
}

fn array<T, const N: usize>(v: Vec<T>) -> [T; N] {
    match v.try_into() {
        Ok(a) => a,
        Err(_) => unreachable!("one child per label value"),
    }
}

impl Metrics {
    /// Stanzas received and sent since start, of every kind (the admin page's traffic graph).
    pub fn stanza_totals(&self) -> (u64, u64) {
        let sum = |c: &[Counter; 3]| c.iter().map(|c| c.get()).sum();
        (sum(&self.stanzas_in), sum(&self.stanzas_out))
    }

    pub fn new() -> Metrics {
        let mut reg = Registry::with_prefix("rookery");
        let transports: Vec<&'static str> = Transport::ALL.iter().map(|t| t.as_str()).collect();
        let connections_total = array(family(
            &mut reg,
            "connections",
            "Connections accepted (or, for s2s-out, established), by transport",
            "transport",
            &transports,
            Counter::default,
        ));
        let connections_open = array(family(
            &mut reg,
            "connections_open",
            "Connections open now, by transport",
            "transport",
            &transports,
            Gauge::default,
        ));
        let stanzas_in = array(family(
            &mut reg,
            "stanzas_in",
            "Stanzas received from clients, by kind",
            "kind",
            &KINDS,
            Counter::default,
        ));
        let stanzas_out = array(family(
            &mut reg,
            "stanzas_out",
            "Stanzas sent to clients, by kind",
            "kind",
            &KINDS,
            Counter::default,
        ));
        let auth_family: Family<Labels, Counter> = Family::default();
        let auth = array(
            MECHANISMS
                .iter()
                .map(|m| {
                    (
                        auth_family
                            .get_or_create_owned(&vec![("mechanism", *m), ("result", "success")]),
                        auth_family
                            .get_or_create_owned(&vec![("mechanism", *m), ("result", "failure")]),
                    )
                })
                .collect(),
        );
        reg.register(
            "auth",
            "SASL authentications by mechanism and result",
            auth_family,
        );
        let routing = AtomicHistogram::new(FAST_BUCKETS);
        reg.register(
            "message_routing_seconds",
            "From a client's message being read to its being queued for a local recipient session",
            routing.clone(),
        );
        let ops: Vec<&'static str> = StorageOp::ALL.iter().map(|o| o.as_str()).collect();
        let storage = array(family(
            &mut reg,
            "storage_seconds",
            "Storage latency by operation",
            "op",
            &ops,
            || AtomicHistogram::new(STORAGE_BUCKETS),
        ));
        let gauge = |reg: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            reg.register(name, help, g.clone());
            g
        };
        let sessions = gauge(&mut reg, "sessions", "Client sessions bound on this node");
        let muc_rooms = gauge(&mut reg, "muc_rooms", "Multi-user chat rooms loaded");
        let muc_occupants = gauge(&mut reg, "muc_occupants", "Occupants of all rooms");
        let resident_memory = gauge(
            &mut reg,
            "process_resident_memory_bytes",
            "Resident set size of the server process",
        );
        let uptime = gauge(
            &mut reg,
            "uptime_seconds",
            "Seconds since the server started",
        );
        Metrics {
            registry: reg,
            connections_total,
            connections_open,
            stanzas_in,
            stanzas_out,
            auth,
            routing,
            storage,
            sessions,
            muc_rooms,
            muc_occupants,
            resident_memory,
            started: Instant::now(),
            uptime,
        }
    }

    /// Counts a connection; the guard keeps it in the open gauge until dropped.
    pub fn connection(&self, t: Transport) -> ConnectionGuard {
        let i = t as usize;
        self.connections_total[i].inc();
        self.connections_open[i].inc();
        ConnectionGuard(self.connections_open[i].clone())
    }

    fn kind(el: &rookery_core::Element) -> Option<usize> {
        match el.name() {
            "message" => Some(0),
            "presence" => Some(1),
            "iq" => Some(2),
            _ => None,
        }
    }

    pub fn stanza_in(&self, el: &rookery_core::Element) {
        if let Some(k) = Self::kind(el) {
            self.stanzas_in[k].inc();
        }
    }

    pub fn stanzas_out(&self, els: &[rookery_core::Element]) {
        for el in els {
            if let Some(k) = Self::kind(el) {
                self.stanzas_out[k].inc();
            }
        }
    }

    pub fn auth(&self, mechanism: &str, ok: bool) {
        let i = MECHANISMS
            .iter()
            .position(|m| *m == mechanism)
            .unwrap_or(MECHANISMS.len() - 1);
        let (s, f) = &self.auth[i];
        if ok { s } else { f }.inc();
    }

    pub fn storage(&self, op: StorageOp, since: Instant) {
        self.storage[op as usize].observe(since.elapsed());
    }

    pub fn storage_histogram(&self, op: StorageOp) -> AtomicHistogram {
        self.storage[op as usize].clone()
    }

    /// The exposition, with the gauges that are read rather than kept brought up to date.
    pub async fn render(&self, server: &crate::Server) -> String {
        self.sessions.set(server.sessions.local().len() as i64);
        self.muc_rooms.set(0);
        self.muc_occupants.set(0);
        for s in &server.modules.samplers {
            s.sample(self).await;
        }
        if let Some(rss) = resident_bytes() {
            self.resident_memory.set(rss as i64);
        }
        self.uptime.set(self.started.elapsed().as_secs() as i64);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%e, "metrics encoding failed");
        }
        out
    }
}

/// Keeps one connection in the open-connections gauge.
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Resident set size from `/proc/self/statm` (pages; Linux only).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // 4 KiB pages on every platform we run on; statm gives no unit of its own.
    Some(pages * 4096)
}

/// Who may read `/metrics`: loopback clients, or anyone when `http.metrics_public` is set (the
/// numbers reveal how busy the server is and who-knows-what by correlation, so not by default).
pub fn may_scrape(peer: IpAddr, public: bool) -> bool {
    public || peer.is_loopback() || peer.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_public() {
        for ip in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(may_scrape(ip.parse().unwrap(), false), "{ip}");
        }
        for ip in ["10.0.0.1", "192.168.1.5", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert!(!may_scrape(ip.parse().unwrap(), false), "{ip}");
            assert!(may_scrape(ip.parse().unwrap(), true), "{ip}");
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_the_exposition() {
        let m = Metrics::new();
        m.routing.observe(Duration::from_micros(30));
        m.routing.observe(Duration::from_millis(3));
        m.routing.observe(Duration::from_secs(7));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains("rookery_message_routing_seconds_count 3"),
            "{out}"
        );
        assert!(
            out.contains("rookery_message_routing_seconds_bucket{le=\"0.00005\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("rookery_message_routing_seconds_bucket{le=\"0.005\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("rookery_message_routing_seconds_bucket{le=\"+Inf\"} 3"),
            "{out}"
        );
    }

    #[test]
    fn connection_guard_closes_what_it_opened() {
        let m = Metrics::new();
        let g = m.connection(Transport::Websocket);
        assert_eq!(m.connections_open[Transport::Websocket as usize].get(), 1);
        drop(g);
        assert_eq!(m.connections_open[Transport::Websocket as usize].get(), 0);
        assert_eq!(m.connections_total[Transport::Websocket as usize].get(), 1);
    }
}
