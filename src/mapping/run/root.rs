//! The root object every expression of a plan sees (`.req`, `.steps.<name>`, `.step`, …), and
//! a step's outcome as the rules read it.

use serde_json::{Map, Value, json};

use engine::need::{self, Need};

use super::Invocation;
use crate::error::UpstreamFailure;
use crate::upstream::{UpstreamError, UpstreamResponse};

/// The input every expression sees.
pub(super) fn root_object(call: &Invocation<'_>, req: Value, sale: Value, vendor: &str) -> Value {
    let credentials: Map<String, Value> = call
        .tenant
        .credentials
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.expose().to_string())))
        .collect();
    // Built by inserts: `json!` would serialize `req` again (a deep copy) rather than move it.
    let mut root = Map::new();
    root.insert("req".into(), req);
    root.insert("op".into(), Value::from(call.op.name()));
    root.insert(
        "tenant".into(),
        json!({"name": call.tenant.name, "vendor": vendor}),
    );
    root.insert("credentials".into(), Value::Object(credentials));
    root.insert("settings".into(), call.tenant.settings.clone());
    root.insert("request_id".into(), Value::from(call.request_id));
    root.insert("sale".into(), sale);
    root.insert(
        "now".into(),
        // `2026-01-01T00:00:00.000Z`, without parsing a format string per request.
        Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    root.insert("steps".into(), Value::Object(Map::new()));
    Value::Object(root)
}

/// Records a step's outcome under `.steps.<name>`.
pub(super) fn record_step(root: &mut Value, name: &str, outcome: Value) {
    if let Some(Value::Object(steps)) = root.get_mut("steps") {
        steps.insert(name.to_string(), outcome);
    }
}

/// Moves `.step` (without its `name`) to `.steps.<name>`.
pub(super) fn move_step(root: &mut Value, name: &str) {
    let Value::Object(map) = root else { return };
    let Some(mut outcome) = map.remove("step") else {
        return;
    };
    if let Value::Object(fields) = &mut outcome {
        fields.remove("name");
    }
    record_step(root, name, outcome);
}

pub(super) fn set(root: &mut Value, key: &str, value: Value) {
    if let Value::Object(map) = root {
        map.insert(key.to_string(), value);
    }
}

pub(super) fn with_name(mut outcome: Value, name: &str) -> Value {
    set(&mut outcome, "name", Value::String(name.to_string()));
    outcome
}

/// `{status, body, error}` for the rules, and the failure to report if no rule accepts it.
/// The body is parsed to what `need` says the plan may read of it (all of it when `None`).
pub(super) fn step_outcome(
    result: &Result<UpstreamResponse, UpstreamError>,
    need: Option<&Need>,
) -> (Value, Option<UpstreamFailure>) {
    match result {
        Err(e) => {
            let failure = match e {
                UpstreamError::Timeout => UpstreamFailure::Timeout,
                UpstreamError::CircuitOpen { retry_ms } => UpstreamFailure::CircuitOpen {
                    retry_ms: *retry_ms,
                },
                UpstreamError::Throttled { wait_ms } => {
                    UpstreamFailure::Throttled { wait_ms: *wait_ms }
                }
                UpstreamError::Connect(_) | UpstreamError::Transport(_) => {
                    UpstreamFailure::Unreachable
                }
            };
            (
                json!({"status": null, "body": null, "error": e.kind()}),
                Some(failure),
            )
        }
        Ok(response) => {
            let parsed = if response.body.iter().all(u8::is_ascii_whitespace) {
                Some(Value::Null)
            } else {
                // UTF-8 checked once for the whole answer, not string by string by serde_json.
                std::str::from_utf8(&response.body)
                    .ok()
                    .and_then(|text| need::parse(text, need.unwrap_or(&Need::All)).ok())
            };
            let failure = if !(200..300).contains(&response.status) {
                Some(UpstreamFailure::Status(response.status))
            } else if parsed.is_none() {
                Some(UpstreamFailure::BadAnswer)
            } else {
                None
            };
            let error = if parsed.is_none() {
                json!("body")
            } else {
                Value::Null
            };
            // Built by inserts: `json!` would serialize the parsed body again (a deep copy).
            let mut outcome = Map::new();
            outcome.insert("status".into(), Value::from(response.status));
            outcome.insert("body".into(), parsed.unwrap_or(Value::Null));
            outcome.insert("error".into(), error);
            (Value::Object(outcome), failure)
        }
    }
}
