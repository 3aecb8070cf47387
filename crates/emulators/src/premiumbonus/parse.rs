//! Reading Premium Bonus's request bodies: fields, phones, items, amounts.

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::errors::{PbError, shorten};
use crate::money::{max_money, max_quantity};

/// How a receipt item is recognised in `/edit-purchase`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum ItemKey {
    ExternalId(String),
    Name(String),
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemKey::ExternalId(id) => write!(f, "item with external_item_id {}", shorten(id)),
            ItemKey::Name(name) => write!(f, "item named {}", shorten(name)),
        }
    }
}

/// An item as requested.
#[derive(Debug, Clone)]
pub(super) struct ItemInput {
    pub(super) key: ItemKey,
    pub(super) external_item_id: Option<Value>,
    pub(super) name: String,
    pub(super) quantity: Decimal,
    pub(super) amount: Decimal,
    pub(super) discount: Decimal,
}

pub(super) fn parse_items(
    request: &Map<String, Value>,
    allow_empty: bool,
) -> Result<Vec<ItemInput>, PbError> {
    let items = match request.get("items") {
        None | Some(Value::Null) => return Err(PbError::required("items")),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(PbError::new("items must be an array")),
    };
    if items.is_empty() && !allow_empty {
        return Err(PbError::new("items must list at least one item"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |field: &str| format!("items[{i}].{field}");
            let Value::Object(item) = item else {
                return Err(PbError::new(format!("items[{i}] must be an object")));
            };
            let name = match item.get("name") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                None | Some(Value::Null) | Some(Value::String(_)) => {
                    return Err(PbError::required(&at("name")));
                }
                Some(_) => return Err(PbError::new(format!("{} must be a string", at("name")))),
            };
            let amount = match item.get("amount") {
                None | Some(Value::Null) => return Err(PbError::required(&at("amount"))),
                Some(v) => money_value(v, &at("amount"))?,
            };
            let quantity = match item.get("quantity") {
                None | Some(Value::Null) => return Err(PbError::required(&at("quantity"))),
                Some(v) => decimal_value(v, &at("quantity"))?,
            };
            if quantity <= Decimal::ZERO || quantity > max_quantity() {
                return Err(PbError::new(format!(
                    "{} must be above 0 and at most {}",
                    at("quantity"),
                    max_quantity()
                )));
            }
            let discount = match item.get("discount") {
                None | Some(Value::Null) => Decimal::ZERO,
                Some(v) => money_value(v, &at("discount"))?,
            };
            let (external_item_id, key) = match item.get("external_item_id") {
                None | Some(Value::Null) => (None, ItemKey::Name(name.clone())),
                Some(Value::String(s)) if s.is_empty() => (None, ItemKey::Name(name.clone())),
                Some(v @ Value::String(s)) => (Some(v.clone()), ItemKey::ExternalId(s.clone())),
                Some(v @ Value::Number(n)) => {
                    (Some(v.clone()), ItemKey::ExternalId(n.as_str().to_owned()))
                }
                Some(_) => {
                    return Err(PbError::new(format!(
                        "{} must be a string or a number",
                        at("external_item_id")
                    )));
                }
            };
            Ok(ItemInput {
                key,
                external_item_id,
                name,
                quantity,
                amount,
                discount,
            })
        })
        .collect()
}

/// A phone field: a string `^7\d{10}$`; absent, `null` and `""` are "not given".
pub(super) fn phone_field(
    fields: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, PbError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if is_pb_phone(s) => Ok(Some(s.clone())),
        Some(other) => Err(PbError::bad_phone(key, other)),
    }
}

pub(super) fn required_phone(fields: &Map<String, Value>, key: &str) -> Result<String, PbError> {
    phone_field(fields, key)?.ok_or_else(|| PbError::required(key))
}

/// Premium Bonus's phone format, exactly: `^7\d{10}$`.
pub(super) fn is_pb_phone(s: &str) -> bool {
    s.len() == 11 && s.starts_with('7') && s.bytes().all(|b| b.is_ascii_digit())
}

/// An identificator that is plainly a phone written the wrong way (`+7…`, `8 (999) …`), not a
/// card number.
pub(super) fn looks_like_phone(s: &str) -> bool {
    if s.starts_with('+') {
        return true;
    }
    let separators = |c: char| " -()".contains(c);
    let digits = s.chars().filter(char::is_ascii_digit).count();
    s.chars().all(|c| c.is_ascii_digit() || separators(c))
        && s.chars().any(separators)
        && (10..=11).contains(&digits)
}

