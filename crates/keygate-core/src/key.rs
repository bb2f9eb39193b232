//! Key records and accounts as stored, key generation, hashing and constant-time verification.
//!
//! A key is never stored: only its SHA-256 digest or an Argon2id PHC string. Types that hold
//! key material redact themselves in `Debug` and zero their memory on drop.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::credits::Credits;
use super::limit::RateLimit;
use super::meta::Meta;
use super::scheme::{Alphabet, CHECKSUM_LEN, HashKind, ID_LEN, Scheme, checksum};

/// A stored key hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyHash {
    /// Lowercase hex of SHA-256 over the whole key.
    #[serde(with = "hex32")]
    Sha256([u8; 32]),
    /// Argon2id PHC string.
    Argon2id(String),
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyHash::Sha256(_) => f.write_str("Sha256(<redacted>)"),
            KeyHash::Argon2id(_) => f.write_str("Argon2id(<redacted>)"),
        }
    }
}

impl KeyHash {
    /// The SHA-256 digest, for a SHA-256 key: what digest indexes and duplicate checks use.
    pub fn sha256(&self) -> Option<&[u8; 32]> {
        match self {
            KeyHash::Sha256(d) => Some(d),
            KeyHash::Argon2id(_) => None,
        }
    }
}

/// A stored hash, borrowed (from a record or from the key table).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HashRef<'a> {
    Sha256(&'a [u8; 32]),
    Argon2id(&'a str),
}

impl std::fmt::Debug for HashRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HashRef::Sha256(_) => "Sha256(<redacted>)",
            HashRef::Argon2id(_) => "Argon2id(<redacted>)",
        })
    }
}

impl HashRef<'_> {
    pub fn of(h: &KeyHash) -> HashRef<'_> {
        match h {
            KeyHash::Sha256(d) => HashRef::Sha256(d),
            KeyHash::Argon2id(p) => HashRef::Argon2id(p),
        }
    }
}

