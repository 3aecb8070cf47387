//! Field checks that collect every problem of a request into one `errors[]`, and the query
//! string.

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::PHONE_HINT;
use super::errors::{FieldError, UdsError, field_code};
use crate::money::{floor_money, max_money, money, money_text, round_money};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rounding {
    /// Money: round half up (away from zero) to kopecks.
    HalfUp,
    /// Points: only ever rounded down.
    Down,
}

impl Rounding {
    pub(super) fn apply(self, d: Decimal) -> Decimal {
        match self {
            Rounding::HalfUp => round_money(d),
            Rounding::Down => floor_money(d),
        }
    }
}

/// Collects every validation problem of one request.
#[derive(Default)]
pub(super) struct Checks {
    pub(super) errors: Vec<FieldError>,
}

impl Checks {
    pub(super) fn fail(
        &mut self,
        code: &'static str,
        field: &str,
        message: impl Into<String>,
        value: &Value,
    ) {
        self.errors.push(FieldError {
            code,
            field: field.to_owned(),
            message: message.into(),
            value: value.clone(),
        });
    }

    pub(super) fn missing(&mut self, field: &str) {
        self.fail(
            field_code::NULLABLE,
            field,
            format!("Property [{field}] cannot be null"),
            &Value::Null,
        );
    }

    pub(super) fn object<'a>(
        &mut self,
        fields: &'a Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
    ) -> Option<&'a Map<String, Value>> {
        match fields.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.missing(path);
                }
                None
            }
            Some(Value::Object(obj)) => Some(obj),
            Some(other) => {
                self.fail(
                    field_code::TYPE_MISMATCH,
                    path,
                    format!("Property [{path}] must be an object"),
                    other,
                );
                None
            }
        }
    }

    /// A string property; absent, `null` and `""` are all "not given".
    pub(super) fn string(
        &mut self,
        fields: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<String> {
        match fields.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => (!s.is_empty()).then(|| s.clone()),
            Some(other) => {
                self.fail(
                    field_code::TYPE_MISMATCH,
                    path,
                    format!("Property [{path}] must be a string"),
                    other,
                );
                None
            }
        }
    }

    /// A non-negative amount of at most 10¹², rounded to two decimals.
    pub(super) fn amount(
        &mut self,
        fields: &Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
        rounding: Rounding,
    ) -> Option<Decimal> {
        match fields.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.missing(path);
                }
                None
            }
            Some(value @ Value::Number(n)) => {
                self.checked_amount(decimal_from_text(n.as_str()), path, value, rounding)
            }
            Some(other) => {
                self.fail(
                    field_code::TYPE_MISMATCH,
                    path,
                    format!("Property [{path}] must be a number"),
                    other,
                );
                None
            }
        }
    }

    fn checked_amount(
        &mut self,
        parsed: Option<Decimal>,
        path: &str,
        value: &Value,
        rounding: Rounding,
    ) -> Option<Decimal> {
        let Some(d) = parsed else {
            self.fail(
                field_code::MAX,
                path,
                format!("Property [{path}] is not a representable amount"),
                value,
            );
            return None;
        };
        if d < Decimal::ZERO {
            self.fail(
                field_code::MIN,
                path,
                format!("Property [{path}] must not be negative"),
                value,
            );
            return None;
        }
        if d > max_money() {
            self.fail(
                field_code::MAX,
                path,
                format!("Property [{path}] must be at most {}", max_money()),
                value,
            );
            return None;
        }
        Some(rounding.apply(d))
    }

    /// A query parameter holding an amount (`1000`, `99.90`).
    pub(super) fn query_amount(&mut self, query: &Query, key: &str) -> Option<Decimal> {
        let text = query.get(key)?;
        let value = Value::String(text.to_owned());
        if !is_plain_decimal(text) {
            self.fail(
                field_code::TYPE_MISMATCH,
                key,
                format!("Parameter [{key}] must be a number"),
                &value,
            );
            return None;
        }
        self.checked_amount(decimal_from_text(text), key, &value, Rounding::HalfUp)
    }

    pub(super) fn query_bool(&mut self, query: &Query, key: &str) -> bool {
        match query.get(key) {
            None => false,
            Some(text) if text.eq_ignore_ascii_case("true") => true,
            Some(text) if text.eq_ignore_ascii_case("false") => false,
            Some(text) => {
                self.fail(
                    field_code::TYPE_MISMATCH,
                    key,
                    format!("Parameter [{key}] must be true or false"),
                    &Value::String(text.to_owned()),
                );
                false
            }
        }
    }

    pub(super) fn phone(&mut self, phone: &str, path: &str) {
        if !is_e164(phone) {
            self.fail(
                field_code::INVALID_FORMAT,
                path,
                format!("Property [{path}] is not a valid phone number: {PHONE_HINT}"),
                &Value::String(phone.to_owned()),
            );
        }
    }

    /// `total` must cover the parts it contains.
    pub(super) fn receipt_parts(
        &mut self,
        total: Decimal,
        skip: Decimal,
        unredeemable: Decimal,
        path: &str,
    ) {
        if skip + unredeemable > total {
            self.fail(
                field_code::INVALID,
                path,
                format!(
                    "Property [{path}] must be at least skipLoyaltyTotal + unredeemableTotal ({})",
                    money_text(skip + unredeemable)
                ),
                &money(total),
            );
        }
    }

    pub(super) fn finish(self) -> Result<(), UdsError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(UdsError::validation(self.errors))
        }
    }
}

/// Decoded query parameters (`%2b` → `+`, a raw `+` → space); the first occurrence wins.
pub(super) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(super) fn parse(raw: &str) -> Query {
        Query {
            pairs: form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// The first value of `key`; an empty value counts as absent.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

pub(super) fn is_e164(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|digits| {
        (10..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// `1000`, `99.90`, `-5`: what a query amount may look like (no exponent, no `+`).
pub(super) fn is_plain_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// An exact decimal from a number's text (JSON keeps it with `arbitrary_precision`).
fn decimal_from_text(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}
