//! Resident memory while both listeners refuse hundreds of 1 MiB requests.

use crate::common::raw::{request, send_raw};
use crate::support::{MEMORY, MIB, check, grpc_client, grpc_parts, hmap, setup, still_serving};

/// Resident memory of this process (keygate runs in it), in bytes.
fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_one_mebibyte_requests() {
    let _alone = MEMORY.write().await;
    let (h, k) = setup().await;
    let mut client = grpc_client(&h).await;
    let big = "a".repeat(MIB);
    let http_req = request(
        b"GET",
        b"/auth",
        &[
            (b"x-original-uri", b"/v1/x"),
            (b"authorization", big.as_bytes()),
        ],
    );
    let grpc_req = check("GET", "/v1/x", hmap(&[("authorization", &big)]));
    let round = |n: usize| {
        let (http_req, grpc_req, mut client) = (http_req.clone(), grpc_req.clone(), client.clone());
        let addr = h.http_addr();
        async move {
            for _ in 0..n {
                let r = send_raw(addr, http_req.clone()).await;
                assert_eq!(r.status, Some(431), "{}", r.head);
                let r = client.check(grpc_req.clone()).await.unwrap().into_inner();
                assert_eq!(grpc_parts(&r).1, 401);
            }
        }
    };
    // Warm up allocator caches and connection pools first.
    round(20).await;
    let before = rss();
    round(200).await;
    let after = rss();
    let growth = after.saturating_sub(before);
    eprintln!("RSS before {} MiB, after {} MiB", before / MIB, after / MIB);
    assert!(
        growth < 64 * MIB,
        "resident memory grew by {} MiB over 400 requests of 1 MiB",
        growth / MIB
    );
    still_serving(&h, &k).await;
    let r = client
        .check(check(
            "GET",
            "/v1/x",
            hmap(&[("authorization", &format!("Bearer {}", k.live))]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc_parts(&r).0, 0);
}
