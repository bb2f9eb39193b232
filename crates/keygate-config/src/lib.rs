//! keygate's YAML configuration: its serde shape, validation, and compilation into
//! [`Settings`], the ready-to-use form the data planes read (the sidecar, and the in-proxy
//! modules, which ignore `listen`).
//!
//! Validation reports every problem at once, each naming the field it is about
//! (`schemes[1].hash`, `routes[0].schemes[0]`); unknown fields are collected rather than
//! refused one at a time. Parsing a string is kept apart from reading a file so tests and
//! `check-config` share one path. Nothing here does network I/O, and the raw config text is
//! never logged (a Redis URL may carry a password).
//!
//! # Layout
//! One file per section, each with its raw (as written, with defaults) and compiled forms and
//! a `compile` that reports into [`Problems`]: [`listen`], [`store`], [`schemes`], [`plans`],
//! [`routes`], [`identity`], [`verification`], [`usage`], [`admin`], [`shutdown`],
//! [`limits`]. This file holds the whole file's shape, the error type and [`Settings`].

pub mod admin;
pub mod identity;
pub mod limits;
pub mod listen;
pub mod plans;
pub mod routes;
pub mod schemes;
pub mod shutdown;
pub mod store;
pub mod usage;
pub mod verification;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keygate_core::policy::Policy;
use keygate_core::route::RouteTable;
use serde::Deserialize;

pub use keygate_store::StoreSettings;
pub use limits::Limits;
pub use listen::TlsFiles;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the offending field, e.g. `schemes[0].hash`.
    pub field: String,
    pub message: String,
}

/// The problems found so far; every section adds to one list.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    /// The fields named so far, in order.
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|p| p.field.as_str()).collect()
    }
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

/// The file as written by the operator.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawConfig {
    pub listen: listen::RawListen,
    pub store: store::RawStore,
    pub schemes: Vec<schemes::RawScheme>,
    pub plans: BTreeMap<String, plans::RawPlan>,
    pub routes: Vec<routes::RawRoute>,
    pub identity_headers: identity::RawIdentityHeaders,
    pub verification: verification::RawVerification,
    pub usage: usage::RawUsage,
    pub admin: admin::RawAdmin,
    pub shutdown: shutdown::RawShutdown,
    pub limits: limits::RawLimits,
}

/// The validated, compiled configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub store: StoreSettings,
    /// Schemes, routes, plans and identity header names: what decisions are made with.
    pub policy: Arc<Policy>,
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
        let mut problems = Problems::default();
        let de = serde_norway::Deserializer::from_str(text);
        let raw: RawConfig = match serde_ignored::deserialize(de, |path| {
            problems.push(yaml_path(&path), "unknown field")
        }) {
            Ok(raw) => raw,
            Err(e) => {
                problems.push("(file)", e.to_string());
                return Err(ConfigError::Invalid(problems.0));
            }
        };
        let s = compile(&raw, &mut problems);
        if problems.0.is_empty() {
            Ok(s)
        } else {
            Err(ConfigError::Invalid(problems.0))
        }
    }

    pub fn scheme_index(&self, name: &str) -> Option<usize> {
        self.policy.scheme_index(name)
    }
}

fn compile(raw: &RawConfig, p: &mut Problems) -> Settings {
    let listen = listen::compile(&raw.listen, p);
    let store = store::compile(&raw.store, p);
    let schemes = schemes::compile(&raw.schemes, p);
    let plans = plans::compile(&raw.plans, p);
    let routes = routes::compile(&raw.routes, &schemes, p);
    let identity = identity::compile(&raw.identity_headers, &schemes, p);
    let verification = verification::compile(&raw.verification, p);
    let flush_interval = usage::compile(&raw.usage, p);
    let admin_label = admin::compile(&raw.admin, p);
    let (drain_delay, drain_timeout) = shutdown::compile(&raw.shutdown, p);
    let limits = limits::compile(&raw.limits, p);
    Settings {
        grpc: listen.grpc,
        http: listen.http,
        admin: listen.admin,
        tls: listen.tls,
        store,
        policy: Arc::new(Policy {
            schemes: schemes.into(),
            routes: RouteTable::new(routes),
            plans,
            identity,
        }),
        verify_concurrency: verification.concurrency,
        failures_per_minute: verification.failures_per_minute,
        flush_interval,
        admin_label,
        drain_delay,
        drain_timeout,
        limits,
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

/// A duration in seconds within [min, 1 hour]; out of range is reported as `field`.
pub(crate) fn secs(field: &str, v: f64, min: f64, p: &mut Problems) -> Duration {
    if !(v >= min && v <= 3600.0) {
        p.push(field, format!("must be between {min} and 3600 seconds"));
        return Duration::ZERO;
    }
    Duration::from_secs_f64(v)
}

#[cfg(test)]
mod tests;
