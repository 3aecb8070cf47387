//! Running an operation's plan: steps in order, rules after each step, compensations on
//! failure, then the answer. Every expression is evaluated synchronously on plain
//! `serde_json::Value`s, so the future stays `Send` across the upstream awaits.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use engine::expr::EvalError;
use engine::jaq_value::to_val;
use engine::need::{self, Need};
use engine::op::Op;
use engine::plan::{Call, Mapping, OpPlan, Rule, RuleAction, Step};
use engine::template::Encoding;

use super::memory::Memory;
use crate::cache::StepCache;
use crate::config::Tenant;
use crate::error::{Error, UpstreamFailure};
use crate::metrics::{Metrics, status_class};
use crate::upstream::breaker::Breaker;
use crate::upstream::limit::{self, TenantLimiter};
use crate::upstream::{Upstream, UpstreamError, UpstreamRequest, UpstreamResponse};

/// What the plan runs for: one LoyaltyAPI call of one tenant.
#[derive(Clone)]
pub struct Invocation<'a> {
    pub op: Op,
    /// The validated MoySklad request as JSON (`.req`).
    pub req: Value,
    pub tenant: &'a Tenant,
    pub request_id: &'a str,
    pub deadline: Instant,
    /// Values kept between calls (`remember` / `recall`).
    pub memory: &'a Memory,
    /// Cached vendor answers of `cache`d steps.
    pub cache: &'a StepCache,
    /// The tenant's rate limit (none in golden examples and dry runs).
    pub limiter: Option<&'a TenantLimiter>,
    /// The tenant's circuit breaker (none in golden examples and dry runs).
    pub breaker: Option<&'a Breaker>,
    /// For a return: what its sale's journal record keeps (`.sale`), or null.
    pub sale: Value,
    /// Where vendor calls are counted (none in golden examples and dry runs).
    pub metrics: Option<&'a Metrics>,
}

/// What a plan produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The answer body (none for sale, return, create).
    pub answer: Answer,
    /// The op's `keep` value (sales and returns), else null.
    pub kept: Value,
}

/// An answer body: built, or still to be read by the operation's `response` expression.
#[derive(Default)]
pub enum Answer {
    #[default]
    None,
    /// A rule's `respond`.
    Built(Value),
    /// The root object every expression saw: [`Outcome::read`] evaluates the plan's
    /// `response` on it, straight into the LoyaltyAPI model where the fast path answers.
    Pending(Value),
}

/// The root holds the tenant's credentials: never printed.
impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::None => f.write_str("None"),
            Answer::Built(body) => f.debug_tuple("Built").field(body).finish(),
            Answer::Pending(_) => f.write_str("Pending(…)"),
        }
    }
}

impl Outcome {
    /// The answer read as `T`, or, when it does not read as `T`, the built value (to name the
    /// misfit from); `None` when the plan builds no answer.
    pub fn read<T: DeserializeOwned + Serialize>(
        self,
        plan: &OpPlan,
        op: Op,
        tenant: &Tenant,
    ) -> Result<Option<Result<T, Value>>, Error> {
        Ok(Some(match self.answer {
            Answer::None => return Ok(None),
            Answer::Built(value) => T::deserialize(&value).map_err(|_| value),
            Answer::Pending(root) => match &plan.response {
                Some(expr) => expr
                    .eval_into::<T>(&root)
                    .map_err(|e| scrub(mapping_failed(op, "response.body", e), tenant))?,
                None => return Ok(None),
            },
        }))
    }
}

/// Runs `plan`: the answer body the mapping built (none for an operation without a body: sale,
/// return, create) and what it keeps.
pub async fn run(
    mapping: &Mapping,
    plan: &OpPlan,
    mut call: Invocation<'_>,
    upstream: &dyn Upstream,
) -> Result<Outcome, Error> {
    // The request and the sale move into the root object every expression sees, uncopied.
    let req = std::mem::take(&mut call.req);
    let sale = std::mem::take(&mut call.sale);
    run_plan(mapping, plan, &call, req, sale, upstream)
        .await
        .map_err(|e| scrub(e, call.tenant))
}

