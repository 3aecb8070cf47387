//! UDS's transport: `/partner/v2` paths (also accepted without the prefix), HTTP Basic
//! credentials, request ids, and the body as each endpoint reads it.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::errors::UdsError;
use super::{BASE_PATH, Now, Shared};
use crate::harness::http::{DroppedConnection, json_response, read_body};
use crate::harness::{FaultAnswers, inject};

/// The endpoints the sandbox emulates, with their path parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Settings,
    FindCustomer,
    Customer(i64),
    Calc,
    CreateOperation,
    Operation(i64),
    Refund(i64),
}

impl Route {
    /// `path` is already without the `/partner/v2` prefix.
    pub(super) fn parse(method: &Method, path: &str) -> Option<Route> {
        let rest = path.strip_prefix('/')?;
        let segments: Vec<&str> = rest.split('/').collect();
        let get = *method == Method::GET;
        let post = *method == Method::POST;
        match segments.as_slice() {
            ["settings"] if get => Some(Route::Settings),
            ["customers", "find"] if get => Some(Route::FindCustomer),
            ["customers", id] if get => parse_id(id).map(Route::Customer),
            ["operations", "calc"] if post => Some(Route::Calc),
            ["operations"] if post => Some(Route::CreateOperation),
            ["operations", id] if get => parse_id(id).map(Route::Operation),
            ["operations", id, "refund"] if post => parse_id(id).map(Route::Refund),
            _ => None,
        }
    }

    fn is_post(self) -> bool {
        matches!(
            self,
            Route::Calc | Route::CreateOperation | Route::Refund(_)
        )
    }
}

/// A path id: digits only (no sign, no spaces), fitting an `i64`.
fn parse_id(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

pub(super) fn strip_base(path: &str) -> &str {
    match path.strip_prefix(BASE_PATH) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// A request body, as received.
pub(super) enum Payload {
    Empty,
    Json(Value),
    Malformed { text: String, error: String },
    TooLarge,
}

impl Payload {
    pub(super) fn from_bytes(bytes: &[u8]) -> Payload {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Payload::Empty;
        }
        match serde_json::from_slice(bytes) {
            Ok(value) => Payload::Json(value),
            Err(e) => Payload::Malformed {
                text: String::from_utf8_lossy(bytes).into_owned(),
                error: e.to_string(),
            },
        }
    }

    pub(super) fn recorded(&self) -> Value {
        match self {
            Payload::Empty | Payload::TooLarge => Value::Null,
            Payload::Json(value) => value.clone(),
            Payload::Malformed { text, .. } => Value::String(text.clone()),
        }
    }

    /// The body of a POST: empty is `{}`.
    pub(super) fn object(self) -> Result<Map<String, Value>, UdsError> {
        match self {
            Payload::Empty => Ok(Map::new()),
            Payload::Json(Value::Object(map)) => Ok(map),
            Payload::Json(_) => Err(UdsError::bad_request("The body must be a JSON object")),
            Payload::Malformed { error, .. } => {
                Err(UdsError::bad_request(format!("Malformed JSON: {error}")))
            }
            Payload::TooLarge => Err(UdsError::too_large()),
        }
    }
}

pub(super) async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DroppedConnection> {
    let origin_request_id = req.headers().get("x-origin-request-id").cloned();
    let mut response = answer(shared, req).await?;
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert(HeaderName::from_static("x-request-id"), id);
    }
    if let Some(id) = origin_request_id {
        headers.insert(HeaderName::from_static("x-origin-request-id"), id);
    }
    Ok(response)
}

async fn answer(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DroppedConnection> {
    let (parts, incoming) = req.into_parts();
    let path = strip_base(parts.uri.path()).to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let payload = match read_body(incoming).await? {
        Some(bytes) => Payload::from_bytes(&bytes),
        None => Payload::TooLarge,
    };
    let target = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let entry = (parts.method.as_str().to_owned(), target, payload.recorded());
    let fault = shared.lock().traffic.record(&path, entry);
    if let Some(answer) = inject(fault, &UdsFaults).await? {
        return Ok(answer);
    }

    let Some(route) = Route::parse(&parts.method, &path) else {
        tracing::debug!(method = %parts.method, path = %path, "uds sandbox: unknown path");
        return Ok(error_response(&UdsError::not_found(format!(
            "No such method: {} {path}",
            parts.method
        ))));
    };
    if !shared.authorized(&parts.headers) {
        tracing::debug!(path = %path, "uds sandbox: invalid credentials");
        return Ok(error_response(&UdsError::unauthorized()));
    }
    if matches!(payload, Payload::TooLarge) {
        return Ok(error_response(&UdsError::too_large()));
    }
    let body = if route.is_post() {
        payload.object()
    } else {
        Ok(Map::new())
    };
    let result = body.and_then(|body| shared.lock().apply(route, &query, &body, &Now::current()));
    match result {
        Ok(answer) => Ok(json_response(StatusCode::OK, &answer)),
        Err(err) => {
            tracing::debug!(path = %path, status = err.status.as_u16(), error_code = err.code,
                "uds sandbox: error");
            Ok(error_response(&err))
        }
    }
}

fn error_response(err: &UdsError) -> Response<Full<Bytes>> {
    json_response(err.status, &err.to_json())
}

/// UDS's own answers to [`Fault::Throttle`] and [`Fault::TooManyRequests`]: its
/// `tooManyRequests` error.
struct UdsFaults;

impl FaultAnswers for UdsFaults {
    fn throttled(&self) -> Response<Full<Bytes>> {
        self.too_many_requests(Some(HeaderValue::from_static("1")))
    }

    fn too_many_requests(&self, retry_after: Option<HeaderValue>) -> Response<Full<Bytes>> {
        let mut response = error_response(&UdsError::too_many_requests());
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
