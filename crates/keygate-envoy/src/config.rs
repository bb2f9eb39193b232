//! A filter config: what `config_new` makes from the filter's `filter_config` (the path of a
//! keygate YAML config), shared by every stream of every worker: the module for that file, the
//! stats this config defined, and the header names an allow writes, made once.

use std::path::Path;
use std::sync::Arc;

use crate::abi::{self, FilterConfigEnvoyPtr};
use crate::log::log;
use crate::module::Module;
use crate::stats::{StatIds, Ticker};

/// Header names an allow sets or removes.
pub struct Wire {
    /// The identity headers, in the order of `Allow::identity`.
    pub identity: [String; 4],
    /// Every scheme's credential header, once.
    pub credentials: Vec<String>,
    /// `identity_headers.meta_prefix`: a key's metadata goes upstream under it.
    pub meta_prefix: Option<String>,
}

pub struct FilterConfig {
    pub module: Arc<Module>,
    pub stats: StatIds,
    pub wire: Wire,
    /// Wakes [`FilterConfig::flush`] once a second; `None` in validation mode.
    _ticker: Option<Ticker>,
}

impl FilterConfig {
    /// Makes the config, or logs why not (naming the bad field) and returns `None`, which makes
    /// Envoy refuse the filter.
    pub fn new(envoy: FilterConfigEnvoyPtr, raw: &[u8]) -> Option<FilterConfig> {
        let Ok(path) = std::str::from_utf8(raw.trim_ascii()) else {
            log(
                abi::LOG_ERROR,
                "keygate: filter_config must be the path of a keygate config file",
            );
            return None;
        };
        // SAFETY: a plain query of Envoy's process state, on the main thread.
        let validate_only = unsafe { abi::envoy_dynamic_module_callback_is_validation_mode() };
        let module = match Module::get(Path::new(path), validate_only) {
            Ok(m) => m,
            Err(e) => {
                log(abi::LOG_ERROR, &format!("keygate: {path}: {e}"));
                return None;
            }
        };
        let Some(stats) = StatIds::define(envoy) else {
            log(
                abi::LOG_ERROR,
                "keygate: Envoy refused to define keygate's stats",
            );
            return None;
        };
        let p = &module.settings.policy;
        let wire = Wire {
            identity: p.identity.all().map(String::from),
            credentials: keygate_core::credential::headers(&p.schemes)
                .map(String::from)
                .collect(),
            meta_prefix: p.identity.meta_prefix.clone(),
        };
        log(
            abi::LOG_INFO,
            &format!(
                "keygate: filter config from {path} ({} keys in the table)",
                module.engine.replica.snapshot().len()
            ),
        );
        let ticker = if validate_only {
            None
        } else {
            let t = Ticker::start(envoy);
            if t.is_none() {
                log(
                    abi::LOG_WARN,
                    "keygate: no stats ticker; counters stay at zero",
                );
            }
            t
        };
        Some(FilterConfig {
            module,
            stats,
            wire,
            _ticker: ticker,
        })
    }

    /// The config scheduler's event, on Envoy's main thread: pending counts into the stats.
    pub fn flush(&self, envoy: FilterConfigEnvoyPtr) {
        let m = &self.module;
        self.stats
            .flush(envoy, &m.pending, &m.engine.replica, &m.store_stats);
    }
}
