//! Path confusion through the real proxies: a table of request targets built to make keygate
//! and the application read one request differently (`..;` segments, parameters, encoded and
//! double-encoded dots and slashes, overlong UTF-8, backslashes, repeated slashes, `?` and `#`
//! carrying `../`, absolute form, a `Host` that is not the target's authority, case), sent as
//! raw bytes through Envoy (gRPC and HTTP mode) and nginx from the shipped configs, and through
//! keygate inside each of them, with a key that may only read usage.
//!
//! Each row asserts the answer every front gives. Whatever reaches the echo upstream is then
//! read by a family of model routers written here, independently of keygate's code: every
//! combination of decoding before or after resolving dots, decoding twice, stripping
//! `;parameters`, `\` as a separator, merging empty segments and ignoring case. The test fails
//! if any of them would route the request to a path the key may not call — no request reaches
//! the upstream under a route other than the one keygate allowed.
//!
//! One test binary, one file per concern: [`rows`] (the targets and the answers they must
//! get), [`fronts`] (the proxies started and their answers read), [`model`] (the model
//! routers), [`forwarded`] (every row through every front), [`http2`] (`:authority` and
//! `Host` that disagree).

#[path = "../common/mod.rs"]
mod common;
#[path = "../proxy/mod.rs"]
mod proxy;

mod forwarded;
mod fronts;
mod http2;
mod model;
mod rows;
