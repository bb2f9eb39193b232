//! Benchmark 1, baselines: Redis `PING`, `XADD`→`XREAD`, and `XADD` waking a blocked `XREAD`.

use std::time::{Duration, Instant};

use crate::measure::{Dist, dist, ms};
use crate::redis_server::connect;
use crate::{RTT_SAMPLES, RTT_WARMUP};

pub(crate) struct Baselines {
    pub(crate) ping: Dist,
    pub(crate) xadd_xread: Dist,
    pub(crate) xadd_wake: Dist,
}

pub(crate) async fn baselines(url: &str) -> Baselines {
    let mut con = connect(url).await;
    let mut ping = Vec::new();
    for i in 0..RTT_WARMUP + RTT_SAMPLES {
        let t = Instant::now();
        let p: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
        assert_eq!(p, "PONG");
        if i >= RTT_WARMUP {
            ping.push(ms(t.elapsed()));
        }
    }

    // XADD then XREAD of the entry just added: two round trips, the write and the read of the
    // change log without the blocking wake-up.
    let stream = "bench:stream";
    let mut pair = Vec::new();
    let mut last = "0-0".to_string();
    for i in 0..RTT_WARMUP + RTT_SAMPLES {
        let t = Instant::now();
        let id: String = redis::cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(1_000)
            .arg("*")
            .arg("data")
            .arg("x")
            .query_async(&mut con)
            .await
            .unwrap();
        let r: redis::streams::StreamReadReply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(stream)
            .arg(&last)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(r.keys[0].ids.len(), 1);
        last = id;
        if i >= RTT_WARMUP {
            pair.push(ms(t.elapsed()));
        }
    }

    // XADD on one connection woken up a reader blocked in XREAD on another: how keygate's
    // followers hear of a change, and the floor of propagation through Redis.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let reader_url = url.to_string();
    let from = last.clone();
    let reader = tokio::spawn(async move {
        let mut con = connect(&reader_url).await;
        let mut last = from;
        loop {
            let r: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1_000)
                .arg("BLOCK")
                .arg(1_000)
                .arg("STREAMS")
                .arg(stream)
                .arg(&last)
                .query_async(&mut con)
                .await
                .unwrap();
            for e in r.iter().flat_map(|r| &r.keys).flat_map(|k| &k.ids) {
                if e.get::<String>("data").as_deref() == Some("stop") {
                    return;
                }
                last = e.id.clone();
                let _ = tx.send(Instant::now());
            }
        }
    });
    let mut wake = Vec::new();
    for i in 0..RTT_WARMUP + RTT_SAMPLES / 5 {
        // Let the reader block again before the next write.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let t = Instant::now();
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("data")
            .arg("x")
            .query_async(&mut con)
            .await
            .unwrap();
        let woke = rx.recv().await.expect("reader alive");
        if i >= RTT_WARMUP {
            wake.push(ms(woke.duration_since(t)));
        }
    }
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("data")
        .arg("stop")
        .query_async(&mut con)
        .await
        .unwrap();
    reader.await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(stream)
        .query_async(&mut con)
        .await
        .unwrap();
    Baselines {
        ping: dist(ping),
        xadd_xread: dist(pair),
        xadd_wake: dist(wake),
    }
}
