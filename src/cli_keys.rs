//! `keygate keys …`: the key commands of the CLI, each answering as the admin API does.

use clap::{Args, Subcommand};
use keygate::admin::ManageError;
use keygate::admin::manage::{CreateKey, ImportKey, Manager, UpdateKey};
use keygate::admin::views::Revoked;
use keygate::core::limit::{Credits, Interval, Per, RateLimit, Refill, Shared};

#[derive(Subcommand)]
pub enum Keys {
    /// Create a key; prints it once.
    Create {
        /// Account the key belongs to.
        #[arg(long)]
        account: String,
        /// A label for the key (shown in lists, never a secret).
        #[arg(long)]
        name: Option<String>,
        /// Key scheme from the config (default: the first).
        #[arg(long)]
        scheme: Option<String>,
        /// Restrict the key to a scope (repeatable). Without it the key may call every route.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// RFC 3339 UTC expiry time.
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        budget: Budget,
    },
    /// Change a key in place: only the options given change.
    Update {
        id: String,
        /// New label.
        #[arg(long)]
        name: Option<String>,
        /// Replace the key's scopes (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// New RFC 3339 UTC expiry time.
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        budget: Budget,
        /// Clear a field (repeatable): name, scopes, expires-at, rate-limits, credits.
        #[arg(long, value_parser = ["name", "scopes", "expires-at", "rate-limits", "credits"])]
        clear: Vec<String>,
    },
    /// List keys (never the keys themselves).
    List {
        /// Only this account's keys.
        #[arg(long)]
        account: Option<String>,
    },
    /// Revoke a key, irreversibly.
    Revoke { id: String },
    /// Issue a replacement; the old key is revoked now or after --grace (e.g. 1h, 30m).
    Rotate {
        id: String,
        /// How long the old key keeps working.
        #[arg(long)]
        grace: Option<humantime::Duration>,
    },
    /// Import an existing SHA-256 digest (hex) for a sha256 scheme.
    Import {
        /// Account the key belongs to.
        #[arg(long)]
        account: String,
        /// A sha256 scheme from the config.
        #[arg(long)]
        scheme: String,
        /// The key's SHA-256 digest, 64 hex characters.
        #[arg(long)]
        sha256: String,
        /// A label for the key.
        #[arg(long)]
        name: Option<String>,
        /// Restrict the key to a scope (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// RFC 3339 UTC expiry time.
        #[arg(long)]
        expires_at: Option<String>,
    },
}

/// A key's own rate limits and credits.
#[derive(Args)]
pub struct Budget {
    /// A rate limit in place of the plan's, NAME=REQUESTS/PER[/account], e.g. burst=5/1s
    /// (repeatable; PER from 1s to 1d; /account shares it across the account's keys).
    #[arg(long = "rate-limit", value_parser = parse_limit)]
    rate_limits: Vec<RateLimit>,
    /// The key has no rate limits, whatever its plan says.
    #[arg(long, conflicts_with = "rate_limits")]
    no_rate_limits: bool,
    /// Usage credits: each allowed request spends one; at zero the key is refused (429 quota).
    #[arg(long)]
    credits: Option<u64>,
    /// Refill the credits to AMOUNT each period, AMOUNT/daily or AMOUNT/monthly (UTC).
    #[arg(long, value_parser = parse_refill, requires = "credits")]
    refill: Option<Refill>,
}

impl Budget {
    fn rate_limits(&self) -> Option<Vec<RateLimit>> {
        (self.no_rate_limits || !self.rate_limits.is_empty()).then(|| self.rate_limits.clone())
    }

    fn credits(&self) -> Option<Credits> {
        self.credits.map(|remaining| Credits {
            remaining,
            refill: self.refill.clone(),
        })
    }
}

