//! What the authorizer reports as it decides, to whichever exporter a data plane has (the
//! sidecar's Prometheus registry, Envoy's stats): labels come only from these bounded enums.

use keygate_core::decide::Reason;

/// Which data plane asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend {
    /// The sidecar's Envoy ext_authz gRPC service.
    EnvoyGrpc,
    /// The sidecar's Envoy HTTP-mode endpoint.
    EnvoyHttp,
    /// The sidecar's nginx `auth_request` endpoint.
    Nginx,
    /// The Envoy dynamic module.
    EnvoyModule,
    /// The nginx module.
    NginxModule,
}

impl Frontend {
    pub const ALL: [Frontend; 5] = [
        Frontend::EnvoyGrpc,
        Frontend::EnvoyHttp,
        Frontend::Nginx,
        Frontend::EnvoyModule,
        Frontend::NginxModule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Frontend::EnvoyGrpc => "envoy_grpc",
            Frontend::EnvoyHttp => "envoy_http",
            Frontend::Nginx => "nginx",
            Frontend::EnvoyModule => "envoy_module",
            Frontend::NginxModule => "nginx_module",
        }
    }
}

/// Outcome of one Argon2 verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Ok,
    Failed,
    /// Refused without running Argon2 (the key id's failure budget is spent).
    Throttled,
}

impl Verification {
    pub const ALL: [Verification; 3] = [
        Verification::Ok,
        Verification::Failed,
        Verification::Throttled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Ok => "ok",
            Verification::Failed => "failed",
            Verification::Throttled => "throttled",
        }
    }
}

/// Receives every decision and verification. Called on request threads: keep it cheap.
pub trait Observer: Send + Sync {
    /// One decision by `frontend`: `None` for an allow, else the refusal's reason.
    fn decision(&self, frontend: Frontend, denied: Option<Reason>, seconds: f64);
    fn verification(&self, v: Verification);
    /// An Argon2 key accepted from the verification cache.
    fn cache_hit(&self);
}

/// An observer that records nothing.
pub struct Unobserved;

impl Observer for Unobserved {
    fn decision(&self, _: Frontend, _: Option<Reason>, _: f64) {}
    fn verification(&self, _: Verification) {}
    fn cache_hit(&self) {}
}
