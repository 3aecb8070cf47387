//! Values during native evaluation, and what jq says about them (truth, order, equality, the
//! text of a scalar), where the native path knows it exactly.
//!
//! Values are borrowed from the input and from literals wherever they pass through
//! unchanged, so a path like `.req.agent` costs a pointer, not a copy; only what an expression
//! computes is allocated, and the answer is copied out once, at the end. Outputs stream to a
//! continuation (`Sink`) instead of being collected, so the evaluation stops at the first output
//! of the whole expression, as the bridge only ever takes that one.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::rc::Rc;
use std::sync::LazyLock;

use jaq_core::ops::Cmp;
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use serde_json::{Number, Value};

use super::{R, Stop};
use crate::builtins;

/// A value during native evaluation.
#[derive(Debug, Clone)]
pub(super) enum V<'a> {
    /// A part of the input or of a literal: never copied while it passes through.
    Ref(&'a Value),
    /// Something computed (a string, a number, a built-in's result).
    Own(Value),
    /// A number computed here (an amount, a sum), kept as its `Decimal` until it is written
    /// or read: a `Number` would be a heap copy of its text, parsed again by the next sum.
    /// Normalized; a negative zero (which jaq writes as `0`) is refused by `number_of` and
    /// caught by `odd_numbers_v` for `allocate_discount`'s lines.
    Dec(Decimal),
    /// An array built here, whose items may still be borrowed.
    Arr(Vec<V<'a>>),
    /// An object built here (keys unique), whose values may still be borrowed.
    Obj(Vec<(Cow<'a, str>, V<'a>)>),
}

pub(super) static NULL: Value = Value::Null;

/// Array indices as `to_entries` gives them, and as `tostring` makes them (`.key | tostring`,
/// once per position in a mapping): built once, not per position (a number is a heap string
/// with `arbitrary_precision`).
pub(super) const SMALL: usize = 256;
pub(super) static SMALL_INTS: LazyLock<Vec<Value>> =
    LazyLock::new(|| (0..SMALL).map(Value::from).collect());
pub(super) static SMALL_INT_TEXTS: LazyLock<Vec<Value>> =
    LazyLock::new(|| (0..SMALL).map(|i| Value::String(i.to_string())).collect());

/// The text of `n` when it is a small index written plainly (`7`, not `7.0` or `7e0`).
pub(super) fn small_int_text(n: &Number) -> Option<&'static Value> {
    let text = SMALL_INT_TEXTS.get(n.as_str().parse::<usize>().ok()?)?;
    (text.as_str() == Some(n.as_str())).then_some(text)
}

/// The index `i` as a JSON number.
pub(super) fn index_number<'a>(i: usize) -> V<'a> {
    match SMALL_INTS.get(i) {
        Some(n) => V::Ref(n),
        None => V::Own(Value::Number(i.into())),
    }
}

/// Where a node's outputs go, one by one.
pub(super) type Sink<'s, 'a> = dyn FnMut(V<'a>, &mut Ctx<'a>) -> R + 's;

pub(super) struct Ctx<'a> {
    /// `$variables` by slot; shared, so reading one does not copy what it holds.
    pub(super) vars: Vec<Rc<V<'a>>>,
}

impl<'a> V<'a> {
    /// The value as JSON: borrowed when it is JSON already, else built (composites only).
    pub(super) fn json(&self) -> Cow<'_, Value> {
        match self {
            V::Ref(v) => Cow::Borrowed(*v),
            V::Own(v) => Cow::Borrowed(v),
            other => Cow::Owned(other.clone().into_value()),
        }
    }

    pub(super) fn into_value(self) -> Value {
        match self {
            V::Ref(v) => v.clone(),
            V::Own(v) => v,
            // `json_number` parses the decimal's own text, which always reads as a number: the
            // `Null` is not reached.
            V::Dec(d) => crate::amount::json_number(d).map_or(Value::Null, Value::Number),
            V::Arr(items) => Value::Array(items.into_iter().map(V::into_value).collect()),
            V::Obj(entries) => Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_value()))
                    .collect(),
            ),
        }
    }

    pub(super) fn truthy(&self) -> bool {
        match self {
            V::Ref(v) => truthy(v),
            V::Own(v) => truthy(v),
            V::Dec(_) | V::Arr(_) | V::Obj(_) => true,
        }
    }

    /// The text of a string value, borrowed for as long as the value lives.
    pub(super) fn as_text(&self) -> Option<Cow<'a, str>> {
        match self {
            V::Ref(Value::String(s)) => Some(Cow::Borrowed(s.as_str())),
            V::Own(Value::String(s)) => Some(Cow::Owned(s.clone())),
            _ => None,
        }
    }
}

/// Written exactly as `serde_json` writes `self.into_value()` (object keys sorted, as its map
/// keeps them), without building that value: what is borrowed is written from where it is.
impl Serialize for V<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            V::Ref(v) => v.serialize(s),
            V::Own(v) => v.serialize(s),
            // As serde_json writes `json_number(d)`: its exact text.
            V::Dec(d) => crate::amount::serialize_decimal(*d, s),
            V::Arr(items) => s.collect_seq(items),
            // Object literals are built sorted (`object`): written as they are.
            V::Obj(entries) if entries.is_sorted_by(|a, b| a.0 < b.0) => {
                s.collect_map(entries.iter().map(|(k, v)| (k, v)))
            }
            V::Obj(entries) => {
                // Keys are unique; built objects are small, so sorting references is cheap.
                let mut sorted: Vec<&(Cow<'_, str>, V<'_>)> = entries.iter().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                s.collect_map(sorted.into_iter().map(|(k, v)| (k, v)))
            }
        }
    }
}

