//! MAXMA's transport: every method is `POST /<method>` with a JSON body and the
//! `X-Processing-Key` header; routing is checked before the key.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::errors::{ProcessingError, code};
use super::{Now, Shared};
use crate::harness::http::{DroppedConnection, MAX_BODY_BYTES, json_response, read_body, respond};
use crate::harness::{FaultAnswers, inject};

/// The methods the sandbox emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    GetBalance,
    NewClient,
    GetSettings,
    SendConfirmationCode,
    CalculatePurchase,
    SetPurchase,
    ConfirmTicket,
    DiscardTicket,
    ApplyReturn,
}

impl Op {
    const ALL: [Op; 9] = [
        Op::GetBalance,
        Op::NewClient,
        Op::GetSettings,
        Op::SendConfirmationCode,
        Op::CalculatePurchase,
        Op::SetPurchase,
        Op::ConfirmTicket,
        Op::DiscardTicket,
        Op::ApplyReturn,
    ];

    pub(super) fn path(self) -> &'static str {
        match self {
            Op::GetBalance => "/get-balance",
            Op::NewClient => "/new-client",
            Op::GetSettings => "/get-settings",
            Op::SendConfirmationCode => "/send-confirmation-code",
            Op::CalculatePurchase => "/v2/calculate-purchase",
            Op::SetPurchase => "/set-purchase",
            Op::ConfirmTicket => "/confirm-ticket",
            Op::DiscardTicket => "/discard-ticket",
            Op::ApplyReturn => "/apply-return",
        }
    }

    fn route(method: &Method, path: &str) -> Option<Op> {
        if method != Method::POST {
            return None;
        }
        Op::ALL.into_iter().find(|op| op.path() == path)
    }
}

/// MAXMA's own answers to [`crate::Fault::Throttle`] and [`crate::Fault::TooManyRequests`].
struct MaxmaFaults;

impl FaultAnswers for MaxmaFaults {
    fn throttled(&self) -> Response<Full<Bytes>> {
        json_response(
            StatusCode::OK,
            &ProcessingError::temporarily_unavailable().to_json(),
        )
    }

    fn too_many_requests(&self, retry_after: Option<HeaderValue>) -> Response<Full<Bytes>> {
        let mut response = respond(
            StatusCode::TOO_MANY_REQUESTS,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"too many requests"),
        );
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

pub(super) async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DroppedConnection> {
    let (parts, incoming) = req.into_parts();
    let path = parts.uri.path().to_owned();
    // `None`: over the size limit.
    let body = read_body(incoming).await?;
    let parsed: Option<Value> = match &body {
        Some(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Some(Value::Object(Map::new())),
        Some(bytes) => serde_json::from_slice(bytes).ok(),
        None => None,
    };
    let recorded = match (&body, &parsed) {
        (Some(bytes), _) if bytes.is_empty() => Value::Null,
        (_, Some(value)) => value.clone(),
        (Some(bytes), None) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        (None, None) => Value::Null,
    };
    let fault = shared
        .lock()
        .traffic
        .record(&path, (path.clone(), recorded));
    if let Some(answer) = inject(fault, &MaxmaFaults).await? {
        return Ok(answer);
    }

    let Some(op) = Op::route(&parts.method, &path) else {
        tracing::debug!(method = %parts.method, path = %path, "maxma sandbox: unknown method");
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            &json!({"errorCode": code::GENERAL, "description": "Unknown method"}),
        ));
    };
    if !shared.key_matches(&parts.headers) {
        tracing::debug!(path = %path, "maxma sandbox: invalid processing key");
        return Ok(json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"errorCode": code::GENERAL, "description": "Invalid processing key"}),
        ));
    }
    if body.is_none() {
        return Ok(json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &ProcessingError::malformed(format!("the body is over {MAX_BODY_BYTES} bytes"))
                .to_json(),
        ));
    }
    let result = match parsed {
        Some(Value::Object(request)) => shared.lock().apply(op, &request, &Now::current()),
        Some(_) => Err(ProcessingError::malformed("the body must be a JSON object")),
        None => Err(ProcessingError::malformed("the body is not valid JSON")),
    };
    let answer = match result {
        Ok(answer) => answer,
        Err(err) => {
            tracing::debug!(path = %path, error_code = err.code, "maxma sandbox: processing error");
            err.to_json()
        }
    };
    Ok(json_response(StatusCode::OK, &answer))
}
