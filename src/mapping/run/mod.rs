//! Running an operation's plan: steps in order, rules and `verify` checks after each step,
//! compensations on failure, then the answer. Every expression is evaluated synchronously on
//! plain `serde_json::Value`s, so the future stays `Send` across the upstream awaits.

mod root;
mod rules;
mod send;

use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use engine::expr::EvalError;
use engine::op::Op;
use engine::plan::{Mapping, OpPlan, Step};
use engine::template::Encoding;

use super::memory::Memory;
use crate::cache::StepCache;
use crate::config::Tenant;
use crate::error::{Error, UpstreamFailure};
use crate::metrics::Metrics;
use crate::upstream::breaker::Breaker;
use crate::upstream::limit::TenantLimiter;
use crate::upstream::{Upstream, UpstreamError, UpstreamResponse};
use root::{move_step, record_step, root_object, set, step_outcome, with_name};
use rules::{Verdict, verdict};
use send::{build, compensate, remaining, send_with_retries};

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

/// The plan, step by step: what earlier calls remembered, the checks, each step in order,
/// then what the operation leaves behind and answers.
async fn run_plan(
    mapping: &Mapping,
    plan: &OpPlan,
    call: &Invocation<'_>,
    req: Value,
    sale: Value,
    upstream: &dyn Upstream,
) -> Result<Outcome, Error> {
    let mut root = root_object(call, req, sale, &mapping.vendor.name);
    recall(plan, call, &mut root).await?;
    if let Some(answer) = checks(plan, call, &root)? {
        return Ok(answer);
    }
    let mut done: Vec<&Step> = Vec::new();
    for step in &plan.steps {
        match run_step(mapping, plan, step, &done, call, &mut root, upstream).await? {
            StepEnd::Skipped => {}
            StepEnd::Done => done.push(step),
            StepEnd::Answered(answer) => return Ok(answer),
        }
    }
    finish(plan, call, root).await
}

/// `.recalled.<name>`: the values earlier calls remembered under the plan's `recall` keys.
async fn recall(plan: &OpPlan, call: &Invocation<'_>, root: &mut Value) -> Result<(), Error> {
    let mut recalled = Map::new();
    for (name, key) in &plan.recall {
        let key = key
            .render(root, Encoding::Verbatim)
            .map_err(|e| mapping_failed(call.op, &format!("recall.{name}"), e))?;
        recalled.insert(
            name.clone(),
            call.memory
                .get(&call.tenant.name, &key)
                .await?
                .unwrap_or(Value::Null),
        );
    }
    set(root, "recalled", Value::Object(recalled));
    Ok(())
}

/// The checks before any vendor call: a refusal, an answer that ends the plan here, or `None`
/// to go on.
fn checks(plan: &OpPlan, call: &Invocation<'_>, root: &Value) -> Result<Option<Outcome>, Error> {
    match verdict(plan.checks.iter(), root, call.op, "checks", None)? {
        Some(Verdict::Fail(err)) => Err(err),
        Some(Verdict::Respond(body)) => Ok(Some(answered(body))),
        Some(Verdict::Accept) | None => Ok(None),
    }
}

/// How one step ended, when it did not fail the operation.
enum StepEnd {
    /// Its `when` was false: nothing was sent.
    Skipped,
    /// It succeeded (or a rule accepted it): a later failure may have to undo it.
    Done,
    /// A rule answered MoySklad: the plan stops here.
    Answered(Outcome),
}

/// One step: sent (or answered from the cache), judged by the rules and its `verify` checks,
/// compensated on a refusal, and what it should leave remembered kept. `done`: the steps before it that succeeded.
async fn run_step(
    mapping: &Mapping,
    plan: &OpPlan,
    step: &Step,
    done: &[&Step],
    call: &Invocation<'_>,
    root: &mut Value,
    upstream: &dyn Upstream,
) -> Result<StepEnd, Error> {
    if let Some(when) = &step.when {
        let wanted = when
            .test(root)
            .map_err(|e| step_failed(call, step, "when", e))?;
        if !wanted {
            record_step(root, &step.name, json!({"skipped": true}));
            return Ok(StepEnd::Skipped);
        }
    }
    let (result, cache_key) = send(mapping, step, call, root, upstream).await?;
    let (decided, default_failure) = judge(mapping, plan, step, call, root, &result)?;
    let succeeded = match &decided {
        Some(Verdict::Accept) => true,
        None => default_failure.is_none(),
        Some(Verdict::Respond(_) | Verdict::Fail(_)) => false,
    };
    // A success is held against the step's own checks before anything is kept of it.
    let wrong_answer = if succeeded {
        verify(step, call, root)
    } else {
        None
    };
    // A cached answer that the rules did not take as a plain success (an error inside a 200
    // body, a "not found" answered as an empty list, an answer its checks refused) must not be
    // served again.
    if let Some(key) = &cache_key {
        let plain = matches!(decided, None | Some(Verdict::Accept))
            && default_failure.is_none()
            && wrong_answer.is_none();
        if !plain {
            call.cache.invalidate(&call.tenant.name, key).await;
        }
    }
    if let Some(err) = wrong_answer {
        // The vendor did what the answer says: undo it, and what came before, as after a
        // refusal of a later step.
        let mut undo = done.to_vec();
        undo.push(step);
        compensate(mapping, &undo, root, call, upstream).await;
        return Err(err);
    }
    let accepted = match decided {
        Some(Verdict::Accept) => true,
        Some(Verdict::Respond(body)) => return Ok(StepEnd::Answered(answered(body))),
        Some(Verdict::Fail(err)) => {
            compensate(mapping, done, root, call, upstream).await;
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
            compensate(mapping, done, root, call, upstream).await;
        }
        return Err(Error::Upstream {
            step: step.name.clone(),
            failure,
        });
    }
    remember(step, call, root).await?;
    if let Value::Object(map) = root {
        map.remove("step");
    }
    Ok(StepEnd::Done)
}

