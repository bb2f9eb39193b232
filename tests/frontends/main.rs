//! Every row of the decision table through the gRPC frontend (Envoy ext_authz), nginx's
//! `/auth` and Envoy HTTP mode's `/ext_authz/…`, against keygate running on port 0.
//!
//! One test binary, one file per concern: [`expect`] (what every frontend must answer, and
//! the check that asks them all), [`denials`], [`allow`], [`not_ready`] (a table never
//! loaded), [`hostile`] (hostile HTTP input), [`argon2`] (the verification cache and budget).

#[path = "../common/mod.rs"]
mod common;

mod allow;
mod argon2;
mod denials;
mod expect;
mod hostile;
mod not_ready;
