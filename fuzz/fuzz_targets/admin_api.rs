//! Bytes -> an `http::Request` -> `keygate::admin::api::router`, with the right admin token,
//! over a file store in a temporary directory (no socket).
//!
//! Input: the first line is the method, the second the request target, then `name: value`
//! header lines up to an empty line, and the rest is the body. Checked: no panic; the status
//! is one the admin API documents; every error is a JSON object `{error, message}`.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use keygate::admin::api::{Admin, router};
use keygate::admin::manage::Manager;
use keygate::config::Settings;
use keygate::store::Store;
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-admin-token";

struct Fixture {
    router: axum::Router,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // A memory-backed directory where there is one: every create writes the store file.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        let text = format!(
            r#"
store: {{ backend: file, path: {} }}
schemes:
  - {{ name: live, header: authorization, key_prefix: tk_live_, hash: sha256 }}
plans:
  starter: {{ max_keys: 4 }}
routes: [ {{ path_prefix: / }} ]
"#,
            dir.path().join("keygate.json").display()
        );
        let settings = Arc::new(Settings::from_yaml(&text).unwrap());
        let store = Store::open(&settings.store).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let manager = Manager::new(settings, store, None);
        let admin = Arc::new(Admin::new(
            manager,
            TOKEN,
            "fuzz".into(),
            10,
            prometheus::IntCounter::new("f", "f").unwrap(),
        ));
        Fixture {
            router: router(admin),
            rt,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let Ok(method) = http::Method::from_bytes(lines.next().unwrap_or_default()) else {
        return;
    };
    let Ok(uri) = http::Uri::try_from(lines.next().unwrap_or_default()) else {
        return;
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"));
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        if name != http::header::AUTHORIZATION {
            req = req.header(name, value);
        }
    }
    let Ok(req) = req.body(Full::new(Bytes::copy_from_slice(body))) else {
        return;
    };
    let mut r = f.router.clone();
    let resp = f.rt.block_on(tower_service::Service::call(&mut r, req)).unwrap();
    let status = resp.status().as_u16();
    assert!(
        [200, 201, 400, 404, 405, 409, 413].contains(&status),
        "undocumented status {status}"
    );
    if status >= 400 {
        let bytes = f.rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error body");
        let o = v.as_object().expect("an object");
        assert!(o["error"].is_string() && o["message"].is_string(), "{v}");
    }
});
