//! The CLI as a process, against the same file store as a running server: changes it makes
//! reach the server within a second; its output is JSON for scripts.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{Harness, bin, wait_until};

fn cli(h: &Harness, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--config")
        .arg(&h.config_path)
        .args(args)
        .env("KEYGATE_LOG", "warn")
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

async fn auth_status(h: &Harness, key: &str, uri: &str) -> u16 {
    let b = format!("Bearer {key}");
    let header = if key.starts_with("toon_") {
        ("x-api-key", key)
    } else {
        ("authorization", b.as_str())
    };
    h.http("GET", "/auth", &[("x-original-uri", uri), header])
        .await
        .status
}

async fn wait_status(h: &Harness, key: &str, uri: &str, want: u16) {
    wait_until(
        &format!("status {want}"),
        Duration::from_secs(5),
        || async { auth_status(h, key, uri).await == want },
    )
    .await;
}

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

#[test]
fn check_config_names_every_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(
        &p,
        "listen: { grpc: nowhere }\nschemes:\n  - { name: a, header: x-api-key, key_prefix: a_, hash: md5, colour: red }\nroutes: [ { path_prefix: /, schemes: [b] } ]\n",
    )
    .unwrap();
    let o = Command::new(bin())
        .args(["--config"])
        .arg(&p)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    for f in [
        "listen.grpc",
        "schemes[0].hash",
        "schemes[0].colour",
        "routes[0].schemes[0]",
    ] {
        assert!(err.contains(f), "{f} not named in: {err}");
    }
    let ok = Command::new(bin())
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/keygate.yaml"),
            "check-config",
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// `keys create` and `keys update` set and clear a key's limits and credits.
#[tokio::test(flavor = "multi_thread")]
async fn cli_sets_and_clears_limits_and_credits() {
    let h = Harness::start().await;
    let created = json(&cli(
        &h,
        &[
            "keys",
            "create",
            "--account",
            "metered",
            "--scheme",
            "live",
            "--rate-limit",
            "daily=1/1d/account",
            "--credits",
            "50",
            "--refill",
            "50/monthly",
        ],
    ));
    let (id, key) = (
        created["id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    let listed = json(&cli(&h, &["keys", "list", "--account", "metered"]));
    let view = &listed["keys"][0];
    assert_eq!(
        view["rateLimits"],
        serde_json::json!([{"name": "daily", "requests": 1, "per": "1d", "shared": "account"}])
    );
    assert_eq!(
        view["credits"],
        serde_json::json!({"remaining": 50, "refill": {"amount": 50, "interval": "monthly"}})
    );
    wait_status(&h, key, "/v1/x", 200).await;
    // The day's one request is spent: 429, given to nginx as 403.
    assert_eq!(auth_status(&h, key, "/v1/x").await, 403);

    let updated = json(&cli(
        &h,
        &[
            "keys",
            "update",
            id,
            "--clear",
            "rate-limits",
            "--name",
            "unlimited",
        ],
    ));
    assert_eq!(updated["name"], "unlimited");
    assert!(updated.get("rateLimits").is_none(), "{updated}");
    // The credits are kept, not started afresh: what is left shows the request spent (and
    // what the running server holds leased).
    let left = updated["credits"]["remaining"].as_u64().unwrap();
    assert!((40..50).contains(&left), "kept: {updated}");
    wait_status(&h, key, "/v1/x", 200).await;

    let bad = cli(&h, &["keys", "update", id, "--rate-limit", "x=5/2d"]);
    assert_eq!(bad.status.code(), Some(2), "a bad limit is a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rate-limit"));
}

/// Every command and option says what it is for in `--help` (a bare option name helps no one).
#[test]
fn every_option_in_help_has_a_description() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["check-config"],
        &["health"],
        &["keys"],
        &["keys", "create"],
        &["keys", "update"],
        &["keys", "list"],
        &["keys", "revoke"],
        &["keys", "rotate"],
        &["keys", "import"],
        &["accounts"],
        &["accounts", "get"],
        &["accounts", "set"],
        &["usage"],
        &["audit"],
    ];
    for cmd in commands {
        let o = Command::new(bin())
            .args(*cmd)
            .arg("--help")
            .env("COLUMNS", "200")
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd:?}");
        let help = String::from_utf8(o.stdout).unwrap();
        let lines: Vec<&str> = help.lines().collect();
        let mut section = "";
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with(' ') {
                section = line;
                continue;
            }
            let entry = line.trim_start();
            let is_entry = matches!(section, "Options:" | "Arguments:" | "Commands:")
                && line.len() - entry.len() == 2;
            if !is_entry {
                continue;
            }
            // `  --name <NAME>  What it is.`: the description follows two spaces, or (for a
            // long entry) on the next, further indented line.
            let described = entry
                .split_once("  ")
                .is_some_and(|(_, d)| !d.trim().is_empty())
                || lines
                    .get(i + 1)
                    .is_some_and(|n| n.len() - n.trim_start().len() > 2 && !n.trim().is_empty());
            assert!(
                described,
                "keygate {cmd:?} --help: `{entry}` has no description:\n{help}"
            );
        }
    }
}