/// Longest error detail kept for the log: jq errors may print a whole input value.
const MAX_DETAIL: usize = 600;

/// Expressions see the tenant's credentials, and jq error texts may quote the values they
/// failed on: mask every credential in texts that leave the plan (logs, the cashier's message).
fn scrub(err: Error, tenant: &Tenant) -> Error {
    let mask = |text: String| {
        let mut text = tenant
            .credentials
            .values()
            .map(|s| s.expose())
            .filter(|v| v.len() >= 4)
            .fold(text, |t, secret| t.replace(secret, "****"));
        if text.len() > MAX_DETAIL {
            let cut = (0..=MAX_DETAIL)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push('…');
        }
        text
    };
    match err {
        Error::MappingFailed { op, at, detail } => Error::MappingFailed {
            op,
            at,
            detail: mask(detail),
        },
        Error::Refused {
            status,
            code,
            title,
            message,
            parameter,
        } => Error::Refused {
            status,
            code,
            title,
            message: mask(message),
            parameter,
        },
        other => other,
    }
}

async fn run_plan(
    mapping: &Mapping,
    plan: &OpPlan,
    call: &Invocation<'_>,
    req: Value,
    sale: Value,
    upstream: &dyn Upstream,
) -> Result<Outcome, Error> {
    let mut root = root_object(call, req, sale, &mapping.vendor.name);
    let mut recalled = Map::new();
    for (name, key) in &plan.recall {
        let key = key
            .render(&root, Encoding::Verbatim)
            .map_err(|e| mapping_failed(call.op, &format!("recall.{name}"), e))?;
        recalled.insert(
            name.clone(),
            call.memory
                .get(&call.tenant.name, &key)
                .await?
                .unwrap_or(Value::Null),
        );
    }
    set(&mut root, "recalled", Value::Object(recalled));
    match verdict(plan.checks.iter(), &root, call.op, "checks", None)? {
        Some(Verdict::Fail(err)) => return Err(err),
        Some(Verdict::Respond(body)) => return Ok(answered(body)),
        Some(Verdict::Accept) | None => {}
    }
    let mut done: Vec<&Step> = Vec::new();
    for step in &plan.steps {
        let failed = |detail: EvalError, field: &str| {
            mapping_failed(call.op, &format!("steps.{}.{field}", step.name), detail)
        };
        if let Some(when) = &step.when {
            if !when.test(&root).map_err(|e| failed(e, "when"))? {
                record_step(&mut root, &step.name, json!({"skipped": true}));
                continue;
            }
        }
        let timeout = remaining(
            call,
            &step.name,
            step.timeout.unwrap_or(mapping.vendor.timeout),
        )?;
        let started = Instant::now();
        let cache_key = match &step.cache {
            Some(cache) => Some((
                cache
                    .key
                    .render(&root, Encoding::Verbatim)
                    .map_err(|e| failed(e, "cache.key"))?,
                cache.ttl,
            )),
            None => None,
        };
        let retries = if step.idempotent {
            mapping.vendor.retries
        } else {
            0
        };
        let hit = match &cache_key {
            Some((key, _)) => call.cache.get(&call.tenant.name, key).await,
            None => None,
        };
        let result = match hit {
            // A hit needs no vendor request: it is not even built.
            Some(response) => Ok(response),
            None => {
                let request = build(mapping, &step.call, &root, &step.name, call, timeout)
                    .map_err(|(field, e)| failed(e, field))?;
                let call_id = mapping.vendor.call_id_header.as_ref();
                let send = send_with_retries(upstream, request, retries, call, call_id);
                match &cache_key {
                    Some((key, ttl)) => {
                        call.cache
                            .get_or_fetch(&call.tenant.name, key.clone(), *ttl, send)
                            .await
                    }
                    None => send.await,
                }
            }
        };
        tracing::debug!(
            request_id = call.request_id,
            tenant = %call.tenant.name,
            op = call.op.name(),
            step = %step.name,
            status = result.as_ref().map(|r| r.status).ok(),
            error = result.as_ref().err().map(UpstreamError::kind),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "upstream call"
        );
        let (outcome, default_failure) = step_outcome(&result, step.answer_need.as_ref());
        if step.copy_outcome {
            record_step(&mut root, &step.name, outcome.clone());
        }
        set(&mut root, "step", with_name(outcome, &step.name));

        let step_rules = plan
            .rules
            .iter()
            .filter(|r| r.step.as_deref().is_none_or(|n| n == step.name));
        let place = format!("errors (after step {})", step.name);
        let decided = verdict(
            step_rules.chain(&mapping.vendor_rules),
            &root,
            call.op,
            &place,
            call.limiter,
        )?;
        if !step.copy_outcome {
            // No rule read `.steps`: the outcome moves there now (compensations may read it).
            move_step(&mut root, &step.name);
        }
        // A cached answer that the rules did not take as a plain success (an error inside a
        // 200 body, a "not found" answered as an empty list) must not be served again.
        if let Some((key, _)) = &cache_key {
            let plain =
                matches!(decided, None | Some(Verdict::Accept)) && default_failure.is_none();
            if !plain {
                call.cache.invalidate(&call.tenant.name, key).await;
            }
        }
        let accepted = match decided {
            Some(Verdict::Accept) => true,
            Some(Verdict::Respond(body)) => return Ok(answered(body)),
            Some(Verdict::Fail(err)) => {
                compensate(mapping, &done, &root, call, upstream).await;
                return Err(err);
            }
            None => false,
        };
        if let (false, Some(failure)) = (accepted, default_failure) {
            // Undo earlier steps only when this one was definitely refused. After a timeout or a
            // 5xx the step may have gone through: undoing then could cancel what succeeded,
            // while leaving it lets a retry of the same request finish it (vendors dedupe by
            // the idempotency key the mapping derives from MoySklad's id).
            if matches!(failure, UpstreamFailure::Status(status) if (400..500).contains(&status)) {
                compensate(mapping, &done, &root, call, upstream).await;
            }
            return Err(Error::Upstream {
                step: step.name.clone(),
                failure,
            });
        }
        if let Some(remember) = &step.remember {
            let failed = |e| mapping_failed(call.op, &format!("steps.{}.remember", step.name), e);
            let key = remember
                .key
                .render(&root, Encoding::Verbatim)
                .map_err(failed)?;
            let value = remember.value.eval(&root).map_err(failed)?;
            call.memory
                .put(&call.tenant.name, &key, value, remember.ttl)
                .await?;
        }
        if let Value::Object(map) = &mut root {
            map.remove("step");
        }
        done.push(step);
    }
    // The operation changed what cached lookups say (a balance after a sale): drop them.
    for key in &plan.invalidate {
        let key = key
            .render(&root, Encoding::Verbatim)
            .map_err(|e| mapping_failed(call.op, "invalidate", e))?;
        call.cache.invalidate(&call.tenant.name, &key).await;
    }
    let kept = match &plan.keep {
        Some(expr) => expr
            .eval(&root)
            .map_err(|e| mapping_failed(call.op, "keep", e))?,
        None => Value::Null,
    };
    // The answer is read by the operation, which knows its model (`Outcome::read`).
    let answer = match plan.response {
        Some(_) => Answer::Pending(root),
        None => Answer::None,
    };
    Ok(Outcome { answer, kept })
}

