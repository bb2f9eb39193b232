//! The authorizer every data plane calls: it takes the current table snapshot and policy,
//! runs the pure core, hands the Argon2 step to the [`Verifier`] when the core asks for it and
//! decides again on the newest snapshot once it is done, counts an allow against its rate
//! limits, and records each decision (observer, usage counts) from the typed outcome.
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
use keygate_core::table::KeyEntry;
use keygate_store::replica::Replica;
use keygate_store::usage::UsageCounter;
use zeroize::Zeroizing;

use crate::limiter::Limiter;
use crate::observe::{Frontend, Observer};
use crate::verify::Verifier;

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

/// What the first pass concluded.
pub enum Step {
    Done(Decision),
    /// An Argon2 key with no cached answer: [`Engine::verify`] it, then
    /// [`Engine::decide_verified`] with the same request.
    Verify(Pending),
}

/// A verification to run: the key's entry and a copy of the presented key (zeroed on drop).
pub struct Pending {
    entry: Arc<KeyEntry>,
    key: Zeroizing<Vec<u8>>,
    now: i64,
    start: Instant,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({})", self.entry.id)
    }
}

pub struct Engine {
    policy: ArcSwap<Policy>,
    pub replica: Arc<Replica>,
    pub usage: UsageCounter,
    pub limiter: Limiter,
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
            limiter: Limiter::default(),
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
            }),
            o => Step::Done(self.record(o, frontend, now, start)),
        }
    }

    /// Runs the verification `pending` needs on a hash thread; `done` is called there.
    pub fn verify(&self, pending: Pending, done: impl FnOnce(Pending, bool) + Send + 'static) {
        let (entry, now) = (pending.entry.clone(), pending.now);
        let key = pending.key.clone();
        self.verifier
            .submit(entry, key, now, move |ok| done(pending, ok));
    }

    /// The second pass, once `pending` was verified with answer `ok`: decided again on the
    /// newest table, since the key may have changed meanwhile.
    pub fn decide_verified<H: Headers + ?Sized>(
        &self,
        req: &Request<'_, H>,
        frontend: Frontend,
        pending: &Pending,
        ok: bool,
    ) -> Decision {
        let p = self.policy.load();
        let table = self.replica.snapshot();
        let check = self
            .verifier
            .check(pending.now)
            .with_result(&pending.entry, ok);
        let o = decide(&p.schemes, &p.routes, &table, req, pending.now, &check);
        self.record(o, frontend, pending.now, pending.start)
    }

    /// Decides one request, awaiting a verification when one is needed.
    pub async fn check<H: Headers + ?Sized>(
        &self,
        req: &Request<'_, H>,
        frontend: Frontend,
    ) -> Decision {
        match self.decide(req, frontend) {
            Step::Done(d) => d,
            Step::Verify(pending) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.verify(pending, move |p, ok| {
                    let _ = tx.send((p, ok));
                });
                match rx.await {
                    Ok((p, ok)) => self.decide_verified(req, frontend, &p, ok),
                    // The pool is gone (shutting down): nothing was verified.
                    Err(_) => Err(unknown()),
                }
            }
        }
    }

    fn record(&self, o: Outcome<'_>, frontend: Frontend, now: i64, start: Instant) -> Decision {
        let decision = match o {
            Outcome::Allow(a) => self.count(a, now),
            Outcome::Deny(d) => Err(d),
            // Only reachable if the key was replaced by one with another hash mid-request.
            Outcome::NeedsVerify { .. } => Err(unknown()),
        };
        if let Ok(a) = &decision {
            self.usage.add(&a.key.id, now);
        }
        let reason = decision.as_ref().err().map(|d| d.reason);
        self.observer
            .decision(frontend, reason, start.elapsed().as_secs_f64());
        if let Some(r) = reason {
            tracing::debug!(frontend = frontend.as_str(), reason = r.as_str(), "denied");
        } else if let Ok(a) = &decision {
            tracing::trace!(
                frontend = frontend.as_str(),
                key_id = &*a.key.id,
                account = &*a.key.account,
                "allowed"
            );
        }
        decision
    }
}

impl Engine {
    /// Counts an allow against its limits: the allow with the tightest limit's state, or the
    /// refusal of the limit without room.
    fn count(&self, mut a: Allow, now: i64) -> Decision {
        if let Some(limits) = &a.limits {
            match self.limiter.take(limits, &a.key, now) {
                Ok(s) => a.limit = Some(s),
                Err(s) => {
                    return Err(Denial {
                        reason: Reason::RateLimited,
                        bearer: a.bearer,
                        presented: true,
                        scope: None,
                        account_status: None,
                        limit: Some(s),
                    });
                }
            }
        }
        Ok(a)
    }
}

fn unknown() -> Denial {
    Denial {
        reason: Reason::Unknown,
        bearer: false,
        presented: true,
        scope: None,
        account_status: None,
        limit: None,
    }
}
