//! Reading request bodies and writing answers.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::Value;

/// Larger bodies are refused (each vendor its own way): an emulator is a test double, not a
/// sink.
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;

/// Returned by a handler to make hyper close the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose")]
pub(crate) struct DroppedConnection;

/// A request's whole body, or `None` when it is over [`MAX_BODY_BYTES`]; `Err` when the peer
/// went away mid-body (nobody is left to answer).
pub(crate) async fn read_body(incoming: Incoming) -> Result<Option<Bytes>, DroppedConnection> {
    match Limited::new(incoming, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes())),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Ok(None),
        Err(_) => Err(DroppedConnection),
    }
}

/// `body` as JSON (`application/json; charset=utf-8`).
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    respond(
        status,
        "application/json; charset=utf-8",
        Bytes::from(bytes),
    )
}

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
