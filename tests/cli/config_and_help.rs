//! The CLI without a server: `check-config` names every bad field, `--help` describes every
//! option.

use std::process::Command;

use crate::common::bin;

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
