//! The authorizer every data plane calls: it takes the current table snapshot and policy,
//! runs the pure core, hands the Argon2 step to the [`Verifier`] when the core asks for it and
//! decides again on the newest snapshot once it is done, spends an allow's credit (waiting
//! the same way for a new lease when this process has none left) and counts it against its
//! rate limits, and records each decision (observer, usage counts) from the typed outcome.
//!
//! Two ways to call it: [`Engine::check`] for an async caller (the sidecar), and
//! [`Engine::decide`] / [`Engine::verify`] / [`Engine::decide_verified`] for a caller that
//! must not block and has no runtime (a proxy worker thread that parks the request while a
//! hash thread verifies).

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use keygate_core::decide::{Allow, Denial, Outcome, Reason, decide};
use keygate_core::policy::Policy;
use keygate_core::request::{Headers, Request};
use keygate_core::table::KeyRef;
use keygate_store::replica::Replica;
use keygate_store::usage::UsageCounter;
use zeroize::Zeroizing;

use crate::ids::RequestIds;
use crate::limiter::{Lease, Limiter};
use crate::observe::{Frontend, Observer};
use crate::verify::Verifier;
use crate::wallet::Wallet;

/// The decision a data plane turns into its wire format.
pub type Decision = Result<Allow, Denial>;

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// How many verifications may run at once, and how many may fail per key id per minute.
#[derive(Debug, Clone, Copy)]
pub struct VerifyLimits {
    pub concurrency: usize,
    pub failures_per_minute: u32,
}

/// What a pass concluded.
pub enum Step {
    Done(Decision),
    /// An Argon2 key with no cached answer, or a key whose credit lease is empty:
    /// [`Engine::verify`] it, then [`Engine::decide_verified`] with the same request.
    Verify(Pending),
}

/// What a request waits for. `verified`: the answer of a verification made for this request
/// before.
enum Need {
    /// A verification of the presented key.
    Verify,
    /// A credit lease.
    Credits { verified: Option<bool> },
    /// Rate limit leases; `round`: how many were taken for this request already.
    Budgets {
        verified: Option<bool>,
        leases: Vec<Lease>,
        round: u8,
    },
}

/// Leases taken for one request before it is refused as if the limit had no room: others
/// took each lease first, and the instance is that busy.
const MAX_ROUNDS: u8 = 4;

impl Need {
    fn verified(&self, ok: bool) -> Option<bool> {
        match self {
            Need::Verify => Some(ok),
            Need::Credits { verified } | Need::Budgets { verified, .. } => *verified,
        }
    }
}

/// What the last wait of a request was, when its decision is made again.
#[derive(Clone, Copy, Default)]
struct After {
    /// A credit lease was asked for: whether the store answered.
    credits: Option<bool>,
    /// Rate limit leases were asked for this many times; whether the store answered.
    rounds: u8,
    budgets_failed: bool,
}

/// A verification or credit lease to wait for: the key's entry and a copy of the presented
/// key (zeroed on drop).
pub struct Pending {
    entry: KeyRef,
    key: Zeroizing<Vec<u8>>,
    now: i64,
    start: Instant,
    need: Need,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({})", self.entry.id())
    }
}

pub struct Engine {
    policy: ArcSwap<Policy>,
    pub replica: Arc<Replica>,
    pub usage: UsageCounter,
    pub limiter: Arc<Limiter>,
    pub wallet: Wallet,
    verifier: Verifier,
    observer: Arc<dyn Observer>,
}

impl Engine {
    pub fn new(
        policy: Arc<Policy>,
        limits: VerifyLimits,
        replica: Arc<Replica>,
        observer: Arc<dyn Observer>,
    ) -> Engine {
        Engine {
            policy: ArcSwap::new(policy),
            replica,
            usage: UsageCounter::default(),
            limiter: Arc::default(),
            wallet: Wallet::default(),
            verifier: Verifier::new(
                limits.concurrency,
                limits.failures_per_minute,
                observer.clone(),
            ),
            observer,
        }
    }

    /// The policy decisions are made with now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Installs a reloaded policy; requests already deciding finish with the old one.
    pub fn set_policy(&self, p: Arc<Policy>) {
        self.policy.store(p);
    }

    /// The first pass: a decision, or the verification it needs.
    pub fn decide<H: Headers + ?Sized>(&self, req: &Request<'_, H>, frontend: Frontend) -> Step {
        let start = Instant::now();
        let now = unix_now();
        let p = self.policy.load();
        let table = self.replica.snapshot();
        match decide(
            &p.schemes,
            &p.routes,
            &table,
            req,
            now,
            &self.verifier.check(now),
        ) {
            Outcome::NeedsVerify { entry, key } => Step::Verify(Pending {
                entry,
                key: Zeroizing::new(key.to_vec()),
                now,
                start,
                need: Need::Verify,
            }),
            o => {
                let ids = || RequestIds::of(req.headers);
                self.record(o, frontend, now, start, After::default(), &ids)
            }
        }
    }

