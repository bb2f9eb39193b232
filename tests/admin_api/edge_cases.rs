//! Edge cases of paths, bodies and rotation: percent-decoded segments, bodies that must be
//! objects, names counted in characters, revoking twice, rotating an expired key.

use crate::client::*;
use crate::common::Harness;

#[tokio::test(flavor = "multi_thread")]
async fn edge_cases_of_paths_bodies_and_rotation() {
    let h = Harness::start().await;
    let log = new_log();
    let api = Api::new(&h, &log);

    // Path segments are percent-decoded: an account with @ is reachable encoded.
    api.ok("PUT", "/api/accounts/a@b", Some(r#"{"plan":"pro"}"#), 200)
        .await;
    let a = api.ok("GET", "/api/accounts/a%40b", None, 200).await;
    assert_eq!(a["id"], "a@b");
    api.ok(
        "PUT",
        "/api/accounts/a%40b",
        Some(r#"{"status":"past_due"}"#),
        200,
    )
    .await;
    assert_eq!(
        api.ok("GET", "/api/accounts/a@b", None, 200).await["status"],
        "past_due"
    );
    api.err("GET", "/api/accounts/%zz", None, 400, "bad_request")
        .await;

    // Bodies must be JSON objects, not arrays that happen to fit the fields.
    let before = api.ok("GET", "/api/audit", None, 200).await["events"]
        .as_array()
        .unwrap()
        .len();
    api.err(
        "POST",
        "/api/keys",
        Some(r#"["arr",null,"live",["usage:read"],null]"#),
        400,
        "bad_request",
    )
    .await;
    api.err(
        "PUT",
        "/api/accounts/arr",
        Some(r#"["free","past_due"]"#),
        400,
        "bad_request",
    )
    .await;
    let k = api
        .ok(
            "POST",
            "/api/keys",
            Some(r#"{"account":"acme","scheme":"live"}"#),
            201,
        )
        .await;
    let id = k["id"].as_str().unwrap().to_string();
    api.err(
        "POST",
        &format!("/api/keys/{id}/rotate"),
        Some("[60]"),
        400,
        "bad_request",
    )
    .await;

    // Names are limited in characters, not bytes.
    let name = "é".repeat(150);
    api.ok(
        "POST",
        "/api/keys",
        Some(&format!(r#"{{"account":"acme","name":"{name}"}}"#)),
        201,
    )
    .await;

    // Revoking twice succeeds and records one event.
    api.ok("DELETE", &format!("/api/keys/{id}"), None, 200)
        .await;
    api.ok("DELETE", &format!("/api/keys/{id}"), None, 200)
        .await;
    let events = api.ok("GET", "/api/audit", None, 200).await["events"]
        .as_array()
        .unwrap()
        .clone();
    let revoked = events
        .iter()
        .filter(|e| e["action"] == "key.revoked" && e["keyId"] == id.as_str())
        .count();
    assert_eq!(revoked, 1);
    assert_eq!(
        events.len(),
        before + 3,
        "refused calls left no audit events"
    );

    // Rotating an expired key is refused rather than issuing a key that is already dead.
    let k = api
        .ok(
            "POST",
            "/api/keys",
            Some(r#"{"account":"acme","scheme":"live"}"#),
            201,
        )
        .await;
    let id = k["id"].as_str().unwrap().to_string();
    let keygate::store::Store::File(f) = &h.manager.store else {
        panic!("file store")
    };
    f.update(|s| {
        let r = s.keys.get_mut(&id).unwrap();
        r.expires_at = Some(keygate::service::unix_now() - 1);
        r.version += 1;
        s.revision += 1;
        Ok(())
    })
    .unwrap();
    api.err(
        "POST",
        &format!("/api/keys/{id}/rotate"),
        Some("{}"),
        409,
        "conflict",
    )
    .await;
    api.assert_no_key_leaked();
}
