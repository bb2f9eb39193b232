//! A key's credits: as set on the key (an amount and a refill on the UTC calendar), the
//! balance as the store keeps it (what is left now, refilled when a refill period began,
//! started afresh when the key's credits were set again), and the arithmetic of taking credits
//! out in leases and giving unspent ones back. The Redis store runs the same
//! rules in one Lua script; the file store runs these functions under its lock.

use serde::{Deserialize, Serialize};

use crate::limit::{CREDITS, LimitState};

/// How often credits come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// At 00:00 UTC.
    Daily,
    /// At 00:00 UTC on the first of the month.
    Monthly,
}

impl Interval {
    /// The refill period `now` falls in: days or months since the epoch.
    pub fn period(self, now: i64) -> i64 {
        let day = now.div_euclid(86_400);
        match self {
            Interval::Daily => day,
            Interval::Monthly => {
                let (y, m) = civil_month(day);
                y * 12 + i64::from(m) - 1 - 1970 * 12
            }
        }
    }

    /// Unix seconds at which `period` starts.
    pub fn start(self, period: i64) -> i64 {
        match self {
            Interval::Daily => period * 86_400,
            Interval::Monthly => {
                let (y, m) = ((period).div_euclid(12) + 1970, period.rem_euclid(12) + 1);
                days_from_civil(y, m as u32) * 86_400
            }
        }
    }

    /// Seconds from `now` to the next refill.
    pub fn next_in(self, now: i64) -> i64 {
        self.start(self.period(now) + 1) - now
    }

    /// The period's length in seconds at `now` (a month's varies).
    pub fn len_at(self, now: i64) -> i64 {
        let p = self.period(now);
        self.start(p + 1) - self.start(p)
    }
}

/// Year and month (1-12) of a day since the epoch (proleptic Gregorian).
fn civil_month(day: i64) -> (i64, u32) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

/// Days since the epoch of the first of month `m` (1-12) of year `y`.
fn days_from_civil(y: i64, m: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A credit refill: back to `amount` at the start of every interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refill {
    pub amount: u64,
    pub interval: Interval,
}

/// A key's credits as set: `remaining` when set, refilled to `refill.amount` each interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credits {
    pub remaining: u64,
    #[serde(default)]
    pub refill: Option<Refill>,
    /// The key whose balance these credits are spent from, when not the key's own: a key made
    /// by rotation spends its predecessor's, so the two share one balance while both work.
    /// Set by rotation only.
    #[serde(default, rename = "balanceOf", skip_serializing_if = "Option::is_none")]
    pub balance_of: Option<String>,
}

impl Credits {
    /// The id the balance of key `key_id` with these credits is kept under.
    pub fn balance_id<'a>(&'a self, key_id: &'a str) -> &'a str {
        self.balance_of.as_deref().unwrap_or(key_id)
    }
}

/// The stored balance of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// The key's `credits_version` this balance started from.
    pub version: u64,
    /// The refill period it belongs to (0 without refill).
    pub period: i64,
    pub remaining: u64,
}

/// The refill period `now` falls in for these credits (0 if they never refill).
pub fn period(credits: &Credits, now: i64) -> i64 {
    credits
        .refill
        .as_ref()
        .map_or(0, |r| r.interval.period(now))
}

/// The balance now. A stored balance of an older setting of the key's credits (or none) starts
/// from `credits.remaining`; one of a past refill period is refilled; one of a newer setting
/// than the caller knows, or of a later period than the caller's clock reads, is kept as it is
/// (refilling only forward, so two instances whose clocks straddle a period's start cannot
/// refill the balance by turns).
pub fn current(credits: &Credits, version: u64, stored: Option<Balance>, now: i64) -> Balance {
    let period = period(credits, now);
    match stored {
        Some(b) if b.version > version => b,
        Some(b) if b.version == version => match &credits.refill {
            Some(r) if b.period < period => Balance {
                version,
                period,
                remaining: r.amount,
            },
            _ => b,
        },
        _ => Balance {
            version,
            period,
            remaining: credits.remaining,
        },
    }
}

/// Takes up to `want` credits out of `b`: never more than it holds.
pub fn take(b: &mut Balance, want: u64) -> u64 {
    let granted = want.min(b.remaining);
    b.remaining -= granted;
    granted
}

