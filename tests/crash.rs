//! Crash safety of management writes.
//!
//! File store: `keygate serve` runs as a process while CLI processes create and revoke keys
//! and set accounts against the same file, the server's admin API creates keys and its
//! usage write-back runs; the server and some CLI processes are killed with SIGKILL in the
//! middle. Afterwards the state file parses, every write that was acknowledged (exit 0 with
//! JSON, or 201 from the admin API) is in it, and leftover temp files are never read as state.
//! A reader polls the file throughout and never sees half of one.
//!
//! Redis: writes acknowledged by the admin API or the CLI survive SIGKILL of redis-server
//! (AOF with `appendfsync always`) and its restart.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis_server::RedisServer;
use common::{ADMIN_TOKEN, bin};
use keygate::store::state::State;

/// A small xorshift generator: kill timing and operation choice, reproducible from the seed
/// printed at the start.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    let s = std::env::var("KEYGATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("KEYGATE_CRASH_SEED={s}");
    s | 1
}

/// What the writers were told succeeded.
#[derive(Default, Debug)]
struct Acked {
    /// key id -> account.
    created: BTreeMap<String, String>,
    revoked: Vec<String>,
    /// account -> (plan, status).
    accounts: BTreeMap<String, (String, String)>,
}

impl Acked {
    fn count(&self) -> usize {
        self.created.len() + self.revoked.len() + self.accounts.len()
    }
}

/// Runs a keygate CLI command; with `kill_after`, SIGKILLs it after that long (if still
/// running). Returns its JSON output if it exited 0 and printed JSON: an acknowledged write.
fn cli(config: &Path, args: &[&str], kill_after: Option<Duration>) -> Option<serde_json::Value> {
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("KEYGATE_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if let Some(d) = kill_after {
        // `d` picks a random moment of the write to crash it at: poll the child until then,
        // and kill it only if it is still running at that deadline.
        let deadline = std::time::Instant::now() + d;
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(1)); // poll interval, bounded by the deadline
        }
    }
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// One HTTP/1.1 call with `Connection: close`; `None` if the server is gone.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    body: &str,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\n\
         X-Original-URI: /v1/x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// A running `keygate serve` and the addresses it logged.
struct Server {
    child: Child,
    http: SocketAddr,
    admin: SocketAddr,
}

