//! Hostile input against the real listeners of keygate running in-process: the HTTP listener
//! (`/auth` for nginx, `/ext_authz/…` for Envoy HTTP mode) fed raw bytes over TCP, and the
//! gRPC frontend fed `CheckRequest`s through a tonic client.
//!
//! Each row asserts the documented answer (401 for credential problems, 403 `no_route` for a
//! valid key with a target that is not a path, 431/400/414 where hyper refuses the request
//! before keygate sees it) and that a valid request is still allowed afterwards. A last test
//! sends hundreds of 1 MiB requests and checks the process's resident memory stays bounded.
//!
//! One test binary, one file per concern: [`support`] (the keys, the rows' answers and the
//! gRPC client every test shares), [`http`] (the HTTP listener), [`grpc`] (the gRPC
//! frontend), [`memory`] (resident memory under 1 MiB requests).

#[path = "../common/mod.rs"]
mod common;

mod grpc;
mod http;
mod memory;
mod support;
