//! Golden examples (docs/design.md §3): each example in a mapping file is a MoySklad request
//! plus canned vendor answers, and says which vendor calls the mapping must make (their paths,
//! bodies and headers) and what it must answer. An example may give the world around the
//! request ([`Given`]: the tenant's settings and fake credentials, values earlier calls
//! remembered, the sale a return returns) and check what the call leaves remembered
//! (`expect.remembered`).
//!
//! Here: the example compiled from its file section, and [`Example::problems`], what it expects
//! held against what a run produced ([`Observed`]). Running one takes the bridge (its operation
//! handlers, against a canned vendor): `loyalty-bridge check` and `cargo test` do, and
//! `loyalty-bridge map` runs a dry run with a [`Given`] read from files.

use std::collections::BTreeMap;

use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::file::{self, ExampleSection, HeaderExpectation};
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
    pub given: Given,
    pub upstream: BTreeMap<String, Canned>,
    pub expect_calls: Vec<ExpectedCall>,
    pub expect_status: u16,
    pub expect_body: Option<Value>,
    /// Checked in the memory after the run: key → value (`null`: nothing kept).
    pub expect_remembered: Map<String, Value>,
}

/// The world around a request in an example or a dry run (`map --settings/--credentials/--sale`),
/// each part in one format for both: the tenant's settings and credentials, what earlier calls
/// remembered, and for a return the sale it returns.
#[derive(Debug, Default)]
pub struct Given {
    /// `.settings`: a JSON object (`{}` when not given, as for a tenant without settings).
    pub settings: Map<String, Value>,
    /// `.credentials`: fake values in examples; none when not given.
    pub credentials: BTreeMap<String, String>,
    /// Seeded into the memory before the run: key → value.
    pub remembered: Map<String, Value>,
    /// For a return: what its sale's journal record kept (`{"kept": …}`); `None`: the bridge
    /// does not know the sale (`.sale` is null).
    pub sale: Option<Value>,
}

/// Reads `settings` (an example's key, `map --settings`): a JSON object.
pub fn parse_settings(text: &str) -> Result<Map<String, Value>, String> {
    match parse_json(text)? {
        Value::Object(map) => Ok(map),
        _ => Err("must be a JSON object: the tenant's settings by name".into()),
    }
}

/// Reads `credentials` (an example's key, `map --credentials`): a JSON object of strings, as
/// a tenant's credentials are.
pub fn parse_credentials(text: &str) -> Result<BTreeMap<String, String>, String> {
    let not_strings =
        || "must be a JSON object of strings: {\"api_key\": \"test-key\"}".to_string();
    let Value::Object(map) = parse_json(text)? else {
        return Err(not_strings());
    };
    map.into_iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name, text)),
            _ => Err(format!("{name}: {}", not_strings())),
        })
        .collect()
}

/// `remembered` (and `map --remembered`): a JSON object, each key as `remember.key` renders it
/// and the value kept under it.
pub fn parse_remembered(text: &str) -> Result<Map<String, Value>, String> {
    match parse_json(text)? {
        Value::Object(map) => Ok(map),
        _ => Err("must be a JSON object of remembered keys and their values".into()),
    }
}

/// Reads `sale` (an example's key, `map --sale`): `{"kept": …}`, what the sale's journal
/// record kept (its `keep`), which the return's plan sees as `.sale.kept`.
pub fn parse_sale(text: &str) -> Result<Value, String> {
    match parse_json(text)? {
        Value::Object(map) if map.len() == 1 && map.contains_key("kept") => Ok(Value::Object(map)),
        _ => Err("must be a JSON object {\"kept\": …}: what the sale's journal record kept".into()),
    }
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
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
    pub headers: Vec<ExpectedHeader>,
}

/// One header an expected call names.
#[derive(Debug)]
pub struct ExpectedHeader {
    /// As the example writes it (messages quote it so).
    pub written: String,
    pub name: HeaderName,
    pub expect: HeaderExpectation,
}

