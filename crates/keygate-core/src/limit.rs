//! Rate limits as records and plans carry them, the fixed-window arithmetic every counter
//! shares, and what a decision reports of them and of credits (the IETF `RateLimit` and
//! `RateLimit-Policy` fields, `Retry-After`).
//!
//! Windows are aligned to the Unix epoch (a `1m` window starts at every whole minute), so
//! every instance of a fleet agrees on them without talking.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

/// Whose budget a limit counts: the key's own, or one shared by all of the account's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shared {
    #[default]
    Key,
    Account,
}

/// A window length, 1 s to 1 d, written `30s`, `1m`, `1h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Per(u32);

pub const MAX_PER: u32 = 86_400;

impl Per {
    pub fn secs(self) -> u32 {
        self.0
    }

    pub fn from_secs(s: u32) -> Option<Per> {
        (1..=MAX_PER).contains(&s).then_some(Per(s))
    }

    /// `<n><s|m|h|d>`, from 1 s to 1 d.
    pub fn parse(s: &str) -> Result<Per, String> {
        // The input is not echoed: it may come from a request body of any size.
        let bad = || "not a window: write <n>s, <n>m, <n>h or <n>d, 1s to 1d".to_string();
        let unit = match s.as_bytes().last() {
            Some(b's') => 1,
            Some(b'm') => 60,
            Some(b'h') => 3600,
            Some(b'd') => 86_400,
            _ => return Err(bad()),
        };
        let n: u32 = s[..s.len() - 1]
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(bad)?;
        n.checked_mul(unit).and_then(Per::from_secs).ok_or_else(bad)
    }
}

impl std::fmt::Display for Per {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl Serialize for Per {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Per {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Per, D::Error> {
        let s = String::deserialize(d)?;
        Per::parse(&s).map_err(D::Error::custom)
    }
}

/// One limit: at most `requests` allowed requests per window of `per`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Shared with every decision that reports it.
    pub name: Arc<str>,
    pub requests: u32,
    pub per: Per,
    #[serde(default)]
    pub shared: Shared,
}

/// Most limits on one key or plan.
pub const MAX_LIMITS: usize = 8;

/// Why a list of limits cannot be used, naming the entry (`[1].name`).
pub fn check_limits(limits: &[RateLimit]) -> Result<(), (String, String)> {
    if limits.len() > MAX_LIMITS {
        return Err((String::new(), format!("at most {MAX_LIMITS} limits")));
    }
    for (i, l) in limits.iter().enumerate() {
        // The name is quoted in the RateLimit fields, so it is kept to a token's characters.
        let ok = (1..=32).contains(&l.name.len())
            && l.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err((
                format!("[{i}].name"),
                "must be 1-32 of [A-Za-z0-9_-]".into(),
            ));
        }
        if limits[..i].iter().any(|o| o.name == l.name) {
            return Err((
                format!("[{i}].name"),
                format!("{:?} is listed twice", l.name),
            ));
        }
        if l.requests == 0 {
            return Err((format!("[{i}].requests"), "must be at least 1".into()));
        }
    }
    Ok(())
}

/// The window `now` falls in, for windows of `per` seconds.
pub fn window(now: i64, per: u32) -> i64 {
    now.div_euclid(i64::from(per))
}

/// Seconds from `now` to the end of its window (1 to `per`).
pub fn reset_in(now: i64, per: u32) -> u32 {
    let per = i64::from(per);
    (per - now.rem_euclid(per)) as u32
}

/// The name the credit budget has in the RateLimit fields.
pub const CREDITS: &str = "credits";

/// Where a request stands against one limit (or the credits): what the `RateLimit` fields of
/// the response say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitState {
    pub name: Arc<str>,
    /// The budget per window (`q`).
    pub quota: u64,
    /// The window in seconds (`w`); `None` for credits that never refill.
    pub window: Option<u32>,
    /// What is left in this window (`r`).
    pub remaining: u64,
    /// Seconds until it comes back (`t`, `Retry-After`); `None` for credits that never refill.
    pub reset: Option<u32>,
}

impl LimitState {
    /// `RateLimit-Policy`: `"<name>";q=<quota>;w=<window>`.
    pub fn policy_field(&self) -> String {
        let mut s = self.named(32);
        s.push_str(";q=");
        push_u64(&mut s, self.quota);
        if let Some(w) = self.window {
            s.push_str(";w=");
            push_u64(&mut s, u64::from(w));
        }
        s
    }

