//! Request ids through the shipped proxy configs: every decision keygate logs (at debug) names
//! the request's id (the proxy's `x-request-id`, which Envoy makes and nginx sends as its
//! `$request_id`) and the W3C `traceparent` trace id, and a denial gives the client the same
//! id, so an operator can join keygate's log with the proxy's access log. No log line ever
//! holds the credential.

mod common;
mod proxy;

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use proxy::fronts::{Front, bearer, setup};

/// What keygate (in this process) logged.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_env_filter("keygate_authz=debug")
            .with_ansi(false)
            .with_writer(|| Capture)
            .init();
    });
}

/// The lines logged so far that mention `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&LOG.lock().unwrap())
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn ids(front: Front) {
    capture_logs();
    let s = setup(front).await;
    let live = s.key("live", "acme", None).await;
    let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01");

    // A denial: the client gets the id keygate logged it under, with the trace id.
    let r = s
        .call("GET", "/v1/x", &[("traceparent", traceparent.as_str())])
        .await;
    assert_eq!(r.status, 401, "{front:?}: {r:?}");
    let id = r
        .header("x-request-id")
        .unwrap_or_else(|| panic!("{front:?}: no x-request-id on the denial: {r:?}"))
        .to_string();
    assert!(id.len() >= 16, "{front:?}: {id}");
    let denied = lines_with(&id);
    assert_eq!(denied.len(), 1, "{front:?}: {denied:?}");
    assert!(
        denied[0].contains("denied") && denied[0].contains("missing") && denied[0].contains(TRACE),
        "{front:?}: {denied:?}"
    );
    if front == Front::Nginx {
        assert!(
            s.proxy.access_log().contains(&format!("request_id={id}")),
            "{}",
            s.proxy.access_log()
        );
    }

    // An allow: the id keygate logs is the one the upstream gets from the proxy.
    let b = bearer(&live.key);
    let up = s
        .pass(
            "GET",
            "/v1/x",
            &[("authorization", &b), ("traceparent", &traceparent)],
        )
        .await;
    if let Some(up_id) = up.one("x-request-id") {
        let allowed = lines_with(&up_id);
        assert_eq!(allowed.len(), 1, "{front:?}: {allowed:?}");
        assert!(allowed[0].contains("allowed") && allowed[0].contains(&live.id));
    } else {
        // nginx does not send its id upstream unless told to: find it by the access log.
        let log = s.proxy.access_log();
        let last = log.lines().last().unwrap_or_default();
        let nginx_id = last.rsplit("request_id=").next().unwrap_or_default();
        assert!(
            lines_with(nginx_id).iter().any(|l| l.contains("allowed")),
            "{front:?}: {last}"
        );
    }
    // The credential is in no line.
    assert!(lines_with(&live.key).is_empty());
    assert!(lines_with(&live.key[live.key.len() - 20..]).is_empty());
}

#[tokio::test]
async fn envoy_grpc_request_ids() {
    ids(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_http_request_ids() {
    ids(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn nginx_request_ids() {
    ids(Front::Nginx).await;
}

/// keygate inside nginx gives its denials an id too (the client's `x-request-id`, or one
/// keygate made).
#[tokio::test]
async fn nginx_module_denials_carry_a_request_id() {
    let s = setup(Front::NginxModule { workers: 1 }).await;
    let r = s.call("GET", "/v1/x", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-request-id").map(str::len), Some(24), "{r:?}");
    let r = s
        .call("GET", "/v1/x", &[("x-request-id", "client-77")])
        .await;
    assert_eq!(r.header("x-request-id"), Some("client-77"));
}

/// The module's local replies carry the request id Envoy made.
#[tokio::test]
async fn envoy_module_denials_carry_the_request_id() {
    let s = setup(Front::EnvoyModule).await;
    let r = s.call("GET", "/v1/x", &[]).await;
    assert_eq!(r.status, 401);
    let id = r
        .header("x-request-id")
        .expect("x-request-id on the denial");
    assert_eq!(id.len(), 36, "Envoy's UUID: {id}");
}
