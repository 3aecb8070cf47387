//! Reading MAXMA's request bodies: fields, identifiers, rows, amounts.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::errors::ProcessingError;
use crate::money::{max_money, max_quantity, round_money};
use crate::phone::russian_mobile;

/// How a request names a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ClientKey {
    /// Normalised digits.
    Phone(String),
    Card(String),
    ExternalId(String),
}

pub(super) struct RowInput {
    pub(super) id: Option<Value>,
    pub(super) sku: String,
    pub(super) qty: Decimal,
    pub(super) amount: Decimal,
    pub(super) no_apply: bool,
    pub(super) no_collect: bool,
}

/// `applyBonuses` / `collectBonuses`: a number or "auto".
pub(super) enum Requested {
    Auto,
    Amount(Decimal),
}

pub(super) fn parse_rows(query: &Map<String, Value>) -> Result<Vec<RowInput>, ProcessingError> {
    let rows = match query.get("rows") {
        None | Some(Value::Null) => return Err(ProcessingError::empty_rows()),
        Some(Value::Array(rows)) if rows.is_empty() => return Err(ProcessingError::empty_rows()),
        Some(Value::Array(rows)) => rows,
        Some(_) => return Err(ProcessingError::malformed("rows must be an array")),
    };
    let limit = max_money();
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let at = |field: &str| format!("rows[{i}].{field}");
            let Value::Object(row) = row else {
                return Err(ProcessingError::malformed(format!(
                    "rows[{i}] must be an object"
                )));
            };
            let product = row
                .get("product")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    ProcessingError::malformed(format!("{} is required", at("product")))
                })?;
            let sku = opt_string(product, "sku")?.ok_or_else(|| {
                ProcessingError::malformed(format!("{} is required", at("product.sku")))
            })?;
            let price_field = |name: &str| -> Result<Option<Decimal>, ProcessingError> {
                let path = at(&format!("product.{name}"));
                match product.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => {
                        let price = decimal_value(v, &path)?;
                        if price < Decimal::ZERO || price > limit {
                            return Err(ProcessingError::malformed(format!(
                                "{path} must be between 0 and {limit}"
                            )));
                        }
                        Ok(Some(price))
                    }
                }
            };
            let black = price_field("blackPrice")?.ok_or_else(|| {
                ProcessingError::malformed(format!("{} is required", at("product.blackPrice")))
            })?;
            let price = price_field("redPrice")?.unwrap_or(black);
            let qty = match row.get("qty") {
                None | Some(Value::Null) => {
                    return Err(ProcessingError::malformed(format!(
                        "{} is required",
                        at("qty")
                    )));
                }
                Some(v) => decimal_value(v, &at("qty"))?,
            };
            if qty <= Decimal::ZERO || qty > max_quantity() {
                return Err(ProcessingError::malformed(format!(
                    "{} must be above 0 and at most {}",
                    at("qty"),
                    max_quantity()
                )));
            }
            let amount = price
                .checked_mul(qty)
                .map(round_money)
                .filter(|a| *a <= limit)
                .ok_or_else(|| {
                    ProcessingError::malformed(format!("rows[{i}]: price × qty is too large"))
                })?;
            Ok(RowInput {
                id: row.get("id").filter(|v| !v.is_null()).cloned(),
                sku,
                qty,
                amount,
                no_apply: opt_bool(row, "noApplyBonuses")?,
                no_collect: opt_bool(row, "noCollectBonuses")?,
            })
        })
        .collect()
}

