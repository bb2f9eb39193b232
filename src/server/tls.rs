//! TLS for the listeners, from the configured PEM files: one rustls config serving h2 and
//! HTTP/1.1 by ALPN, shared by every listener.

use std::sync::Arc;

/// The acceptor every listener hands its connections to.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    pub fn load(files: &crate::config::TlsFiles) -> anyhow::Result<Tls> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
        };
        let (cert_pem, key_pem) = (read(&files.cert_file)?, read(&files.key_file)?);
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.cert_file.display()))?;
        // Do not echo the key file's content in an error.
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| anyhow::anyhow!("{}: no usable private key", files.key_file.display()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("TLS certificate and key do not fit: {e}"))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
        })
    }
}
