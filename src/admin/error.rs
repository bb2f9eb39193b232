//! The one error type of key management: each variant maps to one HTTP status, one `error`
//! code and one CLI exit, here and nowhere else.

use serde_json::json;

use crate::store::StoreError;
use crate::store::state::ChangeError;

/// Why a management call failed; each maps to one HTTP status and one CLI exit code.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{field}: {message}")]
    BadRequest {
        field: &'static str,
        message: String,
    },
    #[error("not found")]
    NotFound,
    #[error("the account has reached its plan's limit of {max} active keys")]
    KeyLimit { max: u32 },
    #[error("{0}")]
    Conflict(String),
    /// Something that should not fail did (a worker thread gone); not the caller's fault.
    #[error("internal error: {0}")]
    Internal(&'static str),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Change(ChangeError::KeyNotFound) => ManageError::NotFound,
            StoreError::Change(ChangeError::KeyLimit { max }) => ManageError::KeyLimit { max },
            StoreError::Change(c) => ManageError::Conflict(c.to_string()),
            e => ManageError::Store(e),
        }
    }
}

impl ManageError {
    pub fn status(&self) -> u16 {
        match self {
            ManageError::BadRequest { .. } => 400,
            ManageError::NotFound => 404,
            ManageError::KeyLimit { .. } | ManageError::Conflict(_) => 409,
            ManageError::Internal(_) | ManageError::Store(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ManageError::BadRequest { .. } => "bad_request",
            ManageError::NotFound => "not_found",
            ManageError::KeyLimit { .. } => "key_limit_reached",
            ManageError::Conflict(_) => "conflict",
            ManageError::Internal(_) => "internal_error",
            ManageError::Store(_) => "store_error",
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({"error": self.code(), "message": self.to_string()})
    }
}

pub(crate) fn bad(field: &'static str, message: impl Into<String>) -> ManageError {
    ManageError::BadRequest {
        field,
        message: message.into(),
    }
}
