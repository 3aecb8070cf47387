//! Golden examples (docs/design.md §3): each example in a mapping file is a MoySklad request
//! plus canned vendor answers, and says which vendor calls the mapping must make and what it
//! must answer. An example may start from values earlier calls remembered (`remembered`) and
//! check what the call leaves remembered (`expect.remembered`).
//!
//! Here: the example compiled from its file section, and [`Example::problems`], what it expects
//! held against what a run produced ([`Observed`]). Running one takes the bridge (its operation
//! handlers, against a canned vendor): `loyalty-bridge check` and `cargo test` do.

use std::collections::BTreeMap;

use http::Method;
use serde_json::{Map, Value};

use crate::file::{self, ExampleSection};
use crate::op::Op;

/// Where in the file and what is wrong (as the plan compiler reports it).
type Failure = (String, String);

/// Base URL of the pretend vendor in examples and dry runs; expected paths are relative to it.
pub const EXAMPLE_BASE_URL: &str = "http://vendor.example";

#[derive(Debug)]
pub struct Example {
    pub name: String,
    pub op: Op,
    pub request: Value,
    pub settings: Value,
    /// Seeded into the example's memory before the run: key → value.
    pub remembered: Map<String, Value>,
    /// For a return: what its sale's journal record kept (`{"kept": …}`).
    pub sale: Option<Value>,
    pub upstream: BTreeMap<String, Canned>,
    pub expect_calls: Vec<ExpectedCall>,
    pub expect_status: u16,
    pub expect_body: Option<Value>,
    /// Checked in the memory after the run: key → value (`null`: nothing kept).
    pub expect_remembered: Map<String, Value>,
}

/// A canned vendor answer to one step.
#[derive(Debug, Clone)]
pub enum Canned {
    Answer { status: u16, body: String },
    Timeout,
    Unreachable,
}

#[derive(Debug)]
pub struct ExpectedCall {
    pub step: String,
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
}

/// One vendor call the mapping made while an example ran.
#[derive(Debug, Clone)]
pub struct MadeCall {
    pub step: String,
    pub method: Method,
    /// Path plus encoded query, relative to [`EXAMPLE_BASE_URL`] ([`relative`]).
    pub path: String,
    pub body: Option<Vec<u8>>,
}

/// What one run of an example produced.
#[derive(Debug)]
pub struct Observed {
    /// The vendor calls, in order.
    pub calls: Vec<MadeCall>,
    /// The MoySklad answer: status and JSON body (`Null` when empty).
    pub status: u16,
    pub body: Value,
    /// For a mapping failure, what went wrong where (the envelope hides it from MoySklad).
    pub detail: Option<String>,
    /// What is kept after the run under each key of [`Example::expect_remembered`] (`null`:
    /// nothing).
    pub remembered: Map<String, Value>,
}

/// `url` without [`EXAMPLE_BASE_URL`], as expected calls write it.
pub fn relative(url: &str) -> &str {
    url.strip_prefix(EXAMPLE_BASE_URL).unwrap_or(url)
}

impl Example {
    /// What differs between what the example expects and what happened: empty when it passed.
    pub fn problems(&self, got: &Observed) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, want) in &self.expect_remembered {
            let kept = got.remembered.get(key).unwrap_or(&Value::Null);
            if !same_json(kept, want) {
                problems.push(format!(
                    "remembered {key:?}\n  expected {want}\n  kept     {kept}"
                ));
            }
        }
        let calls = &got.calls;
        if calls.len() != self.expect_calls.len() {
            problems.push(format!(
                "expected {} upstream call(s), the mapping made {}: {:?}",
                self.expect_calls.len(),
                calls.len(),
                calls
                    .iter()
                    .map(|c| format!("{} {}", c.method, c.path))
                    .collect::<Vec<_>>()
            ));
        }
        for (i, (want, call)) in self.expect_calls.iter().zip(calls).enumerate() {
            if want.step != call.step || want.method != call.method || want.path != call.path {
                problems.push(format!(
                    "call {i}: expected {} {} (step {}), got {} {} (step {})",
                    want.method, want.path, want.step, call.method, call.path, call.step
                ));
            }
            if let Some(body) = &want.body {
                let sent: Value = call
                    .body
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                if !same_json(&sent, body) {
                    problems.push(format!(
                        "call {i} ({}): body\n  expected {body}\n  sent     {sent}",
                        call.step
                    ));
                }
            }
        }
        if let (true, Some(detail)) = (got.status != self.expect_status, &got.detail) {
            problems.push(detail.clone());
        }
        if got.status != self.expect_status {
            problems.push(format!(
                "answer status: expected {}, got {} ({})",
                self.expect_status, got.status, got.body
            ));
        }
        let expected_body = self.expect_body.clone().unwrap_or(Value::Null);
        if !same_json(&got.body, &expected_body) {
            problems.push(format!(
                "answer body\n  expected {expected_body}\n  got      {}",
                got.body
            ));
        }
        problems
    }
}

