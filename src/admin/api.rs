//! The admin HTTP API (`/api/…`) as an axum router. Every call needs
//! `Authorization: Bearer <KEYGATE_ADMIN_TOKEN>`, compared in constant time (a middleware in
//! front of every route, with the guessing [`Throttle`]); errors are JSON with an `error` code
//! and a `message`, made from [`ManageError`] and the request's own faults in one place
//! ([`ApiError`]). Bodies are read by [`JsonBody`]: at most 64 KiB, an object (never an
//! array), an empty body meaning `{}`.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ManageError;
use super::manage::{CreateKey, Manager, UpdateKey};
use super::throttle::{Refusal, Throttle};
use super::views::Revoked;
use crate::server::listener::Peer;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

pub struct Admin {
    pub manager: Manager,
    token_digest: [u8; 32],
    /// Who management events name as their actor.
    pub(super) label: String,
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

    fn authorized(&self, parts: &http::HeaderMap) -> bool {
        let Some(v) = parts.get(header::AUTHORIZATION) else {
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

/// The admin API's routes, behind the token check.
pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route(
            "/api/keys",
            post(create_key).get(list_keys).fallback(allow("GET, POST")),
        )
        .route(
            "/api/keys/{id}",
            delete(revoke_key)
                .patch(update_key)
                .fallback(allow("DELETE, PATCH")),
        )
        .route(
            "/api/keys/{id}/rotate",
            post(rotate_key).fallback(allow("POST")),
        )
        .route(
            "/api/accounts/{id}",
            get(get_account)
                .put(put_account)
                .fallback(allow("GET, PUT")),
        )
        .route(
            "/api/accounts/{id}/usage",
            get(usage).fallback(allow("GET")),
        )
        .route(
            "/api/keys/import",
            post(super::bulk::import).fallback(allow("POST")),
        )
        .route(
            "/api/keys/leaked",
            post(super::bulk::leaked).fallback(allow("POST")),
        )
        .route("/api/audit", get(audit).fallback(allow("GET")))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(middleware::from_fn_with_state(admin.clone(), token))
        .with_state(admin)
}

pub(super) type Ok<T> = Result<T, ApiError>;

async fn create_key(State(a): State<Arc<Admin>>, JsonBody(c): JsonBody<CreateKey>) -> Ok<Response> {
    let created = a.manager.create_key(&a.label, c).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn update_key(
    State(a): State<Arc<Admin>>,
    Id(id): Id,
    JsonBody(u): JsonBody<UpdateKey>,
) -> Ok<Response> {
    Ok(Json(a.manager.update_key(&a.label, &id, u).await?).into_response())
}

async fn list_keys(State(a): State<Arc<Admin>>, AccountFilter(f): AccountFilter) -> Ok<Response> {
    Ok(Json(a.manager.list_keys(f.as_deref()).await?).into_response())
}

async fn revoke_key(State(a): State<Arc<Admin>>, Id(id): Id) -> Ok<Response> {
    a.manager.revoke_key(&a.label, &id).await?;
    Ok(Json(Revoked { success: true }).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rotate {
    grace_period_seconds: Option<u64>,
}

async fn rotate_key(
    State(a): State<Arc<Admin>>,
    Id(id): Id,
    JsonBody(r): JsonBody<Rotate>,
) -> Ok<Response> {
    let created = a
        .manager
        .rotate_key(&a.label, &id, r.grace_period_seconds)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PutAccount {
    /// Absent: kept; `null`: removed.
    #[serde(default, deserialize_with = "present")]
    plan: Option<Option<String>>,
    status: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn put_account(
    State(a): State<Arc<Admin>>,
    Id(id): Id,
    JsonBody(p): JsonBody<PutAccount>,
) -> Ok<Response> {
    let v = a
        .manager
        .set_account(&a.label, &id, p.plan, p.status.as_deref())
        .await?;
    Ok(Json(v).into_response())
}

async fn get_account(State(a): State<Arc<Admin>>, Id(id): Id) -> Ok<Response> {
    Ok(Json(a.manager.get_account(&id).await?).into_response())
}

async fn usage(State(a): State<Arc<Admin>>, Id(id): Id) -> Ok<Response> {
    Ok(Json(a.manager.usage(&id).await?).into_response())
}

async fn audit(State(a): State<Arc<Admin>>, AccountFilter(f): AccountFilter) -> Ok<Response> {
    Ok(Json(a.manager.audit(f.as_deref()).await?).into_response())
}

/// The token check in front of every route, slowed per client address past its budget.
async fn token(State(a): State<Arc<Admin>>, req: Request, next: Next) -> Response {
    if a.authorized(req.headers()) {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<Peer>()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |p| {
            p.0.ip()
        });
    match a.throttle.failed(ip, crate::service::unix_now()).await {
        Refusal::Unauthorized => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong admin token",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="keygate-admin""#),
            );
            r
        }
        Refusal::Slowed { retry_after } => {
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "too many wrong admin tokens from this address; try again later",
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            r
        }
    }
}

/// The answer to a method an endpoint does not take: 405 with the methods it does.
pub(super) fn allow(methods: &'static str) -> impl Fn() -> std::future::Ready<Response> + Clone {
    move || {
        let mut r = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take that method",
        )
        .into_response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(methods));
        std::future::ready(r)
    }
}

/// An error answer: a status and `{"error", "message"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &str, message: &str) -> ApiError {
        ApiError {
            status,
            body: json!({"error": code, "message": message}),
        }
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> ApiError {
        match &e {
            ManageError::Store(s) => tracing::error!(error = %s, "admin call failed in the store"),
            ManageError::Internal(s) => tracing::error!(error = %s, "admin call failed"),
            _ => {}
        }
        ApiError {
            status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: e.to_json(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// A path's `{id}`, percent-decoded strictly: a bad escape or bytes that are not UTF-8 are a
/// 400, not a lookup of a garbled id.
struct Id(String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Id, ApiError> {
        let bad = || {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the path is not valid percent-encoded UTF-8",
            )
        };
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| bad())?;
        let (_, v) = raw.iter().find(|(k, _)| *k == "id").ok_or_else(bad)?;
        percent_decode(v).map(Id).ok_or_else(bad)
    }
}

/// Decodes one path segment (`%40` → `@`); `None` for a bad escape or non-UTF-8.
fn percent_decode(seg: &str) -> Option<String> {
    let b = seg.as_bytes();
    let escapes_ok = b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || b.get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return None;
    }
    percent_encoding::percent_decode(b)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The `account` query parameter, if any (other parameters are ignored).
struct AccountFilter(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for AccountFilter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<AccountFilter, ApiError> {
        let account = parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "account")
                .map(|(_, v)| v.into_owned())
        });
        Ok(AccountFilter(account))
    }
}

/// A request's body of at most `limit` bytes.
pub(super) async fn read_body(req: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_request",
                "body too large or unreadable",
            )
        })
}

/// A JSON object body of at most [`MAX_BODY`] bytes; an empty body is `{}`.
struct JsonBody<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<JsonBody<T>, ApiError> {
        let bytes = read_body(req, MAX_BODY).await?;
        let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        // Structs also deserialize from arrays; the API takes objects only.
        if !bytes.trim_ascii_start().starts_with(b"{") {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body must be a JSON object",
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let bad = |e: &dyn std::fmt::Display| {
            // The path names the field (`rateLimits[0].per`); serde's message its position,
            // never echoing values it did not expect.
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("invalid JSON body: {e}"),
            )
        };
        let body = serde_path_to_error::deserialize(&mut de).map_err(|e| bad(&e))?;
        // Nothing may follow the object.
        de.end().map_err(|e| bad(&e))?;
        Ok(JsonBody(body))
    }
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
