//! `admin`: how the admin API records its caller.

use serde::Deserialize;

use super::Problems;

/// `admin` as written.
#[derive(Debug, Deserialize, Clone)]
#[serde(default)]
pub struct RawAdmin {
    /// The actor recorded in the audit trail for calls made with the admin token.
    pub token_label: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            token_label: "admin".into(),
        }
    }
}

/// The audit actor of admin-token calls.
pub fn compile(raw: &RawAdmin, p: &mut Problems) -> String {
    if raw.token_label.is_empty() || raw.token_label.len() > 64 {
        p.push("admin.token_label", "must be 1 to 64 characters");
    }
    raw.token_label.clone()
}
