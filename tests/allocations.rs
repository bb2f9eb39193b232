//! Heap allocations of one allow, counted by a global allocator on the deciding thread: the
//! gRPC answer (decide and encode) and the HTTP answers (nginx `/auth`, Envoy HTTP mode). Each
//! is held to a budget of what the answer cannot do without, itemised below, so an allocation
//! that creeps into the allow path fails here rather than hiding in a benchmark's noise.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use keygate::admin::manage::{CreateKey, Manager};
use keygate::config::Settings;
use keygate::frontend::envoy_grpc::{Answer, EnvoyGrpc};
use keygate::metrics::Metrics;
use keygate::service::Authorizer;
use keygate::store::Store;
use keygate::store::replica::Replica;
use prost::Message;

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // try_with: the thread's locals may already be gone while it exits.
        let _ = ON.try_with(|on| {
            if on.get() {
                ALLOCS.with(|a| a.set(a.get() + 1));
            }
        });
        // SAFETY: forwarded as is.
        unsafe { System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = ON.try_with(|on| {
            if on.get() {
                ALLOCS.with(|a| a.set(a.get() + 1));
            }
        });
        // SAFETY: forwarded as is.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while `f` runs, per call, over `n` calls.
fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    ALLOCS.with(|a| a.set(0));
    ON.with(|on| on.set(true));
    for _ in 0..n {
        f();
    }
    ON.with(|on| on.set(false));
    ALLOCS.with(|a| a.get()) as f64 / n as f64
}

const CALLS: usize = 1_000;

struct Fixture {
    rt: tokio::runtime::Runtime,
    auth: Arc<Authorizer>,
    /// `Bearer` + a SHA-256 key with a scope, so three identity headers are set.
    bearer: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_path = dir.path().join("keygate.json");
    let yaml = include_str!("../config/keygate.yaml").replace(
        "data/keygate.json",
        store_path.to_str().expect("utf-8 path"),
    );
    let settings = Arc::new(Settings::from_yaml(&yaml).expect("config/keygate.yaml"));
    // One thread: every allocation of a decision is made where it is counted.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (auth, bearer) = rt.block_on(async {
        let store = Store::open(&settings.store).expect("open store");
        let replica = Arc::new(Replica::new(settings.policy.clone()));
        replica.install(&store.load().await.expect("load"));
        let manager = Manager::new(settings.clone(), store, Some(replica.clone()));
        let created = manager
            .create_key(
                "test",
                CreateKey {
                    account: "acme".into(),
                    scheme: Some("live".into()),
                    scopes: Some(vec!["tokens:read".into()]),
                    ..CreateKey::default()
                },
            )
            .await
            .expect("create key");
        let auth = Authorizer::new(settings, replica, Arc::new(Metrics::new()));
        (Arc::new(auth), format!("Bearer {}", created.key))
    });
    Fixture {
        rt,
        auth,
        bearer,
        _dir: dir,
    }
}

fn check_request(bearer: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/v1/tokens/7".into(),
                    host: "api.example.com".into(),
                    headers: [
                        ("authorization".to_string(), bearer.to_string()),
                        (":path".into(), "/v1/tokens/7".into()),
                        ("user-agent".into(), "curl/8".into()),
                    ]
                    .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[test]
fn grpc_allow_allocates_only_its_answer() {
    let f = fixture();
    let grpc = EnvoyGrpc::new(f.auth.clone());
    let req = check_request(&f.bearer);
    let mut buf = Vec::with_capacity(4096);
    let mut one = || {
        let answer = f.rt.block_on(grpc.answer(&req));
        assert!(matches!(answer, Answer::Allow(_)), "{answer:?}");
        buf.clear();
        answer.encode(&mut buf).expect("room in the buffer");
    };
    // The first calls fill the verification cache and the usage counter's entry for the key.
    for _ in 0..10 {
        one();
    }
    let n = per_call(CALLS, &mut one);
    // Nothing: the decision borrows the table's entry (an `Arc`), and the answer is encoded
    // from it straight into the send buffer.
    assert!(n <= 0.01, "{n} allocations per gRPC allow");
}

fn http_request(uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder().uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request")
}

#[test]
fn http_allows_allocate_only_their_response() {
    let f = fixture();
    let nginx: Vec<_> = (0..CALLS + 10)
        .map(|_| {
            http_request(
                "/auth",
                &[
                    ("x-original-method", "GET"),
                    ("x-original-uri", "/v1/tokens/7"),
                    ("authorization", &f.bearer),
                ],
            )
        })
        .collect();
    let envoy: Vec<_> = (0..CALLS + 10)
        .map(|_| http_request("/ext_authz/v1/tokens/7", &[("authorization", &f.bearer)]))
        .collect();
    for (name, reqs, remove_list) in [("nginx", nginx, false), ("Envoy HTTP", envoy, true)] {
        let mut reqs = reqs.into_iter();
        let mut one = || {
            let req = reqs.next().expect("a request per call");
            let r =
                f.rt.block_on(keygate::frontend::http::handle(f.auth.clone(), req))
                    .expect("infallible");
            assert_eq!(r.status(), 200, "{name}");
            assert!(r.headers().contains_key("x-keygate-scopes"));
            assert_eq!(
                r.headers().contains_key("x-envoy-auth-headers-to-remove"),
                remove_list
            );
            drop(r);
        };
        for _ in 0..10 {
            one();
        }
        let n = per_call(CALLS, &mut one);
        // The response's header map (its index and its entries), and a copy of each of the
        // three identity values set. Header names and the remove list are made at config load.
        assert!(n <= 5.01, "{n} allocations per {name} allow");
        eprintln!("{name}: {n} allocations per allow");
    }
}
