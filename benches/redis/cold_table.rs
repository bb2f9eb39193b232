//! Deterministic realistic key records (the child regenerates any of them from its index), and
//! the writer of the cold-load table into Redis.

use std::time::{Duration, Instant};

use keygate::core::key::{self, KeyHash, KeyRecord};

use crate::{COLD_ACCOUNTS, COLD_KEYS, WRITE_BATCH};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// splitmix64: fast, and enough for ids and secrets that only have to look real.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn base62(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| BASE62[(self.next() % 62) as usize] as char)
            .collect()
    }
}

/// Key number `i` of the cold-load table (scheme `live`, SHA-256) and the key itself: a
/// 12-character base62 id, one of 10,000 accounts, no scopes for 93 % of keys and one of three
/// lists for the rest, a name on 10 %.
pub(crate) fn cold_record(i: usize) -> (KeyRecord, String) {
    let mut rng = Rng(0x6b65_7967_6174_6500 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let id = rng.base62(12);
    let key = format!("tk_live_{id}_{}", rng.base62(32));
    let scopes = match i % 100 {
        0..=4 => Some(vec!["tokens:read".to_string()]),
        5 => Some(vec!["tokens:read".to_string(), "tokens:write".to_string()]),
        6 => Some(vec!["usage:read".to_string()]),
        _ => None,
    };
    let mut rec = KeyRecord::new(
        id.clone(),
        format!("tk_live_{id}"),
        format!("acct-{:05}", i % COLD_ACCOUNTS),
        "live".into(),
        KeyHash::Sha256(key::sha256(key.as_bytes())),
        1_700_000_000 + (i as i64 % 31_536_000),
    );
    rec.name = (i % 10 == 3).then(|| "ci-deploy".to_string());
    rec.scopes = scopes;
    (rec, key)
}

/// Writes the cold-load table straight into Redis as keygate stores it: `{keygate}:keys` id →
/// record JSON, `{keygate}:rev` = 1. Pipelined: `WRITE_BATCH` records per round trip.
pub(crate) fn write_cold_table(url: &str) -> Duration {
    let start = Instant::now();
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect to redis");
    redis::cmd("FLUSHALL")
        .query::<()>(&mut con)
        .expect("FLUSHALL");
    for batch in (0..COLD_KEYS).step_by(WRITE_BATCH) {
        let mut pipe = redis::pipe();
        for part in (batch..(batch + WRITE_BATCH).min(COLD_KEYS)).step_by(1_000) {
            let mut hset = redis::cmd("HSET");
            hset.arg("{keygate}:keys");
            for i in part..(part + 1_000).min(COLD_KEYS) {
                let (rec, _) = cold_record(i);
                hset.arg(&rec.id)
                    .arg(serde_json::to_string(&rec).expect("record JSON"));
            }
            pipe.add_command(hset).ignore();
        }
        pipe.query::<()>(&mut con).expect("HSET batch");
    }
    redis::cmd("SET")
        .arg("{keygate}:rev")
        .arg(1)
        .query::<()>(&mut con)
        .expect("SET rev");
    let n: usize = redis::cmd("HLEN")
        .arg("{keygate}:keys")
        .query(&mut con)
        .expect("HLEN");
    assert_eq!(n, COLD_KEYS, "id collision in the generated table");
    start.elapsed()
}
