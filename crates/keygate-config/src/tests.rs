//! The whole file: the shipped example loads, every problem is reported at once with its
//! field, unknown fields are named.

use super::*;

const EXAMPLE: &str = include_str!("../../../config/keygate.yaml");

#[test]
fn shipped_example_loads() {
    let s = Settings::from_yaml(EXAMPLE).expect("example config");
    assert_eq!(s.policy.schemes.len(), 2);
    assert_eq!(s.policy.routes.len(), 4);
    assert!(!s.policy.plans["free"].api_access);
    assert_eq!(s.policy.plans["starter"].max_keys, Some(4));
    assert_eq!(s.grpc, Some("127.0.0.1:9001".parse().unwrap()));
}

fn fields(text: &str) -> Vec<String> {
    match Settings::from_yaml(text) {
        Err(ConfigError::Invalid(p)) => p.into_iter().map(|p| p.field).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn every_problem_is_reported_at_once_with_its_field() {
    let text = r#"
listen: { grpc: "not-an-address", http: 127.0.0.1:1 }
store: { backend: file, path: x.json, colour: blue }
schemes:
  - { name: a, header: x-api-key, key_prefix: a_, hash: md5 }
  - { name: a, header: authorization, key_prefix: b_, hash: sha256 }
plans: { p: { max_keys: 0 } }
routes:
  - { path_prefix: /, schemes: [nope] }
identity_headers: { account: "bad name" }
shutdown: { timeout_seconds: 0 }
"#;
    let f = fields(text);
    for want in [
        "listen.grpc",
        "store.colour",
        "schemes[0].hash",
        "schemes[1].name",
        "plans.p.max_keys",
        "routes[0].schemes[0]",
        "identity_headers.account",
        "shutdown.timeout_seconds",
    ] {
        assert!(f.iter().any(|x| x == want), "missing {want} in {f:?}");
    }
}

#[test]
fn unknown_top_level_field_is_named() {
    let text = EXAMPLE.to_string() + "\nextra_thing: 1\n";
    assert_eq!(fields(&text), vec!["extra_thing".to_string()]);
}

#[test]
fn overlapping_prefixes_on_one_header_are_refused() {
    let text = r#"
schemes:
  - { name: a, header: x-api-key, key_prefix: tk_, hash: sha256 }
  - { name: b, header: x-api-key, key_prefix: tk_live_, hash: sha256 }
routes: [ { path_prefix: / } ]
"#;
    assert_eq!(fields(text), vec!["schemes[1].key_prefix".to_string()]);
}

#[test]
fn type_errors_are_reported() {
    assert!(!fields("routes: 5\n").is_empty());
}