/// JSON equality where numbers compare by value: `1000.00` and `1000` are the same amount.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (
            x.as_str().parse::<rust_decimal::Decimal>(),
            y.as_str().parse::<rust_decimal::Decimal>(),
        ) {
            (Ok(x), Ok(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn json_text(text: &str, place: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| (place.to_string(), format!("not valid JSON: {e}")))
}

/// An optional JSON object text (`remembered`, `expect.remembered`); absent is empty.
fn json_object(text: Option<&str>, place: &str) -> Result<Map<String, Value>, Failure> {
    match text.map(|t| json_text(t, place)).transpose()? {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err((
            place.to_string(),
            "must be a JSON object of remembered keys and their values".into(),
        )),
    }
}

/// Compiles the example at `place` (`examples[3]`); `steps_of` gives the step names of an
/// operation's plan, `None` when the mapping has no plan for it.
pub(crate) fn compile<'p>(
    example: ExampleSection,
    place: &str,
    steps_of: impl Fn(Op) -> Option<Vec<&'p str>>,
) -> Result<Example, Failure> {
    let place = format!("{place} ({})", example.name);
    let op = Op::named(&example.op)
        .ok_or_else(|| (format!("{place}.op"), "unknown operation".to_string()))?;
    let steps = steps_of(op).ok_or_else(|| {
        (
            format!("{place}.op"),
            "the mapping has no plan for this operation".to_string(),
        )
    })?;
    let has_step = |name: &str| steps.contains(&name);
    let mut upstream = BTreeMap::new();
    for (step, answer) in example.upstream {
        if !has_step(&step) {
            return Err((format!("{place}.upstream.{step}"), "no such step".into()));
        }
        let canned = match answer.fail.as_deref() {
            None => Canned::Answer {
                status: answer.status,
                body: answer.body.unwrap_or_default(),
            },
            Some("timeout") => Canned::Timeout,
            Some("connect") => Canned::Unreachable,
            Some(other) => {
                return Err((
                    format!("{place}.upstream.{step}.fail"),
                    format!("{other:?} is not \"timeout\" or \"connect\""),
                ));
            }
        };
        upstream.insert(step, canned);
    }
    let mut expect_calls = Vec::with_capacity(example.expect_calls.len());
    for (i, call) in example.expect_calls.into_iter().enumerate() {
        let call_place = format!("{place}.expect_calls[{i}]");
        if !has_step(&call.step) {
            return Err((format!("{call_place}.step"), "no such step".into()));
        }
        expect_calls.push(ExpectedCall {
            method: file::method(&call.method)
                .map_err(|message| (format!("{call_place}.method"), message))?,
            body: call
                .body
                .map(|b| json_text(&b, &format!("{call_place}.body")))
                .transpose()?,
            step: call.step,
            path: call.path,
        });
    }
    Ok(Example {
        request: json_text(&example.request, &format!("{place}.request"))?,
        settings: example
            .settings
            .map(|s| json_text(&s, &format!("{place}.settings")))
            .transpose()?
            .unwrap_or(Value::Null),
        expect_body: example
            .expect
            .body
            .map(|b| json_text(&b, &format!("{place}.expect.body")))
            .transpose()?,
        expect_remembered: json_object(
            example.expect.remembered.as_deref(),
            &format!("{place}.expect.remembered"),
        )?,
        remembered: json_object(
            example.remembered.as_deref(),
            &format!("{place}.remembered"),
        )?,
        sale: match example.sale.as_deref() {
            None => None,
            Some(_) if op != Op::RetailsalesreturnCreate => {
                return Err((
                    format!("{place}.sale"),
                    "only a return (retailsalesreturn.create) has a sale".into(),
                ));
            }
            Some(text) => Some(json_text(text, &format!("{place}.sale"))?),
        },
        expect_status: example.expect.status,
        name: example.name,
        op,
        upstream,
        expect_calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_compare_by_value() {
        assert!(same_json(
            &json!({"a": 1000}),
            &serde_json::from_str(r#"{"a": 1000.00}"#).unwrap()
        ));
        assert!(!same_json(&json!([1, 2]), &json!([1, 2, 3])));
        assert!(!same_json(&json!({"a": 1}), &json!({"a": 1, "b": null})));
    }
}
