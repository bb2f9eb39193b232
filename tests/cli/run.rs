//! The CLI run as a process on a harness's config, and the decisions the running server then
//! makes.

use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{Harness, bin};

pub fn cli(h: &Harness, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--config")
        .arg(&h.config_path)
        .args(args)
        .env("KEYGATE_LOG", "warn")
        .output()
        .unwrap()
}

pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

pub async fn auth_status(h: &Harness, key: &str, uri: &str) -> u16 {
    h.auth(key, uri).await.status
}

pub async fn wait_status(h: &Harness, key: &str, uri: &str, want: u16) {
    h.wait_auth(key, uri, want, Duration::from_secs(5)).await;
}
