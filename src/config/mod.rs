//! The YAML configuration: its serde shape, validation, and compilation into [`Settings`],
//! the ready-to-use form the decision core and the servers read.
//!
//! Validation reports every problem at once, each naming the field it is about
//! (`schemes[1].hash`, `routes[0].schemes[0]`). Parsing a string is kept apart from reading a
//! file so tests and `check-config` share one path. Nothing here does network I/O, and the raw
//! config text is never logged (a Redis URL may carry a password).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::core::route::{Route, RouteTable};
use crate::core::scheme::{HashKind, Scheme};
use crate::frontend::http::AllowHeaders;

pub mod limits;
pub use limits::Limits;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the offending field, e.g. `schemes[0].hash`.
    pub field: String,
    pub message: String,
}

/// A config that cannot be used; holds every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config:\n{}", format_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems of an invalid config (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            ConfigError::Read { .. } => &[],
        }
    }
}

fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The file as written by the operator. Unknown fields are collected by `serde_ignored`
/// rather than `deny_unknown_fields`, so that all of them are reported, not just the first.
#[derive(Debug, Deserialize, Default)]
pub struct RawConfig {
    #[serde(default)]
    pub listen: RawListen,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub schemes: Vec<RawScheme>,
    #[serde(default)]
    pub plans: BTreeMap<String, RawPlan>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub identity_headers: RawIdentityHeaders,
    #[serde(default)]
    pub verification: RawVerification,
    #[serde(default)]
    pub usage: RawUsage,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub limits: limits::RawLimits,
}

/// Graceful shutdown on SIGTERM.
#[derive(Debug, Deserialize, Clone)]
pub struct RawShutdown {
    /// Seconds `/readyz` answers 503 before the listeners close, so load balancers and
    /// proxies move traffic elsewhere first.
    #[serde(default)]
    pub drain_delay_seconds: f64,
    /// Longest wait for in-flight requests once the listeners are closed.
    #[serde(default = "default_drain_timeout")]
    pub timeout_seconds: f64,
}

fn default_drain_timeout() -> f64 {
    10.0
}

impl Default for RawShutdown {
    fn default() -> Self {
        RawShutdown {
            drain_delay_seconds: 0.0,
            timeout_seconds: default_drain_timeout(),
        }
    }
}

/// Listener addresses; each is `ip:port`.
#[derive(Debug, Deserialize)]
pub struct RawListen {
    /// Envoy ext_authz v3 gRPC.
    pub grpc: Option<String>,
    /// `/auth`, `/ext_authz/…`, `/healthz`, `/readyz`, `/metrics`.
    pub http: Option<String>,
    /// `/api/…` key management.
    pub admin: Option<String>,
    /// Serve every listener over TLS with this certificate and key (PEM).
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
}