/// A freshly generated key: shown once, then dropped (and zeroed).
pub struct NewKey {
    pub id: String,
    pub key: Zeroizing<String>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` base62 characters from the OS CSPRNG, by rejection sampling (no modulo bias).
pub fn random_base62(n: usize) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(n));
    let mut buf = Zeroizing::new([0u8; 64]);
    while out.len() < n {
        getrandom::fill(&mut buf[..]).expect("the OS random number generator failed");
        for &b in buf.iter() {
            // 248 = 4 * 62: bytes at or above it would bias the low characters.
            if b < 248 && out.len() < n {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// `n` lowercase hex characters from the OS CSPRNG.
pub fn random_hex(n: usize) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new(vec![0u8; n.div_ceil(2)]);
    getrandom::fill(&mut bytes[..]).expect("the OS random number generator failed");
    let mut out = Zeroizing::new(hex::encode(&*bytes));
    out.truncate(n);
    out
}

/// Generates a key of the scheme's format: `<key_prefix>[<id>_]<secret>[<checksum>]`. A
/// format without an id still gives the record an id, which the key does not carry.
pub fn generate(scheme: &Scheme) -> NewKey {
    let f = &scheme.format;
    let id = random_base62(ID_LEN).to_string();
    let secret = match f.alphabet {
        Alphabet::Base62 => random_base62(f.length),
        Alphabet::Hex => random_hex(f.length),
    };
    let mut key = Zeroizing::new(String::with_capacity(
        scheme.key_prefix.len() + ID_LEN + 1 + f.length + CHECKSUM_LEN,
    ));
    key.push_str(&scheme.key_prefix);
    if f.id {
        key.push_str(&id);
        key.push('_');
    }
    key.push_str(&secret);
    if scheme.checksum {
        let sum = checksum(key.as_bytes());
        // Base62 digits: ASCII.
        key.push_str(std::str::from_utf8(&sum).unwrap_or_default());
    }
    NewKey { id, key }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[derive(Debug, thiserror::Error)]
#[error("argon2 hashing failed")]
pub struct HashError;

/// Hashes a key for storage under its scheme. Argon2 is slow by design: call it off the
/// async runtime.
pub fn hash_key(scheme: &Scheme, key: &[u8]) -> Result<KeyHash, HashError> {
    match scheme.hash {
        HashKind::Sha256 => Ok(KeyHash::Sha256(sha256(key))),
        HashKind::Argon2id {
            memory_kib,
            iterations,
            parallelism,
        } => {
            use argon2::password_hash::PasswordHasher;
            let params = argon2::Params::new(memory_kib, iterations, parallelism, None)
                .map_err(|_| HashError)?;
            let a =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            let h = a.hash_password(key).map_err(|_| HashError)?;
            Ok(KeyHash::Argon2id(h.to_string()))
        }
    }
}

/// Verifies a presented key against a stored hash in constant time (SHA-256) or with the
/// parameters recorded in the PHC string (Argon2id).
pub fn verify(hash: HashRef<'_>, key: &[u8]) -> bool {
    match hash {
        HashRef::Sha256(d) => bool::from(sha256(key).ct_eq(d)),
        HashRef::Argon2id(phc) => {
            use argon2::password_hash::PasswordVerifier;
            argon2::Argon2::default().verify_password(key, phc).is_ok()
        }
    }
}

/// Account status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    #[default]
    Active,
    PastDue,
    Disabled,
}

impl AccountStatus {
    pub fn parse(s: &str) -> Option<AccountStatus> {
        match s {
            "active" => Some(AccountStatus::Active),
            "past_due" => Some(AccountStatus::PastDue),
            "disabled" => Some(AccountStatus::Disabled),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::PastDue => "past_due",
            AccountStatus::Disabled => "disabled",
        }
    }
}

/// An account: its plan and billing status. An account with no record is active with no plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Account {
    pub id: String,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub status: AccountStatus,
    pub updated_at: i64,
    /// Bumped on every change, so replicas apply changes in order.
    #[serde(default)]
    pub version: u64,
}

/// A stored key. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRecord {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The public start of the key (`<key_prefix><id>`), for display.
    pub prefix: String,
    pub account: String,
    pub scheme: String,
    /// `None`: every route; `Some(list)`: only routes whose scope is listed.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    pub hash: KeyHash,
    pub created_at: i64,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub revoked_at: Option<i64>,
    #[serde(default)]
    pub last_used_at: Option<i64>,
    /// The key this one replaced by rotation.
    #[serde(default)]
    pub replaces: Option<String>,
    #[serde(default)]
    pub replaced_by: Option<String>,
    /// The key's own limits, in place of its plan's; `Some(vec![])`: none at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<Vec<RateLimit>>,
    /// Credits as last set; what is left of them lives with the store's counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,
    /// The version at which `credits` was last set, so that every instance's counter starts
    /// over from the new value exactly once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub credits_version: u64,
    /// `false`: refused with 401 (reason `disabled`) until enabled again. Unlike revocation,
    /// reversible.
    #[serde(default = "enabled", skip_serializing_if = "is_enabled")]
    pub enabled: bool,
    /// Flat string map forwarded to the upstream (see [`crate::meta`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// Bumped on every change that can affect a decision.
    #[serde(default)]
    pub version: u64,
}

impl KeyRecord {
    /// A key of `account` under `scheme` at version 1, created at `created_at`, with every
    /// optional field unset: what a generated or imported key starts from.
    pub fn new(
        id: String,
        prefix: String,
        account: String,
        scheme: String,
        hash: KeyHash,
        created_at: i64,
    ) -> KeyRecord {
        KeyRecord {
            id,
            name: None,
            prefix,
            account,
            scheme,
            scopes: None,
            hash,
            created_at,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            replaces: None,
            replaced_by: None,
            rate_limits: None,
            credits: None,
            credits_version: 0,
            enabled: true,
            meta: None,
            version: 1,
        }
    }

    /// Not revoked and not expired at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn enabled() -> bool {
    true
}

fn is_enabled(v: &bool) -> bool {
    *v
}

mod hex32 {
    use serde::{Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        d.deserialize_str(Hex32)
    }

    /// Takes borrowed and owned strings alike, allocating for neither.
    struct Hex32;

    impl serde::de::Visitor<'_> for Hex32 {
        type Value = [u8; 32];

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("64 hex digits")
        }

        fn visit_str<E: Error>(self, s: &str) -> Result<[u8; 32], E> {
            super::from_hex32(s).ok_or_else(|| E::custom("expected 64 hex digits"))
        }
    }
}

pub fn to_hex(d: &[u8]) -> String {
    hex::encode(d)
}

/// Parses 64 hex digits (either case).
pub fn from_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests;