impl Server {
    fn start(config: &Path) -> Server {
        let mut child = Command::new(bin())
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("KEYGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("KEYGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Reads every line, so the server never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("keygate listening") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("keygate serve did not start listening within 30 s");
        let addr = |name: &str| -> SocketAddr {
            let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
            line[at..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        Server {
            http: addr("http"),
            admin: addr("admin"),
            child,
        }
    }

    /// SIGKILL.
    fn kill(self) {
        drop(self);
    }
}

impl Drop for Server {
    /// SIGKILL, also when a test fails with the server still running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The state file, which must parse whenever it exists.
fn whole(path: &Path) -> Option<State> {
    read_state(path).unwrap_or_else(|e| panic!("a state file that does not parse: {e}"))
}

/// The state file as a reader sees it: missing (before the first write) or whole.
fn read_state(path: &Path) -> Result<Option<State>, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{e} ({} bytes)", b.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn file_config(dir: &Path, store: &Path) -> PathBuf {
    // Usage written back every 50 ms: the server is a writer too while it is killed.
    let text = common::config_text(store).replace(
        "identity_headers:",
        "usage:\n  flush_interval_seconds: 0.05\n\nidentity_headers:",
    );
    let path = dir.join("keygate.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// What the writers of a round share.
#[derive(Clone, Default)]
struct Shared {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
    /// Acknowledged writes this round.
    acks: Arc<AtomicUsize>,
    /// CLI processes sent SIGKILL.
    killed: Arc<AtomicUsize>,
}

impl Shared {
    /// A new round: the acknowledged writes so far are kept.
    fn round(&self) -> Shared {
        Shared {
            acked: self.acked.clone(),
            killed: self.killed.clone(),
            ..Shared::default()
        }
    }

    fn ack(&self, f: impl FnOnce(&mut Acked)) {
        f(&mut self.acked.lock().unwrap());
        self.acks.fetch_add(1, Ordering::Relaxed);
    }
}

/// A CLI writer (`name` tells its accounts and ids apart): creates keys, revokes ones it
/// created, sets accounts of its own; a quarter of its processes are killed at a random moment.
fn cli_writer(config: PathBuf, name: String, seed: u64, sh: Shared) {
    let mut rng = Rng(seed);
    let mut mine: Vec<String> = Vec::new();
    let mut n = 0;
    while !sh.stop.load(Ordering::Relaxed) {
        n += 1;
        let kill = (rng.below(4) == 0).then(|| Duration::from_millis(rng.below(40)));
        if kill.is_some() {
            sh.killed.fetch_add(1, Ordering::Relaxed);
        }
        let account = name.clone();
        match rng.below(3) {
            0 if !mine.is_empty() => {
                let id = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                if cli(&config, &["keys", "revoke", &id], kill).is_some() {
                    sh.ack(|a| a.revoked.push(id));
                }
            }
            1 => {
                let id = format!("{name}-n{n}");
                let status = ["active", "past_due", "disabled"][rng.below(3) as usize];
                let plan = ["starter", "pro", "free"][rng.below(3) as usize];
                let args = ["accounts", "set", &id, "--plan", plan, "--status", status];
                if cli(&config, &args, kill).is_some() {
                    sh.ack(|a| {
                        a.accounts.insert(id, (plan.into(), status.into()));
                    });
                }
            }
            _ => {
                let args = ["keys", "create", "--account", &account, "--scheme", "live"];
                if let Some(v) = cli(&config, &args, kill) {
                    let id = v["id"].as_str().unwrap().to_string();
                    mine.push(id.clone());
                    sh.ack(|a| {
                        a.created.insert(id, account);
                    });
                }
            }
        }
    }
}

/// Waits until `counter` reaches `n`, failing at the deadline.
fn wait_count(what: &str, counter: &AtomicUsize, n: usize, deadline: Duration) {
    let d = common::Deadline::new(what, deadline);
    while counter.load(Ordering::Relaxed) < n {
        d.tick_blocking();
    }
}

fn check_acked(state: &State, acked: &Acked, when: &str) {
    for (id, account) in &acked.created {
        let k = state
            .keys
            .get(id)
            .unwrap_or_else(|| panic!("{when}: acknowledged key {id} is missing"));
        assert_eq!(&k.account, account, "{when}: key {id}");
        assert!(
            state
                .audit
                .iter()
                .any(|e| e.key_id.as_deref() == Some(id) && e.action == "key.created"),
            "{when}: the creation of {id} left no audit event"
        );
    }
    for id in &acked.revoked {
        assert!(
            state.keys[id].revoked_at.is_some(),
            "{when}: acknowledged revocation of {id} is missing"
        );
    }
    for (id, (plan, status)) in &acked.accounts {
        let a = state
            .accounts
            .get(id)
            .unwrap_or_else(|| panic!("{when}: acknowledged account {id} is missing"));
        assert_eq!(
            a.plan.as_deref(),
            Some(plan.as_str()),
            "{when}: account {id}"
        );
        assert_eq!(a.status.as_str(), status, "{when}: account {id}");
    }
}

/// Creates keys through the admin API at `addr` until `stop`, or until the server is gone
/// when `until_gone`.
fn admin_writer(addr: SocketAddr, account: String, sh: Shared, until_gone: bool) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let body = format!(r#"{{"account":"{account}","scheme":"live"}}"#);
    while !sh.stop.load(Ordering::Relaxed) {
        let Some((status, body)) = http(addr, "POST", "/api/keys", &auth, &body) else {
            if until_gone {
                return;
            }
            continue;
        };
        if status == 201 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let id = v["id"].as_str().unwrap().to_string();
            sh.ack(|a| {
                a.created.insert(id, account.clone());
            });
        }
    }
}

#[test]
fn file_store_keeps_every_acknowledged_write_through_kill_9() {
    let mut rng = Rng(seed());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keygate.json");
    let config = file_config(dir.path(), &store);
    let all = Shared::default();

    // A key for traffic, so the server writes usage back while it is killed.
    let traffic = cli(
        &config,
        &["keys", "create", "--account", "traffic", "--scheme", "live"],
        None,
    )
    .expect("creating the traffic key");
    let traffic_key = traffic["key"].as_str().unwrap().to_string();
    let traffic_id = traffic["id"].as_str().unwrap().to_string();
    let used = |s: &State| -> u64 { s.usage.get(&traffic_id).map_or(0, |d| d.values().sum()) };

    // A reader that checks every version of the file it sees parses.
    let reading = Arc::new(AtomicBool::new(true));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (store, reading, reads) = (store.clone(), reading.clone(), reads.clone());
        std::thread::spawn(move || {
            while reading.load(Ordering::Relaxed) {
                read_state(&store)?;
                reads.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        })
    };

    for round in 0..3 {
        let server = Server::start(&config);
        let sh = all.round();
        let mut writers = Vec::new();
        for worker in 0..3 {
            let (config, sh, seed) = (config.clone(), sh.clone(), rng.next());
            let name = format!("w{worker}-r{round}");
            writers.push(std::thread::spawn(move || {
                cli_writer(config, name, seed, sh)
            }));
        }
        // The admin API creates keys until the server dies; traffic keeps usage flowing.
        let (addr, s) = (server.admin, sh.clone());
        writers.push(std::thread::spawn(move || {
            admin_writer(addr, format!("admin-r{round}"), s, true)
        }));
        let traffic = {
            let (stop, addr) = (sh.stop.clone(), server.http);
            let auth = format!("Bearer {traffic_key}");
            std::thread::spawn(move || {
                let mut allowed = 0;
                while !stop.load(Ordering::Relaxed) {
                    match http(addr, "GET", "/auth", &auth, "") {
                        Some((200, _)) => allowed += 1,
                        Some((s, b)) => panic!("the traffic key got {s}: {b}"),
                        None => break, // the server is gone
                    }
                }
                allowed
            })
        };

        // Kill the server in the middle of the writes (its own usage write-back among them),
        // then let the CLI go on without it.
        let used_before = whole(&store).map_or(0, |s| used(&s));
        wait_count(
            "writes before the crash",
            &sh.acks,
            20,
            Duration::from_secs(60),
        );
        let d = common::Deadline::new(
            format!("round {round}: the server to write usage back"),
            Duration::from_secs(60),
        );
        while whole(&store).map_or(0, |s| used(&s)) == used_before {
            d.tick_blocking();
        }
        server.kill();
        let after = sh.acks.load(Ordering::Relaxed) + 10;
        wait_count(
            "writes after the crash",
            &sh.acks,
            after,
            Duration::from_secs(60),
        );
        sh.stop.store(true, Ordering::Relaxed);
        for t in writers {
            t.join().unwrap();
        }
        assert!(
            traffic.join().unwrap() > 0,
            "round {round}: no traffic was allowed"
        );

        let when = format!("round {round}");
        let state = whole(&store).expect("the state file exists");
        check_acked(&state, &all.acked.lock().unwrap(), &when);
        // A fresh process reads the real file, not a temp file a killed writer left, and can
        // write (no lock is left held).
        let listed = cli(&config, &["keys", "list"], None).expect("keys list after the crash");
        let ids: Vec<&str> = listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap())
            .collect();
        for id in all.acked.lock().unwrap().created.keys() {
            assert!(ids.contains(&id.as_str()), "{when}: keys list lacks {id}");
        }
        cli(
            &config,
            &["accounts", "set", "after-crash", "--status", "active"],
            None,
        )
        .expect("a write after the crash");
        eprintln!(
            "{when}: {} acknowledged writes in all, {} reads of the file, {} CLI processes killed",
            all.acked.lock().unwrap().count(),
            reads.load(Ordering::Relaxed),
            all.killed.load(Ordering::Relaxed),
        );
    }
    reading.store(false, Ordering::Relaxed);
    if let Err(e) = reader.join().unwrap() {
        panic!("a reader saw a state file that does not parse: {e}");
    }
    let temps: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    eprintln!("temp files left by killed writers: {temps:?}");
    // A server started now loads the real file whatever temp files lie beside it.
    let server = Server::start(&config);
    let state = whole(&store).unwrap();
    check_acked(&state, &all.acked.lock().unwrap(), "after the last restart");
    let (status, _) = http(server.http, "GET", "/readyz", "", "").unwrap();
    assert_eq!(status, 200);
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keeps_every_acknowledged_write_through_kill_9() {
    let mut rng = Rng(seed());
    let mut redis = RedisServer::start();
    let h = common::Harness::start_redis(&redis.url(), "", true).await;
    let admin = h.running().admin.unwrap();
    let config = h.dir.path().join("cli.yaml");
    std::fs::write(&config, common::redis_config_text(&redis.url(), "", 0.1)).unwrap();
    let all = Shared::default();

    for round in 0..2 {
        let sh = all.round();
        // Two admin API writers and one CLI writer, until told to stop.
        let mut writers = Vec::new();
        for w in 0..2 {
            let s = sh.clone();
            writers.push(tokio::task::spawn_blocking(move || {
                admin_writer(admin, format!("admin{w}-r{round}"), s, false)
            }));
        }
        let (config, s, seed) = (config.clone(), sh.clone(), rng.next());
        writers.push(tokio::task::spawn_blocking(move || {
            cli_writer(config, format!("cli-r{round}"), seed, s)
        }));
        let acks = sh.acks.clone();
        tokio::task::spawn_blocking(move || {
            wait_count(
                "writes before the crash",
                &acks,
                30,
                Duration::from_secs(60),
            )
        })
        .await
        .unwrap();
        redis.kill();
        sh.stop.store(true, Ordering::Relaxed);
        for t in writers {
            t.await.unwrap();
        }
        redis.restart();

        // Every acknowledged write is there after the restart.
        let when = format!("round {round}");
        let d = common::Deadline::new(
            format!("{when}: the store to load"),
            Duration::from_secs(20),
        );
        let mut state = loop {
            match h.manager.store.load().await {
                Ok(s) => break s,
                Err(e) => assert!(!d.passed(), "{when}: loading failed: {e}"),
            }
            d.tick().await;
        };
        state.audit = h.manager.store.audit(None).await.unwrap();
        let listed = h.manager.list_keys(None).await.unwrap();
        let acked = all.acked.lock().unwrap();
        check_acked(&state, &acked, &when);
        for id in acked.created.keys() {
            assert!(
                listed.keys.iter().any(|k| &k.id == id),
                "{when}: keys list lacks {id}"
            );
        }
        eprintln!("{when}: {} acknowledged writes survived", acked.count());
    }
}
