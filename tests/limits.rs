//! The listeners' bounds against a client that tries to exhaust keygate, on `keygate serve` as
//! a process: the connection cap, the idle timeout, the HTTP/1 header read timeout (slow
//! headers), HTTP/2 streams per connection and bursts of stream resets (the "rapid reset"
//! pattern), and repeated guesses of the admin token. Each test also shows that a well-behaved
//! client is still served.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::process::Proc;
use common::{ADMIN_TOKEN, http_call, metric, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(20);

async fn metrics(p: &Proc) -> String {
    http_call(p.http, "GET", "/metrics", &[]).await.body
}

async fn metric_of(p: &Proc, name: &str) -> f64 {
    metric(&metrics(p).await, name)
}

/// Reads until the peer closes the connection (or resets it); `Err` with what was read if the
/// deadline passes first.
async fn read_to_close(
    s: &mut (impl tokio::io::AsyncRead + Unpin),
    deadline: Duration,
) -> Result<Vec<u8>, Vec<u8>> {
    let mut buf = Vec::new();
    let r = tokio::time::timeout(deadline, async {
        loop {
            match s.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    match r {
        Ok(()) => Ok(buf),
        Err(_) => Err(buf),
    }
}

/// A `Check` through a fresh gRPC connection answers (a denial for no key is an answer).
async fn grpc_answers(addr: SocketAddr) -> bool {
    let fut = async {
        let mut c = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
            format!("http://{addr}"),
        )
        .await
        .ok()?;
        c.check(common::check_request("GET", "/v1/x", &[]))
            .await
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_at_once() {
    let p = Proc::start("\nlimits:\n  max_connections: 20\n", &[]).await;
    let grpc = p.grpc.unwrap();
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(grpc).await.unwrap());
    }
    wait_until("20 gRPC connections open", DEADLINE, || async {
        metric_of(&p, "keygate_connections_open{listener=\"grpc\"}").await == 20.0
    })
    .await;
    // The 21st is accepted by the kernel and closed by keygate without a byte.
    let mut extra = TcpStream::connect(grpc).await.unwrap();
    let got = read_to_close(&mut extra, DEADLINE).await;
    assert_eq!(got, Ok(Vec::new()), "a connection past the cap was served");
    assert_eq!(
        metric_of(&p, "keygate_connections_refused_total{listener=\"grpc\"}").await,
        1.0
    );
    assert!(!grpc_answers(grpc).await, "served past the cap");
    // One closes: the next is served.
    idle.pop();
    wait_until("a slot to free", DEADLINE, || async {
        metric_of(&p, "keygate_connections_open{listener=\"grpc\"}").await < 20.0
    })
    .await;
    assert!(grpc_answers(grpc).await);
    // The HTTP listener has its own cap.
    assert_eq!(http_call(p.http, "GET", "/healthz", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let p = Proc::start(
        "\nlimits:\n  idle_timeout_seconds: 0.5\n  header_read_timeout_seconds: 60\n",
        &[],
    )
    .await;
    // HTTP/1 with nothing sent, and HTTP/2 after its preface.
    let mut h1 = TcpStream::connect(p.http).await.unwrap();
    let mut h2 = TcpStream::connect(p.grpc.unwrap()).await.unwrap();
    h2.write_all(&h2_preface()).await.unwrap();
    let start = Instant::now();
    assert!(
        read_to_close(&mut h1, DEADLINE).await.is_ok(),
        "HTTP/1 left open"
    );
    assert!(
        read_to_close(&mut h2, DEADLINE).await.is_ok(),
        "HTTP/2 left open"
    );
    println!("idle connections closed after {:?}", start.elapsed());
    // A connection in use is not idle.
    assert!(grpc_answers(p.grpc.unwrap()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let p = Proc::start("\nlimits:\n  header_read_timeout_seconds: 1\n", &[]).await;
    let mut s = TcpStream::connect(p.http).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header byte every 100 ms keeps the connection busy, never finishing the head.
    let start = Instant::now();
    let mut cut = false;
    while start.elapsed() < DEADLINE {
        if s.write_all(b"X").await.is_err() {
            cut = true;
            break;
        }
        let mut b = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&b[..n]);
                assert!(
                    !text.contains(" 200 "),
                    "answered a head never finished: {text}"
                );
            }
            Err(_) => {} // nothing yet: send the next byte
        }
    }
    assert!(cut, "a trickled head was never cut off");
    println!("trickled head cut off after {:?}", start.elapsed());
    assert_eq!(http_call(p.http, "GET", "/healthz", &[]).await.status, 200);
}

// ---- HTTP/2 frames by hand ----

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn h2_preface() -> Vec<u8> {
    let mut v = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    v.extend(frame(4, 0, 0, &[])); // SETTINGS
    v
}

/// HEADERS for a gRPC Check on `stream`, HPACK literals without indexing (no dynamic table).
fn check_headers(stream: u32) -> Vec<u8> {
    let lit = |name_index: u8, value: &str| {
        let mut v = vec![name_index, value.len() as u8];
        v.extend_from_slice(value.as_bytes());
        v
    };
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    block.extend(lit(0x04, "/envoy.service.auth.v3.Authorization/Check")); // :path
    block.extend(lit(0x01, "keygate")); // :authority
    block.extend([0x0f, 0x10]); // content-type (static index 31)
    block.push(16);
    block.extend_from_slice(b"application/grpc");
    frame(1, 0x4, stream, &block) // END_HEADERS
}

fn rst_stream(stream: u32) -> Vec<u8> {
    frame(3, 0, stream, &8u32.to_be_bytes()) // CANCEL
}

/// Frame types the server sent, in order, until it closed the connection.
fn frame_types(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = (bytes[0] as usize) << 16 | (bytes[1] as usize) << 8 | bytes[2] as usize;
        if bytes.len() < 9 + len {
            break;
        }
        out.push((bytes[3], bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_stream_resets_is_bounded() {
    let p = Proc::start("", &[]).await;
    let grpc = p.grpc.unwrap();
    assert!(grpc_answers(grpc).await);
    let (cpu0, rss0) = (p.cpu(), p.rss());
    const PAIRS: u32 = 20_000;
    let mut burst = h2_preface();
    for i in 0..PAIRS {
        let id = 2 * i + 1;
        burst.extend(check_headers(id));
        burst.extend(rst_stream(id));
    }
    let s = TcpStream::connect(grpc).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let r = wr.write_all(&burst).await;
        (r.is_ok(), wr)
    });
    let read = read_to_close(&mut rd, DEADLINE).await;
    let (sent_all, _wr) = writer.await.unwrap();
    let Ok(got) = read else {
        panic!("the connection was never closed")
    };
    let frames = frame_types(&got);
    let goaway = frames.iter().find(|(t, _)| *t == 7);
    let (cpu1, rss1) = (p.cpu(), p.rss());
    println!(
        "{PAIRS} HEADERS+RST_STREAM pairs: sent all {sent_all}, {} frames back, GOAWAY {:?}, \
         keygate CPU {:?}, RSS {} -> {} KiB",
        frames.len(),
        goaway.map(|(_, p)| p
            .get(4..8)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))),
        cpu1 - cpu0,
        rss0 / 1024,
        rss1 / 1024
    );
    // The server's SETTINGS cap the streams of one connection at limits.max_concurrent_streams.
    let settings = frames
        .iter()
        .find(|(t, p)| *t == 4 && !p.is_empty())
        .unwrap();
    let max_streams = settings.1.chunks(6).find_map(|c| {
        (u16::from_be_bytes([c[0], c[1]]) == 3)
            .then(|| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
    });
    assert_eq!(max_streams, Some(1024));
    // h2 closes such a connection with GOAWAY ENHANCE_YOUR_CALM (0xb).
    let code = goaway
        .and_then(|(_, p)| p.get(4..8))
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
    assert_eq!(code, Some(0xb), "no GOAWAY ENHANCE_YOUR_CALM: {frames:?}");
    assert!(
        rss1 < rss0 + 32 * 1024 * 1024,
        "resident memory grew by {} KiB",
        (rss1 - rss0) / 1024
    );
    // Still serving.
    assert!(grpc_answers(grpc).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_the_admin_token_is_slowed_and_the_right_token_is_not() {
    // The budget is per wall-clock minute: start well inside one, so that every guess below
    // counts against the same budget.
    let fresh = common::Deadline::new("a minute with time left in it", Duration::from_secs(70));
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60
        > 40
    {
        fresh.tick().await;
    }
    let p = Proc::start("\nlimits:\n  admin_failures_per_minute: 5\n", &[]).await;
    let admin = p.admin.unwrap();
    let list = |token: String| async move {
        let auth = format!("Bearer {token}");
        http_call(admin, "GET", "/api/keys", &[("authorization", &auth)]).await
    };
    let guesses: Vec<String> = (0..8)
        .map(|i| format!("guess-{i}-secret-attempt"))
        .collect();
    let mut statuses = Vec::new();
    for g in &guesses {
        let r = list(g.clone()).await;
        if r.status == 429 {
            assert!(r.header("retry-after").is_some(), "429 without Retry-After");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Concurrent guesses from one address queue: n of them take at least n - 1 delays.
    let start = Instant::now();
    let parallel: Vec<_> = (0..3)
        .map(|i| tokio::spawn(list(format!("parallel-{i}"))))
        .collect();
    for h in parallel {
        assert_eq!(h.await.unwrap().status, 429);
    }
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "guesses were not queued"
    );
    // The right token is answered at once, whatever the guessing.
    let r = list(ADMIN_TOKEN.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        metric_of(&p, "keygate_admin_auth_failures_total").await,
        11.0
    );
    // The refusals are logged, the guesses never.
    let log = p.log();
    assert!(log.contains("admin token refused"), "{log}");
    for g in guesses.iter().map(String::as_str).chain(["parallel-0"]) {
        assert!(!log.contains(g), "a guessed token is in the log");
    }
}