    /// Runs the verification `pending` needs on a hash thread, or takes its credit lease from
    /// the store; `done` is called there with the answer (verified; lease taken).
    pub fn verify(&self, mut pending: Pending, done: impl FnOnce(Pending, bool) + Send + 'static) {
        let (entry, now) = (pending.entry.clone(), pending.now);
        match &mut pending.need {
            Need::Budgets { leases, .. } => {
                let leases = std::mem::take(leases);
                self.limiter.fetch(leases, now, move |ok| done(pending, ok));
            }
            Need::Verify => {
                let key = pending.key.clone();
                self.verifier
                    .submit(entry, key, now, move |ok| done(pending, ok));
            }
            Need::Credits { .. } => {
                let Some((credits, version)) = entry.credits() else {
                    return done(pending, true);
                };
                self.wallet.fetch(
                    count::balance(&entry).into(),
                    credits.clone(),
                    *version,
                    now,
                    move |ok| done(pending, ok),
                );
            }
        }
    }

    /// The next pass, once `pending` was verified (or its lease taken) with answer `ok`:
    /// decided again on the newest table, since the key may have changed meanwhile.
    pub fn decide_verified<H: Headers + ?Sized>(
        &self,
        req: &Request<'_, H>,
        frontend: Frontend,
        pending: &Pending,
        ok: bool,
    ) -> Step {
        let p = self.policy.load();
        let table = self.replica.snapshot();
        let check = self.verifier.check(pending.now);
        let verified = pending.need.verified(ok);
        let check = match verified {
            Some(v) => check.with_result(&pending.entry, v),
            None => check,
        };
        let after = match &pending.need {
            Need::Verify => After::default(),
            Need::Credits { .. } => After {
                credits: Some(ok),
                ..After::default()
            },
            Need::Budgets { round, .. } => After {
                rounds: *round,
                budgets_failed: !ok,
                ..After::default()
            },
        };
        let o = decide(&p.schemes, &p.routes, &table, req, pending.now, &check);
        let ids = || RequestIds::of(req.headers);
        match self.record(o, frontend, pending.now, pending.start, after, &ids) {
            Step::Verify(mut next) => {
                match &mut next.need {
                    Need::Credits { verified: v } | Need::Budgets { verified: v, .. } => {
                        *v = verified
                    }
                    Need::Verify => {}
                }
                Step::Verify(next)
            }
            done => done,
        }
    }

    /// Decides one request, awaiting a verification when one is needed.
    pub async fn check<H: Headers + ?Sized>(
        &self,
        req: &Request<'_, H>,
        frontend: Frontend,
    ) -> Decision {
        let mut step = self.decide(req, frontend);
        // At most a verification and then a credit lease.
        loop {
            match step {
                Step::Done(d) => return d,
                Step::Verify(pending) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    self.verify(pending, move |p, ok| {
                        let _ = tx.send((p, ok));
                    });
                    step = match rx.await {
                        Ok((p, ok)) => self.decide_verified(req, frontend, &p, ok),
                        // The pool is gone (shutting down): nothing was verified.
                        Err(_) => return Err(unknown()),
                    };
                }
            }
        }
    }

    /// Records a decision, or asks for a credit or rate limit lease first (`after`: what was
    /// asked for this request already). A denial carries the request's id (`ids` is asked
    /// only for denials, and for allows when decisions are logged).
    fn record(
        &self,
        o: Outcome<'_>,
        frontend: Frontend,
        now: i64,
        start: Instant,
        after: After,
        ids: &dyn Fn() -> RequestIds,
    ) -> Step {
        let mut decision = match o {
            Outcome::Allow(a) => match self.count(a, now, after) {
                Ok(d) => d,
                Err((entry, need)) => {
                    return Step::Verify(Pending {
                        entry,
                        key: Zeroizing::new(Vec::new()),
                        now,
                        start,
                        need,
                    });
                }
            },
            Outcome::Deny(d) => Err(d),
            // Only reachable if the key was replaced by one with another hash mid-request.
            Outcome::NeedsVerify { .. } => Err(unknown()),
        };
        match &decision {
            Ok(a) => self.usage.add(a.key.id(), now),
            Err(d) => {
                if let Some(k) = &d.key {
                    self.usage.deny(k.id(), d.reason, now);
                }
            }
        }
        let reason = decision.as_ref().err().map(|d| d.reason);
        self.observer
            .decision(frontend, reason, start.elapsed().as_secs_f64());
        let logged = tracing::enabled!(tracing::Level::DEBUG);
        match &mut decision {
            Err(d) => {
                let RequestIds {
                    request_id,
                    trace_id,
                } = ids();
                if logged {
                    tracing::debug!(
                        frontend = frontend.as_str(),
                        reason = d.reason.as_str(),
                        key_id = d.key.as_ref().map(|k| k.id()),
                        request_id = request_id.as_str(),
                        trace_id = trace_id.as_deref(),
                        "denied"
                    );
                }
                d.request_id = Some(request_id.into());
            }
            Ok(a) if logged => {
                let ids = ids();
                tracing::debug!(
                    frontend = frontend.as_str(),
                    key_id = a.key.id(),
                    account = a.key.account(),
                    request_id = ids.request_id.as_str(),
                    trace_id = ids.trace_id.as_deref(),
                    "allowed"
                );
            }
            Ok(_) => {}
        }
        Step::Done(decision)
    }
}

fn unknown() -> Denial {
    Denial::new(Reason::Unknown, false)
}

mod count;
