//! The file store: a server and CLI processes killed in the middle of their writes, and a
//! reader that never sees half a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::common;
use crate::processes::{Server, cli, http};
use crate::writers::{Rng, Shared, admin_writer, check_acked, cli_writer, seed, wait_count};
use keygate::store::state::State;

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
