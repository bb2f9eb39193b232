//! Benchmark 2: the cold load, measured in a fresh child process.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate::core::key::{KeyHash, KeyRecord};
use keygate::core::table::{KeyEntry, Table};
use keygate::store::Store;
use serde_json::{Value, json};

use crate::cold_table::cold_record;
use crate::counting::{count_start, count_stop, trim};
use crate::measure::{loadavg, median, ms, proc_status, rss_bytes};
use crate::redis_server::connect;
use crate::sidecar::{decide, settings_for, wait_loaded};
use crate::{CHILD_FLAG, COLD_KEYS, RESULT_TAG};

/// Theoretical bytes per key of the table at `n` keys, from the type sizes and hashbrown's
/// growth (buckets double when 7/8 full) and glibc's chunk rounding.
pub(crate) fn table_model(n: usize) -> Value {
    fn buckets(n: usize) -> usize {
        // Grown one insert at a time: the smallest power of two whose 7/8 holds `n`.
        let mut b = 8;
        while b / 8 * 7 < n {
            b *= 2;
        }
        b
    }
    fn chunk(request: usize) -> usize {
        (request + 8).div_ceil(16).max(2) * 16
    }
    let entry = size_of::<KeyEntry>();
    let arc_entry = 16 + entry;
    // Each index holds bare entry pointers (the key is read from the entry).
    let slot = size_of::<Arc<KeyEntry>>();
    let b = buckets(n);
    let index = (b * (slot + 1) + 16) as f64 / n as f64;
    let total = chunk(arc_entry) as f64 + 2.0 * index;
    json!({
        "size_of_KeyEntry": entry,
        "size_of_KeyHash": size_of::<KeyHash>(),
        "arc_KeyEntry_request": arc_entry,
        "arc_KeyEntry_chunk": chunk(arc_entry),
        "buckets": b,
        "slot": slot,
        "index_per_key": index,
        "total_per_key": total,
        "size_of_KeyRecord": size_of::<KeyRecord>(),
    })
}

