//! What of a value a mapping's expressions may look at, and vendor answers parsed to just that.
//!
//! A vendor answer is parsed for the rules and expressions that read it; most of them read a
//! few members of it (MAXMA's 2 KB calculation answer gives each row its bonuses and discounts
//! by kind, where the recalc reads each row's id and total). When every reader of a step's
//! answer is natively compiled, the plan knows the members they may reach ([`Need`], from
//! `fast/reach.rs`'s analysis) and the answer is parsed to those only: the rest is skipped by the
//! parser, never built into a `Value` (issue #7: building and freeing the parts nobody reads was
//! about a tenth of a recalc's CPU). A reader the analysis cannot follow (jaq-only, or looking
//! at a value whole) makes the answer parse whole.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::amount::{NUMBER_TOKEN, TextSeed};

/// What of a value may be looked at.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    /// All of it: compared, printed, passed on, or read in a way not followed.
    All,
    /// Its kind and these members of it (an object's by key; `any`: members picked at run time
    /// or iterated, of an object or an array). A scalar is kept as it is.
    Members {
        keys: BTreeMap<String, Need>,
        any: Option<Box<Need>>,
    },
}

/// A step of a path into a value: a named member, or any member (iterated or computed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Any,
}

impl Need {
    /// Nothing but the value's kind.
    pub fn kind() -> Need {
        Need::Members {
            keys: BTreeMap::new(),
            any: None,
        }
    }

    /// Adds what `other` needs.
    pub fn merge(&mut self, other: Need) {
        match (&mut *self, other) {
            (Need::All, _) => {}
            (_, Need::All) => *self = Need::All,
            (
                Need::Members { keys, any },
                Need::Members {
                    keys: other_keys,
                    any: other_any,
                },
            ) => {
                for (k, n) in other_keys {
                    match keys.get_mut(&k) {
                        Some(mine) => mine.merge(n),
                        None => {
                            keys.insert(k, n);
                        }
                    }
                }
                match (any, other_any) {
                    (Some(mine), Some(theirs)) => mine.merge(*theirs),
                    (slot @ None, Some(theirs)) => *slot = Some(theirs),
                    (_, None) => {}
                }
            }
        }
    }

    /// Adds `leaf` at `path` (and the kind of everything on the way).
    pub fn add(&mut self, path: &[Seg], leaf: Need) {
        let Need::Members { keys, any } = self else {
            return;
        };
        let Some((first, rest)) = path.split_first() else {
            self.merge(leaf);
            return;
        };
        let next = match first {
            Seg::Key(k) => keys.entry(k.clone()).or_insert_with(Need::kind),
            Seg::Any => any.get_or_insert_with(|| Box::new(Need::kind())),
        };
        next.add(rest, leaf);
    }

    /// What is needed of the member `key` of this value.
    fn member(&self, key: &str) -> Option<Need> {
        match self {
            Need::All => Some(Need::All),
            Need::Members { keys, any } => match (keys.get(key), any) {
                (None, None) => None,
                (Some(n), None) => Some(n.clone()),
                (None, Some(a)) => Some((**a).clone()),
                (Some(n), Some(a)) => {
                    let mut n = n.clone();
                    n.merge((**a).clone());
                    Some(n)
                }
            },
        }
    }

    /// What is needed of the value at `path` (named members only): `None` when nothing is.
    pub fn at(&self, path: &[&str]) -> Option<Need> {
        let mut here = self.clone();
        for key in path {
            here = here.member(key)?;
        }
        Some(here)
    }

    /// The same need, with what `any` asks folded into every named member, so that parsing
    /// looks a key up once.
    pub fn settled(self) -> Need {
        match self {
            Need::All => Need::All,
            Need::Members { keys, any } => {
                let any = any.map(|a| a.settled());
                let keys = keys
                    .into_iter()
                    .map(|(k, mut n)| {
                        if let Some(a) = &any {
                            n.merge(a.clone());
                        }
                        (k, n.settled())
                    })
                    .collect();
                Need::Members {
                    keys,
                    any: any.map(Box::new),
                }
            }
        }
    }

    /// `value` cut down to what is needed (the reference the parser is tested against).
    pub fn project(&self, value: &Value) -> Value {
        match (self, value) {
            (Need::All, v) => v.clone(),
            (Need::Members { keys, any }, Value::Object(map)) => Value::Object(
                map.iter()
                    .filter_map(|(k, v)| {
                        let n = keys.get(k).or(any.as_deref())?;
                        Some((k.clone(), n.project(v)))
                    })
                    .collect(),
            ),
            (Need::Members { any, .. }, Value::Array(items)) => match any {
                Some(n) => Value::Array(items.iter().map(|v| n.project(v)).collect()),
                None => Value::Array(Vec::new()),
            },
            (_, scalar) => scalar.clone(),
        }
    }
}

/// Parses JSON text to what `need` (settled) asks for; an answer that is not JSON is an error,
/// as with `serde_json::from_str`.
pub fn parse(text: &str, need: &Need) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = need.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

impl<'de> DeserializeSeed<'de> for &Need {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self {
            Need::All => serde::Deserialize::deserialize(d),
            members => d.deserialize_any(Projecting(members)),
        }
    }
}

