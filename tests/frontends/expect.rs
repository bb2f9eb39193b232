//! What every frontend must answer for one request, and the check that asks the gRPC
//! frontend, nginx's `/auth` and Envoy HTTP mode alike.

use envoy_types::ext_authz::v3::pb::{CheckResponse, HttpResponse};

use crate::common::Harness;

/// What every frontend must answer for one request.
pub(crate) struct Expect {
    pub(crate) status: u16,
    pub(crate) www: Option<&'static str>,
    pub(crate) body: Option<serde_json::Value>,
}

pub(crate) fn unauthorized(www: Option<&'static str>) -> Expect {
    Expect {
        status: 401,
        www,
        body: Some(
            serde_json::json!({"error":"unauthorized","message":"Invalid or missing API key"}),
        ),
    }
}

pub(crate) const CHALLENGE: Option<&str> = Some(r#"Bearer realm="keygate""#);
pub(crate) const INVALID: Option<&str> = Some(r#"Bearer realm="keygate", error="invalid_token""#);

fn grpc_code(status: u16) -> i32 {
    match status {
        200 => 0,
        401 => 16,
        403 => 7,
        _ => 14,
    }
}

pub(crate) fn denied_parts(r: &CheckResponse) -> (u16, Option<String>, Option<String>, String) {
    match r.http_response.as_ref().unwrap() {
        HttpResponse::DeniedResponse(d) => {
            let h = |n: &str| {
                d.headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .find(|h| h.key == n)
                    .map(|h| h.value.clone())
            };
            (
                d.status.as_ref().unwrap().code as u16,
                h("www-authenticate"),
                h("content-type"),
                d.body.clone(),
            )
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

pub(crate) async fn assert_all(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    e: &Expect,
) {
    let what = format!(
        "{method} {path} {:?}",
        headers.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    // gRPC.
    let r = h.grpc(method, path, headers).await;
    assert_eq!(
        r.status.as_ref().unwrap().code,
        grpc_code(e.status),
        "grpc code: {what}"
    );
    let (status, www, ctype, body) = denied_parts(&r);
    assert_eq!(status, e.status, "grpc http status: {what}");
    assert_eq!(www.as_deref(), e.www, "grpc www-authenticate: {what}");
    assert_eq!(ctype.as_deref(), Some("application/json"));
    if let Some(b) = &e.body {
        assert_eq!(
            &serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            b,
            "grpc body: {what}"
        );
    }
    // nginx /auth.
    let mut nh: Vec<(&str, &str)> = vec![
        ("x-original-method", method),
        ("x-original-uri", path),
        ("host", "api.example"),
    ];
    nh.extend_from_slice(headers);
    let r = h.http("GET", "/auth", &nh).await;
    // Envoy HTTP mode.
    let r2 = h.http(method, &format!("/ext_authz{path}"), headers).await;
    for (name, r) in [("nginx", r), ("envoy_http", r2)] {
        assert_eq!(r.status, e.status, "{name} status: {what}");
        assert_eq!(
            r.header("www-authenticate"),
            e.www,
            "{name} www-authenticate: {what}"
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{name}: {what}"
        );
        assert_eq!(
            r.headers.get_all("www-authenticate").iter().count(),
            e.www.is_some() as usize
        );
        if let Some(b) = &e.body {
            assert_eq!(&r.json(), b, "{name} body: {what}");
        }
    }
}

pub(crate) fn bearer(k: &str) -> String {
    format!("Bearer {k}")
}
