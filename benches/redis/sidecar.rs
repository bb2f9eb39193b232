//! Sidecar helpers: the bench config for a Redis URL, waiting for a table to load, and one
//! decision on a sidecar's authorizer.

use std::time::{Duration, Instant};

use keygate::config::Settings;
use keygate::core::decide::Reason;
use keygate::core::request::Request;
use keygate::metrics::Frontend;
use keygate::service::Authorizer;
use keygate::store::replica::Replica;

/// The shipped example config on port 0 with the Redis backend at `url`.
pub(crate) fn settings_for(url: &str) -> Settings {
    let file_store = "  backend: file             # embedded default: one local file\n  path: data/keygate.json\n";
    let example = include_str!("../../config/keygate.yaml");
    assert!(
        example.contains(file_store),
        "config/keygate.yaml changed: update the store replacement in benches/redis/sidecar.rs"
    );
    let text = example
        .replace("127.0.0.1:9001", "127.0.0.1:0")
        .replace("127.0.0.1:9002", "127.0.0.1:0")
        .replace("127.0.0.1:9003", "127.0.0.1:0")
        .replace(file_store, &format!("  backend: redis\n  url: {url}\n"));
    Settings::from_yaml(&text).expect("bench config")
}

/// Polls until the replica holds a loaded table; the time it took.
pub(crate) async fn wait_loaded(replica: &Replica, deadline: Duration) -> Duration {
    let start = Instant::now();
    while !replica.is_loaded() {
        assert!(start.elapsed() < deadline, "the key table did not load");
        tokio::time::sleep(Duration::from_millis(1)).await; // poll interval, bounded by the deadline
    }
    start.elapsed()
}

/// Decides `GET /v1/x` with `Authorization: Bearer <key>` on a sidecar's authorizer.
pub(crate) async fn decide(auth: &Authorizer, bearer: &str) -> Result<(), Reason> {
    let headers = [("authorization", bearer)];
    let req = Request {
        method: "GET",
        path: "/v1/x",
        host: None,
        headers: &headers[..],
    };
    auth.check(&req, Frontend::EnvoyGrpc)
        .await
        .map(|_| ())
        .map_err(|d| d.reason)
}
