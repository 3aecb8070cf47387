//! Premium Bonus's transport: `POST /<method>` with `Authorization: <token>`, the rate limit,
//! and answers with `success` and a `logger` request id.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use std::sync::MutexGuard;

use super::errors::{PbError, shorten};
use super::{Shared, State};
use crate::harness::auth::secret_matches;
use crate::harness::http::{DroppedConnection, MAX_BODY_BYTES, json_response, read_body};
use crate::harness::{FaultAnswers, inject};

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// `Authorization: <token>`, compared in constant time.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), PbError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(PbError::new(
                "Authorization header is required: Authorization: <API token>",
            ));
        };
        let bytes = value.as_bytes();
        if bytes.len() >= 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ") {
            return Err(PbError::new(
                "Invalid authorization: send the API token without the \"Bearer\" prefix \
                 (Authorization: <API token>)",
            ));
        }
        if secret_matches(bytes, self.token.as_bytes()) {
            Ok(())
        } else {
            Err(PbError::new("Invalid API token"))
        }
    }

    /// Everything after the faults, synchronously: the state lock is never held across an
    /// `.await`.
    pub(super) fn dispatch(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Body,
        logger: &str,
        now: Instant,
    ) -> Response<Full<Bytes>> {
        let mut state = self.lock();
        if let Some(limit) = state.settings.requests_per_second {
            if !state.admit(limit, now) {
                tracing::debug!(path, "premiumbonus sandbox: rate limited");
                return too_many_requests(
                    &format!("Too many requests: at most {limit} per second"),
                    logger,
                );
            }
        }
        let Some(op) = Op::route(method, path) else {
            tracing::debug!(%method, path, "premiumbonus sandbox: unknown method");
            return failure(
                StatusCode::NOT_FOUND,
                &format!("Unknown method {method} {}", shorten(path)),
                logger,
            );
        };
        if let Err(err) = self.authorize(headers) {
            tracing::debug!(path, "premiumbonus sandbox: authorization refused");
            return failure(StatusCode::BAD_REQUEST, &err.description, logger);
        }
        let result = match body {
            Body::Object(request) => state.apply(op, &request, now),
            Body::NotObject => Err(PbError::new("The body must be a JSON object")),
            Body::NotJson => Err(PbError::new("The body is not valid JSON")),
            Body::TooLarge => Err(PbError::new(format!(
                "The body is over {MAX_BODY_BYTES} bytes"
            ))),
        };
        match result {
            Ok(mut answer) => {
                answer.insert("success".into(), Value::Bool(true));
                answer.insert("logger".into(), Value::String(logger.to_owned()));
                json_response(StatusCode::OK, &Value::Object(answer))
            }
            Err(err) => {
                tracing::debug!(path, error = %err, "premiumbonus sandbox: refused");
                failure(StatusCode::BAD_REQUEST, &err.description, logger)
            }
        }
    }
}

/// The methods the sandbox emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    BuyerInfo,
    BuyerRegister,
    BuyerEdit,
    SendRegisterCode,
    SendWriteOffConfirmationCode,
    VerifyConfirmationCode,
    PurchaseRequest,
    PurchaseDryRun,
    Purchase,
    PurchaseInfo,
    ChangePurchaseStatus,
    CancelPurchase,
    EditPurchase,
}

impl Op {
    pub(super) const ALL: [Op; 13] = [
        Op::BuyerInfo,
        Op::BuyerRegister,
        Op::BuyerEdit,
        Op::SendRegisterCode,
        Op::SendWriteOffConfirmationCode,
        Op::VerifyConfirmationCode,
        Op::PurchaseRequest,
        Op::PurchaseDryRun,
        Op::Purchase,
        Op::PurchaseInfo,
        Op::ChangePurchaseStatus,
        Op::CancelPurchase,
        Op::EditPurchase,
    ];

