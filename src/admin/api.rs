//! The admin HTTP API (`/api/…`). Every call needs `Authorization: Bearer <KEYGATE_ADMIN_TOKEN>`,
//! compared in constant time; errors are JSON with an `error` code and a `message`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::manage::{CreateKey, ManageError, Manager};
use super::throttle::{Refusal, Throttle};
use crate::server::listener::Peer;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

pub struct Admin {
    pub manager: Manager,
    token_digest: [u8; 32],
    label: String,
    throttle: Throttle,
}

impl Admin {
    /// `failures_per_minute` wrong tokens per client address, then each is slowed
    /// ([`Throttle`]); `failures` counts them all.
    pub fn new(
        manager: Manager,
        token: &str,
        label: String,
        failures_per_minute: u32,
        failures: prometheus::IntCounter,
    ) -> Admin {
        Admin {
            manager,
            token_digest: Sha256::digest(token.as_bytes()).into(),
            label,
            throttle: Throttle::new(failures_per_minute, failures),
        }
    }

    fn authorized<B>(&self, req: &http::Request<B>) -> bool {
        let Some(v) = req.headers().get(header::AUTHORIZATION) else {
            return false;
        };
        let v = v.as_bytes();
        if v.len() < 7 || !v[..7].eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        // Comparing digests keeps the comparison constant-time whatever the lengths.
        let d: [u8; 32] = Sha256::digest(v[7..].trim_ascii()).into();
        bool::from(d.ct_eq(&self.token_digest))
    }
}

type Body = Full<Bytes>;

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(e: &ManageError) -> Response<Body> {
    if let ManageError::Store(s) = e {
        tracing::error!(error = %s, "admin call failed in the store");
    }
    json_response(
        StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_json(),
    )
}

fn plain_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_response(status, &json!({"error": code, "message": message}))
}

fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn read_json<T: serde::de::DeserializeOwned, B>(body: B) -> Result<T, Response<Body>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            plain_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_request",
                "body too large or unreadable",
            )
        })?
        .to_bytes();
    let bytes = if bytes.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        bytes
    };
    // Structs also deserialize from arrays; the API takes objects only.
    if !bytes.trim_ascii_start().starts_with(b"{") {
        return Err(plain_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde's message names the field and position, never echoes values it did not expect.
        plain_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("invalid JSON body: {e}"),
        )
    })
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rotate {
    grace_period_seconds: Option<u64>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PutAccount {
    #[serde(default, with = "serde_with_double_option")]
    plan: Option<Option<String>>,
    status: Option<String>,
}

mod serde_with_double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// Routes one admin request.
pub async fn handle<B>(
    admin: Arc<Admin>,
    req: http::Request<B>,
) -> Result<Response<Body>, Infallible>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if !admin.authorized(&req) {
        let ip = req
            .extensions()
            .get::<Peer>()
            .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |p| {
                p.0.ip()
            });
        let now = crate::service::unix_now();
        let r = match admin.throttle.failed(ip, now).await {
            Refusal::Unauthorized => {
                let mut r = plain_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing or wrong admin token",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="keygate-admin""#),
                );
                r
            }
            Refusal::Slowed { retry_after } => {
                let mut r = plain_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    "too many wrong admin tokens from this address; try again later",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                r
            }
        };
        return Ok(r);
    }
    let m = &admin.manager;
    let actor = admin.label.as_str();
    let (parts, body) = req.into_parts();
    let decoded: Option<Vec<String>> = parts
        .uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let Some(decoded) = decoded else {
        return Ok(plain_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the path is not valid percent-encoded UTF-8",
        ));
    };
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let out: Result<(StatusCode, serde_json::Value), Response<Body>> =
        match (&parts.method, segs.as_slice()) {
            (&Method::POST, ["api", "keys"]) => match read_json::<CreateKey, _>(body).await {
                Ok(c) => m
                    .create_key(actor, c)
                    .await
                    .map(|c| {
                        (
                            StatusCode::CREATED,
                            serde_json::to_value(&c).unwrap_or_default(),
                        )
                    })
                    .map_err(|e| error(&e)),
                Err(r) => Err(r),
            },
            (&Method::GET, ["api", "keys"]) => {
                let account = query_param(&parts.uri, "account");
                m.list_keys(account.as_deref())
                    .await
                    .map(|k| (StatusCode::OK, json!({"keys": k})))
                    .map_err(|e| error(&e))
            }
            (&Method::DELETE, ["api", "keys", id]) => m
                .revoke_key(actor, id)
                .await
                .map(|()| (StatusCode::OK, json!({"success": true})))
                .map_err(|e| error(&e)),
            (&Method::POST, ["api", "keys", id, "rotate"]) => {
                match read_json::<Rotate, _>(body).await {
                    Ok(r) => m
                        .rotate_key(actor, id, r.grace_period_seconds)
                        .await
                        .map(|c| {
                            (
                                StatusCode::CREATED,
                                serde_json::to_value(&c).unwrap_or_default(),
                            )
                        })
                        .map_err(|e| error(&e)),
                    Err(r) => Err(r),
                }
            }
            (&Method::PUT, ["api", "accounts", id]) => match read_json::<PutAccount, _>(body).await
            {
                Ok(p) => m
                    .set_account(actor, id, p.plan, p.status.as_deref())
                    .await
                    .map(|v| (StatusCode::OK, v))
                    .map_err(|e| error(&e)),
                Err(r) => Err(r),
            },
            (&Method::GET, ["api", "accounts", id]) => m
                .get_account(id)
                .await
                .map(|v| (StatusCode::OK, v))
                .map_err(|e| error(&e)),
            (&Method::GET, ["api", "accounts", id, "usage"]) => m
                .usage(id)
                .await
                .map(|v| (StatusCode::OK, v))
                .map_err(|e| error(&e)),
            (&Method::GET, ["api", "audit"]) => {
                let account = query_param(&parts.uri, "account");
                m.audit(account.as_deref())
                    .await
                    .map(|v| (StatusCode::OK, v))
                    .map_err(|e| error(&e))
            }
            (_, segs) => Err(match allowed_methods(segs) {
                Some(allow) => {
                    let mut r = plain_error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method_not_allowed",
                        "this endpoint does not take that method",
                    );
                    r.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static(allow));
                    r
                }
                None => plain_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
            }),
        };
    Ok(match out {
        Ok((status, v)) => json_response(status, &v),
        Err(r) => r,
    })
}

/// The methods an endpoint answers (for a 405's `Allow`); `None` for a path that is no endpoint.
fn allowed_methods(segs: &[&str]) -> Option<&'static str> {
    Some(match segs {
        ["api", "keys"] => "GET, POST",
        ["api", "keys", _] => "DELETE",
        ["api", "keys", _, "rotate"] => "POST",
        ["api", "accounts", _] => "GET, PUT",
        ["api", "accounts", _, "usage"] => "GET",
        ["api", "audit"] => "GET",
        _ => return None,
    })
}

/// Decodes one path segment (`%40` → `@`); `None` for a bad escape or non-UTF-8.
fn percent_decode(seg: &str) -> Option<String> {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(crate::core::path::escaped_byte(b, i)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(super::percent_decode("a%40b%3Ac").as_deref(), Some("a@b:c"));
        assert_eq!(super::percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(super::percent_decode("%zz"), None);
        assert_eq!(super::percent_decode("%ff"), None);
        assert_eq!(super::percent_decode("%4"), None);
    }
}
