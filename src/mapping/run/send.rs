//! A step's vendor calls: the request built from the root object, sent through the tenant's
//! breaker and limiter with retries, and compensations sent when a later step fails.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde_json::Value;

use engine::expr::EvalError;
use engine::plan::{Call, Mapping, Step};
use engine::template::Encoding;

use super::Invocation;
use crate::error::{Error, UpstreamFailure};
use crate::metrics::status_class;
use crate::upstream::limit;
use crate::upstream::{Upstream, UpstreamError, UpstreamRequest, UpstreamResponse};

/// Sends `request`, and for a step the mapping marks idempotent, sends it again after a
/// transport failure, a 5xx or a 429, up to `retries` more times with jittered exponential
/// backoff — never past the request's deadline. A refusal (other 4xx) is never retried.
/// A 429 pauses the tenant's calls for what its `Retry-After` says; a retry goes through the
/// limiter again, so it honours the pause (or, when the pause is longer than the call may
/// wait, the vendor's 429 is the answer). Each attempt carries a call id of its own in the
/// header `call_id` (the mapping's `vendor.call_id_header`), when there is one.
pub(super) async fn send_with_retries(
    upstream: &dyn Upstream,
    request: UpstreamRequest,
    retries: u32,
    call: &Invocation<'_>,
    call_id: Option<&HeaderName>,
) -> Result<UpstreamResponse, UpstreamError> {
    let deadline = call.deadline;
    let tenant = call.tenant.name.as_str();
    let count = |outcome: &'static str, took: Option<Duration>| {
        if let Some(m) = call.metrics {
            m.upstream_call(tenant, &request.step, outcome, took);
        }
    };
    let mut attempt = 0;
    loop {
        if let Some(breaker) = call.breaker {
            if let Err(left) = breaker.allow() {
                let err = UpstreamError::CircuitOpen {
                    retry_ms: left.as_millis() as u64,
                };
                count(err.kind(), None);
                return Err(err);
            }
        }
        if let Some(limiter) = call.limiter {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(wait) = limiter.acquire(left).await {
                let err = UpstreamError::Throttled {
                    wait_ms: wait.as_millis() as u64,
                };
                count(err.kind(), None);
                return Err(err);
            }
        }
        let mut this = request.clone();
        this.timeout = this
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let id = call_id.map(|name| stamp_call_id(&mut this, name));
        let started = Instant::now();
        let result = upstream.send(this).await;
        if let Some(id) = id {
            log_call_id(call, &request.step, attempt, id, &result);
        }
        count(
            match &result {
                Ok(r) => status_class(r.status),
                Err(e) => e.kind(),
            },
            Some(started.elapsed()),
        );
        if let Some(breaker) = call.breaker {
            // Alive means it answered, whatever the answer, short of a 5xx.
            breaker.record(matches!(&result, Ok(r) if r.status < 500));
        }
        if let (Ok(r), Some(limiter)) = (&result, call.limiter) {
            if r.status == 429 {
                limiter.pause(r.retry_after.unwrap_or(limit::DEFAULT_PAUSE));
            }
        }
        let transient = match &result {
            Err(UpstreamError::Throttled { .. } | UpstreamError::CircuitOpen { .. }) => false,
            Err(_) => true,
            Ok(r) => r.status >= 500 || r.status == 429,
        };
        if !transient || attempt >= retries {
            return result;
        }
        let pause = backoff(attempt);
        if Instant::now() + pause + Duration::from_millis(50) >= deadline {
            return result;
        }
        if let Some(limiter) = call.limiter {
            // The vendor asked for a longer pause than this call may wait: its answer stands.
            let left = deadline.saturating_duration_since(Instant::now());
            if !limiter.could_wait(limiter.paused_for(), left) {
                return result;
            }
        }
        tracing::debug!(step = %request.step, attempt = attempt + 1, pause_ms = pause.as_millis() as u64, "retrying a vendor call");
        if let Some(m) = call.metrics {
            m.upstream_retry(tenant, &request.step);
        }
        tokio::time::sleep(pause).await;
        attempt += 1;
    }
}

/// Sets `name` on `request` to a fresh random UUID, which is returned. Vendors such as UDS ask
/// that a request id is never reused, so it is new for every attempt, unlike MoySklad's request
/// id (sent as `X-Request-Id`), which every call of one request shares and a repeated request
/// repeats; the log pairs the two.
fn stamp_call_id(request: &mut UpstreamRequest, name: &HeaderName) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    let mut text = uuid::Uuid::encode_buffer();
    let text = id.hyphenated().encode_lower(&mut text);
    // A hyphenated UUID is always a valid header value.
    if let Ok(value) = HeaderValue::from_str(text) {
        request.headers.insert(name.clone(), value);
    }
    id
}