/// A rule's `respond`: the answer, nothing kept (the plan stopped before its steps finished).
fn answered(body: Value) -> Outcome {
    Outcome {
        answer: Answer::Built(body),
        kept: Value::Null,
    }
}

/// What the first matching rule decided.
enum Verdict {
    Accept,
    Respond(Value),
    Fail(Error),
}

/// The first matching rule's decision; a rule with `pause_ms` also pauses the tenant's calls.
fn verdict<'r>(
    rules: impl Iterator<Item = &'r Rule>,
    root: &Value,
    op: Op,
    place: &str,
    limiter: Option<&TenantLimiter>,
) -> Result<Option<Verdict>, Error> {
    // Rules are many (every vendor-wide one after every step): natively compiled ones read
    // `root` as it is; for the others it is converted once, when the first needs it. A run of
    // rules comparing one operand with literals (`maxma_error == 3`, `== 4`, …) evaluates the
    // operand once.
    let mut input = None;
    let mut shared: Option<(&str, Option<Value>)> = None;
    for rule in rules {
        let hit = if let Some(key) = rule.when.operand_key() {
            if shared.as_ref().is_none_or(|(k, _)| *k != key) {
                shared = Some((key, rule.when.operand(root)));
            }
            let operand = shared.as_ref().and_then(|(_, v)| v.as_ref());
            rule.when.test_operand(operand, root)
        } else if rule.when.is_native() {
            rule.when.test(root)
        } else {
            rule.when
                .test_val(input.get_or_insert_with(|| to_val(root)).clone())
        };
        let hit = hit.map_err(|e| mapping_failed(op, &format!("{place}.when"), e))?;
        if !hit {
            continue;
        }
        if let (Some(pause), Some(limiter)) = (rule.pause, limiter) {
            limiter.pause(pause);
        }
        return Ok(Some(match &rule.action {
            RuleAction::Accept => Verdict::Accept,
            RuleAction::Respond(expr) => Verdict::Respond(
                expr.eval(root)
                    .map_err(|e| mapping_failed(op, &format!("{place}.respond"), e))?,
            ),
            RuleAction::Fail(plan_error) => {
                let message = plan_error
                    .message
                    .render(root, Encoding::Verbatim)
                    .map_err(|e| mapping_failed(op, &format!("{place}.error.message"), e))?;
                Verdict::Fail(Error::Refused {
                    status: plan_error.status,
                    code: plan_error.code,
                    title: plan_error.error.clone(),
                    message,
                    parameter: plan_error.parameter.clone(),
                })
            }
        }));
    }
    Ok(None)
}

