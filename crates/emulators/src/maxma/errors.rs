//! MAXMA's processing errors: top level `{"errorCode", "description", "hint"}` with HTTP 200,
//! or `{"code", "description", "hint"}` inside a calculation.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::money::round_money;

/// MAXMA's numeric error codes (client-go `errors.go`), the ones the emulator produces.
pub(super) mod code {
    pub const GENERAL: u16 = 1;
    pub const MALFORMED_REQUEST: u16 = 2;
    pub const CLIENT_NOT_FOUND: u16 = 3;
    pub const INCORRECT_BONUS_AMOUNT: u16 = 6;
    pub const INCORRECT_RETURN_ITEM: u16 = 10;
    pub const INCORRECT_RETURN_AMOUNT: u16 = 11;
    pub const INCORRECT_RETURN_PURCHASE: u16 = 13;
    pub const ALREADY_PROCESSED: u16 = 17;
    pub const EMPTY_ROWS_ARRAY: u16 = 18;
    pub const INCORRECT_PHONE: u16 = 20;
    pub const PURCHASE_NOT_FOUND: u16 = 21;
    pub const PURCHASE_DISCARDED: u16 = 22;
    pub const DUPLICATING_PHONE: u16 = 24;
    pub const DUPLICATING_CARD: u16 = 25;
    pub const TOO_MANY_CODE_REQUESTS: u16 = 28;
    pub const EMPTY_PHONE: u16 = 29;
    pub const DUPLICATING_EXTERNAL_ID: u16 = 30;
    pub const GIFT_CARD_NOT_FOUND: u16 = 40;
    pub const GIFT_CARD_NOT_ACTIVATED: u16 = 42;
    pub const GIFT_CARD_EXPIRED: u16 = 43;
    pub const GIFT_CARD_BLOCKED: u16 = 44;
    pub const GIFT_CARD_NO_FUNDS: u16 = 45;
    pub const DUPLICATING_EMAIL: u16 = 48;
    pub const TEMPORARILY_UNAVAILABLE: u16 = 49;
}

/// A MAXMA processing error: top level `{"errorCode", "description", "hint"}`, or inside a
/// calculation `{"code", "description", "hint"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MAXMA error {code}: {description}")]
pub(super) struct ProcessingError {
    pub(super) code: u16,
    pub(super) description: String,
    pub(super) hint: String,
}

impl ProcessingError {
    pub(super) fn new(code: u16, description: impl Into<String>, hint: impl Into<String>) -> Self {
        ProcessingError {
            code,
            description: description.into(),
            hint: hint.into(),
        }
    }

    pub(super) fn to_json(&self) -> Value {
        json!({"errorCode": self.code, "description": self.description, "hint": self.hint})
    }

    pub(super) fn to_nested_json(&self) -> Value {
        json!({"code": self.code, "description": self.description, "hint": self.hint})
    }

    pub(super) fn malformed(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self::new(
            code::MALFORMED_REQUEST,
            format!("Malformed request: {detail}"),
            "Fix the request",
        )
    }

    pub(super) fn client_not_found() -> Self {
        Self::new(
            code::CLIENT_NOT_FOUND,
            "Client not found",
            "Check the phone number, card or external id",
        )
    }

    pub(super) fn incorrect_bonus_amount(max_to_apply: i64) -> Self {
        Self::new(
            code::INCORRECT_BONUS_AMOUNT,
            "Incorrect bonus amount",
            format!("Apply a whole number of bonuses from 0 to {max_to_apply}"),
        )
    }

    pub(super) fn incorrect_return_item(detail: impl Into<String>) -> Self {
        Self::new(code::INCORRECT_RETURN_ITEM, "Incorrect return item", detail)
    }

    pub(super) fn incorrect_return_amount(refundable: Decimal) -> Self {
        Self::new(
            code::INCORRECT_RETURN_AMOUNT,
            "Incorrect return amount",
            format!("At most {} can still be refunded", round_money(refundable)),
        )
    }

    pub(super) fn incorrect_return_purchase(purchase_id: &str) -> Self {
        Self::new(
            code::INCORRECT_RETURN_PURCHASE,
            "Incorrect return purchase",
            format!("No confirmed purchase with txid {purchase_id:?}"),
        )
    }

    pub(super) fn already_processed(what: &str) -> Self {
        Self::new(
            code::ALREADY_PROCESSED,
            format!("{what} already processed"),
            "Do not repeat a finished operation",
        )
    }

    pub(super) fn empty_rows() -> Self {
        Self::new(
            code::EMPTY_ROWS_ARRAY,
            "Empty rows array",
            "Add at least one row",
        )
    }

    pub(super) fn incorrect_phone() -> Self {
        Self::new(
            code::INCORRECT_PHONE,
            "Incorrect phone",
            "Use a Russian mobile number: +7XXXXXXXXXX",
        )
    }

    pub(super) fn purchase_not_found(txid: &str) -> Self {
        Self::new(
            code::PURCHASE_NOT_FOUND,
            "Purchase not found",
            format!("No purchase with txid {txid:?}"),
        )
    }

    pub(super) fn purchase_discarded() -> Self {
        Self::new(
            code::PURCHASE_DISCARDED,
            "Purchase discarded",
            "Start a new purchase with a new txid",
        )
    }

    pub(super) fn duplicating(code: u16, field: &str) -> Self {
        Self::new(
            code,
            format!("Duplicating {field}"),
            format!("Another client already has this {field}"),
        )
    }

    pub(super) fn too_many_code_requests() -> Self {
        Self::new(
            code::TOO_MANY_CODE_REQUESTS,
            "Too many code requests",
            "Wait a minute before requesting another code",
        )
    }

    pub(super) fn empty_phone() -> Self {
        Self::new(
            code::EMPTY_PHONE,
            "Empty phone",
            "A phone number is required",
        )
    }

    pub(super) fn temporarily_unavailable() -> Self {
        Self::new(
            code::TEMPORARILY_UNAVAILABLE,
            "Temporarily unavailable",
            "Retry later",
        )
    }

    pub(super) fn too_large() -> Self {
        Self::malformed("an amount is too large")
    }
}