/// `keys import --file`: a JSON Lines file, progress as plain lines when stderr is not a
/// terminal, the report as JSON, and a second run that imports nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_import_from_a_file_is_safe_to_run_again() {
    let h = Harness::start().await;
    let digest = |i: u32| {
        keygate::core::key::to_hex(&keygate::core::key::sha256(
            format!("tk_live_from-file-{i:06}").as_bytes(),
        ))
    };
    let mut lines: Vec<String> = (0..1_500)
        .map(|i| {
            serde_json::json!({"account": "filed", "scheme": "live", "sha256": digest(i)})
                .to_string()
        })
        .collect();
    lines.insert(5, r#"{"account": "filed", "scheme": "live"}"#.to_string());
    let file = h.dir.path().join("keys.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let run = || cli(&h, &["keys", "import", "--file", file.to_str().unwrap()]);
    let first = run();
    let report = json(&first);
    assert_eq!(
        (&report["imported"], &report["skipped"]),
        (&serde_json::json!(1_500), &serde_json::json!(0))
    );
    assert_eq!(report["refused"][0]["line"], 6);
    assert!(
        report["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("sha256")
    );
    let progress = String::from_utf8_lossy(&first.stderr);
    assert!(
        progress.contains("import: 1501 of 1501 lines done"),
        "{progress}"
    );
    wait_status(&h, "tk_live_from-file-000042", "/v1/x", 200).await;
    let again = json(&run());
    assert_eq!(
        (&again["imported"], &again["skipped"]),
        (&serde_json::json!(0), &serde_json::json!(1_500))
    );
    // On a terminal (a pseudo-terminal made by `script`): a progress bar, not plain lines.
    let more = h.dir.path().join("more.jsonl");
    let line =
        serde_json::json!({"account": "filed", "scheme": "live", "sha256": digest(9_999_999)});
    std::fs::write(&more, line.to_string()).unwrap();
    let command = format!(
        "{} --config {} keys import --file {}",
        bin().display(),
        h.config_path.display(),
        more.display()
    );
    let tty = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("KEYGATE_LOG", "warn")
        .output()
        .expect("script (bsdutils) runs");
    let seen = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{seen}");
    assert!(seen.contains("importing ["), "no progress bar: {seen}");
    assert!(!seen.contains("lines done"), "{seen}");
    assert!(seen.contains(r#""imported":1"#), "{seen}");
    // One option or the other: a file and a digest together are refused by the parser.
    let both = cli(
        &h,
        &["keys", "import", "--file", "x", "--sha256", &digest(1)],
    );
    assert_eq!(both.status.code(), Some(2));
}

/// `keys update --disable/--enable/--meta/--clear meta`.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_is_disabled_enabled_and_given_metadata_from_the_cli() {
    let h = Harness::start().await;
    let created = json(&cli(
        &h,
        &[
            "keys",
            "create",
            "--account",
            "acme",
            "--scheme",
            "live",
            "--meta",
            "tier=gold",
        ],
    ));
    let (id, key) = (
        created["id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    wait_status(&h, key, "/v1/x", 200).await;
    let v = json(&cli(&h, &["keys", "update", id, "--disable"]));
    assert_eq!(v["enabled"], false);
    assert_eq!(v["meta"], serde_json::json!({"tier": "gold"}));
    wait_status(&h, key, "/v1/x", 401).await;
    let v = json(&cli(
        &h,
        &["keys", "update", id, "--enable", "--clear", "meta"],
    ));
    assert_eq!(v["enabled"], true);
    assert!(v.get("meta").is_none(), "{v}");
    wait_status(&h, key, "/v1/x", 200).await;
    let bad = cli(&h, &["keys", "update", id, "--meta", "Bad Key=x"]);
    assert_eq!(bad.status.code(), Some(2));
    let both = cli(&h, &["keys", "update", id, "--enable", "--disable"]);
    assert_eq!(both.status.code(), Some(2));
}
