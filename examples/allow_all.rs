//! The cheapest possible authorization server, as a baseline for keygate's benchmarks
//! (`bench/run.sh`): it allows everything without looking at the request.
//!
//! ```text
//! cargo run --release --example allow_all -- grpc 127.0.0.1:9101   # ext_authz v3 Check: OK
//! cargo run --release --example allow_all -- http 127.0.0.1:9102   # any request: 200, empty
//! ```
//!
//! `grpc-identity` and `http-identity` answer the same, but carry a constant answer shaped like
//! keygate's allow for a key without scopes or plan: the identity headers (key id, account),
//! the headers to remove (the credential headers and the two unset identity headers) and, over
//! gRPC, the identity as dynamic metadata. Set against keygate, they separate what the proxy
//! spends on applying an allow's contents from what keygate spends on deciding it. To find
//! which part costs the proxy what, `ALLOW_ALL_PARTS` picks the parts of the gRPC answer
//! (comma-separated, any of `headers`, `remove`, `metadata`; all three by default).
//!
//! It is built from the same parts as keygate's listeners (tonic's server with `TCP_NODELAY`
//! for gRPC; hyper-util's HTTP/1.1 + h2c server for HTTP; tokio's default multi-threaded
//! runtime), so a benchmark against it measures what keygate's decisions cost, not a
//! different server stack.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The identity a keygate allow carries for the benchmark's keys (a 12-character key id, the
/// account, no scopes, no plan), and the headers it names for removal.
const IDENTITY: [(&str, &str); 2] = [
    ("x-keygate-key-id", "Ab3dEf6hIj9k"),
    ("x-keygate-account", "bench"),
];
const REMOVE: [&str; 4] = [
    "x-api-key",
    "authorization",
    "x-keygate-scopes",
    "x-keygate-plan",
];

struct AllowAll {
    answer: CheckResponse,
}

impl AllowAll {
    fn new(identity: bool) -> AllowAll {
        let parts = std::env::var("ALLOW_ALL_PARTS")
            .unwrap_or_else(|_| "headers,remove,metadata".to_string());
        let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
        let ok = Some(rpc::Status {
            code: tonic::Code::Ok as i32,
            ..Default::default()
        });
        if !identity {
            return AllowAll {
                answer: CheckResponse {
                    status: ok,
                    ..Default::default()
                },
            };
        }
        #[allow(deprecated)]
        let headers: Vec<_> = IDENTITY
            .iter()
            .map(|(k, v)| HeaderValueOption {
                header: Some(HeaderValue {
                    key: k.to_string(),
                    value: v.to_string(),
                    raw_value: Vec::new(),
                }),
                append: None,
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                keep_empty_value: false,
            })
            .collect();
        let fields = [("key_id", IDENTITY[0].1), ("account", IDENTITY[1].1)]
            .into_iter()
            .map(|(k, v)| {
                let v = Value {
                    kind: Some(Kind::StringValue(v.to_string())),
                };
                (k.to_string(), v)
            })
            .collect();
        let remove = REMOVE.iter().map(|h| h.to_string()).collect();
        AllowAll {
            answer: CheckResponse {
                status: ok,
                dynamic_metadata: part("metadata").then_some(Struct { fields }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: if part("headers") { headers } else { Vec::new() },
                    headers_to_remove: if part("remove") { remove } else { Vec::new() },
                    ..Default::default()
                })),
            },
        }
    }
}

#[tonic::async_trait]
impl Authorization for AllowAll {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.answer.clone()))
    }
}

async fn serve_grpc(listener: TcpListener, identity: bool) -> anyhow::Result<()> {
    // As keygate does: tcp_nodelay on the builder is ignored for an incoming stream.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(AllowAll::new(identity)))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// 200 with an empty body; with `identity`, also keygate's identity headers, and for Envoy's
/// HTTP mode (any path but nginx's `/auth`) `x-envoy-auth-headers-to-remove`.
fn http_answer(identity: bool, path: &str) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::new()));
    if identity {
        let h = r.headers_mut();
        for (k, v) in IDENTITY {
            h.insert(k, http::HeaderValue::from_static(v));
        }
        if path != "/auth" {
            h.insert(
                "x-envoy-auth-headers-to-remove",
                http::HeaderValue::from_static(
                    "x-api-key,authorization,x-keygate-scopes,x-keygate-plan",
                ),
            );
        }
    }
    r
}

async fn serve_http(listener: TcpListener, identity: bool) -> anyhow::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("allow_all: accept failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let r = http_answer(identity, req.uri().path());
            async move { Ok::<_, Infallible>(r) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: allow_all grpc|http|grpc-identity|http-identity ADDR   \
         (e.g. allow_all grpc 127.0.0.1:9101)"
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, addr] = args.as_slice() else {
        usage()
    };
    let addr: SocketAddr = addr.parse().unwrap_or_else(|_| usage());
    let listener = TcpListener::bind(addr).await?;
    eprintln!("allow_all: {mode} on {}", listener.local_addr()?);
    match mode.as_str() {
        "grpc" => serve_grpc(listener, false).await,
        "http" => serve_http(listener, false).await,
        "grpc-identity" => serve_grpc(listener, true).await,
        "http-identity" => serve_http(listener, true).await,
        _ => usage(),
    }
}
