//! docs/openapi.yaml against the real admin API: schemathesis (installed into .tools/venv by
//! scripts/test.sh) generates requests from the document, valid and invalid, sends them to a
//! running keygate and checks every response against the document: a documented status, a
//! documented content type, a body matching the schema, never a server error, and 405 for a
//! method the document does not give a path.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Harness};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// Longest the schemathesis run may take before the test fails.
const RUN_DEADLINE: Duration = Duration::from_secs(150);

fn schemathesis() -> PathBuf {
    let p = Path::new(MANIFEST).join(".tools/venv/bin/schemathesis");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, which installs schemathesis from PyPI into .tools/venv",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_conforms_to_openapi_document() {
    let bin = schemathesis();
    let h = Harness::start().await;
    let admin = h.running().admin.unwrap();
    // Something to find: an account with a plan and a key, so reads can answer 200.
    h.manager
        .set_account("test", "acme", Some(Some("pro".into())), None)
        .await
        .unwrap();
    h.key("live", "acme", Some(&["usage:read"])).await;

    let work = tempfile::tempdir().unwrap();
    let log_path = work.path().join("schemathesis.log");
    let junit = work.path().join("junit.xml");
    let log = std::fs::File::create(&log_path).unwrap();
    let args: Vec<String> = vec![
        "run".into(),
        Path::new(MANIFEST)
            .join("docs/openapi.yaml")
            .display()
            .to_string(),
        "--url".into(),
        format!("http://{admin}"),
        "-H".into(),
        format!("Authorization: Bearer {ADMIN_TOKEN}"),
        "--checks".into(),
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,unsupported_method".into(),
        "--max-examples".into(),
        "20".into(),
        "--seed".into(),
        "20240601".into(),
        "--generation-database".into(),
        "none".into(),
        "--request-timeout".into(),
        "10".into(),
        "--no-color".into(),
        "--report".into(),
        "junit".into(),
        "--report-junit-path".into(),
        junit.display().to_string(),
    ];
    let mut child = Command::new(&bin)
        .args(&args)
        // Reports and caches go to the temporary directory, not the checkout.
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));

    // keygate runs on this runtime's workers; the wait for the child runs beside it.
    let status = tokio::task::spawn_blocking(move || {
        let end = Instant::now() + RUN_DEADLINE;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50)); // poll interval, bounded by the deadline
        }
    })
    .await
    .unwrap();
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        None => panic!("schemathesis did not finish within {RUN_DEADLINE:?}:\n{output}"),
        Some(s) => assert!(
            s.success(),
            "schemathesis found responses that do not match docs/openapi.yaml ({s}):\n{output}"
        ),
    }
    // It did test something: every operation of the document, against this keygate.
    let report = std::fs::read_to_string(&junit).unwrap_or_default();
    for op in [
        "POST /api/keys",
        "GET /api/keys",
        "DELETE /api/keys/{id}",
        "POST /api/keys/{id}/rotate",
        "PUT /api/accounts/{id}",
        "GET /api/accounts/{id}",
        "GET /api/accounts/{id}/usage",
        "GET /api/audit",
    ] {
        assert!(
            report.contains(&format!("<testcase name=\"{op}\"")),
            "schemathesis did not test {op}:\n{report}\n{output}"
        );
    }
    let events = h.manager.audit(None).await.unwrap().events;
    assert!(
        events.len() > 10,
        "schemathesis made almost no changes through the admin API: {events:?}"
    );
}