/// One cold load, in this (fresh) process: the end-to-end time to ready and RSS, then each
/// phase on its own, then the heap bytes of the loaded state and of the table.
pub(crate) async fn cold_child(url: &str) -> Value {
    let settings = settings_for(url);
    let n = COLD_KEYS as f64;
    let load_at_start = loadavg();

    // End to end: a sidecar started cold, polled until its table is loaded.
    trim();
    let rss_before = rss_bytes();
    let t0 = Instant::now();
    let running = keygate::server::start(settings.clone(), None)
        .await
        .expect("start sidecar");
    let replica = running.authorizer.replica.clone();
    wait_loaded(&replica, Duration::from_secs(300)).await;
    let ready_s = t0.elapsed().as_secs_f64();
    let rss_ready = rss_bytes();
    let table: Arc<Table> = Arc::clone(&replica.snapshot());
    assert_eq!(table.len(), COLD_KEYS);
    let (rec0, key0) = cold_record(0);
    assert_eq!(
        decide(&running.authorizer, &format!("Bearer {key0}")).await,
        Ok(()),
        "a loaded key is allowed"
    );
    let rss_peak = proc_status("VmHWM:");
    // The follower drops the loaded state right after publishing the table (about a second
    // for 1M records, measured below): wait well past that, then read RSS as the process
    // keeps it, and again once glibc has returned its free pages.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_settled = rss_bytes();
    trim();
    let rss_trimmed = rss_bytes();

    // What one change costs a follower at this size (the table is cloned, then patched).
    let mut revoked = rec0.clone();
    revoked.revoked_at = Some(1_800_000_000);
    revoked.version = 2;
    let (mut change_ms, mut drop_ms) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let next = table.with_changes(
            &settings.policy.schemes,
            &settings.policy.plans,
            std::slice::from_ref(&revoked),
            &[],
        );
        change_ms.push(ms(t.elapsed()));
        let t = Instant::now();
        drop(next);
        drop_ms.push(ms(t.elapsed()));
    }
    drop(table);
    running.shutdown().await;
    drop(replica);
    trim();

    // Phase 1: a bare HSCAN with COUNT 10000 as keygate issues it, values kept as bytes.
    let mut con = connect(url).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut con)
        .await
        .expect("CONFIG RESETSTAT");
    let t = Instant::now();
    let mut raw: Vec<Vec<u8>> = Vec::with_capacity(2 * COLD_KEYS);
    let (mut cursor, mut round_trips) = (0u64, 0usize);
    loop {
        let (next, items): (u64, Vec<Vec<u8>>) = redis::cmd("HSCAN")
            .arg("{keygate}:keys")
            .arg(cursor)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut con)
            .await
            .expect("HSCAN");
        raw.extend(items);
        round_trips += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let hscan_ms = ms(t.elapsed());
    // What Redis itself spent in those HSCANs (the rest is transfer and the client).
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .expect("INFO commandstats");
    let hscan_server_ms = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_hscan:"))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("usec=")))
        .and_then(|u| u.parse::<f64>().ok())
        .map_or(f64::NAN, |us| us / 1e3);
    let json_bytes: usize = raw.iter().skip(1).step_by(2).map(Vec::len).sum();
    let id_bytes: usize = raw.iter().step_by(2).map(Vec::len).sum();
    assert_eq!(raw.len(), 2 * COLD_KEYS);

    // Phase 2: UTF-8 check and JSON parse of every record (keygate parses `String`s).
    let t = Instant::now();
    let mut parsed: Vec<(String, KeyRecord)> = Vec::with_capacity(COLD_KEYS);
    let mut it = raw.into_iter();
    while let (Some(id), Some(js)) = (it.next(), it.next()) {
        let id = String::from_utf8(id).expect("UTF-8 id");
        let js = String::from_utf8(js).expect("UTF-8 record");
        let rec: KeyRecord = serde_json::from_str(&js).expect("record JSON");
        parsed.push((id, rec));
    }
    let parse_ms = ms(t.elapsed());

    // Phase 3: the records into the state's BTreeMap, as keygate's loader does.
    let t = Instant::now();
    let mut keys = BTreeMap::new();
    for (id, rec) in parsed {
        keys.insert(id, rec);
    }
    let btree_ms = ms(t.elapsed());
    drop(keys);
    trim();

    // Phase 1+2+3 as keygate runs them (interleaved per batch): Store::load.
    let store = Store::open(&settings.store).expect("open store");
    let t = Instant::now();
    let state = store.load().await.expect("Store::load");
    let store_load_ms = ms(t.elapsed());
    assert_eq!(state.keys.len(), COLD_KEYS);

    // Phase 4: the decision table from the state.
    let t = Instant::now();
    let built = Table::build(
        &settings.policy.schemes,
        &settings.policy.plans,
        state.keys.values(),
        state.accounts.values(),
        None,
    );
    let build_ms = ms(t.elapsed());
    let t = Instant::now();
    drop(built);
    let table_drop_ms = ms(t.elapsed());
    let t = Instant::now();
    drop(state);
    let state_drop_ms = ms(t.elapsed());
    trim();

    // Heap accounting (counting allocator on; not timed): the loaded state, then the table.
    count_start();
    let state = store.load().await.expect("Store::load");
    // Let the connection's driver task notice it was dropped and free its buffers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (state_req, state_heap, state_allocs) = count_stop();
    count_start();
    let built = Table::build(
        &settings.policy.schemes,
        &settings.policy.plans,
        state.keys.values(),
        state.accounts.values(),
        None,
    );
    let (table_req, table_heap, table_allocs) = count_stop();
    assert_eq!(built.len(), COLD_KEYS);
    drop(state);
    trim();
    let rss_table_only = rss_bytes();
    drop(built);
    trim();
    let rss_none = rss_bytes();

    json!({
        "loadavg": load_at_start,
        "ready_s": ready_s,
        "rss_before_mb": rss_before / 1e6,
        "rss_ready_mb": rss_ready / 1e6,
        "rss_ready_per_key": (rss_ready - rss_before) / n,
        "rss_peak_per_key": (rss_peak - rss_before) / n,
        "rss_settled_per_key": (rss_settled - rss_before) / n,
        "rss_trimmed_per_key": (rss_trimmed - rss_before) / n,
        "rss_table_only_per_key": (rss_table_only - rss_none) / n,
        "with_changes_ms": median(change_ms),
        "with_changes_drop_ms": median(drop_ms),
        "hscan_ms": hscan_ms,
        "hscan_server_ms": hscan_server_ms,
        "hscan_round_trips": round_trips,
        "json_bytes_per_key": json_bytes as f64 / n,
        "id_bytes_per_key": id_bytes as f64 / n,
        "parse_ms": parse_ms,
        "btree_ms": btree_ms,
        "store_load_ms": store_load_ms,
        "build_ms": build_ms,
        "table_drop_ms": table_drop_ms,
        "state_drop_ms": state_drop_ms,
        "state_req_per_key": state_req / n,
        "state_heap_per_key": state_heap / n,
        "state_allocs_per_key": state_allocs / n,
        "table_req_per_key": table_req / n,
        "table_heap_per_key": table_heap / n,
        "table_allocs_per_key": table_allocs / n,
    })
}

pub(crate) fn run_cold_child(url: &str) -> Value {
    let exe = std::env::current_exe().expect("path of this benchmark");
    let out = Command::new(exe)
        .arg(CHILD_FLAG)
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .expect("run the cold-load child");
    assert!(out.status.success(), "cold-load child failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_TAG))
        .expect("the child printed its result");
    serde_json::from_str(line).expect("child result JSON")
}
