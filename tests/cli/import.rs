//! `keys import --file`: a bulk import, safe to run again, with progress on a terminal or not.

use std::process::Command;

use crate::common::{Harness, bin};
use crate::run::{cli, json, wait_status};

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
