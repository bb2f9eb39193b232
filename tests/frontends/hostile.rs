//! Hostile HTTP input (a 64 KiB credential, non-UTF-8 bytes, a target that is not a path, a
//! thousand headers) gets the documented statuses, and keygate keeps serving.

use crate::common::Harness;
use crate::expect::bearer;

#[tokio::test]
async fn hostile_http_input_gets_documented_statuses() {
    let h = Harness::start().await;
    let live = h.key("live", "acme", None).await;
    let b = bearer(&live.key);
    let big = "a".repeat(64 * 1024);
    // A 64 KiB credential is malformed, not a crash.
    let r = h
        .http(
            "GET",
            "/auth",
            &[("x-original-uri", "/x"), ("x-api-key", &big)],
        )
        .await;
    assert_eq!(r.status, 401);
    // Non-UTF-8 and control bytes in the URI: matched by no route, still needs a key first.
    let client = reqwest_like_raw(h.http_addr(), b"GET /auth HTTP/1.1\r\nHost: x\r\nX-Original-URI: /\xff\xfe\r\nAuthorization: Bearer \xff\r\n\r\n").await;
    assert!(client.starts_with("HTTP/1.1 401"), "{client}");
    let r = h
        .http(
            "GET",
            "/auth",
            &[("x-original-uri", "not a path"), ("authorization", &b)],
        )
        .await;
    assert_eq!(r.status, 403);
    // A thousand headers: refused by the HTTP parser, not by a crash.
    let mut many = String::from("GET /auth HTTP/1.1\r\nHost: x\r\n");
    for i in 0..1000 {
        many.push_str(&format!("x-h-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let reply = reqwest_like_raw(h.http_addr(), many.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    // Still serving.
    let r = h
        .http(
            "GET",
            "/auth",
            &[("x-original-uri", "/x"), ("authorization", &b)],
        )
        .await;
    assert_eq!(r.status, 200);
}

/// Sends raw bytes and returns the first response's text.
async fn reqwest_like_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
