//! Usage as counted between write-backs ([`UsageBatch`]) and as stored for reports
//! ([`KeyDays`]): allowed requests per key and UTC day, refused ones of known keys by reason.

use std::collections::BTreeMap;

use keygate_core::decide::Reason;

use super::DAY;

/// One key's usage as stored: allowed requests per UTC day number, and refused ones per day
/// and reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyDays {
    pub allowed: BTreeMap<i64, u64>,
    pub denied: BTreeMap<i64, BTreeMap<String, u64>>,
    /// The last use counted but not yet in the key's record (usage written back and not yet
    /// folded, on Redis), so that a report's last use agrees with its counts.
    pub last_used: Option<i64>,
}

/// Usage gathered in memory between flushes. Counting is on every allowed request: the ids
/// are hashed with foldhash (hashbrown's own, several times cheaper than SipHash for short
/// ids, and seeded per process), and looked up once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBatch {
    pub keys: hashbrown::HashMap<String, KeyUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUsage {
    /// Of the last allowed request; 0 when none was.
    pub last_used: i64,
    /// Allowed requests per UTC day number.
    pub per_day: BTreeMap<i64, u64>,
    /// Refused requests per UTC day number and reason.
    pub denied: BTreeMap<(i64, Reason), u64>,
}

impl UsageBatch {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn key(&mut self, id: &str) -> &mut KeyUsage {
        // One lookup; the id copied only when it is new in this batch.
        self.keys.entry_ref(id).or_default()
    }

    pub fn add(&mut self, id: &str, now: i64) {
        let u = self.key(id);
        u.last_used = u.last_used.max(now);
        *u.per_day.entry(now.div_euclid(DAY)).or_default() += 1;
    }

    /// Counts a refusal of a known key.
    pub fn deny(&mut self, id: &str, reason: Reason, now: i64) {
        let u = self.key(id);
        *u.denied.entry((now.div_euclid(DAY), reason)).or_default() += 1;
    }

    /// Puts a batch that could not be written back, so the next flush retries it.
    pub fn merge(&mut self, other: UsageBatch) {
        for (id, u) in other.keys {
            let mine = self.keys.entry(id).or_default();
            mine.last_used = mine.last_used.max(u.last_used);
            for (d, n) in u.per_day {
                *mine.per_day.entry(d).or_default() += n;
            }
            for (d, n) in u.denied {
                *mine.denied.entry(d).or_default() += n;
            }
        }
    }
}
