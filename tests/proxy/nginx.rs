//! The real nginx from the shipped `config/nginx.conf`, asking keygate with auth_request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Proxy, free_port, on_path, render, spawn, start_retrying};

/// The shipped config, as users copy it.
pub const NGINX_CONF: &str = include_str!("../../config/nginx.conf");

/// The nginx binary: `nginx` on PATH, else /usr/sbin/nginx. Missing is a failure.
pub fn nginx_bin() -> PathBuf {
    if let Some(p) = on_path("nginx") {
        return p;
    }
    let p = PathBuf::from("/usr/sbin/nginx");
    assert!(
        p.is_file(),
        "nginx not found on PATH or at /usr/sbin/nginx: run scripts/test.sh (it installs \
         Debian's nginx) or install nginx"
    );
    p
}

/// Starts the real nginx from the shipped config with `-p <tempdir>`, keygate's HTTP listener
/// at `keygate` and the echo upstream at `upstream`, in the foreground, and waits until it
/// serves.
pub async fn start_nginx(keygate: SocketAddr, upstream: SocketAddr) -> Proxy {
    let bin = nginx_bin();
    start_retrying(|| launch_nginx(&bin, keygate, upstream)).await
}

fn launch_nginx(bin: &Path, keygate: SocketAddr, upstream: SocketAddr) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    let config = render(
        NGINX_CONF,
        &[
            ("127.0.0.1:9002", keygate.to_string()),
            ("127.0.0.1:8080", upstream.to_string()),
            (
                "listen 127.0.0.1:8000;",
                format!("listen 127.0.0.1:{listen};"),
            ),
        ],
    );
    for d in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, &config).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off; master_process off;"]);
    let (child, out, err) = spawn("nginx", cmd, dir.path());
    Proxy {
        admin: None,
        name: "nginx",
        addr: SocketAddr::from(([127, 0, 0, 1], listen)),
        upstream,
        config,
        logs: vec![out, err, dir.path().join("logs/error.log")],
        access_log: dir.path().join("logs/access.log"),
        dir,
        child,
        group: false,
    }
}