/// Puts `n` unspent credits back, if `b` is still the balance they were taken from.
pub fn give_back(b: &mut Balance, version: u64, period: i64, n: u64) {
    if b.version == version && b.period == period {
        b.remaining = b.remaining.saturating_add(n);
    }
}

/// The `RateLimit` fields of credits with `remaining` left: the refill amount as the quota and
/// its interval as the window, or the set amount and no window without refill.
pub fn state(credits: &Credits, remaining: u64, now: i64) -> LimitState {
    let (quota, window, reset) = match &credits.refill {
        Some(r) => (
            r.amount,
            Some(r.interval.len_at(now) as u32),
            Some(r.interval.next_in(now) as u32),
        ),
        None => (credits.remaining, None, None),
    };
    LimitState {
        name: CREDITS.into(),
        quota,
        window,
        remaining,
        reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn daily(remaining: u64, amount: u64) -> Credits {
        Credits {
            remaining,
            refill: Some(Refill {
                amount,
                interval: Interval::Daily,
            }),
            balance_of: None,
        }
    }

    #[test]
    fn balances_start_refill_and_restart() {
        let c = daily(3, 10);
        let now = 100 * DAY + 5;
        let mut b = current(&c, 1, None, now);
        assert_eq!((b.remaining, b.period), (3, 100));
        assert_eq!(take(&mut b, 2), 2);
        assert_eq!(take(&mut b, 5), 1, "never more than is left");
        assert_eq!(take(&mut b, 1), 0);
        // Same day: kept at zero. Next day: refilled to the amount.
        assert_eq!(current(&c, 1, Some(b), now + 60).remaining, 0);
        assert_eq!(current(&c, 1, Some(b), now + DAY).remaining, 10);
        // A clock still in the day before takes from the new day's balance, never refilling
        // it again.
        let mut next = current(&c, 1, Some(b), now + DAY);
        assert_eq!(take(&mut next, 4), 4);
        let behind = current(&c, 1, Some(next), now);
        assert_eq!((behind.remaining, behind.period), (6, 101));
        // Set again (a newer version): starts afresh; an older caller keeps the newer balance.
        assert_eq!(current(&c, 2, Some(b), now).remaining, 3);
        let newer = Balance { version: 5, ..b };
        assert_eq!(current(&c, 2, Some(newer), now + DAY), newer);
        // Without refill a balance never comes back.
        let once = Credits {
            remaining: 4,
            refill: None,
            balance_of: None,
        };
        let b = Balance {
            version: 1,
            period: 0,
            remaining: 0,
        };
        assert_eq!(current(&once, 1, Some(b), now + 40 * DAY).remaining, 0);
    }

    #[test]
    fn unspent_credits_go_back_only_to_their_balance() {
        let mut b = Balance {
            version: 2,
            period: 7,
            remaining: 1,
        };
        give_back(&mut b, 2, 7, 4);
        assert_eq!(b.remaining, 5);
        give_back(&mut b, 2, 6, 4);
        give_back(&mut b, 1, 7, 4);
        assert_eq!(b.remaining, 5, "a past period or setting gets nothing back");
    }

    #[test]
    fn fields_name_the_credits() {
        let s = state(&daily(3, 10), 7, 100 * DAY + 86_000);
        assert_eq!(s.policy_field(), r#""credits";q=10;w=86400"#);
        assert_eq!(s.field(), r#""credits";r=7;t=400"#);
        let once = Credits {
            remaining: 4,
            refill: None,
            balance_of: None,
        };
        assert_eq!(state(&once, 0, 0).field(), r#""credits";r=0"#);
    }

    #[test]
    fn refill_periods_follow_the_calendar() {
        // 2026-12-01T00:00:00Z and 2027-01-01T00:00:00Z.
        let (dec, jan) = (1_796_083_200, 1_798_761_600);
        let m = Interval::Monthly;
        assert_eq!(m.period(dec) + 1, m.period(jan));
        assert_eq!(m.period(jan - 1), m.period(dec));
        assert_eq!(m.start(m.period(dec + 12345)), dec);
        assert_eq!(m.next_in(jan - 10), 10);
        assert_eq!(m.len_at(dec), 31 * 86_400);
        // February of a leap year.
        assert_eq!(m.len_at(1_709_251_200 - 86_400), 29 * 86_400);
        assert_eq!(Interval::Daily.next_in(dec + 3600), 23 * 3600);
        assert_eq!(m.period(0), 0);
    }
}