fn parse_limit(s: &str) -> Result<RateLimit, String> {
    let bad = || format!("{s:?}: expected NAME=REQUESTS/PER[/account], e.g. burst=5/1s");
    let (name, rest) = s.split_once('=').ok_or_else(bad)?;
    let mut parts = rest.split('/');
    let requests = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let per = Per::parse(parts.next().ok_or_else(bad)?)?;
    let shared = match parts.next() {
        None | Some("key") => Shared::Key,
        Some("account") => Shared::Account,
        Some(_) => return Err(bad()),
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(RateLimit {
        name: name.into(),
        requests,
        per,
        shared,
    })
}

fn parse_refill(s: &str) -> Result<Refill, String> {
    let bad = || format!("{s:?}: expected AMOUNT/daily or AMOUNT/monthly");
    let (amount, interval) = s.split_once('/').ok_or_else(bad)?;
    Ok(Refill {
        amount: amount.parse().map_err(|_| bad())?,
        interval: match interval {
            "daily" => Interval::Daily,
            "monthly" => Interval::Monthly,
            _ => return Err(bad()),
        },
    })
}

fn opt_scopes(s: Vec<String>) -> Option<Vec<String>> {
    (!s.is_empty()).then_some(s)
}

/// Each answer as the admin API gives it: the same view types, the same JSON.
pub fn json<T: serde::Serialize>(
    r: Result<T, ManageError>,
) -> Result<serde_json::Value, ManageError> {
    r.map(|v| serde_json::to_value(v).unwrap_or_default())
}

pub async fn run(m: &Manager, actor: &str, keys: Keys) -> Result<serde_json::Value, ManageError> {
    match keys {
        Keys::Create {
            account,
            name,
            scheme,
            scopes,
            expires_at,
            budget,
        } => {
            let create = CreateKey {
                account,
                name,
                scheme,
                scopes: opt_scopes(scopes),
                expires_at,
                rate_limits: budget.rate_limits(),
                credits: budget.credits(),
            };
            json(m.create_key(actor, create).await)
        }
        Keys::Update {
            id,
            name,
            scopes,
            expires_at,
            budget,
            clear,
        } => {
            let cleared = |f: &str| clear.iter().any(|c| c == f);
            // A field given is set, a field cleared is null, anything else is kept.
            fn field<T>(set: Option<T>, cleared: bool) -> Option<Option<T>> {
                if cleared { Some(None) } else { set.map(Some) }
            }
            let update = UpdateKey {
                name: field(name, cleared("name")),
                scopes: field(opt_scopes(scopes), cleared("scopes")),
                expires_at: field(expires_at, cleared("expires-at")),
                rate_limits: field(budget.rate_limits(), cleared("rate-limits")),
                credits: field(budget.credits(), cleared("credits")),
            };
            json(m.update_key(actor, &id, update).await)
        }
        Keys::List { account } => json(m.list_keys(account.as_deref()).await),
        Keys::Revoke { id } => json(
            m.revoke_key(actor, &id)
                .await
                .map(|()| Revoked { success: true }),
        ),
        Keys::Rotate { id, grace } => {
            json(m.rotate_key(actor, &id, grace.map(|g| g.as_secs())).await)
        }
        Keys::Import {
            account,
            scheme,
            sha256,
            name,
            scopes,
            expires_at,
        } => {
            let import = ImportKey {
                account,
                scheme,
                sha256,
                name,
                scopes: opt_scopes(scopes),
                expires_at,
            };
            json(m.import_key(actor, import).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_refills_parse() {
        let l = parse_limit("burst=5/1s/account").unwrap();
        assert_eq!((&*l.name, l.requests, l.per.secs()), ("burst", 5, 1));
        assert_eq!(l.shared, Shared::Account);
        assert_eq!(parse_limit("d=100/1d").unwrap().shared, Shared::Key);
        for bad in [
            "burst",
            "b=x/1s",
            "b=5",
            "b=5/2d",
            "b=5/1s/team",
            "b=5/1s/key/x",
        ] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
        let r = parse_refill("100/monthly").unwrap();
        assert_eq!((r.amount, r.interval), (100, Interval::Monthly));
        assert!(parse_refill("100/weekly").is_err());
    }
}
