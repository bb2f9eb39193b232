//! The key lifecycle beyond create and revoke, through the admin API of a running keygate:
//! key shapes per scheme and checksums; leaked-key reports; bulk imports of JSON Lines, run
//! twice; and updates (scopes, disable) reaching a second sidecar on the same Redis.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::redis_server::RedisServer;
use common::{ADMIN_TOKEN, Harness, HttpReply, http_call_body, metric};
use keygate::admin::manage::UpdateKey;
use keygate::core::key;
use serde_json::{Value, json};

async fn admin(h: &Harness, method: &str, uri: &str, body: impl Into<Bytes>) -> HttpReply {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let addr = h.running().admin.expect("admin listener");
    http_call_body(addr, method, uri, &[("authorization", &auth)], body.into()).await
}

async fn auth(h: &Harness, key: &str, uri: &str) -> HttpReply {
    h.auth(key, uri).await
}

async fn wait_auth(h: &Harness, key: &str, uri: &str, want: u16) {
    h.wait_auth(key, uri, want, Duration::from_secs(5)).await;
}

/// The shipped config with `live` keys shaped as Toksta's (`tk_live_` + 48 hex) and a `test`
/// scheme of the same shape with a CRC-32 checksum.
fn shaped_config(store: &std::path::Path) -> String {
    common::config_text(store).replace(
        "    key_prefix: tk_live_\n    hash: sha256\n",
        "    key_prefix: tk_live_\n    hash: sha256\n    format: { id: false, alphabet: hex, length: 48 }\n  \
         - name: test\n    header: authorization\n    key_prefix: tk_test_\n    hash: sha256\n    \
         format: { id: false, alphabet: hex, length: 48 }\n    checksum: crc32\n",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_take_their_schemes_shape_and_a_bad_checksum_is_malformed_before_any_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let text = shaped_config(&dir.path().join("keygate.json"));
    let h = Harness::start_with(dir, text).await;
    let live = h.key("live", "acme", None).await;
    let hex48 = regex_lite(&live.key, "tk_live_", 48);
    assert!(hex48, "{} is not tk_live_ + 48 hex", live.prefix);
    assert_eq!(
        live.prefix, "tk_live_",
        "the display prefix shows no secret"
    );
    assert_eq!(auth(&h, &live.key, "/v1/x").await.status, 200);

    let test = h.key("test", "acme", None).await;
    assert_eq!(test.key.len(), "tk_test_".len() + 48 + 6);
    assert_eq!(auth(&h, &test.key, "/v1/x").await.status, 200);
    // One character of the checksum changed: malformed, refused before any lookup (an
    // unknown key would have been looked up and not found).
    let mut bad = test.key.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).unwrap();
    let before = h.http("GET", "/metrics", &[]).await.body;
    let r = auth(&h, &bad, "/v1/x").await;
    assert_eq!(r.status, 401);
    let after = h.http("GET", "/metrics", &[]).await.body;
    let count = |m: &str, reason: &str| {
        metric(
            m,
            &format!(
                "keygate_decisions_total{{frontend=\"nginx\",reason=\"{reason}\",result=\"deny\"}}"
            ),
        )
    };
    assert_eq!(
        count(&after, "malformed") - count(&before, "malformed"),
        1.0
    );
    assert_eq!(count(&after, "unknown") - count(&before, "unknown"), 0.0);
    // A made-up key of the right shape and checksum is looked up, and unknown.
    let made_up = format!("tk_test_{}", "ab".repeat(24));
    let sum = keygate::core::scheme::checksum(made_up.as_bytes());
    let made_up = format!("{made_up}{}", std::str::from_utf8(&sum).unwrap());
    assert_eq!(auth(&h, &made_up, "/v1/x").await.status, 401);
    let last = h.http("GET", "/metrics", &[]).await.body;
    assert_eq!(count(&last, "unknown") - count(&after, "unknown"), 1.0);
}