pub(super) fn required_string(fields: &Map<String, Value>, key: &str) -> Result<String, PbError> {
    opt_string(fields, key)?.ok_or_else(|| PbError::required(key))
}

/// A string field; absent, `null` and `""` are all "not given".
pub(super) fn opt_string(
    fields: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, PbError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(non_empty(Some(s.clone()))),
        Some(_) => Err(PbError::new(format!("{key} must be a string"))),
    }
}

pub(super) fn opt_bool(fields: &Map<String, Value>, key: &str) -> Result<bool, PbError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(PbError::new(format!("{key} must be true or false"))),
    }
}

/// A `/buyer-edit` field: absent or `null` keeps, `""` clears, a string replaces.
pub(super) enum Edit {
    Keep,
    Clear,
    Set(String),
}

impl Edit {
    pub(super) fn new_value(&self) -> Option<&str> {
        match self {
            Edit::Set(s) => Some(s),
            Edit::Keep | Edit::Clear => None,
        }
    }

    pub(super) fn apply(self, slot: &mut Option<String>) {
        match self {
            Edit::Keep => {}
            Edit::Clear => *slot = None,
            Edit::Set(s) => *slot = Some(s),
        }
    }
}

pub(super) fn edit_string(fields: &Map<String, Value>, key: &str) -> Result<Edit, PbError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(Edit::Keep),
        Some(Value::String(s)) if s.is_empty() => Ok(Edit::Clear),
        Some(Value::String(s)) => Ok(Edit::Set(s.clone())),
        Some(_) => Err(PbError::new(format!("{key} must be a string"))),
    }
}

pub(super) fn check_uuid_field(fields: &Map<String, Value>, key: &str) -> Result<(), PbError> {
    match opt_string(fields, key)? {
        Some(text) if Uuid::parse_str(&text).is_err() => Err(PbError::new(format!(
            "{key} must be a UUID, got {}",
            shorten(&format!("{text:?}"))
        ))),
        _ => Ok(()),
    }
}

pub(super) fn check_date(text: &str) -> Result<(), PbError> {
    let valid = text.len() == 10 && NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok();
    if valid {
        Ok(())
    } else {
        Err(PbError::new(format!(
            "birth_date must be a date YYYY-MM-DD, got {}",
            shorten(&format!("{text:?}"))
        )))
    }
}

pub(super) fn check_gender(text: &str) -> Result<(), PbError> {
    if text == "male" || text == "female" {
        Ok(())
    } else {
        Err(PbError::new(format!(
            "gender must be \"male\" or \"female\", got {}",
            shorten(&format!("{text:?}"))
        )))
    }
}

pub(super) fn check_email(text: &str) -> Result<(), PbError> {
    let valid = text
        .split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && !domain.is_empty())
        && !text.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(PbError::new(format!(
            "email {} is not an email address",
            shorten(&format!("{text:?}"))
        )))
    }
}

pub(super) fn money_field(
    fields: &Map<String, Value>,
    key: &str,
) -> Result<Option<Decimal>, PbError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => money_value(v, key).map(Some),
    }
}

/// Rubles or bonuses: 0 … 10¹² with at most 2 decimals.
fn money_value(value: &Value, path: &str) -> Result<Decimal, PbError> {
    let d = decimal_value(value, path)?;
    if d < Decimal::ZERO || d > max_money() {
        return Err(PbError::new(format!(
            "{path} must be between 0 and {}",
            max_money()
        )));
    }
    if d.normalize().scale() > 2 {
        return Err(PbError::new(format!(
            "{path} must have at most 2 decimals, got {}",
            shorten(&d.to_string())
        )));
    }
    Ok(d)
}

/// An exact decimal from a JSON number's text (`arbitrary_precision` keeps it); never via f64.
fn decimal_value(value: &Value, path: &str) -> Result<Decimal, PbError> {
    let Value::Number(number) = value else {
        return Err(PbError::new(format!("{path} must be a number")));
    };
    let text = number.as_str();
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| PbError::new(format!("{path} is out of range")))
}

pub(super) fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}
