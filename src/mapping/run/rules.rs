//! Rules (checks, a step's error rules, the vendor's): the first that matches decides.

use serde_json::Value;

use engine::jaq_value::to_val;
use engine::op::Op;
use engine::plan::{Rule, RuleAction};
use engine::template::Encoding;

use super::mapping_failed;
use crate::error::Error;
use crate::upstream::limit::TenantLimiter;

/// What the first matching rule decided.
pub(super) enum Verdict {
    Accept,
    Respond(Value),
    Fail(Error),
}

/// The first matching rule's decision; a rule with `pause_ms` also pauses the tenant's calls.
pub(super) fn verdict<'r>(
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