fn mapping_failed(op: Op, at: &str, detail: EvalError) -> Error {
    Error::MappingFailed {
        op,
        at: at.to_string(),
        detail: detail.0,
    }
}

/// The input every expression sees.
fn root_object(call: &Invocation<'_>, req: Value, sale: Value, vendor: &str) -> Value {
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
fn record_step(root: &mut Value, name: &str, outcome: Value) {
    if let Some(Value::Object(steps)) = root.get_mut("steps") {
        steps.insert(name.to_string(), outcome);
    }
}

/// Moves `.step` (without its `name`) to `.steps.<name>`.
fn move_step(root: &mut Value, name: &str) {
    let Value::Object(map) = root else { return };
    let Some(mut outcome) = map.remove("step") else {
        return;
    };
    if let Value::Object(fields) = &mut outcome {
        fields.remove("name");
    }
    record_step(root, name, outcome);
}

fn set(root: &mut Value, key: &str, value: Value) {
    if let Value::Object(map) = root {
        map.insert(key.to_string(), value);
    }
}

fn with_name(mut outcome: Value, name: &str) -> Value {
    set(&mut outcome, "name", Value::String(name.to_string()));
    outcome
}

/// `{status, body, error}` for the rules, and the failure to report if no rule accepts it.
/// The body is parsed to what `need` says the plan may read of it (all of it when `None`).
fn step_outcome(
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

/// Sends `request`, and for a step the mapping marks idempotent, sends it again after a
/// transport failure, a 5xx or a 429, up to `retries` more times with jittered exponential
/// backoff — never past the request's deadline. A refusal (other 4xx) is never retried.
/// A 429 pauses the tenant's calls for what its `Retry-After` says; a retry goes through the
/// limiter again, so it honours the pause (or, when the pause is longer than the call may
/// wait, the vendor's 429 is the answer). Each attempt carries a call id of its own in the
/// header `call_id` (the mapping's `vendor.call_id_header`), when there is one.
async fn send_with_retries(
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

fn remaining(call: &Invocation<'_>, step: &str, wanted: Duration) -> Result<Duration, Error> {
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
fn build(
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
async fn compensate(
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

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_written_with_milliseconds_and_z() {
        let at = chrono::DateTime::from_timestamp(1_767_225_600, 7_000_000).unwrap();
        assert_eq!(
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "2026-01-01T00:00:00.007Z"
        );
        assert_eq!(
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        );
    }
}
