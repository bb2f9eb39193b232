//! What every front must leave behind: no key in anything the proxy wrote.

use crate::proxy::fronts::Setup;

/// Envoy's Prometheus stats.
/// No key appears in anything the proxy wrote.
pub fn assert_no_secret(s: &Setup, keys: &[&str]) {
    let logs = s.proxy.logs();
    for k in keys {
        assert!(
            !logs.contains(k),
            "{:?}: a key reached the proxy's logs",
            s.front
        );
    }
}
