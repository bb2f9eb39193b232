//! The module fits Debian's nginx: every symbol it imports is in the binary, and `nginx -t`
//! refuses a bad keygate config naming the field.

use std::process::Command;

use crate::common;
use crate::proxy::nginx_module::{module_conf, nginx_module};
use crate::proxy::{nginx_bin, symbols};

#[test]
fn every_nginx_symbol_the_module_imports_is_in_the_binary() {
    let imported = symbols(&nginx_module(), &["-D", "--undefined-only"], "ngx_");
    let nginx = symbols(&nginx_bin(), &["-D", "--defined-only"], "ngx_");
    assert!(imported.len() >= 10, "{imported:?}");
    let missing: Vec<&String> = imported.difference(&nginx).collect();
    assert!(
        missing.is_empty(),
        "symbols nginx does not have: {missing:?}"
    );
    let exported = symbols(&nginx_module(), &["-D", "--defined-only"], "ngx_");
    for table in ["ngx_modules", "ngx_module_names", "ngx_module_order"] {
        assert!(
            exported.contains(table),
            "the module does not export {table}"
        );
    }
}

/// `nginx -t` on the shipped config with the keygate config at `keygate`: its output.
fn nginx_test(keygate: &std::path::Path, edit: impl Fn(String) -> String) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    for d in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let upstream = "127.0.0.1:1".parse().unwrap();
    let text = edit(module_conf(&nginx_module(), keygate, 1, 2, upstream, 1));
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, text).unwrap();
    Command::new(nginx_bin())
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .arg("-t")
        .output()
        .unwrap()
}

#[test]
fn nginx_refuses_a_bad_keygate_config_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, common::config_text(&dir.path().join("k.json"))).unwrap();
    let out = nginx_test(&good, |t| t);
    assert!(out.status.success(), "{out:?}");

    let bad = dir.path().join("bad.yaml");
    let text = common::config_text(&dir.path().join("k.json")).replace("hash: sha256", "hash: md5");
    std::fs::write(&bad, text).unwrap();
    let out = nginx_test(&bad, |t| t);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nginx accepted a bad keygate config");
    assert!(said.contains("schemes[1].hash"), "{said}");
    assert!(said.contains("unknown hash `md5`"), "{said}");

    // `keygate on` without `keygate_config` cannot check anything: refused too.
    let out = nginx_test(&good, |t| {
        let line = format!("keygate_config {};", good.display());
        t.replace(&line, "")
    });
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("need \"keygate_config\""), "{said}");
}
