//! Reading calc and operation bodies: who the customer is, the receipt, the cashier, tags.

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::Ident;
use super::errors::{UdsError, field_code};
use super::validation::{Checks, Rounding};

/// `code` wins over `uid` over `phone`.
pub(super) fn pick_ident(
    code: Option<String>,
    uid: Option<String>,
    phone: Option<String>,
) -> Option<Ident> {
    code.map(Ident::Code)
        .or_else(|| uid.map(Ident::Uid))
        .or_else(|| phone.map(Ident::Phone))
}

/// The customer named by `code` / `participant.{uid, phone}` of a calc or operation body.
fn body_ident(checks: &mut Checks, body: &Map<String, Value>) -> Option<Ident> {
    let code = checks.string(body, "code", "code");
    let (uid, phone) = match checks.object(body, "participant", "participant", false) {
        Some(participant) => (
            checks.string(participant, "uid", "participant.uid"),
            checks.string(participant, "phone", "participant.phone"),
        ),
        None => (None, None),
    };
    if let Some(phone) = &phone {
        checks.phone(phone, "participant.phone");
    }
    let ident = pick_ident(code, uid, phone);
    if ident.is_none() {
        checks.fail(
            field_code::NULLABLE,
            "participant",
            "One of [code], [participant.uid] or [participant.phone] is required",
            &Value::Null,
        );
    }
    ident
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Calc,
    Create,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Receipt {
    pub(super) total: Decimal,
    pub(super) skip: Decimal,
    pub(super) unredeemable: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CashierInput {
    pub(super) external_id: String,
    pub(super) name: Option<String>,
}

/// A validated calc or operation body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PurchaseRequest {
    pub(super) ident: Ident,
    pub(super) receipt: Receipt,
    /// Rounded down; `None` (calc only) means "as many as allowed".
    pub(super) points: Option<Decimal>,
    /// Operations only.
    pub(super) cash: Decimal,
    pub(super) number: Option<String>,
    pub(super) cashier: Option<CashierInput>,
    pub(super) nonce: Option<String>,
}

pub(super) fn parse_purchase(
    body: &Map<String, Value>,
    kind: Kind,
) -> Result<PurchaseRequest, UdsError> {
    let create = kind == Kind::Create;
    let mut checks = Checks::default();
    let ident = body_ident(&mut checks, body);
    let mut total = None;
    let mut skip = None;
    let mut unredeemable = None;
    let mut points = None;
    let mut cash = None;
    let mut number = None;
    if let Some(receipt) = checks.object(body, "receipt", "receipt", true) {
        use Rounding::{Down, HalfUp};
        total = checks.amount(receipt, "total", "receipt.total", true, HalfUp);
        if create {
            cash = checks.amount(receipt, "cash", "receipt.cash", true, HalfUp);
        }
        points = checks.amount(receipt, "points", "receipt.points", create, Down);
        skip = checks.amount(
            receipt,
            "skipLoyaltyTotal",
            "receipt.skipLoyaltyTotal",
            false,
            HalfUp,
        );
        unredeemable = checks.amount(
            receipt,
            "unredeemableTotal",
            "receipt.unredeemableTotal",
            false,
            HalfUp,
        );
        if create {
            number = checks.string(receipt, "number", "receipt.number");
        }
    }
    let skip = skip.unwrap_or_default();
    let unredeemable = unredeemable.unwrap_or_default();
    if let Some(total) = total {
        checks.receipt_parts(total, skip, unredeemable, "receipt.total");
    }
    let (nonce, cashier) = if create {
        let nonce = checks.string(body, "nonce", "nonce");
        let cashier = parse_cashier(&mut checks, body);
        check_tags(&mut checks, body);
        (nonce, cashier)
    } else {
        (None, None)
    };
    checks.finish()?;
    match (ident, total) {
        (Some(ident), Some(total)) => Ok(PurchaseRequest {
            ident,
            receipt: Receipt {
                total,
                skip,
                unredeemable,
            },
            points,
            cash: cash.unwrap_or_default(),
            number,
            cashier,
            nonce,
        }),
        // Unreachable: a missing identity or total was reported above.
        _ => Err(UdsError::bad_request("Validation failed")),
    }
}

fn parse_cashier(checks: &mut Checks, body: &Map<String, Value>) -> Option<CashierInput> {
    let cashier = checks.object(body, "cashier", "cashier", false)?;
    let external_id = checks.string(cashier, "externalId", "cashier.externalId");
    let name = checks.string(cashier, "name", "cashier.name");
    match external_id {
        None => {
            if !matches!(cashier.get("externalId"), Some(v) if !v.is_string() && !v.is_null()) {
                checks.missing("cashier.externalId");
            }
            None
        }
        Some(id) if !is_external_id(&id) => {
            checks.fail(
                field_code::INVALID_FORMAT,
                "cashier.externalId",
                "Property [cashier.externalId] may hold Latin letters, digits, '_', '-' and '.'",
                &Value::String(id),
            );
            None
        }
        Some(external_id) => Some(CashierInput { external_id, name }),
    }
}

fn check_tags(checks: &mut Checks, body: &Map<String, Value>) {
    match body.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.iter().all(|t| t.as_i64().is_some()) => {}
        Some(other) => checks.fail(
            field_code::TYPE_MISMATCH,
            "tags",
            "Property [tags] must be null or an array of tag ids",
            other,
        ),
    }
}

fn is_external_id(id: &str) -> bool {
    id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