/// One line per vendor call that carried a call id: which MoySklad request it served. A call
/// that failed in a way that is retried (transport, 5xx, 429) is logged at info, as it is the
/// one to quote to the vendor's support; the rest at debug.
fn log_call_id(
    call: &Invocation<'_>,
    step: &str,
    attempt: u32,
    id: uuid::Uuid,
    result: &Result<UpstreamResponse, UpstreamError>,
) {
    let status = result.as_ref().ok().map(|r| r.status);
    let error = result.as_ref().err().map(UpstreamError::kind);
    let failed = status.is_none_or(|s| s >= 500 || s == 429);
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                request_id = call.request_id,
                tenant = %call.tenant.name,
                op = call.op.name(),
                step,
                attempt,
                call_id = %id,
                status,
                error,
                "vendor call"
            )
        };
    }
    if failed {
        line!(info);
    } else {
        line!(debug);
    }
}

/// 50 ms, 100 ms, 200 ms, … each with up to 50 % random jitter, so that retries from many
/// tills do not arrive in step.
fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let base = 50u64.saturating_mul(1 << attempt.min(6));
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(base + random % (base / 2 + 1))
}

pub(super) fn remaining(
    call: &Invocation<'_>,
    step: &str,
    wanted: Duration,
) -> Result<Duration, Error> {
    let left = call.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Upstream {
            step: step.to_string(),
            failure: UpstreamFailure::Timeout,
        });
    }
    Ok(wanted.min(left))
}

/// Builds the HTTP request of a call; the error names the field that failed.
pub(super) fn build(
    mapping: &Mapping,
    call: &Call,
    root: &Value,
    step: &str,
    invocation: &Invocation<'_>,
    timeout: Duration,
) -> Result<UpstreamRequest, (&'static str, EvalError)> {
    let mut url = invocation.tenant.base_url.clone();
    url.push_str(
        &call
            .path
            .render(root, Encoding::Component)
            .map_err(|e| ("path", e))?,
    );
    let mut first = true;
    for (key, value) in &call.query {
        let value = value
            .render(root, Encoding::Query)
            .map_err(|e| ("query", e))?;
        url.push(if first { '?' } else { '&' });
        first = false;
        url.push_str(key);
        url.push('=');
        url.push_str(&value);
    }
    let mut headers = HeaderMap::new();
    for (name, template) in mapping.vendor.headers.iter().chain(&call.headers) {
        let text = template
            .render(root, Encoding::Verbatim)
            .map_err(|e| ("headers", e))?;
        let value = HeaderValue::from_str(&text).map_err(|_| {
            (
                "headers",
                EvalError(format!(
                    "header {name} has characters not allowed in a header"
                )),
            )
        })?;
        headers.insert(name.clone(), value);
    }
    if let Ok(id) = HeaderValue::from_str(invocation.request_id) {
        headers.insert("x-request-id", id);
    }
    let body = match &call.body {
        Some(expr) => {
            let body = expr.eval_json(root).map_err(|e| ("body", e))?;
            headers
                .entry(header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            Some(body)
        }
        None => None,
    };
    headers
        .entry(header::ACCEPT)
        .or_insert(HeaderValue::from_static("application/json"));
    Ok(UpstreamRequest {
        step: step.to_string(),
        method: call.method.clone(),
        url,
        headers,
        body,
        timeout,
    })
}

/// Undoes completed steps, newest first, best effort: a failed compensation is logged, and the
/// original failure is what MoySklad hears about.
pub(super) async fn compensate(
    mapping: &Mapping,
    done: &[&Step],
    root: &Value,
    call: &Invocation<'_>,
    upstream: &dyn Upstream,
) {
    for step in done.iter().rev() {
        let Some(undo) = &step.compensate else {
            continue;
        };
        let timeout = match remaining(call, &step.name, mapping.vendor.timeout) {
            Ok(t) => t,
            // Out of time for the request, but an undo must still be tried.
            Err(_) => mapping.vendor.timeout,
        };
        let outcome = match build(mapping, undo, root, &step.name, call, timeout) {
            Ok(mut request) => {
                let name = mapping.vendor.call_id_header.as_ref();
                let id = name.map(|name| stamp_call_id(&mut request, name));
                let started = Instant::now();
                let result = upstream.send(request).await;
                if let Some(id) = id {
                    log_call_id(call, &format!("{}.compensate", step.name), 0, id, &result);
                }
                if let Some(m) = call.metrics {
                    let outcome = match &result {
                        Ok(r) => status_class(r.status),
                        Err(e) => e.kind(),
                    };
                    let label = format!("{}.compensate", step.name);
                    m.upstream_call(&call.tenant.name, &label, outcome, Some(started.elapsed()));
                }
                result.map(|r| r.status).map_err(|e| e.to_string())
            }
            Err((field, e)) => Err(format!("cannot build the compensation ({field}): {e}")),
        };
        match outcome {
            Ok(status) if (200..300).contains(&status) => tracing::info!(
                request_id = call.request_id, tenant = %call.tenant.name, op = call.op.name(), step = %step.name,
                "compensation done"
            ),
            other => tracing::error!(
                request_id = call.request_id, tenant = %call.tenant.name, op = call.op.name(), step = %step.name,
                outcome = ?other, "compensation failed: the vendor may hold a half-done operation"
            ),
        }
    }
}
