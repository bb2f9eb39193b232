//! Slows down guessing of the admin token. Each client address has a budget of failed
//! attempts per minute; past it, its failures are answered one at a time, a second apart, with
//! 429 and `Retry-After`, so one address can try at most one token a second however many
//! connections it opens. A call with the right token is never delayed.
//!
//! Memory is bounded: past [`MAX_ADDRESSES`] addresses in one minute, further addresses share
//! one budget (and one queue).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounter;

/// Addresses tracked at once.
pub const MAX_ADDRESSES: usize = 10_000;

/// How long each failure past the budget waits behind the previous one.
const DELAY: Duration = Duration::from_secs(1);

struct Entry {
    minute: i64,
    failures: u32,
    /// Held by the failure being delayed, so that an address's failures queue.
    queue: Arc<tokio::sync::Mutex<()>>,
}

/// What to answer a call with a missing or wrong token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: within the budget.
    Unauthorized,
    /// 429 after a delay: over the budget until the minute ends, `retry_after` seconds away.
    Slowed { retry_after: u64 },
}

pub struct Throttle {
    per_minute: u32,
    entries: Mutex<HashMap<IpAddr, Entry>>,
    failures: IntCounter,
}

impl Throttle {
    pub fn new(per_minute: u32, failures: IntCounter) -> Throttle {
        Throttle {
            per_minute: per_minute.max(1),
            entries: Mutex::new(HashMap::new()),
            failures,
        }
    }

    /// Records a failed attempt from `ip` at `now` (Unix seconds) and waits as its budget says.
    pub async fn failed(&self, ip: IpAddr, now: i64) -> Refusal {
        self.failures.inc();
        let minute = now.div_euclid(60);
        let (count, queue) = {
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
                map.retain(|_, e| e.minute == minute);
            }
            let key = if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                ip
            };
            let e = map.entry(key).or_insert_with(|| Entry {
                minute,
                failures: 0,
                queue: Arc::default(),
            });
            if e.minute != minute {
                e.minute = minute;
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            (e.failures, e.queue.clone())
        };
        if count == 1 || count == self.per_minute + 1 {
            tracing::warn!(
                peer = %ip,
                failures_this_minute = count,
                slowed = count > self.per_minute,
                "admin token refused"
            );
        }
        if count <= self.per_minute {
            return Refusal::Unauthorized;
        }
        let _turn = queue.lock().await;
        tokio::time::sleep(DELAY).await;
        Refusal::Slowed {
            retry_after: (60 - now.rem_euclid(60)) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_past_the_budget_are_slowed_per_address_until_the_minute_ends() {
        let t = Throttle::new(2, IntCounter::new("f", "f").unwrap());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = 600;
        assert_eq!(t.failed(a, now).await, Refusal::Unauthorized);
        assert_eq!(t.failed(a, now).await, Refusal::Unauthorized);
        let start = tokio::time::Instant::now();
        let (x, y) = tokio::join!(t.failed(a, now + 10), t.failed(a, now + 10));
        assert_eq!(x, Refusal::Slowed { retry_after: 50 });
        assert_eq!(y, Refusal::Slowed { retry_after: 50 });
        // Queued behind each other: two failures take two delays.
        assert!(start.elapsed() >= 2 * DELAY);
        // Another address has its own budget; the next minute starts afresh.
        assert_eq!(t.failed(b, now + 10).await, Refusal::Unauthorized);
        assert_eq!(t.failed(a, now + 60).await, Refusal::Unauthorized);
        assert_eq!(t.failures.get(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn addresses_past_the_cap_share_one_budget() {
        let t = Throttle::new(1, IntCounter::new("f", "f").unwrap());
        for i in 1..=MAX_ADDRESSES as u32 {
            t.failed(IpAddr::V4(Ipv4Addr::from(i)), 0).await;
        }
        let late: IpAddr = "192.168.1.1".parse().unwrap();
        let later: IpAddr = "192.168.1.2".parse().unwrap();
        assert_eq!(t.failed(late, 0).await, Refusal::Unauthorized);
        assert!(matches!(t.failed(later, 0).await, Refusal::Slowed { .. }));
        assert!(t.entries.lock().unwrap().len() <= MAX_ADDRESSES + 1);
    }
}