pub(super) fn parse_apply(query: &Map<String, Value>) -> Result<Requested, ProcessingError> {
    match query.get("applyBonuses") {
        None | Some(Value::Null) => Ok(Requested::Amount(Decimal::ZERO)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("auto") => Ok(Requested::Auto),
        // A number out of range is a calculation error (bonuses.error), not a malformed request.
        Some(v @ Value::Number(_)) => Ok(Requested::Amount(
            decimal_value(v, "applyBonuses").unwrap_or(Decimal::MAX),
        )),
        Some(_) => Err(ProcessingError::malformed(
            "applyBonuses must be a number or \"auto\"",
        )),
    }
}

pub(super) fn parse_collect(query: &Map<String, Value>) -> Result<Requested, ProcessingError> {
    match query.get("collectBonuses") {
        None | Some(Value::Null) => Ok(Requested::Auto),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("auto") => Ok(Requested::Auto),
        Some(v @ Value::Number(_)) => {
            let n = decimal_value(v, "collectBonuses")?;
            if n < Decimal::ZERO || !n.fract().is_zero() {
                return Err(ProcessingError::malformed(
                    "collectBonuses must be a whole number from 0 or \"auto\"",
                ));
            }
            Ok(Requested::Amount(n))
        }
        Some(_) => Err(ProcessingError::malformed(
            "collectBonuses must be a number or \"auto\"",
        )),
    }
}

pub(super) fn parse_gift_codes(
    query: &Map<String, Value>,
) -> Result<Option<Vec<String>>, ProcessingError> {
    let cards = match query.get("giftCards") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(cards)) => cards,
        Some(_) => return Err(ProcessingError::malformed("giftCards must be an array")),
    };
    cards
        .iter()
        .map(|card| match card {
            Value::String(code) => Ok(code.clone()),
            Value::Object(fields) => opt_string(fields, "code")?
                .ok_or_else(|| ProcessingError::malformed("giftCards[].code is required")),
            _ => Err(ProcessingError::malformed(
                "giftCards must hold gift card codes",
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Return items as listed, checked for shape only (their meaning is checked by
/// [`merge_return_items`], after the purchase is known, so error codes come in the documented
/// order).
pub(super) fn parse_return_items(
    transaction: &Map<String, Value>,
) -> Result<Vec<(String, Decimal)>, ProcessingError> {
    let items: &[Value] = match transaction.get("items") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ProcessingError::malformed(
                "transaction.items must be an array",
            ));
        }
    };
    let mut listed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(item) = item else {
            return Err(ProcessingError::malformed(format!(
                "transaction.items[{i}] must be an object"
            )));
        };
        let sku = opt_string(item, "sku")?.ok_or_else(|| {
            ProcessingError::malformed(format!("transaction.items[{i}].sku is required"))
        })?;
        let path = format!("transaction.items[{i}].itemCount");
        let count = match item.get("itemCount") {
            None | Some(Value::Null) => {
                return Err(ProcessingError::malformed(format!("{path} is required")));
            }
            Some(v) => decimal_value(v, &path)?,
        };
        listed.push((sku, count));
    }
    Ok(listed)
}

/// Return items merged by sku in first-seen order; errorCode 10 for an empty list or a count
/// that is not above 0.
pub(super) fn merge_return_items(
    listed: &[(String, Decimal)],
) -> Result<Vec<(String, Decimal)>, ProcessingError> {
    if listed.is_empty() {
        return Err(ProcessingError::incorrect_return_item(
            "list the returned items",
        ));
    }
    let mut merged: Vec<(String, Decimal)> = Vec::new();
    for (i, (sku, count)) in listed.iter().enumerate() {
        if *count <= Decimal::ZERO {
            return Err(ProcessingError::incorrect_return_item(format!(
                "transaction.items[{i}].itemCount must be above 0"
            )));
        }
        match merged.iter_mut().find(|(s, _)| s == sku) {
            // Saturating: an absurd total is then simply more than can be returned.
            Some((_, total)) => *total = total.saturating_add(*count),
            None => merged.push((sku.clone(), *count)),
        }
    }
    Ok(merged)
}

/// The client a request names: `phoneNumber`, else `card`, else `externalId`.
pub(super) fn client_key(
    fields: &Map<String, Value>,
) -> Result<Option<ClientKey>, ProcessingError> {
    if let Some(phone) = opt_string(fields, "phoneNumber")? {
        let phone = russian_mobile(&phone).ok_or_else(ProcessingError::incorrect_phone)?;
        return Ok(Some(ClientKey::Phone(phone)));
    }
    if let Some(card) = opt_string(fields, "card")? {
        return Ok(Some(ClientKey::Card(card)));
    }
    Ok(opt_string(fields, "externalId")?.map(ClientKey::ExternalId))
}

pub(super) fn required_object<'a>(
    fields: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Map<String, Value>, ProcessingError> {
    opt_object(fields, key)?.ok_or_else(|| ProcessingError::malformed(format!("{key} is required")))
}

pub(super) fn opt_object<'a>(
    fields: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, ProcessingError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(obj)) => Ok(Some(obj)),
        Some(_) => Err(ProcessingError::malformed(format!(
            "{key} must be an object"
        ))),
    }
}

pub(super) fn required_string(
    fields: &Map<String, Value>,
    key: &str,
) -> Result<String, ProcessingError> {
    opt_string(fields, key)?.ok_or_else(|| ProcessingError::malformed(format!("{key} is required")))
}

/// A string field; absent, `null` and `""` are all "not given".
pub(super) fn opt_string(
    fields: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, ProcessingError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(non_empty(Some(s.clone()))),
        Some(_) => Err(ProcessingError::malformed(format!(
            "{key} must be a string"
        ))),
    }
}

fn opt_bool(fields: &Map<String, Value>, key: &str) -> Result<bool, ProcessingError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ProcessingError::malformed(format!(
            "{key} must be true or false"
        ))),
    }
}

pub(super) fn opt_gender(fields: &Map<String, Value>) -> Result<u8, ProcessingError> {
    match fields.get("gender") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|g| *g <= 2)
            .and_then(|g| u8::try_from(g).ok())
            .ok_or_else(|| ProcessingError::malformed("gender must be 0, 1 or 2")),
        Some(_) => Err(ProcessingError::malformed("gender must be 0, 1 or 2")),
    }
}

/// An exact decimal from a JSON number's text (`arbitrary_precision` keeps it); never via f64.
pub(super) fn decimal_value(value: &Value, path: &str) -> Result<Decimal, ProcessingError> {
    let Value::Number(number) = value else {
        return Err(ProcessingError::malformed(format!(
            "{path} must be a number"
        )));
    };
    let text = number.as_str();
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| ProcessingError::malformed(format!("{path} is out of range")))
}

pub(super) fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

pub(super) fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|dt| dt.with_timezone(&Utc).date_naive())
        })
        .or_else(|| {
            tracing::debug!(
                valid_until = text,
                "maxma sandbox: unparsable gift card date ignored"
            );
            None
        })
}

/// Three random digits, zero-padded ("042"), from the OS random source behind uuid v4.
pub(super) fn random_code() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let n = u16::from_le_bytes([bytes[0], bytes[1]]) % 1000;
    format!("{n:03}")
}
