//! Changes made with the CLI reach the running server: accounts, keys from creation to rotation
//! and revocation, an imported digest, the audit trail, and the plan's key limit.

use crate::common::Harness;
use crate::run::{auth_status, cli, json, wait_status};

#[tokio::test(flavor = "multi_thread")]
async fn cli_changes_reach_the_running_server() {
    let h = Harness::start().await;
    let created = json(&cli(
        &h,
        &[
            "keys",
            "create",
            "--account",
            "acme",
            "--name",
            "My Integration",
            "--scheme",
            "live",
            "--scope",
            "usage:read",
        ],
    ));
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(
        key.starts_with("tk_live_") && (50..=60).contains(&key.len()),
        "{key}"
    );
    for f in [
        "id",
        "key",
        "name",
        "prefix",
        "account",
        "scheme",
        "scopes",
        "createdAt",
        "expiresAt",
    ] {
        assert!(created.get(f).is_some(), "create lacks {f}");
    }
    assert_eq!(created["scopes"], serde_json::json!(["usage:read"]));
    wait_status(&h, &key, "/v1/account/usage", 200).await;
    assert_eq!(auth_status(&h, &key, "/v1/tokens").await, 403);

    // Listing never shows the key or its hash.
    let list = cli(&h, &["keys", "list", "--account", "acme"]);
    let text = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(!text.contains(&key[8..]), "list leaked the key");
    assert!(!text.contains("hash") && !text.contains("argon2"), "{text}");
    let v = json(&list);
    assert_eq!(v["keys"][0]["id"], id.as_str());
    for f in [
        "id",
        "name",
        "prefix",
        "account",
        "scheme",
        "scopes",
        "createdAt",
        "lastUsedAt",
        "expiresAt",
        "revokedAt",
    ] {
        assert!(v["keys"][0].get(f).is_some(), "list lacks {f}");
    }

    // Account status: 403 while past due.
    json(&cli(
        &h,
        &[
            "accounts", "set", "acme", "--plan", "starter", "--status", "past_due",
        ],
    ));
    wait_status(&h, &key, "/v1/account/usage", 403).await;
    let set = json(&cli(&h, &["accounts", "set", "acme", "--status", "active"]));
    assert_eq!(json(&cli(&h, &["accounts", "get", "acme"])), set);
    assert_eq!(
        cli(&h, &["accounts", "get", "nobody"]).status.code(),
        Some(3)
    );
    wait_status(&h, &key, "/v1/account/usage", 200).await;

    // Rotation with grace: both work until the grace ends.
    let rotated = json(&cli(&h, &["keys", "rotate", &id, "--grace", "1h"]));
    let new_key = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(rotated["replaces"], id.as_str());
    wait_status(&h, &new_key, "/v1/account/usage", 200).await;
    assert_eq!(auth_status(&h, &key, "/v1/account/usage").await, 200);
    // Rotation without grace: the old key stops at once.
    let new_id = rotated["id"].as_str().unwrap().to_string();
    let third = json(&cli(&h, &["keys", "rotate", &new_id]));
    wait_status(&h, third["key"].as_str().unwrap(), "/v1/account/usage", 200).await;
    wait_status(&h, &new_key, "/v1/account/usage", 401).await;

    // Revocation.
    let revoked = json(&cli(&h, &["keys", "revoke", &id]));
    assert_eq!(revoked, serde_json::json!({"success": true}));
    wait_status(&h, &key, "/v1/account/usage", 401).await;
    let missing = cli(&h, &["keys", "revoke", "nope"]);
    assert_eq!(missing.status.code(), Some(3));

    // Import of an existing SHA-256 digest.
    let legacy = "tk_live_legacy-system-key-0001";
    let digest = keygate::core::key::to_hex(&keygate::core::key::sha256(legacy.as_bytes()));
    let imported = json(&cli(
        &h,
        &[
            "keys",
            "import",
            "--account",
            "acme",
            "--scheme",
            "live",
            "--sha256",
            &digest,
        ],
    ));
    assert!(imported.get("key").is_none());
    wait_status(&h, legacy, "/v1/x", 200).await;
    let bad = cli(
        &h,
        &[
            "keys",
            "import",
            "--account",
            "acme",
            "--scheme",
            "toon",
            "--sha256",
            &digest,
        ],
    );
    assert_eq!(bad.status.code(), Some(2));

    // Audit trail, in order, with actors.
    let audit = json(&cli(&h, &["audit", "--account", "acme"]));
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "key.created",
            "account.updated",
            "account.updated",
            "key.rotated",
            "key.rotated",
            "key.revoked",
            "key.imported"
        ]
    );
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "cli")
    );
}

#[tokio::test]
async fn key_limit_applies_at_the_boundary() {
    let h = Harness::start().await;
    json(&cli(&h, &["accounts", "set", "small", "--plan", "starter"]));
    let mut ids = vec![];
    for _ in 0..4 {
        ids.push(
            json(&cli(&h, &["keys", "create", "--account", "small"]))["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let fifth = cli(&h, &["keys", "create", "--account", "small"]);
    assert_eq!(fifth.status.code(), Some(4));
    let err: serde_json::Value = serde_json::from_slice(&fifth.stdout).unwrap();
    assert_eq!(err["error"], "key_limit_reached");
    json(&cli(&h, &["keys", "revoke", &ids[0]]));
    json(&cli(&h, &["keys", "create", "--account", "small"]));
}
