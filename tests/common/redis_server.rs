//! A real `redis-server` on a free port, with AOF on, that tests can kill (SIGKILL) and restart
//! on the same port and data directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    replica_of: Option<u16>,
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn redis_bin() -> PathBuf {
    for p in [
        "redis-server",
        "/usr/bin/redis-server",
        "/usr/local/bin/redis-server",
    ] {
        if Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok()
        {
            return PathBuf::from(p);
        }
    }
    panic!("redis-server not found: run scripts/test.sh, which installs it");
}

impl RedisServer {
    /// A port with nothing listening yet (for cold-start tests), and its data directory.
    pub fn unstarted() -> RedisServer {
        RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            replica_of: None,
        }
    }

    pub fn start() -> RedisServer {
        let mut r = RedisServer::unstarted();
        r.restart();
        r
    }

    /// A read replica of `primary`.
    pub fn replica_of(primary: &RedisServer) -> RedisServer {
        let mut r = RedisServer::unstarted();
        r.replica_of = Some(primary.port);
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port and directory; waits until it answers PING and has
    /// loaded its AOF.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(redis_bin())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(match self.replica_of {
                Some(p) => vec!["--replicaof".to_string(), "127.0.0.1".into(), p.to_string()],
                None => vec![],
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = self.client().get_connection() {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query(&mut c);
                if pong.is_ok_and(|p| p == "PONG") {
                    return;
                }
            }
            assert!(Instant::now() < end, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20)); // poll interval, bounded by the deadline
        }
    }

    /// SIGKILL: no chance to flush anything beyond what was already fsynced.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    /// Runs one command as the default user.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = self.client().get_connection().unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut c).unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
