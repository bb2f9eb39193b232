//! Counting an allow: its credit spent and its rate limits counted, or the refusal when there is
//! no room, or the lease to wait for when this process has none left.

use keygate_core::decide::{Allow, Denial, Reason};
use keygate_core::limit::LimitState;
use keygate_core::table::KeyRef;

use super::{After, Decision, Engine, MAX_ROUNDS, Need};
use crate::limiter::Count;
use crate::wallet::Spend;

/// The id a key's credits are spent under (its own, or its predecessor's after a rotation).
pub(super) fn balance(key: &KeyRef) -> &str {
    match key.credits() {
        Some((c, _)) => c.balance_id(key.id()),
        None => key.id(),
    }
}

impl Engine {
    /// Counts an allow against its credits and limits: the allow with the tightest state, or
    /// the refusal; `Err` with what to wait for when a lease must be taken first.
    pub(super) fn count(
        &self,
        mut a: Allow,
        now: i64,
        after: After,
    ) -> Result<Decision, (KeyRef, Need)> {
        let mut spent = None;
        if let Some((credits, version)) = a.key.credits() {
            match self.wallet.spend(balance(&a.key), credits, *version, now) {
                Spend::Spent(s) => spent = Some(s),
                Spend::Empty(s) => return Ok(Err(refusal(&a, Reason::Quota, Some(s)))),
                Spend::Fetch => match after.credits {
                    None => return Err((a.key.clone(), Need::Credits { verified: None })),
                    // Taken, and taken again by other requests meanwhile: none left here.
                    Some(true) => {
                        let s = keygate_core::credits::state(credits, 0, now);
                        return Ok(Err(refusal(&a, Reason::Quota, Some(s))));
                    }
                    // The store cannot be asked: credits cannot be spent.
                    Some(false) => return Ok(Err(refusal(&a, Reason::NotReady, None))),
                },
            }
        }
        if let Some(limits) = &a.limits {
            let refused = match self.limiter.count(limits, &a.key, now) {
                Count::Allowed(s) => {
                    a.limit = Some(s);
                    None
                }
                Count::Refused(s) => Some(s),
                Count::Fetch(leases) if after.rounds < MAX_ROUNDS && !after.budgets_failed => {
                    if spent.is_some() {
                        self.wallet.refund(balance(&a.key));
                    }
                    let need = Need::Budgets {
                        verified: None,
                        leases,
                        round: after.rounds + 1,
                    };
                    return Err((a.key.clone(), need));
                }
                Count::Fetch(leases) => Some(leases[0].refusal(now)),
            };
            if let Some(s) = refused {
                if spent.is_some() {
                    self.wallet.refund(balance(&a.key));
                }
                return Ok(Err(refusal(&a, Reason::RateLimited, Some(s))));
            }
        }
        // The fields name whichever is nearer its end.
        if let Some(c) = spent
            && a.limit.as_ref().is_none_or(|l| c.remaining < l.remaining)
        {
            a.limit = Some(c);
        }
        Ok(Ok(a))
    }
}

fn refusal(a: &Allow, reason: Reason, limit: Option<LimitState>) -> Denial {
    Denial {
        limit,
        key: Some(a.key.clone()),
        ..Denial::new(reason, a.bearer)
    }
}
