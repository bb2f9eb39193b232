//! The writers of a round (CLI processes and admin API calls), what they were told succeeded,
//! and the check that every acknowledged write is in the state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{self, ADMIN_TOKEN};
use crate::processes::{cli, http};
use keygate::store::state::State;

/// A small xorshift generator: kill timing and operation choice, reproducible from the seed
/// printed at the start.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn seed() -> u64 {
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
pub struct Acked {
    /// key id -> account.
    pub created: BTreeMap<String, String>,
    pub revoked: Vec<String>,
    /// account -> (plan, status).
    pub accounts: BTreeMap<String, (String, String)>,
}

impl Acked {
    pub fn count(&self) -> usize {
        self.created.len() + self.revoked.len() + self.accounts.len()
    }
}

/// What the writers of a round share.
#[derive(Clone, Default)]
pub struct Shared {
    pub stop: Arc<AtomicBool>,
    pub acked: Arc<Mutex<Acked>>,
    /// Acknowledged writes this round.
    pub acks: Arc<AtomicUsize>,
    /// CLI processes sent SIGKILL.
    pub killed: Arc<AtomicUsize>,
}

impl Shared {
    /// A new round: the acknowledged writes so far are kept.
    pub fn round(&self) -> Shared {
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
pub fn cli_writer(config: PathBuf, name: String, seed: u64, sh: Shared) {
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
pub fn wait_count(what: &str, counter: &AtomicUsize, n: usize, deadline: Duration) {
    let d = common::Deadline::new(what, deadline);
    while counter.load(Ordering::Relaxed) < n {
        d.tick_blocking();
    }
}

pub fn check_acked(state: &State, acked: &Acked, when: &str) {
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
pub fn admin_writer(addr: SocketAddr, account: String, sh: Shared, until_gone: bool) {
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
