//! `keygate keys …`: the key commands of the CLI, each answering as the admin API does.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use keygate::admin::ManageError;
use keygate::admin::manage::{CreateKey, ImportKey, Manager, UpdateKey};
use keygate::admin::views::Revoked;
use keygate::core::credits::{Credits, Interval, Refill};
use keygate::core::limit::{Per, RateLimit, Shared};
use keygate::core::meta::Meta;

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
        /// Metadata for the upstream, KEY=VALUE (repeatable; KEY of a-z 0-9 _ -).
        #[arg(long = "meta", value_parser = parse_meta)]
        meta: Vec<(String, String)>,
    },
    /// Change a key in place: only the options given change.
    Update {
        /// The key's id.
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
        /// Replace the key's metadata with these KEY=VALUE entries (repeatable).
        #[arg(long = "meta", value_parser = parse_meta)]
        meta: Vec<(String, String)>,
        /// Enable a disabled key.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the key: refused (401) until enabled again; unlike revoke, reversible.
        #[arg(long)]
        disable: bool,
        /// Clear a field (repeatable): name, scopes, expires-at, rate-limits, credits, meta.
        #[arg(long, value_parser = ["name", "scopes", "expires-at", "rate-limits", "credits", "meta"])]
        clear: Vec<String>,
    },
    /// List keys (never the keys themselves).
    List {
        /// Only this account's keys.
        #[arg(long)]
        account: Option<String>,
    },
    /// Revoke a key, irreversibly.
    Revoke {
        /// The key's id.
        id: String,
    },
    /// Issue a replacement; the old key is revoked now or after --grace (e.g. 1h, 30m).
    Rotate {
        /// The key's id.
        id: String,
        /// How long the old key keeps working.
        #[arg(long)]
        grace: Option<humantime::Duration>,
    },
    /// Import existing SHA-256 digests: one with --sha256, or many from a JSON Lines --file.
    Import {
        /// JSON Lines to import, one {"account","scheme","sha256","name"?,"scopes"?,
        /// "expiresAt"?,"meta"?} per line ("-": standard input); prints the counts of
        /// imported, skipped (digest present) and refused lines. Safe to run again.
        #[arg(long, conflicts_with_all = ["account", "scheme", "sha256", "name", "scopes", "expires_at", "meta"])]
        file: Option<PathBuf>,
        /// Account the key belongs to.
        #[arg(long, required_unless_present = "file")]
        account: Option<String>,
        /// A sha256 scheme from the config.
        #[arg(long, required_unless_present = "file")]
        scheme: Option<String>,
        /// The key's SHA-256 digest, 64 hex characters.
        #[arg(long, required_unless_present = "file")]
        sha256: Option<String>,
        /// A label for the key.
        #[arg(long)]
        name: Option<String>,
        /// Restrict the key to a scope (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// RFC 3339 UTC expiry time.
        #[arg(long)]
        expires_at: Option<String>,
        /// Metadata for the upstream, KEY=VALUE (repeatable).
        #[arg(long = "meta", value_parser = parse_meta)]
        meta: Vec<(String, String)>,
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
            balance_of: None,
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

fn parse_meta(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

fn opt_meta(m: Vec<(String, String)>) -> Option<Meta> {
    (!m.is_empty()).then(|| m.into_iter().collect())
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
            meta,
        } => {
            let create = CreateKey {
                account,
                name,
                scheme,
                scopes: opt_scopes(scopes),
                expires_at,
                rate_limits: budget.rate_limits(),
                credits: budget.credits(),
                meta: opt_meta(meta),
            };
            json(m.create_key(actor, create).await)
        }
        Keys::Update {
            id,
            name,
            scopes,
            expires_at,
            budget,
            meta,
            enable,
            disable,
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
                enabled: (enable || disable).then_some(Some(enable)),
                meta: field(opt_meta(meta), cleared("meta")),
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
            file: Some(file), ..
        } => crate::cli_import::run(m, actor, &file).await,
        Keys::Import {
            file: None,
            account,
            scheme,
            sha256,
            name,
            scopes,
            expires_at,
            meta,
        } => {
            let import = ImportKey {
                account: account.unwrap_or_default(),
                scheme: scheme.unwrap_or_default(),
                sha256: sha256.unwrap_or_default(),
                name,
                scopes: opt_scopes(scopes),
                expires_at,
                meta: opt_meta(meta),
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
