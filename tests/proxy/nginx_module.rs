//! The real nginx (Debian's) with `libkeygate_nginx.so`, started from the shipped
//! `config/nginx-module.conf` with only the addresses, the module's and keygate config's
//! paths and the number of workers substituted, in a temporary prefix, with a master process
//! and its workers; stopped as nginx is (SIGTERM, then the whole process group).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Proxy, free_port, nginx_bin, render, spawn, start_retrying};
use crate::common::{http_call, wait_until};

/// The shipped config, as users copy it.
pub const NGINX_MODULE_CONF: &str = include_str!("../../config/nginx-module.conf");

/// `libkeygate_nginx.so`: `KEYGATE_NGINX_MODULE`, else the newest of target/{debug,release}
/// (scripts/test.sh builds it first). Missing is a failure, never a skip.
pub fn nginx_module() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYGATE_NGINX_MODULE") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let found = ["debug", "release"]
        .iter()
        .map(|p| root.join(p).join("libkeygate_nginx.so"))
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.unwrap_or_else(|| {
        panic!(
            "libkeygate_nginx.so not found: run `cargo build -p keygate-nginx` (scripts/test.sh \
             does) or set KEYGATE_NGINX_MODULE"
        )
    })
}

/// The shipped config for a test: the module and keygate config at `module` and `config`, the
/// public listener on `listen`, the metrics one on `metrics`, the application at `upstream`,
/// `workers` worker processes.
pub fn module_conf(
    module: &Path,
    config: &Path,
    listen: u16,
    metrics: u16,
    upstream: SocketAddr,
    workers: u8,
) -> String {
    render(
        NGINX_MODULE_CONF,
        &[
            (
                "load_module /usr/lib/nginx/modules/libkeygate_nginx.so;",
                format!("load_module {};", module.display()),
            ),
            (
                "keygate_config /etc/keygate/keygate.yaml;",
                format!("keygate_config {};", config.display()),
            ),
            (
                "worker_processes 1;",
                format!("worker_processes {workers};"),
            ),
            (
                "listen 127.0.0.1:8000;",
                format!("listen 127.0.0.1:{listen};"),
            ),
            (
                "listen 127.0.0.1:9002;",
                format!("listen 127.0.0.1:{metrics};"),
            ),
            ("127.0.0.1:8080", upstream.to_string()),
        ],
    )
}

/// Starts nginx with the module on the keygate config at `config`, the echo upstream at
/// `upstream` and `workers` workers, and waits until it serves and every worker's keygate has
/// loaded its table. The metrics listener is the proxy's `admin`.
pub async fn start_nginx_module(config: &Path, upstream: SocketAddr, workers: u8) -> Proxy {
    let bin = nginx_bin();
    let module = nginx_module();
    let p = start_retrying(|| launch(&bin, &module, config, upstream, workers)).await;
    wait_until(
        "every nginx worker to run keygate",
        Duration::from_secs(20),
        || async { gauge(&metrics(&p).await, "keygate_workers") == Some(f64::from(workers)) },
    )
    .await;
    p
}

fn launch(bin: &Path, module: &Path, config: &Path, upstream: SocketAddr, workers: u8) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let (listen, metrics) = (free_port(), free_port());
    let text = module_conf(module, config, listen, metrics, upstream, workers);
    for d in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, &text).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        // The foreground, and, when the tests run as root, workers as root too: nginx would
        // otherwise run them as `nobody`, who cannot read the test's temporary files (run as
        // another user, nginx ignores `user` with a warning).
        .args(["-g", "daemon off; user root;"])
        // Its own process group, so that no worker outlives the test.
        .process_group(0);
    let (child, out, err) = spawn("nginx-module", cmd, dir.path());
    Proxy {
        admin: Some(SocketAddr::from(([127, 0, 0, 1], metrics))),
        name: "nginx-module",
        addr: SocketAddr::from(([127, 0, 0, 1], listen)),
        upstream,
        config: text,
        logs: vec![out, err, dir.path().join("logs/error.log")],
        access_log: dir.path().join("logs/access.log"),
        dir,
        child,
        group: true,
    }
}

/// The module's Prometheus text.
pub async fn metrics(p: &Proxy) -> String {
    http_call(
        p.admin.expect("the metrics listener"),
        "GET",
        "/metrics",
        &[],
    )
    .await
    .body
}

/// The value of an unlabelled metric in Prometheus text.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until every worker's table holds `revision` (or newer) of the store: a change made
/// through another process has then reached all of them.
pub async fn settle(p: &Proxy, revision: u64) {
    wait_until(
        "every nginx worker to reach the store's revision",
        Duration::from_secs(10),
        || async {
            gauge(&metrics(p).await, "keygate_table_revision").is_some_and(|r| r >= revision as f64)
        },
    )
    .await;
}

/// Stops nginx as its init system would (SIGTERM to the master, which stops its workers
/// after their exit hooks), then kills whatever is left of its process group.
pub fn stop(child: &mut std::process::Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: signals to the process and group this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let d = crate::common::Deadline::new("nginx to stop", Duration::from_secs(10));
    while matches!(child.try_wait(), Ok(None)) && !d.passed() {
        std::thread::sleep(Duration::from_millis(20)); // poll interval, bounded by the deadline
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.wait();
}
