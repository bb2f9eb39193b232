//! `store`: which backend holds the key table, and how to reach it.

use std::path::PathBuf;

use keygate_store::StoreSettings;
use serde::Deserialize;

use super::Problems;

/// `store` as written.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawStore {
    /// `file` (default) or `redis`.
    pub backend: String,
    /// File backend: the JSON file holding keys, accounts, usage and audit.
    pub path: Option<String>,
    /// Redis backend: `redis://` or `rediss://` URL of the primary.
    pub url: Option<String>,
    /// Redis backend: optional URL of a nearby replica for loading and following the table;
    /// writes always go to `url`.
    pub read_url: Option<String>,
    /// Redis backend: key namespace.
    pub namespace: Option<String>,
    /// Redis backend: change-log entries kept (older ones are trimmed; an instance that falls
    /// further behind reloads the whole table).
    pub max_changes: Option<u64>,
    /// Redis backend: CA certificate (PEM) for `rediss://` servers with a private CA.
    pub tls_ca_file: Option<String>,
    /// Redis backend: find the primary through Sentinel.
    pub sentinel: Option<RawSentinel>,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            backend: "file".into(),
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

/// `store.sentinel` as written.
#[derive(Debug, Deserialize)]
pub struct RawSentinel {
    /// The master's name in Sentinel's config.
    pub master: String,
    /// `redis://host:port` of each sentinel.
    pub urls: Vec<String>,
}

pub fn compile(raw: &RawStore, p: &mut Problems) -> StoreSettings {
    match raw.backend.as_str() {
        "file" => {
            for (f, set) in [
                ("store.url", raw.url.is_some()),
                ("store.read_url", raw.read_url.is_some()),
                ("store.namespace", raw.namespace.is_some()),
                ("store.max_changes", raw.max_changes.is_some()),
                ("store.tls_ca_file", raw.tls_ca_file.is_some()),
                ("store.sentinel", raw.sentinel.is_some()),
            ] {
                if set {
                    p.push(f, "only used with backend: redis");
                }
            }
            StoreSettings::File {
                path: PathBuf::from(raw.path.as_deref().unwrap_or("data/keygate.json")),
            }
        }
        "redis" => redis(raw, p),
        other => {
            p.push(
                "store.backend",
                format!("unknown backend `{other}` (expected file or redis)"),
            );
            StoreSettings::File {
                path: PathBuf::new(),
            }
        }
    }
}

fn redis(raw: &RawStore, p: &mut Problems) -> StoreSettings {
    if raw.path.is_some() {
        p.push("store.path", "only used with backend: file");
    }
    let url = raw
        .url
        .clone()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let redis_url = |field: &str, u: &str, p: &mut Problems| {
        // Do not echo the URL: it may carry a password.
        if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
            p.push(field, "must start with redis:// or rediss://");
        } else if !keygate_store::redis::valid_url(u) {
            p.push(field, "not a valid Redis URL");
        }
    };
    redis_url("store.url", &url, p);
    if let Some(r) = &raw.read_url {
        redis_url("store.read_url", r, p);
    }
    let namespace = raw.namespace.clone().unwrap_or_else(|| "keygate".into());
    if namespace.is_empty()
        || !namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        p.push("store.namespace", "1 or more of A-Z a-z 0-9 _ - . :");
    }
    let max_changes = raw.max_changes.unwrap_or(100_000);
    if max_changes == 0 {
        p.push("store.max_changes", "must be at least 1");
    }
    if let Some(s) = &raw.sentinel {
        if s.master.is_empty() {
            p.push("store.sentinel.master", "must not be empty");
        }
        if s.urls.is_empty() {
            p.push("store.sentinel.urls", "name at least one sentinel");
        }
        for (i, u) in s.urls.iter().enumerate() {
            redis_url(&format!("store.sentinel.urls[{i}]"), u, p);
        }
    }
    StoreSettings::Redis {
        url,
        read_url: raw.read_url.clone(),
        namespace,
        max_changes,
        tls_ca_file: raw.tls_ca_file.as_ref().map(PathBuf::from),
        sentinel: raw
            .sentinel
            .as_ref()
            .map(|s| (s.master.clone(), s.urls.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_and_their_fields() {
        let mut p = Problems::default();
        let file = compile(&RawStore::default(), &mut p);
        assert_eq!(
            file,
            StoreSettings::File {
                path: "data/keygate.json".into()
            }
        );
        let raw = RawStore {
            backend: "redis".into(),
            path: Some("x".into()),
            url: Some("http://nope".into()),
            namespace: Some("bad name".into()),
            max_changes: Some(0),
            ..RawStore::default()
        };
        compile(&raw, &mut p);
        let bad = RawStore {
            backend: "mongo".into(),
            ..RawStore::default()
        };
        compile(&bad, &mut p);
        assert_eq!(
            p.fields(),
            [
                "store.path",
                "store.url",
                "store.namespace",
                "store.max_changes",
                "store.backend"
            ]
        );
    }
}