    /// `RateLimit`: `"<name>";r=<remaining>;t=<reset>`.
    pub fn field(&self) -> String {
        let mut s = self.named(32);
        s.push_str(";r=");
        push_u64(&mut s, self.remaining);
        if let Some(t) = self.reset {
            s.push_str(";t=");
            push_u64(&mut s, u64::from(t));
        }
        s
    }

    /// `"<name>"`, with room for `more` bytes after it. (Built by hand: these are written for
    /// every allowed request of a limited key, and `format!` costs several times as much.)
    fn named(&self, more: usize) -> String {
        let mut s = String::with_capacity(self.name.len() + 2 + more);
        s.push('"');
        s.push_str(&self.name);
        s.push('"');
        s
    }

    /// The fields of a response: `RateLimit-Policy`, `RateLimit`, and on a refusal
    /// `Retry-After`.
    pub fn headers(&self, refused: bool) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("ratelimit-policy", self.policy_field()),
            ("ratelimit", self.field()),
        ];
        if refused && let Some(t) = self.reset {
            h.push(("retry-after", t.to_string()));
        }
        h
    }
}

/// Appends `n` in decimal.
fn push_u64(s: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    s.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_print() {
        for (s, secs, shown) in [
            ("1s", 1, "1s"),
            ("90s", 90, "90s"),
            ("60s", 60, "1m"),
            ("1m", 60, "1m"),
            ("24h", 86_400, "1d"),
            ("1d", 86_400, "1d"),
        ] {
            let p = Per::parse(s).unwrap();
            assert_eq!(p.secs(), secs, "{s}");
            assert_eq!(p.to_string(), shown);
        }
        for bad in [
            "",
            "s",
            "0s",
            "2d",
            "1w",
            "-1s",
            "1.5m",
            "86401s",
            "4294967295d",
        ] {
            assert!(Per::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_checked_by_entry() {
        let l = |name: &str, requests| RateLimit {
            name: name.into(),
            requests,
            per: Per(1),
            shared: Shared::Key,
        };
        assert!(check_limits(&[l("burst", 5), l("daily", 100)]).is_ok());
        assert_eq!(check_limits(&[l("a b", 1)]).unwrap_err().0, "[0].name");
        assert_eq!(
            check_limits(&[l("a", 1), l("a", 2)]).unwrap_err().0,
            "[1].name"
        );
        assert_eq!(check_limits(&[l("a", 0)]).unwrap_err().0, "[0].requests");
        assert!(check_limits(&vec![l("a", 1); 9]).is_err());
        let j: RateLimit =
            serde_json::from_str(r#"{"name":"d","requests":3,"per":"1d","shared":"account"}"#)
                .unwrap();
        assert_eq!((j.per.secs(), j.shared), (86_400, Shared::Account));
        assert!(
            serde_json::from_str::<RateLimit>(r#"{"name":"d","requests":3,"per":"2d"}"#).is_err()
        );
    }

    #[test]
    fn windows_align_to_the_epoch() {
        assert_eq!((window(119, 60), reset_in(119, 60)), (1, 1));
        assert_eq!((window(120, 60), reset_in(120, 60)), (2, 60));
        assert_eq!(reset_in(5, 1), 1);
    }

    #[test]
    fn fields_follow_the_draft() {
        let s = LimitState {
            name: "burst".into(),
            quota: 5,
            window: Some(1),
            remaining: 0,
            reset: Some(1),
        };
        assert_eq!(
            s.headers(true),
            [
                ("ratelimit-policy", "\"burst\";q=5;w=1".to_string()),
                ("ratelimit", "\"burst\";r=0;t=1".to_string()),
                ("retry-after", "1".to_string()),
            ]
        );
        assert_eq!(s.headers(false).len(), 2);
        let c = LimitState {
            name: CREDITS.into(),
            quota: 100,
            window: None,
            remaining: 0,
            reset: None,
        };
        assert_eq!(c.field(), "\"credits\";r=0");
        assert_eq!(c.policy_field(), "\"credits\";q=100");
        let big = LimitState {
            remaining: u64::MAX,
            reset: Some(86_400),
            ..c
        };
        assert_eq!(big.field(), "\"credits\";r=18446744073709551615;t=86400");
    }
}
