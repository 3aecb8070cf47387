//! UDS's errors: an HTTP status with `{"errorCode", "message"}`, plus `errors[]` when a
//! request fails validation.

use http::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::Ident;
use crate::harness::http::MAX_BODY_BYTES;
use crate::money::money_text;

/// The `errorCode` strings of UDS (uds.md, "Errors").
pub(super) mod code {
    pub const BAD_REQUEST: &str = "badRequest";
    pub const INVALID_CHECKSUM: &str = "invalidChecksum";
    pub const WITHDRAW_NOT_PERMITTED: &str = "withdrawNotPermitted";
    pub const INSUFFICIENT_FUNDS: &str = "insufficientFunds";
    pub const DISCOUNT_LIMIT_EXCEED: &str = "discountLimitExceed";
    pub const PURCHASE_BY_PHONE_DISABLED: &str = "purchaseByPhoneDisabled";
    pub const PARTICIPANT_IS_BLOCKED: &str = "participantIsBlocked";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const NOT_FOUND: &str = "notFound";
    pub const TOO_MANY_REQUESTS: &str = "tooManyRequests";
}

/// The `errorCode` strings inside `errors[]`.
pub(super) mod field_code {
    pub const NULLABLE: &str = "nullable";
    pub const TYPE_MISMATCH: &str = "typeMismatch";
    pub const MIN: &str = "min";
    pub const MAX: &str = "max";
    pub const INVALID_FORMAT: &str = "invalidFormat";
    pub const INVALID: &str = "invalid";
}

/// One entry of `errors[]` in a validation error.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FieldError {
    pub(super) code: &'static str,
    pub(super) field: String,
    pub(super) message: String,
    pub(super) value: Value,
}

impl FieldError {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "errorCode": self.code,
            "message": self.message,
            "field": self.field,
            "value": self.value,
        })
    }
}

/// A UDS error answer: HTTP status + `{"errorCode", "message", "errors"?}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("UDS error {status} {code}: {message}")]
pub(super) struct UdsError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) errors: Vec<FieldError>,
}

impl UdsError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        UdsError {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    pub(super) fn to_json(&self) -> Value {
        let mut body = json!({"errorCode": self.code, "message": self.message});
        if !self.errors.is_empty() {
            body["errors"] = Value::Array(self.errors.iter().map(FieldError::to_json).collect());
        }
        body
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::BAD_REQUEST, message)
    }

    pub(super) fn validation(errors: Vec<FieldError>) -> Self {
        UdsError {
            errors,
            ..Self::bad_request("Validation failed")
        }
    }

    pub(super) fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::BAD_REQUEST,
            format!("The body is over {MAX_BODY_BYTES} bytes"),
        )
    }

    pub(super) fn out_of_range() -> Self {
        Self::bad_request("An amount is out of range")
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
    }

    pub(super) fn customer_not_found(ident: &Ident) -> Self {
        match ident {
            Ident::Code(_) => Self::not_found("Customer with this code not found or code expired"),
            Ident::Uid(_) | Ident::Phone(_) => Self::not_found("Customer not found"),
        }
    }

    pub(super) fn operation_not_found(id: i64) -> Self {
        Self::not_found(format!("Operation {id} not found"))
    }

    pub(super) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHORIZED,
            "API key or company id are incorrect",
        )
    }

    pub(super) fn invalid_checksum(expected: Decimal, given: Decimal) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_CHECKSUM,
            format!(
                "Given total, cash and points do not correlate with the marketing settings: \
                 cash must be {} (calc), not {}",
                money_text(expected),
                money_text(given)
            ),
        )
    }

    pub(super) fn withdraw_not_permitted(why: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::WITHDRAW_NOT_PERMITTED,
            format!("Points cannot be spent: {why}"),
        )
    }

    pub(super) fn insufficient_funds(balance: Decimal) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::INSUFFICIENT_FUNDS,
            format!("Not enough points: the balance is {}", money_text(balance)),
        )
    }

    pub(super) fn discount_limit_exceed(max_points: Decimal, percent: Decimal) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::DISCOUNT_LIMIT_EXCEED,
            format!(
                "At most {} points ({} % of the redeemable amount) can be spent on this receipt",
                money_text(max_points),
                money_text(percent)
            ),
        )
    }

    pub(super) fn purchase_by_phone_disabled() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::PURCHASE_BY_PHONE_DISABLED,
            "Purchase by phone number is disabled in the company settings",
        )
    }

    pub(super) fn participant_is_blocked() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::PARTICIPANT_IS_BLOCKED,
            "The customer is blocked",
        )
    }

    pub(super) fn too_many_requests() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            code::TOO_MANY_REQUESTS,
            "Too many requests",
        )
    }
}