    pub(super) fn path(self) -> &'static str {
        match self {
            Op::BuyerInfo => "/buyer-info",
            Op::BuyerRegister => "/buyer-register",
            Op::BuyerEdit => "/buyer-edit",
            Op::SendRegisterCode => "/send-register-code",
            Op::SendWriteOffConfirmationCode => "/send-write-off-confirmation-code",
            Op::VerifyConfirmationCode => "/verify-confirmation-code",
            Op::PurchaseRequest => "/purchase-request",
            Op::PurchaseDryRun => "/purchase-dry-run",
            Op::Purchase => "/purchase",
            Op::PurchaseInfo => "/purchase-info",
            Op::ChangePurchaseStatus => "/change-purchase-status",
            Op::CancelPurchase => "/cancel-purchase",
            Op::EditPurchase => "/edit-purchase",
        }
    }

    fn route(method: &Method, path: &str) -> Option<Op> {
        if method != Method::POST {
            return None;
        }
        Op::ALL.into_iter().find(|op| op.path() == path)
    }
}

/// A request body as the methods see it.
pub(super) enum Body {
    Object(Map<String, Value>),
    NotObject,
    NotJson,
    TooLarge,
}

/// Reads a collected body (`None`: over the limit) as the methods see it, and as it is recorded.
pub(super) fn parse_body(bytes: Option<&[u8]>) -> (Body, Value) {
    let Some(bytes) = bytes else {
        return (Body::TooLarge, Value::Null);
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        let recorded = if bytes.is_empty() {
            Value::Null
        } else {
            Value::Object(Map::new())
        };
        return (Body::Object(Map::new()), recorded);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => {
            let recorded = Value::Object(map.clone());
            (Body::Object(map), recorded)
        }
        Ok(other) => (Body::NotObject, other),
        Err(_) => (
            Body::NotJson,
            Value::String(String::from_utf8_lossy(bytes).into_owned()),
        ),
    }
}

pub(super) async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DroppedConnection> {
    let (parts, incoming) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let collected = read_body(incoming).await?;
    let (body, recorded) = parse_body(collected.as_deref());
    let logger = new_logger();
    let fault = shared
        .lock()
        .traffic
        .record(&path, (path.clone(), recorded));
    let faults = PbFaults { logger: &logger };
    if let Some(answer) = inject(fault, &faults).await? {
        return Ok(answer);
    }
    Ok(shared.dispatch(
        &parts.method,
        &path,
        &parts.headers,
        body,
        &logger,
        Instant::now(),
    ))
}

/// `{"success": false, "error_description", "logger"}` with `status`.
fn failure(status: StatusCode, description: &str, logger: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"success": false, "error_description": description, "logger": logger}),
    )
}

fn too_many_requests(description: &str, logger: &str) -> Response<Full<Bytes>> {
    let mut response = failure(StatusCode::TOO_MANY_REQUESTS, description, logger);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Premium Bonus's own answers to the faults: its failure body, with the request's logger.
struct PbFaults<'a> {
    pub(super) logger: &'a str,
}

impl FaultAnswers for PbFaults<'_> {
    fn server_error(&self) -> Response<Full<Bytes>> {
        failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error",
            self.logger,
        )
    }

    fn throttled(&self) -> Response<Full<Bytes>> {
        too_many_requests("Too many requests, try again later", self.logger)
    }

    fn too_many_requests(&self, retry_after: Option<HeaderValue>) -> Response<Full<Bytes>> {
        let mut response = self.throttled();
        let headers = response.headers_mut();
        match retry_after {
            Some(value) => headers.insert(header::RETRY_AFTER, value),
            None => headers.remove(header::RETRY_AFTER),
        };
        response
    }
}

/// A request id: 8 characters `[A-Za-z0-9]` from the OS random source behind uuid v4.
fn new_logger() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let base = ALPHABET.len() as u128;
    // The low 48 bits of a v4 UUID are all random; 62⁸ < 2⁴⁸.
    let mut n = Uuid::new_v4().as_u128();
    let mut id = String::with_capacity(8);
    for _ in 0..8 {
        let digit = usize::try_from(n % base).unwrap_or(0);
        id.push(char::from(ALPHABET.get(digit).copied().unwrap_or(b'0')));
        n /= base;
    }
    id
}
