//! HTTP/2 requests whose `:authority` and `Host` disagree decide as they are forwarded.

use crate::common::raw::Raw;
use crate::fronts::{Front, classify, start};
use crate::model::escapes;
use crate::rows::Answer::{Pass, Scope};
use crate::rows::{KEY_SCOPES, Row, all};

/// One HTTP/2 request (prior knowledge) whose `:authority` and `Host` differ.
async fn h2_get(addr: std::net::SocketAddr, authority: &str, host: &str, key: &str) -> Raw {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{authority}/v1/account/usage"))
        .header("host", host)
        .header("authorization", format!("Bearer {key}"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let mut head = format!("HTTP/2 {status}\r\n");
    for (k, v) in resp.headers() {
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
    }
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Raw {
        status: Some(status),
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_authority_and_host_that_disagree_decide_as_forwarded() {
    let f = start().await;
    let key = f.h.key("live", "acme", Some(KEY_SCOPES)).await.key;
    f.until_every_front_sees(&key).await;
    let port = f.echo.addr.port();
    let mut failures = Vec::new();
    for (authority, host, want) in [
        ("api.example", "internal.example", Pass),
        ("internal.example", "api.example", Scope),
    ] {
        let row = Row {
            name: "HTTP/2 :authority and host differ",
            target: "/v1/account/usage",
            host,
            key: true,
            want: all(want),
        };
        // The nginx configs serve HTTP/1 only.
        let h2 = |fr: &Front| !matches!(fr, Front::Nginx | Front::NginxModule);
        for (front, proxy) in f.proxies.iter().filter(|(fr, _)| h2(fr)) {
            let before = f.echo.seen().len();
            let got = classify(&h2_get(proxy.addr, authority, host, &key).await, port);
            if let Some(up) = f.echo.seen().get(before) {
                let up_host = up.headers.get("host").and_then(|v| v.first()).unwrap();
                failures.extend(escapes(&row, *front, &up.uri, up_host));
                println!(
                    "{front:?} :authority {authority} host {host}: {got:?}, upstream Host {up_host}"
                );
            } else {
                println!("{front:?} :authority {authority} host {host}: {got:?}");
            }
            if got != want {
                failures.push(format!(
                    "{front:?} :authority {authority}, host {host}: want {want:?}, got {got:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
