//! The property tests, on a deterministic runner: `decide` against the model, a table never
//! loaded, and what route matching relies on in `normalize_path`.

use std::sync::atomic::{AtomicUsize, Ordering};

use keygate::core::decide::{Outcome, Reason, decide};
use keygate::core::path::normalize_path;
use keygate::core::request::Request;
use keygate::core::table::Table;
use keygate::frontend::http::HttpHeaders;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

use crate::fixture::{NOW, fixture};
use crate::generators::{path, req_spec, table_spec};
use crate::inputs::{RawHeaders, Verify, header_map, resolve_value, tables};
use crate::model::{Expected, actual, expected};

fn runner(default_cases: u32) -> TestRunner {
    let base = Config::default();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    let rng_seed = match base.rng_seed {
        RngSeed::Random => RngSeed::Fixed(0x6b65_7967_6174_6531),
        fixed => fixed,
    };
    TestRunner::new(Config {
        cases,
        rng_seed,
        failure_persistence: None,
        ..base
    })
}

fn check<T: std::fmt::Debug>(r: Result<(), proptest::test_runner::TestError<T>>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[test]
fn decide_allows_exactly_one_valid_key_for_the_route() {
    let seen = [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];
    let with_header_map = AtomicUsize::new(0);
    let mut runner = runner(3000);
    let result = runner.run(&(table_spec(), req_spec()), |(table, req)| {
        let headers: Vec<(String, Vec<u8>)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), resolve_value(v)))
            .collect();
        let want = expected(&table, &req, &headers);
        let raw = RawHeaders(headers.clone());
        let map = header_map(&headers);
        for (i, t) in tables(&table).iter().enumerate() {
            let got = actual(t, &req, &raw).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&got, &want, "table {} (0: built whole, 1: with changes)", i);
            if let Some(m) = &map {
                let got = actual(t, &req, &HttpHeaders(m)).map_err(TestCaseError::fail)?;
                prop_assert_eq!(&got, &want, "through http::HeaderMap");
            }
        }
        if map.is_some() {
            with_header_map.fetch_add(1, Ordering::Relaxed);
        }
        let slot = match want {
            Expected::Allow(_) => 0,
            Expected::Unauthorized => 1,
            Expected::Forbidden | Expected::BadPath => 2,
        };
        seen[slot].fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    check(result);
    let [allow, unauth, forbid] = seen.map(|s| s.into_inner());
    eprintln!(
        "allow {allow}, 401 {unauth}, 403 {forbid}, {} through http::HeaderMap too",
        with_header_map.into_inner()
    );
    // The generators must keep exercising every outcome, not just refusals.
    let total = allow + unauth + forbid;
    for (what, n) in [("allow", allow), ("401", unauth), ("403", forbid)] {
        assert!(n * 20 >= total, "only {n} of {total} cases were {what}");
    }
}

#[test]
fn a_table_never_loaded_never_allows() {
    let mut runner = runner(1000);
    let table = Table::not_loaded();
    let result = runner.run(&req_spec(), |req| {
        let headers = RawHeaders(
            req.headers
                .iter()
                .map(|(n, v)| (n.clone(), resolve_value(v)))
                .collect(),
        );
        let s = &fixture().settings;
        let r = Request {
            method: req.method,
            path: &req.path,
            host: req.host,
            headers: &headers,
        };
        match decide(
            &s.policy.schemes,
            &s.policy.routes,
            &table,
            &r,
            NOW,
            &Verify,
        ) {
            Outcome::Deny(d) => {
                prop_assert_eq!(d.reason, Reason::NotReady);
                prop_assert_eq!(d.status(), 503);
            }
            o => prop_assert!(false, "a table never loaded answered {:?}", o),
        }
        Ok(())
    });
    check(result);
}

#[test]
fn normalized_paths_are_fixed_points_and_stay_paths() {
    // Route matching relies on these: a normalized path is a path, has no empty or dot
    // segments, keeps its non-ASCII characters as they were, and normalizing it again changes
    // nothing. Non-ASCII segments land anywhere, also across the bytes where an absolute-form
    // scheme would end (`/v1/x/é`).
    let mut runner = runner(3000);
    let result = runner.run(&path(), |p| {
        if let Ok(n) = normalize_path(&p) {
            for c in n.chars().filter(|c| !c.is_ascii()) {
                prop_assert!(p.contains(c), "{:?} -> {:?} invents {:?}", p, n, c);
            }
            prop_assert!(n.starts_with('/'), "{:?} -> {:?}", p, n);
            prop_assert!(!n.contains("//"), "{:?} -> {:?}", p, n);
            for seg in n.split('/') {
                prop_assert!(seg != "." && seg != "..", "{:?} -> {:?}", p, n);
            }
            let again = normalize_path(&n);
            prop_assert_eq!(again.as_deref(), Ok(&*n), "{:?}", p);
        }
        Ok(())
    });
    check(result);
}