/// `prefix` followed by exactly `n` lowercase hex digits.
fn regex_lite(key: &str, prefix: &str, n: usize) -> bool {
    key.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == n
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

async fn leaked_scenario(h: &Harness) {
    let reported = h.key("live", "leaky", None).await;
    let kept = h.key("live", "leaky", None).await;
    let toon = h.key("toon", "leaky", None).await;
    let gone = h.key("live", "leaky", None).await;
    h.manager.revoke_key("test", &gone.id).await.unwrap();
    let wrong_secret = format!(
        "{}_{}",
        &toon.key[..toon.key.rfind('_').unwrap()],
        "x".repeat(32)
    );
    let report = json!([
        {"token": reported.key, "type": "keygate_live", "url": "https://github.com/o/r/blob/x/.env", "source": "content"},
        {"token": toon.key, "url": "https://gist.github.com/x"},
        {"token": format!("tk_live_{}", "Z".repeat(40))},
        {"token": wrong_secret},
        {"token": "not a key at all"},
        {"token": gone.key},
    ]);
    let r = admin(h, "POST", "/api/keys/leaked", report.to_string()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    let labels: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "true_positive",
            "true_positive",
            "false_positive",
            "false_positive",
            "false_positive",
            "true_positive"
        ]
    );
    assert_eq!(v[0]["token_type"], "keygate_live");
    assert_eq!(v[0]["token_raw"], reported.key.as_str());
    assert_eq!(
        v[1]["token_type"], "toon",
        "the scheme when the scanner names none"
    );
    // Exactly the true positives are refused from now on.
    assert_eq!(auth(h, &reported.key, "/v1/x").await.status, 401);
    assert_eq!(auth(h, &toon.key, "/v1/x").await.status, 401);
    assert_eq!(auth(h, &kept.key, "/v1/x").await.status, 200);
    let audit = h.manager.audit(Some("leaky")).await.unwrap();
    let leaked: Vec<_> = audit
        .events
        .iter()
        .filter(|e| e.action == "key.leaked")
        .collect();
    assert_eq!(leaked.len(), 2, "one event per key revoked for a leak");
    assert_eq!(leaked[0].key_id.as_deref(), Some(reported.id.as_str()));
    let detail = leaked[0].detail.as_ref().unwrap();
    assert_eq!(detail["url"], "https://github.com/o/r/blob/x/.env");
    // Errors: not an array, a token of the wrong type, and the token guard.
    for bad in ["{}", r#"[{"token": 5}]"#, r#"[{"tok": "x"}]"#] {
        let r = admin(h, "POST", "/api/keys/leaked", bad).await;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert_eq!(r.json()["error"], "bad_request");
    }
    let addr = h.running().admin.unwrap();
    let r = http_call_body(addr, "POST", "/api/keys/leaked", &[], Bytes::from("[]")).await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn leaked_keys_are_revoked_exactly_on_the_file_store() {
    leaked_scenario(&Harness::start().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leaked_keys_are_revoked_exactly_on_redis() {
    let redis = RedisServer::start();
    leaked_scenario(&Harness::start_redis(&redis.url(), "", true).await).await;
}

/// `n` import lines of the `live` scheme over ten accounts; line `i`'s key is `legacy-<i>`.
fn import_lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let digest = key::to_hex(&key::sha256(format!("tk_live_legacy-key-{i:08}").as_bytes()));
            let mut v = json!({"account": format!("migrated-{}", i % 10), "scheme": "live", "sha256": digest});
            if i % 7 == 0 {
                v["scopes"] = json!(["usage:read"]);
                v["meta"] = json!({"source": "legacy"});
            }
            v.to_string()
        })
        .collect()
}

