//! Runs `keygate serve` as a process at trace log level, drives every path that touches a key
//! (creation, allow, deny, Argon2, admin listing, revocation), then searches everything it
//! logged and every response after creation for each key and secret.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ADMIN_TOKEN, bin, check_request, config_text, http_call, wait_until};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..].split_whitespace().next()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_key_reaches_logs_or_later_responses() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keygate.json");
    let config = dir.path().join("keygate.yaml");
    std::fs::write(&config, config_text(&store)).unwrap();
    let log_path = dir.path().join("keygate.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("KEYGATE_LOG", "trace")
        .env("KEYGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until("keygate to listen", Duration::from_secs(20), || async {
        read_log().contains("keygate listening")
    })
    .await;
    let text = read_log();
    let line = text
        .lines()
        .find(|l| l.contains("keygate listening"))
        .unwrap();
    let grpc = field(line, "grpc").unwrap().to_string();
    let http: std::net::SocketAddr = field(line, "http").unwrap().parse().unwrap();
    let admin: std::net::SocketAddr = field(line, "admin").unwrap().parse().unwrap();
    let token = format!("Bearer {ADMIN_TOKEN}");

    let mut keys = Vec::new();
    let mut later = String::new();
    for scheme in ["live", "toon"] {
        let body = serde_json::json!({"account": "acme", "scheme": scheme}).to_string();
        let r = common::http_call_body(
            admin,
            "POST",
            "/api/keys",
            &[
                ("authorization", &token),
                ("content-type", "application/json"),
            ],
            body.into(),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        keys.push(r.json()["key"].as_str().unwrap().to_string());
    }
    let mut grpc_client = AuthorizationClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    for k in &keys {
        let b = format!("Bearer {k}");
        let mut wrong = k.clone();
        wrong.replace_range(wrong.len() - 3.., "xyz");
        let wb = format!("Bearer {wrong}");
        for h in [
            vec![("authorization", b.as_str())],
            vec![("x-api-key", k.as_str())],
            vec![("x-api-key", wrong.as_str())],
            vec![("authorization", wb.as_str())],
            vec![("authorization", b.as_str()), ("authorization", b.as_str())],
        ] {
            let mut nginx = vec![
                ("x-original-uri", "/v1/tokens"),
                ("x-original-method", "POST"),
            ];
            nginx.extend_from_slice(&h);
            for r in [
                http_call(http, "GET", "/auth", &nginx).await,
                http_call(http, "GET", "/ext_authz/v1/x", &h).await,
            ] {
                later.push_str(&format!("{:?}{}", r.headers, r.body));
            }
            let resp = grpc_client
                .check(check_request("GET", "/v1/x", &h))
                .await
                .unwrap();
            later.push_str(&format!("{:?}", resp.into_inner()));
        }
    }
    for uri in [
        "/api/keys?account=acme",
        "/api/audit",
        "/api/accounts/acme/usage",
    ] {
        let r = http_call(admin, "GET", uri, &[("authorization", &token)]).await;
        later.push_str(&r.body);
    }
    later.push_str(&http_call(http, "GET", "/metrics", &[]).await.body);

    // Stop it the way an orchestrator does and let it flush.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "keygate exited with {status}");

    let logged = read_log();
    assert!(
        logged.lines().count() > 20,
        "expected trace output, got:\n{logged}"
    );
    assert!(logged.contains("TRACE"), "trace level was not on");
    for k in &keys {
        let secret = k.rsplit('_').next().unwrap();
        for (what, text) in [("log", &logged), ("response", &later)] {
            assert!(!text.contains(secret), "a secret appeared in a {what}");
        }
    }
    assert!(
        !logged.contains(ADMIN_TOKEN),
        "the admin token appeared in the log"
    );
}
