//! `routes`: which scope and schemes a request needs, by path prefix, method and host; first
//! match wins.

use keygate_core::policy::valid_scope;
use keygate_core::route::Route;
use keygate_core::scheme::Scheme;
use serde::Deserialize;

use super::Problems;

/// One `routes[]` entry as written.
#[derive(Debug, Deserialize)]
pub struct RawRoute {
    /// Matched on whole segments of the normalized path.
    pub path_prefix: String,
    /// HTTP methods (any case); absent: every method.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Exact host or `*.suffix`; absent: every host.
    #[serde(default)]
    pub host: Option<String>,
    /// The scope a key restricted to scopes must hold; absent: any valid key.
    #[serde(default)]
    pub scope: Option<String>,
    /// Names of the schemes accepted; absent: all of them.
    #[serde(default)]
    pub schemes: Option<Vec<String>>,
}

pub fn compile(raw: &[RawRoute], schemes: &[Scheme], p: &mut Problems) -> Vec<Route> {
    if raw.is_empty() {
        p.push("routes", "at least one route is required");
    }
    let mut routes = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let f = |n: &str| format!("routes[{i}].{n}");
        if !r.path_prefix.starts_with('/') {
            p.push(f("path_prefix"), "must start with /");
        }
        let methods = r.methods.as_ref().map(|ms| {
            ms.iter()
                .enumerate()
                .map(|(j, m)| {
                    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                        p.push(format!("routes[{i}].methods[{j}]"), "not an HTTP method");
                    }
                    m.to_ascii_uppercase()
                })
                .collect::<Vec<_>>()
        });
        if let Some(scope) = &r.scope
            && !valid_scope(scope)
        {
            p.push(
                f("scope"),
                "scopes are 1-128 printable ASCII characters without spaces or quotes",
            );
        }
        let accepted = match &r.schemes {
            None => (0..schemes.len()).collect(),
            Some(list) => {
                if list.is_empty() {
                    p.push(f("schemes"), "must name at least one scheme");
                }
                list.iter()
                    .enumerate()
                    .filter_map(|(j, n)| {
                        let idx = schemes.iter().position(|s| s.name == *n);
                        if idx.is_none() {
                            p.push(
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
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::scheme::HashKind;

    #[test]
    fn routes_name_their_bad_fields() {
        let schemes = [Scheme::new(
            "live".into(),
            "authorization".into(),
            "tk_".into(),
            HashKind::Sha256,
            16,
            128,
        )];
        let raw = [
            RawRoute {
                path_prefix: "v1".into(),
                methods: Some(vec!["get".into(), "G3T".into()]),
                host: Some("API.example".into()),
                scope: Some("has space".into()),
                schemes: Some(vec!["live".into(), "nope".into()]),
            },
            RawRoute {
                path_prefix: "/".into(),
                methods: None,
                host: None,
                scope: None,
                schemes: None,
            },
        ];
        let mut p = Problems::default();
        let r = compile(&raw, &schemes, &mut p);
        assert_eq!(
            r[0].methods.as_deref(),
            Some(&["GET".to_string(), "G3T".to_string()][..])
        );
        assert_eq!(r[0].host.as_deref(), Some("api.example"));
        assert_eq!(
            (r[0].schemes.clone(), r[1].schemes.clone()),
            (vec![0], vec![0])
        );
        assert_eq!(
            p.fields(),
            [
                "routes[0].path_prefix",
                "routes[0].methods[1]",
                "routes[0].scope",
                "routes[0].schemes[1]"
            ]
        );
    }
}
