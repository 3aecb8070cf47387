//! Fault injection: a failure every request meets while it is set.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::http::{DroppedConnection, respond};

/// A failure to inject into every request while it is set (`set_fault` of each emulator).
/// A fault acts after the request is recorded and before anything else, so a faulted request
/// never changes state ([`Fault::Delay`] waits, then processes normally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long, then answer normally (the request does take effect).
    Delay(Duration),
    /// HTTP 500 (MAXMA and UDS: a plain-text body; Premium Bonus: its failure body).
    Http500,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// The vendor's own "slow down": MAXMA HTTP 200 with errorCode 49 TemporarilyUnavailable;
    /// UDS and Premium Bonus HTTP 429 with `Retry-After: 1` and their usual throttling body.
    Throttle,
    /// HTTP 429 with this `Retry-After` header (none when `None`). MAXMA's body is plain text,
    /// as a rate-limiting proxy in front of it would answer (maxma.md documents no limits); the
    /// UDS and Premium Bonus emulators send their usual throttling body.
    TooManyRequests { retry_after: Option<String> },
    /// Close the connection without an answer (HTTP/2: reset the stream).
    DropConnection,
}

/// How one vendor answers the faults whose body is the vendor's own.
pub(crate) trait FaultAnswers {
    /// [`Fault::Http500`].
    fn server_error(&self) -> Response<Full<Bytes>> {
        respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"internal server error"),
        )
    }

    /// [`Fault::Throttle`].
    fn throttled(&self) -> Response<Full<Bytes>>;

    /// [`Fault::TooManyRequests`]: HTTP 429, with `Retry-After: retry_after` or without one.
    fn too_many_requests(&self, retry_after: Option<HeaderValue>) -> Response<Full<Bytes>>;
}

/// Acts out `fault`: `Ok(None)` when the request goes on (at once, or after a
/// [`Fault::Delay`]), `Ok(Some(answer))` to answer with instead, `Err` to drop the connection.
pub(crate) async fn inject(
    fault: Option<Fault>,
    answers: &impl FaultAnswers,
) -> Result<Option<Response<Full<Bytes>>>, DroppedConnection> {
    let answer = match fault {
        None => return Ok(None),
        Some(Fault::Delay(pause)) => {
            tokio::time::sleep(pause).await;
            return Ok(None);
        }
        Some(Fault::Http500) => answers.server_error(),
        Some(Fault::Garbage) => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(b"<html><body>502 Bad Gateway</body></html>"),
        ),
        Some(Fault::Throttle) => answers.throttled(),
        Some(Fault::TooManyRequests { retry_after }) => {
            answers.too_many_requests(retry_after.and_then(|v| HeaderValue::from_str(&v).ok()))
        }
        Some(Fault::DropConnection) => return Err(DroppedConnection),
    };
    Ok(Some(answer))
}
