//! TLS for the listeners, from the configured PEM files: one rustls config serving h2 and
//! HTTP/1.1 by ALPN, shared by every listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the listeners' TLS could not be set up. Never holds the key file's content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a PEM certificate chain: {source}")]
    Certs {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0}: no usable private key")]
    Key(PathBuf),
    #[error("TLS certificate and key do not fit: {0}")]
    Config(#[from] rustls::Error),
}

/// The acceptor every listener hands its connections to.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    pub fn load(files: &crate::config::TlsFiles) -> Result<Tls, TlsError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let (cert_pem, key_pem) = (read(&files.cert_file)?, read(&files.key_file)?);
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Certs {
                path: files.cert_file.clone(),
                source,
            })?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| TlsError::Key(files.key_file.clone()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
        })
    }
}
