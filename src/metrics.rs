//! The sidecar's Prometheus registry. Every label value comes from a bounded enum
//! (frontend, result, reason, listener); nothing from a request ever becomes a label. Counters
//! for each label combination are resolved once at start so the request path does no label
//! lookup. The authorizer reports into it as its [`Observer`]; the table and store gauges are
//! refreshed from the replica and the store's [`StoreStats`] when `/metrics` is rendered.

use keygate_authz::{Observer, Verification};
use keygate_store::StoreStats;
use keygate_store::replica::Replica;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::core::decide::Reason;

pub use keygate_authz::Frontend;

/// Which listener a connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Grpc,
    Http,
    Admin,
}

impl Listener {
    pub const ALL: [Listener; 3] = [Listener::Grpc, Listener::Http, Listener::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Grpc => "grpc",
            Listener::Http => "http",
            Listener::Admin => "admin",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    allow: [IntCounter; Frontend::ALL.len()],
    deny: [[IntCounter; Reason::ALL.len()]; Frontend::ALL.len()],
    latency: [Histogram; Frontend::ALL.len()],
    keys: IntGauge,
    replication_age: prometheus::Gauge,
    store_connected: IntGauge,
    revision: IntGauge,
    verifications: [IntCounter; Verification::ALL.len()],
    cache_hits: IntCounter,
    usage_flushes: IntCounter,
    usage_flush_failures: IntCounter,
    full_reloads: IntCounter,
    reconnects: IntCounter,
    connections_open: [IntGauge; 3],
    connections_refused: [IntCounter; 3],
    pub admin_auth_failures: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let decisions = IntCounterVec::new(
            Opts::new("keygate_decisions_total", "Authorization decisions"),
            &["frontend", "result", "reason"],
        )
        .expect("valid metric");
        let latency_vec = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "keygate_decision_duration_seconds",
                "Time to decide, from request parsed to response built",
            )
            .buckets(vec![
                5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
                5e-2, 0.1, 0.25, 1.0,
            ]),
            &["frontend"],
        )
        .expect("valid metric");
        let verif = IntCounterVec::new(
            Opts::new(
                "keygate_hash_verifications_total",
                "Argon2 verifications by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let allow =
            Frontend::ALL.map(|f| decisions.with_label_values(&[f.as_str(), "allow", "ok"]));
        let deny = Frontend::ALL.map(|f| {
            Reason::ALL.map(|r| decisions.with_label_values(&[f.as_str(), "deny", r.as_str()]))
        });
        let latency = Frontend::ALL.map(|f| latency_vec.with_label_values(&[f.as_str()]));
        let verifications = Verification::ALL.map(|v| verif.with_label_values(&[v.as_str()]));
        let keys = IntGauge::new("keygate_keys", "Keys in the in-memory table").expect("valid");
        let replication_age = prometheus::Gauge::new(
            "keygate_replication_age_seconds",
            "Seconds since the table was last confirmed current with the store",
        )
        .expect("valid");
        let store_connected =
            IntGauge::new("keygate_store_connected", "1 while the store is reachable")
                .expect("valid");
        let revision = IntGauge::new("keygate_table_revision", "Store revision held in the table")
            .expect("valid");
        let cache_hits = IntCounter::new(
            "keygate_verify_cache_hits_total",
            "Argon2 keys accepted from the verification cache",
        )
        .expect("valid");
        let usage_flushes = IntCounter::new(
            "keygate_usage_flushes_total",
            "Usage write-back batches written",
        )
        .expect("valid");
        let usage_flush_failures = IntCounter::new(
            "keygate_usage_flush_failures_total",
            "Usage write-back batches that failed (retried)",
        )
        .expect("valid");
        let full_reloads = IntCounter::new(
            "keygate_table_full_loads_total",
            "Whole-table loads from the store (start, and recovery from a trimmed change log)",
        )
        .expect("valid");
        let reconnects = IntCounter::new(
            "keygate_store_reconnects_total",
            "Reconnections to the store",
        )
        .expect("valid");
        let open_vec = prometheus::IntGaugeVec::new(
            Opts::new("keygate_connections_open", "Connections open, by listener"),
            &["listener"],
        )
        .expect("valid metric");
        let refused_vec = IntCounterVec::new(
            Opts::new(
                "keygate_connections_refused_total",
                "Connections closed at once because the listener had limits.max_connections open",
            ),
            &["listener"],
        )
        .expect("valid metric");
        let connections_open = Listener::ALL.map(|l| open_vec.with_label_values(&[l.as_str()]));
        let connections_refused =
            Listener::ALL.map(|l| refused_vec.with_label_values(&[l.as_str()]));
        let admin_auth_failures = IntCounter::new(
            "keygate_admin_auth_failures_total",
            "Admin API calls refused for a missing or wrong token",
        )
        .expect("valid");
        reg(Box::new(open_vec));
        reg(Box::new(refused_vec));
        reg(Box::new(admin_auth_failures.clone()));
        reg(Box::new(full_reloads.clone()));
        reg(Box::new(reconnects.clone()));
        reg(Box::new(decisions));
        reg(Box::new(latency_vec));
        reg(Box::new(verif));
        reg(Box::new(keys.clone()));
        reg(Box::new(replication_age.clone()));
        reg(Box::new(store_connected.clone()));
        reg(Box::new(revision.clone()));
        reg(Box::new(cache_hits.clone()));
        reg(Box::new(usage_flushes.clone()));
        reg(Box::new(usage_flush_failures.clone()));
        Metrics {
            registry,
            allow,
            deny,
            latency,
            keys,
            replication_age,
            store_connected,
            revision,
            verifications,
            cache_hits,
            usage_flushes,
            usage_flush_failures,
            full_reloads,
            reconnects,
            connections_open,
            connections_refused,
            admin_auth_failures,
        }
    }

    /// `(open, refused)` of one listener.
    pub fn listener(&self, l: Listener) -> (IntGauge, IntCounter) {
        (
            self.connections_open[l as usize].clone(),
            self.connections_refused[l as usize].clone(),
        )
    }

    fn fi(f: Frontend) -> usize {
        f as usize
    }

    /// Brings the table and store gauges up to date.
    pub fn refresh(&self, replica: &Replica, stats: &StoreStats) {
        self.keys.set(replica.snapshot().len() as i64);
        self.revision.set(replica.revision() as i64);
        self.replication_age
            .set(replica.age().map_or(f64::INFINITY, |a| a.as_secs_f64()));
        let r = stats.read();
        self.store_connected.set(i64::from(r.connected));
        for (c, v) in [
            (&self.reconnects, r.reconnects),
            (&self.full_reloads, r.full_loads),
            (&self.usage_flushes, r.usage_flushes),
            (&self.usage_flush_failures, r.usage_flush_failures),
        ] {
            c.inc_by(v.saturating_sub(c.get()));
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Observer for Metrics {
    fn decision(&self, f: Frontend, denied: Option<Reason>, seconds: f64) {
        match denied {
            None => self.allow[Self::fi(f)].inc(),
            Some(r) => {
                let ri = Reason::ALL.iter().position(|x| *x == r).unwrap_or(0);
                self.deny[Self::fi(f)][ri].inc()
            }
        }
        self.latency[Self::fi(f)].observe(seconds);
    }

    fn verification(&self, v: Verification) {
        self.verifications[v as usize].inc();
    }

    fn cache_hit(&self) {
        self.cache_hits.inc();
    }
}
