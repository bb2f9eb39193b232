//! Who a request is in keygate's logs: the proxy's `x-request-id` (Envoy makes one for every
//! request; nginx passes its `$request_id` in the shipped config), or one made here when it
//! sent none, and the trace id of a W3C `traceparent`. An operator joins keygate's decision
//! lines with the proxy's access log by them. Neither is ever a credential: both come from
//! their own headers, and a value that is not of their shape is not used.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use keygate_core::request::{HeaderValue, Headers};

/// Longest request id taken from a proxy; a longer one is replaced by one made here.
const MAX_ID: usize = 128;

/// A request's ids, for its log lines and its denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    pub request_id: String,
    /// The 32 hex digits of the `traceparent`'s trace id.
    pub trace_id: Option<String>,
}

impl RequestIds {
    /// The ids of a request with these headers.
    pub fn of<H: Headers + ?Sized>(headers: &H) -> RequestIds {
        let request_id = match headers.get("x-request-id") {
            HeaderValue::One(v) if is_id(v) => String::from_utf8_lossy(v).into_owned(),
            _ => made_here(),
        };
        let trace_id = match headers.get("traceparent") {
            HeaderValue::One(v) => trace_id(v),
            _ => None,
        };
        RequestIds {
            request_id,
            trace_id,
        }
    }
}

/// 1–128 visible ASCII characters: what request ids are (UUIDs, nginx's 32 hex digits).
fn is_id(v: &[u8]) -> bool {
    (1..=MAX_ID).contains(&v.len()) && v.iter().all(|b| b.is_ascii_graphic())
}

/// The trace id of a `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), unless it is all zeros
/// (invalid per the W3C spec).
fn trace_id(v: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let mut parts = s.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0');
    ok.then(|| trace.to_string())
}

/// An id unique in this process and, by its random start, across processes: 24 hex digits.
fn made_here() -> String {
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        let mut b = [0u8; 8];
        // Without randomness the ids are still unique within the process.
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{start:016x}{n:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxys_id_and_trace_are_taken_and_bad_ones_are_not() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let h: &[(&str, &str)] = &[("x-request-id", "abc-123"), ("traceparent", tp)];
        let ids = RequestIds::of(h);
        assert_eq!(ids.request_id, "abc-123");
        assert_eq!(
            ids.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let h: &[(&str, &str)] = &[("traceparent", bad)];
            assert_eq!(RequestIds::of(h).trace_id, None, "{bad}");
        }
        // Missing, too long, with spaces, or sent twice: made here, each one different.
        let long = "x".repeat(129);
        let mut seen = std::collections::HashSet::new();
        for h in [
            vec![],
            vec![("x-request-id", long.as_str())],
            vec![("x-request-id", "a b")],
            vec![("x-request-id", "a"), ("x-request-id", "b")],
        ] {
            let id = RequestIds::of(h.as_slice()).request_id;
            assert_eq!(id.len(), 24);
            assert!(seen.insert(id));
        }
    }
}
