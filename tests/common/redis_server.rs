//! A real `redis-server` on a free port, with AOF on, that tests can kill (SIGKILL) and restart
//! on the same port and data directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Deadline, free_port};

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    replica_of: Option<u16>,
    /// Extra `redis-server` arguments (TLS).
    extra: Vec<String>,
    /// Connect over TLS with this CA for the helper's own commands.
    tls: bool,
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
            extra: Vec::new(),
            tls: false,
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

    /// A TLS-only server (plain port off) with a certificate for 127.0.0.1 signed by a fresh
    /// CA; returns it and the CA's PEM path.
    pub fn start_tls() -> (RedisServer, PathBuf) {
        let mut r = RedisServer::unstarted();
        let d = r.dir.path().to_path_buf();
        super::test_certs(&d);
        let p = |f: &str| d.join(f).display().to_string();
        r.extra = vec![
            "--tls-port".into(),
            r.port.to_string(),
            "--port".into(),
            "0".into(),
            "--tls-cert-file".into(),
            p("server.pem"),
            "--tls-key-file".into(),
            p("server.key"),
            "--tls-ca-cert-file".into(),
            p("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        r.tls = true;
        r.restart();
        (r, d.join("ca.pem"))
    }

    /// Starts (again) on the same port and directory; waits until it answers PING and has
    /// loaded its AOF.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port_args = if self.tls {
            vec![]
        } else {
            vec!["--port".to_string(), self.port.to_string()]
        };
        let child = Command::new(redis_bin())
            .args(port_args)
            .args(["--bind", "127.0.0.1"])
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
            .args(&self.extra)
            .args(match self.replica_of {
                Some(p) => vec!["--replicaof".to_string(), "127.0.0.1".into(), p.to_string()],
                None => vec![],
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let d = Deadline::new("redis-server to start", Duration::from_secs(20));
        loop {
            if let Ok(mut c) = self.client().get_connection() {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query(&mut c);
                if pong.is_ok_and(|p| p == "PONG") {
                    return;
                }
            }
            d.tick_blocking();
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
        if self.tls {
            let ca = std::fs::read(self.dir.path().join("ca.pem")).unwrap();
            let url = format!("rediss://127.0.0.1:{}/0", self.port);
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca),
            };
            return redis::Client::build_with_tls(url.as_str(), certs).unwrap();
        }
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

impl RedisServer {
    /// Writes `n` SHA-256 key records modelled on `rec` straight into `{keygate}:keys`, as
    /// keygate stores them (ids `filler000000`…), 1,000 per round trip, and into the snapshot
    /// (see [`RedisServer::put_snapshot`]).
    pub fn fill_like(&self, rec: &keygate::core::key::KeyRecord, n: usize) {
        let mut all = Vec::with_capacity(n);
        let mut con = self.client().get_connection().unwrap();
        for batch in (0..n).step_by(1_000) {
            let mut hset = redis::cmd("HSET");
            hset.arg("{keygate}:keys");
            for i in batch..(batch + 1_000).min(n) {
                let mut rec = rec.clone();
                rec.id = format!("filler{i:06}");
                rec.prefix = format!("tk_live_{}", rec.id);
                rec.hash = keygate::core::key::KeyHash::Sha256(keygate::core::key::sha256(
                    rec.id.as_bytes(),
                ));
                hset.arg(&rec.id).arg(serde_json::to_string(&rec).unwrap());
                all.push(rec);
            }
            hset.query::<()>(&mut con).unwrap();
        }
        self.put_snapshot(&all);
    }

    /// Calls per command since the last `CONFIG RESETSTAT`, from INFO commandstats.
    pub fn commandstats(&self) -> std::collections::BTreeMap<String, u64> {
        let info: String = self.cmd(&["INFO", "commandstats"]);
        info.lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_string(), calls))
            })
            .collect()
    }

    /// Merges `recs` into the snapshot buckets, as keygate's writes do, and marks the
    /// snapshot complete at the current revision: records written around keygate stay in
    /// the table its loads read. (A store without a snapshot, as an older keygate left it,
    /// is made by deleting `{keygate}:snap_rev` instead.)
    pub fn put_snapshot(&self, recs: &[keygate::core::key::KeyRecord]) {
        use keygate::core::snapshot;
        let mut con = self.client().get_connection().unwrap();
        let mut by_bucket: std::collections::BTreeMap<u32, Vec<&keygate::core::key::KeyRecord>> =
            Default::default();
        for r in recs {
            by_bucket
                .entry(snapshot::bucket_of(&r.id))
                .or_default()
                .push(r);
        }
        let buckets: Vec<u32> = by_bucket.keys().copied().collect();
        for part in buckets.chunks(1_000) {
            let mut get = redis::cmd("HMGET");
            get.arg("{keygate}:snap").arg(part);
            let now: Vec<Option<Vec<u8>>> = get.query(&mut con).unwrap();
            let mut set = redis::cmd("HSET");
            set.arg("{keygate}:snap");
            for (b, cur) in part.iter().zip(now) {
                let v = snapshot::merge(
                    cur.as_deref().unwrap_or_default(),
                    by_bucket[b].iter().copied(),
                );
                set.arg(*b).arg(v.unwrap());
            }
            set.query::<()>(&mut con).unwrap();
        }
        let rev: Option<u64> = redis::cmd("GET")
            .arg("{keygate}:rev")
            .query(&mut con)
            .unwrap();
        redis::cmd("SET")
            .arg("{keygate}:snap_rev")
            .arg(rev.unwrap_or(0))
            .query::<()>(&mut con)
            .unwrap();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real Redis Sentinel watching `primary` as `mymaster`.
pub struct Sentinel {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Sentinel {
    pub fn start(primary: &RedisServer) -> Sentinel {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n",
                dir.path().display(),
                primary.port
            ),
        )
        .unwrap();
        let child = Command::new(redis_bin())
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Sentinel {
            port,
            _dir: dir,
            child,
        };
        let d = Deadline::new("sentinel to start", Duration::from_secs(20));
        while s.master_port().is_none() {
            d.tick_blocking();
        }
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port Sentinel currently names as the master.
    pub fn master_port(&self) -> Option<u16> {
        let mut c = redis::Client::open(self.url())
            .ok()?
            .get_connection()
            .ok()?;
        let r: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("mymaster")
            .query(&mut c)
            .ok()?;
        r.map(|(_, p)| p)
    }

    /// Number of replicas Sentinel knows for the master.
    pub fn replicas(&self) -> usize {
        let Ok(mut c) = redis::Client::open(self.url()).unwrap().get_connection() else {
            return 0;
        };
        let r: redis::RedisResult<Vec<redis::Value>> = redis::cmd("SENTINEL")
            .arg("replicas")
            .arg("mymaster")
            .query(&mut c);
        r.map_or(0, |v| v.len())
    }

    /// Asks for a failover; Sentinel refuses until it has fresh information on a replica.
    pub fn failover(&self) -> bool {
        let Ok(mut c) = redis::Client::open(self.url()).unwrap().get_connection() else {
            return false;
        };
        let r: redis::RedisResult<()> = redis::cmd("SENTINEL")
            .arg("failover")
            .arg("mymaster")
            .query(&mut c);
        r.is_ok()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
