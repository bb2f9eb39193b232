//! End-to-end plumbing: an echo upstream, and the real Envoy and nginx started from the shipped
//! configs (only addresses substituted) in a temporary directory, killed on drop.
//!
//! [`echo`] (the echo upstream), [`process`] (a running proxy, started and killed), [`envoy`]
//! (the real Envoy, ext_authz and with the module) and [`nginx`] (the real nginx with
//! auth_request); the module in nginx in [`nginx_module`], the fronts a test picks in
//! [`fronts`], the modules' Redis outage checks in [`redis_outage`].
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod echo;
mod envoy;
pub mod fronts;
mod nginx;
pub mod nginx_module;
mod process;
pub mod redis_outage;

pub use crate::common::free_port;
// Re-exported whole: every test names them as `proxy::...`, each using only some of them.
pub use echo::*;
pub use envoy::*;
pub use nginx::*;
pub use process::*;
use process::{spawn, start_retrying};

/// Replaces each placeholder of a shipped config, failing if one is no longer there (so a
/// config edit cannot silently leave a test talking to the wrong address).
pub fn render(template: &str, subs: &[(&str, String)]) -> String {
    let mut text = template.to_string();
    for (from, to) in subs {
        assert!(
            text.contains(from),
            "the shipped config no longer contains `{from}`"
        );
        text = text.replace(from, to);
    }
    text
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The dynamic symbols starting with `prefix` that `nm ARGS` lists for `path` (what a module
/// imports, with `--undefined-only`; what a proxy binary exports, with `--defined-only`).
pub fn symbols(path: &Path, args: &[&str], prefix: &str) -> std::collections::BTreeSet<String> {
    let out = Command::new("nm")
        .args(args)
        .arg(path)
        .output()
        .expect("nm (binutils) runs");
    assert!(out.status.success(), "nm {}: {:?}", path.display(), out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| s.starts_with(prefix))
        .map(String::from)
        .collect()
}