/// The step's vendor answer: from the cache when the step is cached and the answer is there
/// (no request is even built), else sent with the retries the step allows. Also the step's
/// cache key, if it has one.
async fn send(
    mapping: &Mapping,
    step: &Step,
    call: &Invocation<'_>,
    root: &Value,
    upstream: &dyn Upstream,
) -> Result<(Result<UpstreamResponse, UpstreamError>, Option<String>), Error> {
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
                .render(root, Encoding::Verbatim)
                .map_err(|e| step_failed(call, step, "cache.key", e))?,
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
        Some(response) => Ok(response),
        None => {
            let request = build(mapping, &step.call, root, &step.name, call, timeout)
                .map_err(|(field, e)| step_failed(call, step, field, e))?;
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
    Ok((result, cache_key.map(|(key, _)| key)))
}

/// The step's outcome put where the rules read it (`.step`, and `.steps.<name>` when something
/// reads it there), then the step's rules and the vendor's: what the first that matches
/// decided, and the failure to report if none accepts the answer.
fn judge(
    mapping: &Mapping,
    plan: &OpPlan,
    step: &Step,
    call: &Invocation<'_>,
    root: &mut Value,
    result: &Result<UpstreamResponse, UpstreamError>,
) -> Result<(Option<Verdict>, Option<UpstreamFailure>), Error> {
    let (outcome, default_failure) = step_outcome(result, step.answer_need.as_ref());
    if step.copy_outcome {
        record_step(root, &step.name, outcome.clone());
    }
    set(root, "step", with_name(outcome, &step.name));
    let step_rules = plan
        .rules
        .iter()
        .filter(|r| r.step.as_deref().is_none_or(|n| n == step.name));
    let place = format!("errors (after step {})", step.name);
    let decided = verdict(
        step_rules.chain(&mapping.vendor_rules),
        root,
        call.op,
        &place,
        call.limiter,
    )?;
    if !step.copy_outcome {
        // No rule read `.steps`: the outcome moves there now (compensations may read it).
        move_step(root, &step.name);
    }
    Ok((decided, default_failure))
}

/// The step's `verify` checks, in order: the error of the first that fails (or cannot be
/// evaluated: then the answer cannot be trusted either), else `None`.
fn verify(step: &Step, call: &Invocation<'_>, root: &Value) -> Option<Error> {
    for (i, check) in step.verify.iter().enumerate() {
        let field = format!("verify[{i}]");
        let (refusal, judged) = match check.that.test(root) {
            Ok(true) => continue,
            Ok(false) => {
                let refusal = match check.error.message.render(root, Encoding::Verbatim) {
                    Ok(message) => Error::Refused {
                        status: check.error.status,
                        code: check.error.code,
                        title: check.error.error.clone(),
                        message,
                        parameter: check.error.parameter.clone(),
                    },
                    Err(e) => step_failed(call, step, &format!("{field}.error.message"), e),
                };
                (refusal, "false")
            }
            Err(e) => (
                step_failed(call, step, &format!("{field}.that"), e),
                "not evaluated",
            ),
        };
        // Not the error's text: it is scrubbed of credentials only once the plan returns.
        tracing::warn!(
            request_id = call.request_id,
            tenant = %call.tenant.name,
            op = call.op.name(),
            step = %step.name,
            check = i,
            that = judged,
            code = check.error.code,
            "the step's answer failed its verify check: undoing it and the steps before"
        );
        return Some(refusal);
    }
    None
}

/// Keeps what the step's `remember` names for later calls.
async fn remember(step: &Step, call: &Invocation<'_>, root: &Value) -> Result<(), Error> {
    let Some(remember) = &step.remember else {
        return Ok(());
    };
    let failed = |e| step_failed(call, step, "remember", e);
    let key = remember
        .key
        .render(root, Encoding::Verbatim)
        .map_err(failed)?;
    let value = remember.value.eval(root).map_err(failed)?;
    call.memory
        .put(&call.tenant.name, &key, value, remember.ttl)
        .await?;
    Ok(())
}

/// After the last step: cached lookups the operation changed dropped, what it keeps with its
/// journal record, and its answer (read later by the operation, which knows its model:
/// [`Outcome::read`]).
async fn finish(plan: &OpPlan, call: &Invocation<'_>, root: Value) -> Result<Outcome, Error> {
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

fn mapping_failed(op: Op, at: &str, detail: EvalError) -> Error {
    Error::MappingFailed {
        op,
        at: at.to_string(),
        detail: detail.0,
    }
}

/// [`mapping_failed`] at `steps.<name>.<field>`.
fn step_failed(call: &Invocation<'_>, step: &Step, field: &str, detail: EvalError) -> Error {
    mapping_failed(call.op, &format!("steps.{}.{field}", step.name), detail)
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
