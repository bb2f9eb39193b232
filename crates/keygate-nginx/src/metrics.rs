//! The Prometheus text a `keygate_metrics` location serves: the sidecar's metric families, with
//! the sidecar's names, help, types and labels, read from the shared zone, so that any worker
//! answers for the whole nginx. Decisions carry `frontend="nginx_module"`. One family is the
//! module's own: `keygate_workers`, the workers running keygate.
//!
//! What each worker knows alone is summed (store reconnects, loads, usage flushes) or shown as
//! the least current worker's (`keygate_keys` and `keygate_table_revision` the lowest,
//! `keygate_replication_age_seconds` the oldest, `keygate_store_connected` 1 only while every
//! worker is connected): an alert on them fires when any worker lags.

use std::sync::atomic::{AtomicU64, Ordering};

use keygate_authz::{Frontend, Verification};
use keygate_core::decide::Reason;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use crate::shared::{BUCKETS, Shared, Slot};

pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn counter(pairs: &[(&str, &str)], v: u64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v as f64);
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    m.set_counter(c);
    m
}

fn gauge(v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    Metric::from_gauge(g)
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn sum(s: &Shared, field: impl Fn(&Slot) -> &AtomicU64) -> u64 {
    s.live().map(|slot| load(field(slot))).sum()
}

fn least(s: &Shared, field: impl Fn(&Slot) -> &AtomicU64) -> u64 {
    s.live().map(|slot| load(field(slot))).min().unwrap_or(0)
}

/// The text exposition format of everything in the zone.
pub fn render(s: &Shared) -> String {
    let frontend = Frontend::NginxModule.as_str();
    let mut decisions = vec![counter(
        &[
            ("frontend", frontend),
            ("reason", "ok"),
            ("result", "allow"),
        ],
        load(&s.decisions[0]),
    )];
    for (i, r) in Reason::ALL.iter().enumerate() {
        decisions.push(counter(
            &[
                ("frontend", frontend),
                ("reason", r.as_str()),
                ("result", "deny"),
            ],
            load(&s.decisions[1 + i]),
        ));
    }
    let mut h = Histogram::default();
    let mut cumulative = 0;
    let mut buckets = Vec::with_capacity(BUCKETS.len());
    for (i, bound) in BUCKETS.iter().enumerate() {
        cumulative += load(&s.latency[i]);
        let mut b = Bucket::default();
        b.set_upper_bound(*bound);
        b.set_cumulative_count(cumulative);
        buckets.push(b);
    }
    h.set_bucket(buckets);
    h.set_sample_count(cumulative + load(&s.latency[BUCKETS.len()]));
    h.set_sample_sum(load(&s.latency_nanos) as f64 / 1e9);
    let mut latency = Metric::default();
    latency.set_label(labels(&[("frontend", frontend)]));
    latency.set_histogram(h);
    let verifications = Verification::ALL
        .iter()
        .map(|v| {
            counter(
                &[("result", v.as_str())],
                load(&s.verifications[*v as usize]),
            )
        })
        .collect();

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let oldest = least(s, |w| &w.confirmed_ms);
    let age = if oldest == 0 {
        f64::INFINITY
    } else {
        now_ms.saturating_sub(oldest) as f64 / 1e3
    };
    let connected = s.live().count() > 0 && least(s, |w| &w.connected) == 1;

    use MetricType::{COUNTER, GAUGE, HISTOGRAM};
    let mut families = vec![
        family(
            "keygate_decisions_total",
            "Authorization decisions",
            COUNTER,
            decisions,
        ),
        family(
            "keygate_decision_duration_seconds",
            "Time to decide, from request parsed to response built",
            HISTOGRAM,
            vec![latency],
        ),
        family(
            "keygate_hash_verifications_total",
            "Argon2 verifications by result",
            COUNTER,
            verifications,
        ),
        family(
            "keygate_verify_cache_hits_total",
            "Argon2 keys accepted from the verification cache",
            COUNTER,
            vec![counter(&[], load(&s.cache_hits))],
        ),
        family(
            "keygate_keys",
            "Keys in the in-memory table",
            GAUGE,
            vec![gauge(least(s, |w| &w.keys) as f64)],
        ),
        family(
            "keygate_replication_age_seconds",
            "Seconds since the table was last confirmed current with the store",
            GAUGE,
            vec![gauge(age)],
        ),
        family(
            "keygate_store_connected",
            "1 while the store is reachable",
            GAUGE,
            vec![gauge(if connected { 1.0 } else { 0.0 })],
        ),
        // nginx's own: how many workers run keygate (each holds a table).
        family(
            "keygate_workers",
            "nginx worker processes running keygate, each with its own key table",
            GAUGE,
            vec![gauge(s.live().count() as f64)],
        ),
        family(
            "keygate_table_revision",
            "Store revision held in the table",
            GAUGE,
            vec![gauge(least(s, |w| &w.revision) as f64)],
        ),
    ];
    for (name, help, field) in [
        (
            "keygate_usage_flushes_total",
            "Usage write-back batches written",
            (|w: &Slot| &w.usage_flushes) as fn(&Slot) -> &AtomicU64,
        ),
        (
            "keygate_usage_flush_failures_total",
            "Usage write-back batches that failed (retried)",
            |w| &w.usage_flush_failures,
        ),
        (
            "keygate_table_full_loads_total",
            "Whole-table loads from the store (start, and recovery from a trimmed change log)",
            |w| &w.full_loads,
        ),
        (
            "keygate_store_reconnects_total",
            "Reconnections to the store",
            |w| &w.reconnects,
        ),
    ] {
        families.push(family(
            name,
            help,
            COUNTER,
            vec![counter(&[], sum(s, field))],
        ));
    }
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&families, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_authz::Observer;

    #[test]
    fn a_zone_renders_the_sidecars_families() {
        // SAFETY: every field is an atomic integer, for which zero bytes are valid.
        let s: &'static Shared = Box::leak(Box::new(unsafe { std::mem::zeroed() }));
        let o = crate::shared::ZoneObserver::new(s);
        o.decision(Frontend::NginxModule, Some(Reason::ALL[0]), 1e-5);
        s.slots[0].claim(1);
        s.slots[0].keys.store(7, Ordering::Relaxed);
        s.slots[0].connected.store(1, Ordering::Relaxed);
        let text = render(s);
        let missing = format!(
            r#"keygate_decisions_total{{frontend="nginx_module",reason="{}",result="deny"}} 1"#,
            Reason::ALL[0].as_str()
        );
        for line in [
            missing.as_str(),
            r#"keygate_decision_duration_seconds_count{frontend="nginx_module"} 1"#,
            "keygate_keys 7",
            "keygate_store_connected 1",
            "keygate_replication_age_seconds inf",
            "# TYPE keygate_decision_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "no `{line}` in\n{text}");
        }
    }
}