/// PEM files for the listeners' TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for RawListen {
    fn default() -> Self {
        RawListen {
            grpc: Some("127.0.0.1:9001".into()),
            http: Some("127.0.0.1:9002".into()),
            admin: Some("127.0.0.1:9003".into()),
            tls: None,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawStore {
    /// `file` (default) or `redis`.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// File backend: the JSON file holding keys, accounts, usage and audit.
    pub path: Option<String>,
    /// Redis backend: `redis://` or `rediss://` URL.
    pub url: Option<String>,
    /// Redis backend: optional URL of a nearby replica for loading and following the table;
    /// writes always go to `url`.
    pub read_url: Option<String>,
    /// Redis backend: key namespace.
    pub namespace: Option<String>,
    /// Redis backend: change-log entries kept (older ones are trimmed; a sidecar that falls
    /// further behind reloads the whole table).
    pub max_changes: Option<u64>,
    /// Redis backend: CA certificate (PEM) for `rediss://` servers with a private CA.
    pub tls_ca_file: Option<String>,
    /// Redis backend: find the primary through Sentinel.
    pub sentinel: Option<RawSentinel>,
}

#[derive(Debug, Deserialize)]
pub struct RawSentinel {
    /// The master's name in Sentinel's config.
    pub master: String,
    /// `redis://host:port` of each sentinel.
    pub urls: Vec<String>,
}

fn default_backend() -> String {
    "file".into()
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            backend: default_backend(),
            path: None,
            url: None,
            read_url: None,
            namespace: None,
            max_changes: None,
            tls_ca_file: None,
            sentinel: None,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawScheme {
    pub name: String,
    /// `x-api-key`, `authorization` (Bearer), or another header name.
    pub header: String,
    pub key_prefix: String,
    /// `argon2id` or `sha256`.
    pub hash: String,
    /// Argon2id parameters for new keys (verification reads them from each stored hash).
    #[serde(default)]
    pub argon2: Option<RawArgon2>,
    /// sha256 only: accepted length of the part after the prefix, for imported keys.
    #[serde(default)]
    pub min_length: Option<usize>,
    #[serde(default)]
    pub max_length: Option<usize>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
pub struct RawArgon2 {
    #[serde(default = "default_m")]
    pub memory_kib: u32,
    #[serde(default = "default_t")]
    pub iterations: u32,
    #[serde(default = "default_p")]
    pub parallelism: u32,
}

fn default_m() -> u32 {
    19456
}
fn default_t() -> u32 {
    2
}
fn default_p() -> u32 {
    1
}

#[derive(Debug, Deserialize, Clone, Default)]
pub struct RawPlan {
    /// Most active (not revoked, not expired) keys an account on this plan may hold.
    pub max_keys: Option<u32>,
    /// `false` refuses every request of the plan's accounts with 403.
    pub api_access: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct RawRoute {
    pub path_prefix: String,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub schemes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub struct RawIdentityHeaders {
    #[serde(default = "h_key_id")]
    pub key_id: String,
    #[serde(default = "h_account")]
    pub account: String,
    #[serde(default = "h_scopes")]
    pub scopes: String,
    #[serde(default = "h_plan")]
    pub plan: String,
}

fn h_key_id() -> String {
    "x-keygate-key-id".into()
}
fn h_account() -> String {
    "x-keygate-account".into()
}
fn h_scopes() -> String {
    "x-keygate-scopes".into()
}
fn h_plan() -> String {
    "x-keygate-plan".into()
}

impl Default for RawIdentityHeaders {
    fn default() -> Self {
        RawIdentityHeaders {
            key_id: h_key_id(),
            account: h_account(),
            scopes: h_scopes(),
            plan: h_plan(),
        }
    }
}

/// Bounds on the cost of Argon2 verification.
#[derive(Debug, Deserialize, Clone)]
pub struct RawVerification {
    /// Argon2 verifications running at once (default: half the cores, at least one).
    pub max_concurrent: Option<usize>,
    /// Failed verifications allowed per key id per minute; past it, further wrong secrets
    /// for that id are refused without running Argon2.
    #[serde(default = "default_failures")]
    pub failures_per_minute: u32,
}

fn default_failures() -> u32 {
    10
}

impl Default for RawVerification {
    fn default() -> Self {
        RawVerification {
            max_concurrent: None,
            failures_per_minute: default_failures(),
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
pub struct RawUsage {
    /// How often last use and usage counts are written to the store.
    #[serde(default = "default_flush")]
    pub flush_interval_seconds: f64,
}

fn default_flush() -> f64 {
    2.0
}

impl Default for RawUsage {
    fn default() -> Self {
        RawUsage {
            flush_interval_seconds: default_flush(),
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
pub struct RawAdmin {
    /// The actor recorded in the audit trail for calls made with the admin token.
    #[serde(default = "default_label")]
    pub token_label: String,
}

fn default_label() -> String {
    "admin".into()
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            token_label: default_label(),
        }
    }
}

/// Which backend holds the key table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    File {
        path: PathBuf,
    },
    Redis {
        url: String,
        read_url: Option<String>,
        namespace: String,
        max_changes: u64,
        /// PEM file of the CA that signed the Redis servers' certificates (`rediss://`).
        tls_ca_file: Option<PathBuf>,
        /// Sentinel: master name and sentinel URLs; the primary is whatever they name.
        sentinel: Option<(String, Vec<String>)>,
    },
}

/// A plan, as the core reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub max_keys: Option<u32>,
    pub api_access: bool,
}

/// Lowercased identity header names.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub key_id: String,
    pub account: String,
    pub scopes: String,
    pub plan: String,
}

impl IdentityHeaders {
    pub fn all(&self) -> [&str; 4] {
        [&self.key_id, &self.account, &self.scopes, &self.plan]
    }
}

/// The validated, compiled configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub store: StoreSettings,
    pub schemes: Arc<[Scheme]>,
    pub plans: BTreeMap<String, Plan>,
    pub routes: RouteTable,
    pub identity: IdentityHeaders,
    pub(crate) allow_headers: AllowHeaders,
    pub verify_concurrency: usize,
    pub failures_per_minute: u32,
    pub flush_interval: Duration,
    pub admin_label: String,
    pub drain_delay: Duration,
    pub drain_timeout: Duration,
    pub limits: Limits,
}

impl Settings {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Settings::from_yaml(&text)
    }

    /// Parses and validates config text.
    pub fn from_yaml(text: &str) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        let de = serde_norway::Deserializer::from_str(text);
        let raw: RawConfig = match serde_ignored::deserialize(de, |path| {
            problems.push(Problem {
                field: yaml_path(&path),
                message: "unknown field".into(),
            })
        }) {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(Problem {
                    field: "(file)".into(),
                    message: e.to_string(),
                });
                return Err(ConfigError::Invalid(problems));
            }
        };
        match compile(raw, &mut problems) {
            Some(s) if problems.is_empty() => Ok(s),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }

    pub fn scheme_index(&self, name: &str) -> Option<usize> {
        self.schemes.iter().position(|s| s.name == name)
    }
}

fn yaml_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", yaml_path(parent)),
        P::Map { parent, key } => {
            let p = yaml_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            yaml_path(parent)
        }
    }
}

fn push(problems: &mut Vec<Problem>, field: impl Into<String>, message: impl Into<String>) {
    problems.push(Problem {
        field: field.into(),
        message: message.into(),
    });
}

fn addr(field: &str, v: &Option<String>, problems: &mut Vec<Problem>) -> Option<SocketAddr> {
    let v = v.as_deref()?;
    match v.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            push(problems, field, format!("`{v}` is not an ip:port address"));
            None
        }
    }
}

