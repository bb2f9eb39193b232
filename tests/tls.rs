//! Listeners over TLS: the gRPC frontend, the HTTP listener and the admin API answer over
//! TLS with the configured certificate, and a plaintext client gets nothing.

mod common;

use std::sync::Arc;

use common::{Harness, check_request, config_text, test_certs};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn https_get(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    path: &str,
    headers: &str,
) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = connector.connect(name, tcp).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_listener_speaks_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certs(dir.path());
    let text = config_text(&dir.path().join("keygate.json")).replace(
        "listen:\n",
        &format!(
            "listen:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
            cert.display(),
            key.display()
        ),
    );
    let h = Harness::start_with(dir, text).await;
    let k = h.key("live", "acme", None).await;

    // gRPC over TLS, verified against the CA.
    let pem = std::fs::read(&ca).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pem))
        .domain_name("127.0.0.1");
    let grpc = h.running().grpc.unwrap();
    let channel =
        tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{}", grpc.port()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut client = AuthorizationClient::new(channel);
    let b = format!("Bearer {}", k.key);
    let r = client
        .check(check_request("GET", "/v1/x", &[("authorization", &b)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status.unwrap().code, 0);

    // HTTP listener and admin API over TLS.
    let r = https_get(
        h.http_addr(),
        &ca,
        "/auth",
        &format!("X-Original-URI: /v1/x\r\nAuthorization: {b}\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = https_get(h.http_addr(), &ca, "/auth", "X-Original-URI: /v1/x\r\n").await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let admin = h.running().admin.unwrap();
    let r = https_get(
        admin,
        &ca,
        "/api/keys",
        &format!("Authorization: Bearer {}\r\n", common::ADMIN_TOKEN),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200") && r.contains(&k.id), "{r}");

    // Plaintext gets no HTTP answer from a TLS listener.
    let mut s = tokio::net::TcpStream::connect(h.http_addr()).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}
