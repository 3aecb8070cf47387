//! Premium Bonus's refusals: HTTP 400 `{"success": false, "error_description", "logger"}`.

use serde_json::Value;

/// A refusal: HTTP 400 `{"success": false, "error_description": …}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub(super) struct PbError {
    pub(super) description: String,
}

impl PbError {
    pub(super) fn new(description: impl Into<String>) -> Self {
        PbError {
            description: description.into(),
        }
    }

    pub(super) fn required(field: &str) -> Self {
        Self::new(format!("{field} is required"))
    }

    pub(super) fn bad_phone(field: &str, value: &Value) -> Self {
        Self::new(format!(
            "{field} {} is not a valid phone: use 11 digits starting with 7 (7XXXXXXXXXX), \
             without a plus, spaces or other characters",
            shorten(&value.to_string())
        ))
    }

    pub(super) fn too_large() -> Self {
        Self::new("An amount is too large")
    }

    pub(super) fn buyer_not_found(phone: &str) -> Self {
        Self::new(format!("Buyer with phone {phone} is not registered"))
    }

    pub(super) fn blocked() -> Self {
        Self::new("The buyer is blocked")
    }

    pub(super) fn purchase_not_found(what: &str) -> Self {
        Self::new(format!("Purchase not found: {what}"))
    }
}

/// At most 64 characters of `text` in a message, so a huge value cannot bloat an answer.
pub(super) fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}
