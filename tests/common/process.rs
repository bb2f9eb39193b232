//! `keygate serve` as a child process on port 0 over a temporary file store: its addresses
//! read from the "keygate listening" log line, and its CPU time and resident memory read
//! from `/proc`, for tests that measure keygate apart from the test's own threads.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{ADMIN_TOKEN, bin, config_text, http_call, wait_until};

pub struct Proc {
    pub child: Child,
    pub log: std::path::PathBuf,
    pub config: std::path::PathBuf,
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `keygate serve` on the shipped example config plus `extra` (YAML appended),
    /// with the test admin token, and waits until it listens.
    pub async fn start(extra: &str, args: &[&str]) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("keygate.yaml");
        std::fs::write(
            &config,
            config_text(&dir.path().join("keygate.json")) + extra,
        )
        .unwrap();
        let log = dir.path().join("keygate.log");
        let child = Command::new(bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .arg("serve")
            .env("KEYGATE_LOG", "info")
            .env("KEYGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_until("keygate to listen", Duration::from_secs(20), || async {
            read().contains("keygate listening")
        })
        .await;
        let text = read();
        let line = text
            .lines()
            .find(|l| l.contains("keygate listening"))
            .unwrap();
        let http = listening(line, "http").expect("the listening line names http");
        Proc {
            child,
            log,
            config,
            http,
            grpc: listening(line, "grpc"),
            admin: listening(line, "admin"),
            _dir: dir,
        }
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        // SAFETY: sysconf reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// Resident memory in bytes.
    pub fn rss(&self) -> usize {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: usize = s
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap();
        kib * 1024
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    pub fn create_key(&self, scopes: &[&str]) -> String {
        let mut args = vec!["--config".to_string(), self.config.display().to_string()];
        args.extend(["keys", "create", "--account", "acme", "--scheme", "live"].map(String::from));
        for s in scopes {
            args.push("--scope".into());
            args.push(s.to_string());
        }
        let o = Command::new(bin())
            .args(&args)
            .env("KEYGATE_LOG", "warn")
            .output()
            .unwrap();
        assert!(o.status.success());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["key"].as_str().unwrap().to_string()
    }

    pub async fn status(&self, key: &str, uri: &str) -> u16 {
        let b = format!("Bearer {key}");
        http_call(
            self.http,
            "GET",
            "/auth",
            &[("x-original-uri", uri), ("authorization", &b)],
        )
        .await
        .status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address `name` has on the "keygate listening" line: `name=127.0.0.1:port` in text logs,
/// `"name":"127.0.0.1:port"` in JSON ones; `None` when it is off.
fn listening(line: &str, name: &str) -> Option<SocketAddr> {
    let text = format!(" {name}=");
    let json = format!("\"{name}\":\"");
    let v = if let Some(i) = line.find(&text) {
        line[i + text.len()..].split(' ').next()?
    } else {
        let i = line.find(&json)? + json.len();
        line[i..].split('"').next()?
    };
    v.parse().ok()
}
