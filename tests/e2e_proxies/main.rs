//! The shipped proxy configs, proven end to end: the real Envoy (ext_authz over gRPC and in HTTP
//! mode, `envoy/envoy.yaml` and `envoy/envoy-http.yaml`) and the real nginx (`auth_request`,
//! `config/nginx.conf`) in front of an echo upstream, with keygate running in-process; and
//! keygate inside each proxy (`envoy/envoy-module.yaml`, `config/nginx-module.conf` with one
//! and with two workers) following the in-process keygate's store. Only addresses (and the
//! modules' paths and worker counts) are substituted in the configs. A missing Envoy or nginx
//! fails the tests.
//!
//! One test binary, one file per concern: [`allow`] (what an allowed request brings the
//! upstream, the metrics and the access log), [`denials`] (every denial row), [`fails_closed`]
//! (keygate unreachable), and [`checks`] (that no key reaches the proxy's logs).

#[path = "../common/mod.rs"]
mod common;
#[path = "../proxy/mod.rs"]
mod proxy;

mod allow;
mod checks;
mod denials;
mod fails_closed;
