//! `listen`: the sidecar's listener addresses and their TLS. An in-proxy module reads the same
//! file and ignores this section.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::Problems;

/// Listener addresses; each is `ip:port`, or absent to turn the listener off.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawListen {
    /// Envoy ext_authz v3 gRPC.
    pub grpc: Option<String>,
    /// `/auth`, `/ext_authz/…`, `/healthz`, `/readyz`, `/metrics`.
    pub http: Option<String>,
    /// `/api/…` key management.
    pub admin: Option<String>,
    /// Serve every listener over TLS with this certificate and key (PEM).
    pub tls: Option<RawTls>,
}

impl Default for RawListen {
    fn default() -> Self {
        RawListen {
            grpc: Some("127.0.0.1:9001".into()),
            http: Some("127.0.0.1:9002".into()),
            admin: Some("127.0.0.1:9003".into()),
            tls: None,
        }
    }
}

/// `listen.tls` as written.
#[derive(Debug, Deserialize)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
}

/// PEM files for the listeners' TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The compiled section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listen {
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub tls: Option<TlsFiles>,
}

pub fn compile(raw: &RawListen, p: &mut Problems) -> Listen {
    Listen {
        grpc: addr("listen.grpc", &raw.grpc, p),
        http: addr("listen.http", &raw.http, p),
        admin: addr("listen.admin", &raw.admin, p),
        tls: raw.tls.as_ref().map(|t| TlsFiles {
            cert_file: PathBuf::from(&t.cert_file),
            key_file: PathBuf::from(&t.key_file),
        }),
    }
}

fn addr(field: &str, v: &Option<String>, p: &mut Problems) -> Option<SocketAddr> {
    let v = v.as_deref()?;
    match v.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(field, format!("`{v}` is not an ip:port address"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_parsed_or_named() {
        let mut p = Problems::default();
        let raw = RawListen {
            grpc: Some("not-an-address".into()),
            admin: None,
            ..RawListen::default()
        };
        let l = compile(&raw, &mut p);
        assert_eq!(l.http, Some("127.0.0.1:9002".parse().unwrap()));
        assert_eq!((l.grpc, l.admin), (None, None));
        assert_eq!(p.fields(), ["listen.grpc"]);
    }
}