async fn import_scenario(h: &Harness, n: usize) {
    let mut lines = import_lines(n);
    // Refused lines, each writing nothing (line numbers are 1-based, after the insertions).
    let bad = [
        (3, "{not json".to_string()),
        (10, json!({"account": "migrated-0", "scheme": "nosuch", "sha256": "00".repeat(32)}).to_string()),
        (20, json!({"account": "migrated-0", "scheme": "toon", "sha256": "00".repeat(32)}).to_string()),
        (30, json!({"account": "migrated-0", "scheme": "live", "sha256": "xyz"}).to_string()),
        (40, json!({"account": "migrated-0", "scheme": "live", "sha256": "11".repeat(32), "key": "x"}).to_string()),
        // The fields by position: not an object.
        (50, json!(["migrated-0", "live", "22".repeat(32)]).to_string()),
    ];
    for (at, l) in &bad {
        lines.insert(at - 1, l.clone());
    }
    // A digest twice in one file: the second is skipped.
    lines.push(lines[0].clone());
    let body = lines.join("\n");
    let before = h.running().authorizer.replica.snapshot().len();
    let r = admin(h, "POST", "/api/keys/import", body.clone()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(
        (v["imported"].as_u64(), v["skipped"].as_u64()),
        (Some(n as u64), Some(1)),
        "{v}"
    );
    let refused: Vec<u64> = v["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(
        refused,
        bad.iter().map(|(l, _)| *l as u64).collect::<Vec<_>>(),
        "{v}"
    );
    assert!(
        v["refused"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("scheme"),
        "{v}"
    );
    let table = |h: &Harness| h.running().authorizer.replica.snapshot().len();
    assert_eq!(table(h), before + n);
    // The imported keys work, with their scopes.
    assert_eq!(
        auth(h, "tk_live_legacy-key-00000001", "/v1/x").await.status,
        200
    );
    assert_eq!(
        auth(h, "tk_live_legacy-key-00000007", "/v1/tokens")
            .await
            .status,
        403
    );

    // Run again: nothing imported, every digest skipped, the same refusals; the same table.
    let r = admin(h, "POST", "/api/keys/import", body).await;
    let v = r.json();
    assert_eq!(
        (v["imported"].as_u64(), v["skipped"].as_u64()),
        (Some(0), Some(n as u64 + 1)),
        "{v}"
    );
    assert_eq!(v["refused"].as_array().unwrap().len(), bad.len());
    assert_eq!(table(h), before + n);
    let listed = h.manager.list_keys(Some("migrated-3")).await.unwrap();
    assert_eq!(listed.keys.len(), n / 10);
    // Not a UTF-8 body: 400.
    let r = admin(h, "POST", "/api/keys/import", vec![0xff_u8, 0xfe]).await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_of_100k_digests_run_twice_on_redis_gives_the_same_table() {
    let redis = RedisServer::start();
    import_scenario(&Harness::start_redis(&redis.url(), "", true).await, 100_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_run_twice_on_the_file_store_gives_the_same_table() {
    import_scenario(&Harness::start().await, 5_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_reach_a_second_sidecar() {
    let redis = RedisServer::start();
    let a = Harness::start_redis(&redis.url(), "", true).await;
    let b = Harness::start_redis(&redis.url(), "", true).await;
    let k = a.key("live", "acme", None).await;
    wait_auth(&b, &k.key, "/v1/tokens", 200).await;
    let patch = |v: Value| serde_json::from_value::<UpdateKey>(v).unwrap();
    a.manager
        .update_key("test", &k.id, patch(json!({"scopes": ["usage:read"]})))
        .await
        .unwrap();
    wait_auth(&b, &k.key, "/v1/tokens", 403).await;
    assert_eq!(auth(&b, &k.key, "/v1/account/usage").await.status, 200);
    a.manager
        .update_key("test", &k.id, patch(json!({"enabled": false})))
        .await
        .unwrap();
    wait_auth(&b, &k.key, "/v1/account/usage", 401).await;
    b.manager
        .update_key("test", &k.id, patch(json!({"enabled": true})))
        .await
        .unwrap();
    wait_auth(&a, &k.key, "/v1/account/usage", 200).await;
}
