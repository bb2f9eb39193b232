//! The echo upstream: answers every request with what it saw, and remembers it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// How many requests the echo upstream keeps for `Echo::seen`.
const SEEN_KEPT: usize = 10_000;

/// What the echo upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

/// An HTTP/1.1 upstream on 127.0.0.1:0 that answers every request with 200 and a JSON body
/// `{"method", "uri", "headers": {name: [values]}, "body"}` and `x-echo: <its port>` (so a
/// reply is known to come from this upstream), and remembers what it saw (the first
/// `SEEN_KEPT` requests; all of them are counted, so load tests can run for long).
pub struct Echo {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    pub async fn start() -> Echo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = addr.port().to_string();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let count: Arc<AtomicU64> = Arc::default();
        let (log, counter) = (seen.clone(), count.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, counter) = (log.clone(), counter.clone());
                let token = token.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (log, counter) = (log.clone(), counter.clone());
                        let token = token.clone();
                        async move {
                            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
                            for (k, v) in req.headers() {
                                headers
                                    .entry(k.as_str().to_string())
                                    .or_default()
                                    .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
                            }
                            let method = req.method().to_string();
                            let uri = req.uri().to_string();
                            let body = match req.into_body().collect().await {
                                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                                Err(e) => format!("<body error: {e}>"),
                            };
                            let s = Seen {
                                method,
                                uri,
                                headers,
                                body,
                            };
                            let body = serde_json::json!({
                                "method": s.method,
                                "uri": s.uri,
                                "headers": s.headers,
                                "body": s.body,
                            })
                            .to_string();
                            let mut log = log.lock().unwrap();
                            if log.len() < SEEN_KEPT {
                                log.push(s);
                            }
                            counter.fetch_add(1, Ordering::Relaxed);
                            drop(log);
                            let resp = http::Response::builder()
                                .status(200)
                                .header("content-type", "application/json")
                                .header("x-echo", token)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Echo {
            addr,
            seen,
            count,
            task,
        }
    }

    /// How many requests the upstream has answered so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Every request the upstream has seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}