struct Projecting<'n>(&'n Need);

impl<'de> Visitor<'de> for Projecting<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Need::Members { any, .. } = self.0 else {
            unreachable!("a whole value is parsed by `Value` itself")
        };
        let mut items = Vec::new();
        match any {
            Some(item) => {
                while let Some(v) = seq.next_element_seed(&**item)? {
                    items.push(v);
                }
            }
            None => while seq.next_element::<IgnoredAny>()?.is_some() {},
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Need::Members { keys, any } = self.0 else {
            unreachable!("a whole value is parsed by `Value` itself")
        };
        let mut out = Map::new();
        let mut first = true;
        while let Some(key) = map.next_key_seed(TextSeed)? {
            if std::mem::take(&mut first) && key == NUMBER_TOKEN {
                let text: Cow<'de, str> = map.next_value_seed(TextSeed)?;
                return text
                    .parse::<Number>()
                    .map(Value::Number)
                    .map_err(de::Error::custom);
            }
            match keys.get(&*key).or(any.as_deref()) {
                Some(need) => {
                    let value = map.next_value_seed(need)?;
                    out.insert(key.into_owned(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }

    fn rows_need() -> Need {
        let mut need = Need::kind();
        need.add(&[key("r"), key("rows"), Seg::Any, key("id")], Need::All);
        need.add(&[key("r"), key("rows"), Seg::Any, key("total")], Need::All);
        need.add(&[key("r"), key("sum")], Need::All);
        need.add(&[key("r"), key("flag")], Need::kind());
        need.settled()
    }

    const TEXT: &str = r#"{"r": {"rows": [{"id": "0", "total": 18.850, "by": {"a": 1.0}},
        {"id": "1", "total": -0, "by": {}}], "sum": {"x": [1, 2.50]}, "flag": 7,
        "skip": [{"deep": ["x", {"y": null}]}], "esc\"aped": "\u00e9"}, "other": 1e3}"#;

    #[test]
    fn the_parse_keeps_what_is_needed_and_agrees_with_the_projection() {
        let need = rows_need();
        let parsed = parse(TEXT, &need).unwrap();
        let want: Value = serde_json::from_str(
            r#"{"r": {"rows": [{"id": "0", "total": 18.850}, {"id": "1", "total": -0}],
                      "sum": {"x": [1, 2.50]}, "flag": 7}}"#,
        )
        .unwrap();
        assert_eq!(parsed, want);
        // Numbers keep their text (exact money): `18.850`, `-0`, `2.50`.
        assert_eq!(parsed["r"]["rows"][0]["total"].to_string(), "18.850");
        assert_eq!(parsed["r"]["rows"][1]["total"].to_string(), "-0");
        assert_eq!(parsed["r"]["sum"]["x"][1].to_string(), "2.50");
        let whole: Value = serde_json::from_str(TEXT).unwrap();
        assert_eq!(parsed, need.project(&whole));
        assert_eq!(parse(TEXT, &Need::All).unwrap(), whole);
    }

    #[test]
    fn a_member_needed_by_kind_only_is_kept_as_its_kind() {
        let mut need = Need::kind();
        need.add(&[key("a"), key("b")], Need::kind());
        let need = need.settled();
        let text = r#"{"a": {"b": {"c": 1}, "d": 2}, "e": 3}"#;
        assert_eq!(parse(text, &need).unwrap(), json!({"a": {"b": {}}}));
        // A scalar where an object was expected is kept as it is (jq's error stays jq's).
        assert_eq!(parse(r#"{"a": 12.5}"#, &need).unwrap(), json!({"a": 12.5}));
        assert_eq!(parse(r#"{"a": [1, 2]}"#, &need).unwrap(), json!({"a": []}));
        assert_eq!(parse("3.0", &need).unwrap().to_string(), "3.0");
    }

    #[test]
    fn any_member_folds_into_named_ones() {
        let mut need = Need::kind();
        need.add(&[Seg::Any, key("x")], Need::All);
        need.add(&[key("a"), key("y")], Need::All);
        let need = need.settled();
        let text = r#"{"a": {"x": 1, "y": 2, "z": 3}, "b": {"x": 4, "y": 5}}"#;
        assert_eq!(
            parse(text, &need).unwrap(),
            json!({"a": {"x": 1, "y": 2}, "b": {"x": 4}})
        );
    }

    #[test]
    fn text_that_is_not_json_fails_as_it_does_whole() {
        let need = rows_need();
        for bad in ["{", r#"{"r": [1,]}"#, "[] x", r#"{"skip": tru}"#, ""] {
            assert!(parse(bad, &need).is_err(), "{bad}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn at_follows_named_and_any_members() {
        let mut need = Need::kind();
        need.add(&[key("steps"), Seg::Any, key("body"), key("a")], Need::All);
        need.add(
            &[key("steps"), key("calc"), key("body"), key("b")],
            Need::All,
        );
        let mut want = Need::kind();
        want.add(&[key("a")], Need::All);
        want.add(&[key("b")], Need::All);
        assert_eq!(need.at(&["steps", "calc", "body"]), Some(want));
        assert_eq!(need.at(&["step", "body"]), None);
        assert_eq!(Need::All.at(&["x"]), Some(Need::All));
    }
}