/// A header name as HTTP allows it (RFC 9110 token), lowercased.
fn header_name(field: &str, v: &str, problems: &mut Vec<Problem>) -> String {
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        push(problems, field, format!("`{v}` is not a valid header name"));
    }
    v.to_ascii_lowercase()
}

/// Scope strings: printable ASCII without spaces, quotes or backslashes (RFC 6750 scope-token).
pub fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// A duration in seconds within [min, 1 hour].
fn secs(field: &str, v: f64, min: f64, problems: &mut Vec<Problem>) -> Duration {
    if !(v >= min && v <= 3600.0) {
        push(
            problems,
            field,
            format!("must be between {min} and 3600 seconds"),
        );
        return Duration::ZERO;
    }
    Duration::from_secs_f64(v)
}

fn compile(raw: RawConfig, problems: &mut Vec<Problem>) -> Option<Settings> {
    let grpc = addr("listen.grpc", &raw.listen.grpc, problems);
    let http = addr("listen.http", &raw.listen.http, problems);
    let admin = addr("listen.admin", &raw.listen.admin, problems);

    let store = match raw.store.backend.as_str() {
        "file" => {
            for (f, set) in [
                ("store.url", raw.store.url.is_some()),
                ("store.read_url", raw.store.read_url.is_some()),
                ("store.namespace", raw.store.namespace.is_some()),
                ("store.max_changes", raw.store.max_changes.is_some()),
                ("store.tls_ca_file", raw.store.tls_ca_file.is_some()),
                ("store.sentinel", raw.store.sentinel.is_some()),
            ] {
                if set {
                    push(problems, f, "only used with backend: redis");
                }
            }
            StoreSettings::File {
                path: PathBuf::from(raw.store.path.as_deref().unwrap_or("data/keygate.json")),
            }
        }
        "redis" => {
            if raw.store.path.is_some() {
                push(problems, "store.path", "only used with backend: file");
            }
            let url = raw
                .store
                .url
                .clone()
                .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
            let redis_url = |field: &str, u: &str, problems: &mut Vec<Problem>| {
                // Do not echo the URL: it may carry a password.
                if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                    push(problems, field, "must start with redis:// or rediss://");
                } else if redis::Client::open(u).is_err() {
                    push(problems, field, "not a valid Redis URL");
                }
            };
            redis_url("store.url", &url, problems);
            if let Some(r) = &raw.store.read_url {
                redis_url("store.read_url", r, problems);
            }
            let namespace = raw
                .store
                .namespace
                .clone()
                .unwrap_or_else(|| "keygate".into());
            if namespace.is_empty()
                || !namespace
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
            {
                push(
                    problems,
                    "store.namespace",
                    "1 or more of A-Z a-z 0-9 _ - . :",
                );
            }
            let max_changes = raw.store.max_changes.unwrap_or(100_000);
            if max_changes == 0 {
                push(problems, "store.max_changes", "must be at least 1");
            }
            if let Some(s) = &raw.store.sentinel {
                if s.master.is_empty() {
                    push(problems, "store.sentinel.master", "must not be empty");
                }
                if s.urls.is_empty() {
                    push(
                        problems,
                        "store.sentinel.urls",
                        "name at least one sentinel",
                    );
                }
                for (i, u) in s.urls.iter().enumerate() {
                    redis_url(&format!("store.sentinel.urls[{i}]"), u, problems);
                }
            }
            StoreSettings::Redis {
                url,
                read_url: raw.store.read_url.clone(),
                namespace,
                max_changes,
                tls_ca_file: raw.store.tls_ca_file.as_ref().map(PathBuf::from),
                sentinel: raw
                    .store
                    .sentinel
                    .as_ref()
                    .map(|s| (s.master.clone(), s.urls.clone())),
            }
        }
        other => {
            push(
                problems,
                "store.backend",
                format!("unknown backend `{other}` (expected file or redis)"),
            );
            StoreSettings::File {
                path: PathBuf::new(),
            }
        }
    };

    if raw.schemes.is_empty() {
        push(problems, "schemes", "at least one scheme is required");
    }
    if raw.schemes.len() > 64 {
        push(problems, "schemes", "at most 64 schemes");
    }
    let mut names = HashSet::new();
    let mut prefixes: Vec<(String, String)> = Vec::new();
    let mut schemes = Vec::new();
    for (i, s) in raw.schemes.iter().enumerate() {
        let f = |n: &str| format!("schemes[{i}].{n}");
        if s.name.is_empty() {
            push(problems, f("name"), "must not be empty");
        } else if !names.insert(s.name.clone()) {
            push(
                problems,
                f("name"),
                format!("duplicate scheme name `{}`", s.name),
            );
        }
        let header = header_name(&f("header"), &s.header, problems);
        if s.key_prefix.is_empty()
            || s.key_prefix.len() > 32
            || !s
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            push(
                problems,
                f("key_prefix"),
                "must be 1 to 32 characters of A-Z, a-z, 0-9, _ and -",
            );
        }
        for (other_header, other_prefix) in &prefixes {
            if *other_header == header
                && (other_prefix.starts_with(&s.key_prefix)
                    || s.key_prefix.starts_with(other_prefix.as_str()))
            {
                push(
                    problems,
                    f("key_prefix"),
                    format!(
                        "`{}` overlaps `{other_prefix}` on the same header",
                        s.key_prefix
                    ),
                );
            }
        }
        prefixes.push((header.clone(), s.key_prefix.clone()));
        let hash = match s.hash.as_str() {
            "argon2id" => {
                let a = s.argon2.unwrap_or(RawArgon2 {
                    memory_kib: default_m(),
                    iterations: default_t(),
                    parallelism: default_p(),
                });
                if argon2::Params::new(a.memory_kib, a.iterations, a.parallelism, None).is_err() {
                    push(problems, f("argon2"), "parameters out of Argon2's range");
                }
                HashKind::Argon2id {
                    memory_kib: a.memory_kib,
                    iterations: a.iterations,
                    parallelism: a.parallelism,
                }
            }
            "sha256" => {
                if s.argon2.is_some() {
                    push(problems, f("argon2"), "only used with hash: argon2id");
                }
                HashKind::Sha256
            }
            other => {
                push(
                    problems,
                    f("hash"),
                    format!("unknown hash `{other}` (expected argon2id or sha256)"),
                );
                HashKind::Sha256
            }
        };
        let min = s.min_length.unwrap_or(16);
        let max = s.max_length.unwrap_or(128);
        if matches!(hash, HashKind::Argon2id { .. })
            && (s.min_length.is_some() || s.max_length.is_some())
        {
            push(
                problems,
                f("min_length"),
                "argon2id keys have a fixed shape; lengths apply to sha256 only",
            );
        }
        if min == 0 || min > max || max > 512 {
            push(
                problems,
                f("max_length"),
                "need 1 <= min_length <= max_length <= 512",
            );
        }
        schemes.push(Scheme::new(
            s.name.clone(),
            header,
            s.key_prefix.clone(),
            hash,
            min,
            max,
        ));
    }

    let mut plans = BTreeMap::new();
    for (name, p) in &raw.plans {
        if name.is_empty() {
            push(problems, "plans", "plan names must not be empty");
        }
        if p.max_keys == Some(0) {
            push(
                problems,
                format!("plans.{name}.max_keys"),
                "must be at least 1",
            );
        }
        plans.insert(
            name.clone(),
            Plan {
                max_keys: p.max_keys,
                api_access: p.api_access.unwrap_or(true),
            },
        );
    }

    if raw.routes.is_empty() {
        push(problems, "routes", "at least one route is required");
    }
    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let f = |n: &str| format!("routes[{i}].{n}");
        if !r.path_prefix.starts_with('/') {
            push(problems, f("path_prefix"), "must start with /");
        }
        let methods = r.methods.as_ref().map(|ms| {
            ms.iter()
                .enumerate()
                .map(|(j, m)| {
                    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                        push(
                            problems,
                            format!("routes[{i}].methods[{j}]"),
                            "not an HTTP method",
                        );
                    }
                    m.to_ascii_uppercase()
                })
                .collect::<Vec<_>>()
        });
        if let Some(scope) = &r.scope
            && !valid_scope(scope)
        {
            push(
                problems,
                f("scope"),
                "scopes are 1-128 printable ASCII characters without spaces or quotes",
            );
        }
        let accepted = match &r.schemes {
            None => (0..schemes.len()).collect(),
            Some(list) => {
                if list.is_empty() {
                    push(problems, f("schemes"), "must name at least one scheme");
                }
                list.iter()
                    .enumerate()
                    .filter_map(|(j, n)| {
                        let idx = schemes.iter().position(|s| s.name == *n);
                        if idx.is_none() {
                            push(
                                problems,
                                format!("routes[{i}].schemes[{j}]"),
                                format!("unknown scheme `{n}`"),
                            );
                        }
                        idx
                    })
                    .collect()
            }
        };
        routes.push(Route::new(
            r.path_prefix.clone(),
            methods,
            r.host.as_ref().map(|h| h.to_ascii_lowercase()),
            r.scope.clone(),
            accepted,
        ));
    }

    let ih = &raw.identity_headers;
    let identity = IdentityHeaders {
        key_id: header_name("identity_headers.key_id", &ih.key_id, problems),
        account: header_name("identity_headers.account", &ih.account, problems),
        scopes: header_name("identity_headers.scopes", &ih.scopes, problems),
        plan: header_name("identity_headers.plan", &ih.plan, problems),
    };
    let mut seen = HashSet::new();
    for (n, field) in identity
        .all()
        .iter()
        .zip(["key_id", "account", "scopes", "plan"])
    {
        if !seen.insert(*n) {
            push(
                problems,
                format!("identity_headers.{field}"),
                "duplicate header name",
            );
        }
        if schemes.iter().any(|s| s.header == *n) || *n == "host" || n.starts_with(':') {
            push(
                problems,
                format!("identity_headers.{field}"),
                "must not be a credential header or Host",
            );
        }
    }

    let allow_headers = AllowHeaders::new(&identity, &schemes);

    let v = &raw.verification;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let verify_concurrency = v.max_concurrent.unwrap_or((cores / 2).max(1));
    if verify_concurrency == 0 {
        push(
            problems,
            "verification.max_concurrent",
            "must be at least 1",
        );
    }
    if !(raw.usage.flush_interval_seconds > 0.0 && raw.usage.flush_interval_seconds <= 3600.0) {
        push(
            problems,
            "usage.flush_interval_seconds",
            "must be in (0, 3600]",
        );
    }

    let drain_delay = secs(
        "shutdown.drain_delay_seconds",
        raw.shutdown.drain_delay_seconds,
        0.0,
        problems,
    );
    let drain_timeout = secs(
        "shutdown.timeout_seconds",
        raw.shutdown.timeout_seconds,
        0.1,
        problems,
    );
    let limits = limits::compile(&raw.limits, problems);
    // Names that failed validation above leave it `None`; the problems say which.
    let Some(allow_headers) = allow_headers else {
        if problems.is_empty() {
            push(problems, "identity_headers", "not valid header names");
        }
        return None;
    };

    Some(Settings {
        grpc,
        http,
        admin,
        tls: raw.listen.tls.as_ref().map(|t| TlsFiles {
            cert_file: PathBuf::from(&t.cert_file),
            key_file: PathBuf::from(&t.key_file),
        }),
        store,
        schemes: schemes.into(),
        plans,
        routes: RouteTable::new(routes),
        identity,
        allow_headers,
        verify_concurrency,
        failures_per_minute: v.failures_per_minute,
        flush_interval: Duration::from_secs_f64(
            raw.usage.flush_interval_seconds.clamp(0.01, 3600.0),
        ),
        admin_label: raw.admin.token_label.clone(),
        drain_delay,
        drain_timeout,
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/keygate.yaml");

    #[test]
    fn shipped_example_loads() {
        let s = Settings::from_yaml(EXAMPLE).expect("example config");
        assert_eq!(s.schemes.len(), 2);
        assert_eq!(s.routes.len(), 4);
        assert!(!s.plans["free"].api_access);
        assert_eq!(s.plans["starter"].max_keys, Some(4));
        assert_eq!(s.grpc, Some("127.0.0.1:9001".parse().unwrap()));
    }

    fn fields(text: &str) -> Vec<String> {
        match Settings::from_yaml(text) {
            Err(ConfigError::Invalid(p)) => p.into_iter().map(|p| p.field).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_field() {
        let text = r#"
listen: { grpc: "not-an-address", http: 127.0.0.1:1 }
store: { backend: file, path: x.json, colour: blue }
schemes:
  - { name: a, header: x-api-key, key_prefix: a_, hash: md5 }
  - { name: a, header: authorization, key_prefix: b_, hash: sha256 }
plans: { p: { max_keys: 0 } }
routes:
  - { path_prefix: /, schemes: [nope] }
identity_headers: { account: "bad name" }
shutdown: { timeout_seconds: 0 }
"#;
        let f = fields(text);
        for want in [
            "listen.grpc",
            "store.colour",
            "schemes[0].hash",
            "schemes[1].name",
            "plans.p.max_keys",
            "routes[0].schemes[0]",
            "identity_headers.account",
            "shutdown.timeout_seconds",
        ] {
            assert!(f.iter().any(|x| x == want), "missing {want} in {f:?}");
        }
    }

    #[test]
    fn unknown_top_level_field_is_named() {
        let text = EXAMPLE.to_string() + "\nextra_thing: 1\n";
        assert_eq!(fields(&text), vec!["extra_thing".to_string()]);
    }

    #[test]
    fn overlapping_prefixes_on_one_header_are_refused() {
        let text = r#"
schemes:
  - { name: a, header: x-api-key, key_prefix: tk_, hash: sha256 }
  - { name: b, header: x-api-key, key_prefix: tk_live_, hash: sha256 }
routes: [ { path_prefix: / } ]
"#;
        assert_eq!(fields(text), vec!["schemes[1].key_prefix".to_string()]);
    }

    #[test]
    fn type_errors_are_reported() {
        assert!(!fields("routes: 5\n").is_empty());
    }
}
