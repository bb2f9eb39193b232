//! The admin API's bulk endpoints, whose bodies are not single JSON objects: `POST
//! /api/keys/import` (JSON Lines, up to [`MAX_IMPORT`]) and `POST /api/keys/leaked` (a JSON
//! array, as secret scanners send).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::api::{Admin, ApiError, Ok, read_body};
use super::manage::LeakedToken;

/// Largest import body: about 100,000 lines of typical size.
pub const MAX_IMPORT: usize = 64 * 1024 * 1024;
/// Largest leaked-key report.
const MAX_LEAKED: usize = 1024 * 1024;

/// `POST /api/keys/import`: the counts of imported, skipped and refused lines.
pub async fn import(State(a): State<Arc<Admin>>, req: Request) -> Ok<Response> {
    let bytes = read_body(req, MAX_IMPORT).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be UTF-8 JSON Lines",
        )
    })?;
    let report = a.manager.import_keys(&a.label, text, |_, _| {}).await?;
    Ok(Json(report).into_response())
}

/// `POST /api/keys/leaked`: a verdict per token; true positives revoked.
pub async fn leaked(State(a): State<Arc<Admin>>, req: Request) -> Ok<Response> {
    let bytes = read_body(req, MAX_LEAKED).await?;
    let tokens: Vec<LeakedToken> = serde_json::from_slice(&bytes).map_err(|e| {
        // Only the position: serde's message may quote a value, and values here are tokens.
        let at = format!("line {} column {}", e.line(), e.column());
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!(r#"expected a JSON array of {{"token","type"?,"url"?,"source"?}} ({at})"#),
        )
    })?;
    Ok(Json(a.manager.report_leaked(&a.label, tokens).await?).into_response())
}
