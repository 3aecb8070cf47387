//! Values crossing between serde_json and jaq. Numbers cross as their exact decimal text, so
//! money keeps every digit; jaq's floats (from jq arithmetic) come back in their shortest exact
//! form. The jaq path of [`crate::expr`] and the built-ins registered with jaq
//! ([`crate::natives`]) both convert here.

use std::str::FromStr;

use jaq_json::{Num, Val};
use serde_json::Value;

/// A jaq value that has no JSON form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotJson {
    #[error("the expression computed a non-finite number ({0})")]
    NonFinite(f64),
    #[error("not a JSON number: {0}")]
    Number(String),
}

/// serde_json → jaq. Numbers keep their exact text (integers stay integers).
pub fn to_val(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => jaq_json::read::parse_single_num(n.as_str().as_bytes())
            .map(Val::Num)
            .unwrap_or(Val::Null),
        Value::String(s) => Val::utf8_str(s.clone().into_bytes()),
        Value::Array(items) => items.iter().map(to_val).collect(),
        Value::Object(map) => Val::obj(
            map.iter()
                .map(|(k, v)| (Val::utf8_str(k.clone().into_bytes()), to_val(v)))
                .collect(),
        ),
    }
}

/// jaq → serde_json. Floats (from jq arithmetic) are written in their shortest exact form.
pub fn from_val(val: &Val) -> Result<Value, NotJson> {
    Ok(match val {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => Value::Number(number(n)?),
        Val::TStr(bytes) | Val::BStr(bytes) => {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Val::Arr(items) => Value::Array(items.iter().map(from_val).collect::<Result<_, _>>()?),
        Val::Obj(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                    other => other.to_string(),
                };
                out.insert(key, from_val(v)?);
            }
            Value::Object(out)
        }
    })
}

fn number(n: &Num) -> Result<serde_json::Number, NotJson> {
    let text = match n {
        Num::Float(f) if !f.is_finite() => return Err(NotJson::NonFinite(*f)),
        other => other.to_string(),
    };
    serde_json::Number::from_str(&text).map_err(|_| NotJson::Number(text))
}