/// One vendor call the mapping made while an example ran.
#[derive(Debug, Clone)]
pub struct MadeCall {
    pub step: String,
    pub method: Method,
    /// Path plus encoded query, relative to [`EXAMPLE_BASE_URL`] ([`relative`]).
    pub path: String,
    pub headers: HeaderMap,
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
            for header in &want.headers {
                if let Some(problem) = header.problem(&call.headers) {
                    problems.push(format!(
                        "call {i} ({}): header {}\n  {problem}",
                        call.step, header.written
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

impl ExpectedHeader {
    /// What differs between this expectation and the headers a call sent, as
    /// "expected …\n  sent …" (example credentials are fake: values are shown as they are).
    fn problem(&self, sent: &HeaderMap) -> Option<String> {
        let shown =
            |value: &HeaderValue| format!("{:?}", String::from_utf8_lossy(value.as_bytes()));
        let sent = sent.get(&self.name);
        let expected = match (&self.expect, sent) {
            (HeaderExpectation::Value(want), Some(got)) if got.as_bytes() == want.as_bytes() => {
                return None;
            }
            (HeaderExpectation::Sent, Some(_)) | (HeaderExpectation::Absent, None) => return None,
            (HeaderExpectation::Value(want), _) => format!("{want:?}"),
            (HeaderExpectation::Sent, None) => "sent (any value)".to_string(),
            (HeaderExpectation::Absent, Some(_)) => "not sent".to_string(),
        };
        let got = sent.map_or_else(|| "not sent".to_string(), shown);
        Some(format!("expected {expected}\n  sent     {got}"))
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
    parse_json(text).map_err(|message| (place.to_string(), message))
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
        let mut headers: Vec<ExpectedHeader> = Vec::with_capacity(call.headers.len());
        for (written, expect) in call.headers {
            let at = format!("{call_place}.headers.{written}");
            let name = HeaderName::from_bytes(written.as_bytes())
                .map_err(|_| (at.clone(), "not a valid header name".to_string()))?;
            if let HeaderExpectation::Value(text) = &expect {
                HeaderValue::from_str(text).map_err(|_| {
                    (
                        at.clone(),
                        "has characters not allowed in a header, so no call can send it".into(),
                    )
                })?;
            }
            if let Some(other) = headers.iter().find(|h| h.name == name) {
                return Err((
                    at,
                    format!(
                        "names the same header as {} (names are case-insensitive)",
                        other.written
                    ),
                ));
            }
            headers.push(ExpectedHeader {
                written,
                name,
                expect,
            });
        }
        expect_calls.push(ExpectedCall {
            headers,
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
    let given_at = |key: &str| {
        let at = format!("{place}.{key}");
        move |message: String| (at, message)
    };
    let given = Given {
        settings: example
            .settings
            .as_deref()
            .map(parse_settings)
            .transpose()
            .map_err(given_at("settings"))?
            .unwrap_or_default(),
        credentials: example
            .credentials
            .as_deref()
            .map(parse_credentials)
            .transpose()
            .map_err(given_at("credentials"))?
            .unwrap_or_default(),
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
            Some(text) => Some(parse_sale(text).map_err(given_at("sale"))?),
        },
    };
    Ok(Example {
        request: json_text(&example.request, &format!("{place}.request"))?,
        given,
        expect_body: example
            .expect
            .body
            .map(|b| json_text(&b, &format!("{place}.expect.body")))
            .transpose()?,
        expect_remembered: json_object(
            example.expect.remembered.as_deref(),
            &format!("{place}.expect.remembered"),
        )?,
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

    /// An example of one `send` step whose expected call says `headers`.
    fn example(headers: &str) -> Result<Example, Failure> {
        let section: ExampleSection = toml::from_str(&format!(
            r#"
            name = "e"
            op = "counterparty.detail"
            request = '{{}}'
            expect_calls = [{{ step = "send", method = "POST", path = "/x", headers = {headers} }}]
            expect.status = 200
            "#
        ))
        .map_err(|e| ("toml".to_string(), e.to_string()))?;
        compile(section, "examples[0]", |_| Some(vec!["send"]))
    }

    /// The problems of `example` against one `send` call with `sent` headers.
    fn header_problems(example: &Example, sent: &[(&str, &str)]) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for (name, value) in sent {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        example.problems(&Observed {
            calls: vec![MadeCall {
                step: "send".into(),
                method: Method::POST,
                path: "/x".into(),
                headers,
                body: None,
            }],
            status: 200,
            body: Value::Null,
            detail: None,
            remembered: Map::new(),
        })
    }

    #[test]
    fn named_headers_must_be_sent_with_exactly_their_value() {
        let e =
            example(r#"{ Idempotency-Key = "ms-sale-1", X-Processing-Key = "test-key" }"#).unwrap();
        let sent = [
            ("idempotency-key", "ms-sale-1"),
            ("x-processing-key", "test-key"),
            ("x-request-id", "example"),
        ];
        // Names match in any case; headers the example does not name are not checked.
        assert_eq!(header_problems(&e, &sent), Vec::<String>::new());

        let wrong = header_problems(
            &e,
            &[
                ("idempotency-key", "ms-sale-2"),
                ("x-processing-key", "test-key"),
            ],
        );
        assert_eq!(
            wrong,
            [
                "call 0 (send): header Idempotency-Key\n  expected \"ms-sale-1\"\n  sent     \"ms-sale-2\""
            ]
        );

        let missing = header_problems(&e, &[("x-processing-key", "test-key")]);
        assert_eq!(
            missing,
            [
                "call 0 (send): header Idempotency-Key\n  expected \"ms-sale-1\"\n  sent     not sent"
            ]
        );

        // Values compare exactly: another case is another value.
        let case = header_problems(
            &e,
            &[
                ("idempotency-key", "MS-SALE-1"),
                ("x-processing-key", "test-key"),
            ],
        );
        assert_eq!(case.len(), 1, "{case:?}");
    }

    #[test]
    fn true_wants_a_header_sent_and_false_wants_it_absent() {
        let e = example("{ X-Origin-Request-Id = true, authorization = false }").unwrap();
        assert!(header_problems(&e, &[("x-origin-request-id", "3f0c")]).is_empty());
        assert_eq!(
            header_problems(&e, &[("Authorization", "Basic Og==")]),
            [
                "call 0 (send): header X-Origin-Request-Id\n  expected sent (any value)\n  sent     not sent",
                "call 0 (send): header authorization\n  expected not sent\n  sent     \"Basic Og==\"",
            ]
        );
    }

    #[test]
    fn a_header_expectation_that_cannot_hold_is_refused_naming_the_place() {
        let refused = |headers: &str| example(headers).unwrap_err();
        let (at, message) = refused(r#"{ "Bad Name" = "x" }"#);
        assert_eq!(at, "examples[0] (e).expect_calls[0].headers.Bad Name");
        assert!(message.contains("header name"), "{message}");
        let (at, message) = refused(r#"{ X-A = "1", x-a = "2" }"#);
        assert!(at.ends_with("headers.x-a"), "{at}");
        assert!(message.contains("X-A"), "{message}");
        let (at, _) = refused(r#"{ X-A = "line\nbreak" }"#);
        assert!(at.ends_with("headers.X-A"), "{at}");
        let (at, message) = refused("{ X-A = 1 }");
        assert_eq!(at, "toml");
        assert!(message.contains("true (sent, any value)"), "{message}");
    }

    #[test]
    fn given_parts_are_read_in_one_format() {
        assert_eq!(
            parse_credentials(r#"{"api_key": "test-key"}"#).unwrap()["api_key"],
            "test-key"
        );
        assert!(
            parse_credentials(r#"{"api_key": 1}"#)
                .unwrap_err()
                .starts_with("api_key: ")
        );
        assert!(parse_credentials("[]").is_err());
        assert!(parse_settings(r#"{"skus": ["a"]}"#).is_ok());
        assert!(parse_settings("null").is_err());
        assert_eq!(
            parse_sale(r#"{"kept": {"operation": 7}}"#).unwrap(),
            json!({"kept": {"operation": 7}})
        );
        // A sale written without `kept` would silently be a sale that kept nothing.
        assert!(parse_sale(r#"{"operation": 7}"#).is_err());
        assert!(
            parse_sale("{not json")
                .unwrap_err()
                .contains("not valid JSON")
        );
    }
}
