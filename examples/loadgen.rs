//! A direct load generator for the Envoy ext_authz v3 gRPC `Check` API: a fixed number of
//! concurrent streams spread over a few HTTP/2 connections, for a fixed time, as Envoy's
//! ext_authz filter would call keygate (or any other authorization server).
//!
//! ```text
//! cargo run --release --example loadgen -- --addr 127.0.0.1:9001 \
//!     --connections 4 --concurrency 64 --seconds 10 \
//!     --header "authorization: Bearer tk_live_…"
//! ```
//!
//! Every answer must have the expected gRPC status (`--expect ok`, the default, or `denied`
//! for any non-OK status); a transport error or an unexpected status counts as an error, and
//! any error makes the run fail (exit 1), so a run that measured denials is never mistaken for
//! one that measured decisions. `--check` sends one request and reports its status.
//!
//! The last line of output is machine-readable, `key=value` pairs:
//! `decisions= seconds= rate= p50_us= p99_us= p999_us= max_us= errors= response_bytes= total=`
//! (`total`: answers including the warm-up's, for CPU-per-decision figures).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use prost::Message;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser, Debug)]
#[command(about = "Load generator for the ext_authz v3 gRPC Check API")]
struct Args {
    /// The authorization server's gRPC address.
    #[arg(long, default_value = "127.0.0.1:9001")]
    addr: String,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Concurrent streams in all (spread evenly over the connections).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The original request's method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The original request's path.
    #[arg(long, default_value = "/v1/ping")]
    path: String,
    /// A header of the original request, `name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// A file of credential headers, one `name: value` per line: requests go through them in
    /// turn (each added to the `--header`s), as a client holding many keys would send them.
    #[arg(long)]
    keys_file: Option<std::path::PathBuf>,
    /// The status every answer must have.
    #[arg(long, value_enum, default_value_t = Expect::Ok)]
    expect: Expect,
    /// Send one request, print its status, and exit (0 if it is the expected one).
    #[arg(long)]
    check: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Expect {
    /// gRPC status OK (allowed).
    Ok,
    /// Any other status (denied).
    Denied,
}

/// A request as Envoy's ext_authz filter sends it for a plain HTTP/1.1 GET: lowercased
/// header names, pseudo-headers in the same map, the usual proxy headers.
fn check_request(args: &Args, extra: Option<&str>) -> Result<CheckRequest, String> {
    let mut headers: HashMap<String, String> = [
        (":authority", "api.example"),
        (":method", args.method.as_str()),
        (":path", args.path.as_str()),
        (":scheme", "http"),
        ("user-agent", "loadgen"),
        ("accept", "*/*"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "3f1c2a5e-8d4b-4c6f-9a7e-0b1d2c3e4f50"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for h in args.headers.iter().map(String::as_str).chain(extra) {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: expected `name: value`"))?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        headers
            .entry(k)
            .and_modify(|e| {
                e.push(',');
                e.push_str(v)
            })
            .or_insert_with(|| v.to_string());
    }
    Ok(CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    id: "12345678901234567890".into(),
                    method: args.method.clone(),
                    path: args.path.clone(),
                    host: "api.example".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    })
}

fn expected(expect: Expect, resp: &CheckResponse) -> bool {
    let code = resp.status.as_ref().map_or(0, |s| s.code);
    (code == tonic::Code::Ok as i32) == (expect == Expect::Ok)
}

async fn connect(addr: &str) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// What one stream saw during the measured window.
#[derive(Default)]
struct Tally {
    /// Latencies in nanoseconds.
    latencies: Vec<u64>,
    /// Answers received, warm-up included.
    total: u64,
    errors: u64,
    first_error: Option<String>,
    response_bytes: usize,
}

/// Where a stream is in the shared list of requests: it starts at `first` and steps by `step`.
struct Turns {
    reqs: std::sync::Arc<Vec<CheckRequest>>,
    first: usize,
    step: usize,
}

async fn stream(
    mut client: AuthorizationClient<Channel>,
    turns: Turns,
    expect: Expect,
    measure_from: Instant,
    end: Instant,
) -> Tally {
    let mut t = Tally::default();
    let mut i = turns.first;
    loop {
        let start = Instant::now();
        if start >= end {
            return t;
        }
        let req = turns.reqs[i % turns.reqs.len()].clone();
        i = i.wrapping_add(turns.step);
        let r = client.check(req).await;
        let done = Instant::now();
        let problem = match r {
            Ok(resp) => {
                let resp = resp.into_inner();
                t.response_bytes = resp.encoded_len();
                (!expected(expect, &resp)).then(|| format!("unexpected answer: {:?}", resp.status))
            }
            Err(e) => Some(format!("gRPC error: {e}")),
        };
        t.total += 1;
        if let Some(p) = problem {
            t.errors += 1;
            t.first_error.get_or_insert(p);
        } else if start >= measure_from {
            t.latencies.push((done - start).as_nanos() as u64);
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

async fn run(args: Args) -> Result<(), String> {
    let reqs = match &args.keys_file {
        None => vec![check_request(&args, None)?],
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--keys-file {}: {e}", path.display()))?;
            let reqs = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| check_request(&args, Some(l)))
                .collect::<Result<Vec<_>, _>>()?;
            if reqs.is_empty() {
                return Err(format!("--keys-file {}: no header in it", path.display()));
            }
            reqs
        }
    };
    let req = reqs[0].clone();
    let reqs = std::sync::Arc::new(reqs);
    if args.check {
        let mut client = AuthorizationClient::new(connect(&args.addr).await?);
        let resp = client
            .check(req)
            .await
            .map_err(|e| format!("gRPC error: {e}"))?
            .into_inner();
        let code = resp.status.as_ref().map_or(0, |s| s.code);
        println!(
            "status={} ({:?}) response_bytes={}",
            code,
            tonic::Code::from(code),
            resp.encoded_len()
        );
        return if expected(args.expect, &resp) {
            Ok(())
        } else {
            Err(format!("expected {:?}, got status {code}", args.expect))
        };
    }
    if args.connections == 0 || args.concurrency < args.connections {
        return Err("need 1 ≤ connections ≤ concurrency".into());
    }
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(connect(&args.addr).await?);
    }
    let measure_from = Instant::now() + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let client = AuthorizationClient::new(channels[i % channels.len()].clone());
            let turns = Turns {
                reqs: reqs.clone(),
                first: i,
                step: args.concurrency,
            };
            tokio::spawn(stream(client, turns, args.expect, measure_from, end))
        })
        .collect();
    let mut all = Vec::new();
    let (mut total, mut errors, mut first_error, mut response_bytes) = (0, 0, None, 0);
    for t in tasks {
        let t = t.await.map_err(|e| format!("stream task failed: {e}"))?;
        all.extend(t.latencies);
        total += t.total;
        errors += t.errors;
        first_error = first_error.or(t.first_error);
        response_bytes = response_bytes.max(t.response_bytes);
    }
    all.sort_unstable();
    let rate = all.len() as f64 / args.seconds;
    println!(
        "{} streams over {} connections to {}, {} s (after {} s warm-up)",
        args.concurrency, args.connections, args.addr, args.seconds, args.warmup
    );
    println!(
        "decisions/s {:.0}   p50 {:.1} µs   p99 {:.1} µs   p99.9 {:.1} µs   max {:.1} µs   \
         response {} bytes   errors {}",
        rate,
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        percentile(&all, 99.9),
        percentile(&all, 100.0),
        response_bytes,
        errors
    );
    println!(
        "decisions={} seconds={} rate={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} \
         errors={} response_bytes={} total={}",
        all.len(),
        args.seconds,
        rate,
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        percentile(&all, 99.9),
        percentile(&all, 100.0),
        errors,
        response_bytes,
        total
    );
    match first_error {
        Some(e) => Err(format!("{errors} requests failed; first: {e}")),
        None if all.is_empty() => Err("no request completed in the measured window".into()),
        None => Ok(()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