/// [`odd_numbers`] for a value being built.
pub(super) fn odd_numbers_v(v: &V<'_>) -> bool {
    match v {
        V::Ref(v) => odd_numbers(v),
        V::Own(v) => odd_numbers(v),
        V::Dec(d) => d.is_zero() && d.is_sign_negative(),
        V::Arr(items) => items.iter().any(odd_numbers_v),
        V::Obj(entries) => entries.iter().any(|(_, v)| odd_numbers_v(v)),
    }
}

pub(super) fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// An integer as jaq reads it (`Num::Int`), else none.
pub(super) fn int(n: &Number) -> Option<i64> {
    let s = n.as_str();
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        s.parse::<i64>().ok()
    } else {
        None
    }
}

pub(super) fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// jq's total order, where the native path knows it exactly.
pub(super) fn order(a: &Value, b: &Value) -> Result<Ordering, Stop> {
    let (ra, rb) = (rank(a), rank(b));
    if ra != rb {
        return Ok(ra.cmp(&rb));
    }
    Ok(match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (int(x), int(y)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => return Err(Stop::Unsure),
        },
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Array(_), _) | (Value::Object(_), _) => return Err(Stop::Unsure),
        _ => Ordering::Equal,
    })
}

/// jq's `==`, where the native path knows it exactly.
pub(super) fn equal(a: &Value, b: &Value) -> Result<bool, Stop> {
    Ok(match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (int(x), int(y)) {
            (Some(x), Some(y)) => x == y,
            _ => return Err(Stop::Unsure),
        },
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (x, y) in x.iter().zip(y) {
                if !equal(x, y)? {
                    return Ok(false);
                }
            }
            true
        }
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (k, x) in x {
                match y.get(k) {
                    Some(y) if equal(x, y)? => {}
                    _ => return Ok(false),
                }
            }
            true
        }
        _ => rank(a) == rank(b) && matches!(order(a, b)?, Ordering::Equal),
    })
}

/// `"\(v)"`: jq's text of a scalar (arrays and objects go to jaq: its JSON writer decides).
/// `a <op> b` in jq's sense.
pub(super) fn compare(op: Cmp, a: &Value, b: &Value) -> Result<bool, Stop> {
    Ok(match op {
        Cmp::Eq => equal(a, b)?,
        Cmp::Ne => !equal(a, b)?,
        Cmp::Lt => order(a, b)? == Ordering::Less,
        Cmp::Le => order(a, b)? != Ordering::Greater,
        Cmp::Gt => order(a, b)? == Ordering::Greater,
        Cmp::Ge => order(a, b)? != Ordering::Less,
    })
}

pub(super) fn text_of(v: &Value) -> Result<Cow<'_, str>, Stop> {
    Ok(match v {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Null => Cow::Borrowed("null"),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        Value::Number(n) => {
            let s = n.as_str();
            if s == "-0" {
                return Err(Stop::Unsure);
            }
            Cow::Borrowed(s)
        }
        _ => return Err(Stop::Unsure),
    })
}

pub(super) fn number_of<'a>(d: Decimal) -> Result<V<'a>, Stop> {
    let d = d.normalize();
    if d.is_zero() && d.is_sign_negative() {
        return Err(Stop::Unsure);
    }
    Ok(V::Dec(d))
}

pub(super) fn decimal(v: &V<'_>) -> Result<Decimal, Stop> {
    match v {
        V::Dec(d) => Ok(*d),
        _ => builtins::decimal_of(&v.json()).map_err(|_| Stop::Jq),
    }
}

pub(super) fn insert<'a>(entries: &mut Vec<(Cow<'a, str>, V<'a>)>, k: Cow<'a, str>, v: V<'a>) {
    match entries.iter_mut().find(|(name, _)| *name == k) {
        Some(slot) => slot.1 = v,
        None => entries.push((k, v)),
    }
}

/// `m[name]`. JSON objects here are small (a B-tree of one node up to eleven keys): a scan for
/// an equal key touches a key's bytes only when the lengths match (`str` equality compares
/// lengths first), where the tree's ordered search compares bytes at every key it passes
/// (`memcmp` was 4 % of a recalc's CPU).
#[inline]
pub(super) fn member<'m>(m: &'m serde_json::Map<String, Value>, name: &str) -> Option<&'m Value> {
    if m.len() > SCANNED_OBJECT {
        return m.get(name);
    }
    m.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v)
}

/// Largest object [`member`] scans instead of searching.
pub(super) const SCANNED_OBJECT: usize = 11;

/// Integers jaq would write differently (`-0` as `0`).
pub(super) fn odd_numbers(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_str() == "-0",
        Value::Array(a) => a.iter().any(odd_numbers),
        Value::Object(m) => m.values().any(odd_numbers),
        _ => false,
    }
}
