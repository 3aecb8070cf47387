//! A mapping file compiled: every expression and template parsed once, every reference checked.
//! Errors name the file, the operation, the step and the field, so an ops person can fix them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method, StatusCode};

use crate::example::{self, Example};
use crate::expr::Expr;
use crate::file::{self, CallSection, ErrorSpec, MappingFile, RuleSection, StepSection};
use crate::need::Need;
use crate::op::Op;
use crate::template::{Template, encode_component};

/// Default timeout of one upstream call when neither the step nor the vendor sets one.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Mapping {
    pub path: PathBuf,
    pub vendor: Vendor,
    /// Rules after every step of every operation, after the operation's own.
    pub vendor_rules: Vec<Rule>,
    ops: HashMap<Op, OpPlan>,
    pub examples: Vec<Example>,
}

#[derive(Debug)]
pub struct Vendor {
    pub name: String,
    pub headers: Vec<(HeaderName, Template)>,
    pub timeout: Duration,
    /// Extra attempts for steps marked idempotent.
    pub retries: u32,
    /// Set to a fresh UUID on every call attempt (`vendor.call_id_header`).
    pub call_id_header: Option<HeaderName>,
}

#[derive(Debug)]
pub struct OpPlan {
    /// Remembered values to read first: `.recalled.<name>`.
    pub recall: Vec<(String, Template)>,
    /// Rules evaluated before the first step.
    pub checks: Vec<Rule>,
    pub steps: Vec<Step>,
    pub rules: Vec<Rule>,
    pub response: Option<Expr>,
    /// Cache keys dropped when the operation succeeds.
    pub invalidate: Vec<Template>,
    /// What a sale or return keeps with its journal record.
    pub keep: Option<Expr>,
}

#[derive(Debug)]
pub struct Call {
    pub method: Method,
    pub path: Template,
    /// Encoded key and value template, in name order.
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: Option<Expr>,
}

#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub call: Call,
    pub when: Option<Expr>,
    pub idempotent: bool,
    pub timeout: Option<Duration>,
    pub cache: Option<CachePlan>,
    pub compensate: Option<Call>,
    pub remember: Option<RememberPlan>,
    /// Checks of the answer after the rules took it as a success, in order (`verify`).
    pub verify: Vec<Verify>,
    /// What of the vendor's answer body any expression of the operation may read (`need.rs`),
    /// settled for parsing; `None`: all of it (parsed whole).
    pub answer_need: Option<Need>,
    /// Whether something that sees this step's outcome as `.step` (its rules, the vendor's,
    /// `remember`, `verify`) may also read `.steps`: then the outcome is in both places at once
    /// (a copy); else it moves to `.steps.<name>` once the rules are done.
    pub copy_outcome: bool,
}

/// A check of a step's answer (`verify`): when `that` is false, this step and the earlier ones
/// are undone and the operation answers `error`.
#[derive(Debug)]
pub struct Verify {
    pub that: Expr,
    pub error: ErrorPlan,
}

#[derive(Debug)]
pub struct RememberPlan {
    pub key: Template,
    pub value: Expr,
    pub ttl: Duration,
}

#[derive(Debug)]
pub struct CachePlan {
    pub key: Template,
    pub ttl: Duration,
}

#[derive(Debug)]
pub struct Rule {
    pub step: Option<String>,
    pub when: Expr,
    pub action: RuleAction,
    /// When the rule fires, the tenant's calls pause this long (`pause_ms`).
    pub pause: Option<Duration>,
}

impl Rule {
    /// Whether the rule may read the top-level `key` of its input (`true` when unknown).
    pub fn may_read(&self, key: &str) -> bool {
        let reads = |keys: Option<Vec<String>>| keys.is_none_or(|k| k.iter().any(|k| k == key));
        reads(self.when.input_keys())
            || match &self.action {
                RuleAction::Fail(plan) => reads(plan.message.input_keys()),
                RuleAction::Respond(expr) => reads(expr.input_keys()),
                RuleAction::Accept => false,
            }
    }
}

#[derive(Debug)]
pub enum RuleAction {
    Fail(ErrorPlan),
    Respond(Expr),
    Accept,
}

#[derive(Debug)]
pub struct ErrorPlan {
    pub status: StatusCode,
    pub code: i64,
    pub error: String,
    pub message: Template,
    pub parameter: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {at}: {message}")]
pub struct LoadError {
    pub path: String,
    /// Where in the file: `ops."retaildemand.recalc".steps[0] (calc).body`.
    pub at: String,
    pub message: String,
}

impl Mapping {
    /// Reads and compiles a mapping file.
    pub fn load(path: &Path) -> Result<Mapping, LoadError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| LoadError {
            path: shown.clone(),
            at: "file".into(),
            message: e.to_string(),
        })?;
        Mapping::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Mapping, LoadError> {
        let shown = path.display().to_string();
        let file: MappingFile = toml::from_str(text).map_err(|e| LoadError {
            path: shown.clone(),
            at: "toml".into(),
            message: e.to_string(),
        })?;
        compile(file, path).map_err(|(at, message)| LoadError {
            path: shown,
            at,
            message,
        })
    }

    /// The plan of `op`, if the mapping covers it.
    pub fn op(&self, op: Op) -> Option<&OpPlan> {
        self.ops.get(&op)
    }
}

/// Where in the file (`ops."retaildemand.recalc".steps[0] (calc).body`) and what is wrong.
type Failure = (String, String);

fn at(place: impl Into<String>) -> impl FnOnce(String) -> Failure {
    let place = place.into();
    move |message| (place, message)
}

fn compile(file: MappingFile, path: &Path) -> Result<Mapping, Failure> {
    let defs_text = file.defs.unwrap_or_default();
    let defs = defs_text.as_str();
    if !defs.trim().is_empty() {
        // Definitions alone are not a program: check them with a trivial body.
        Expr::compile_with(defs, ".").map_err(at("defs"))?;
    }
    if file.vendor.name.trim().is_empty() {
        return Err(("vendor.name".into(), "must not be empty".into()));
    }
    if let Some(url) = &file.vendor.base_url {
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !scheme_ok || url.parse::<http::Uri>().is_err() || url.contains('?') {
            return Err((
                "vendor.base_url".into(),
                "must be an http(s) URL without a query".into(),
            ));
        }
    }
    let vendor = Vendor {
        name: file.vendor.name,
        headers: headers(&file.vendor.headers, "vendor.headers", defs)?,
        timeout: millis(file.vendor.timeout_ms, "vendor.timeout_ms")?
            .unwrap_or(DEFAULT_CALL_TIMEOUT),
        retries: match file.vendor.retries {
            Some(n) if n > 5 => return Err(("vendor.retries".into(), "must be at most 5".into())),
            Some(n) => n,
            None => 2,
        },
        call_id_header: file
            .vendor
            .call_id_header
            .as_deref()
            .map(|name| {
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    (
                        "vendor.call_id_header".to_string(),
                        "not a valid header name".to_string(),
                    )
                })
            })
            .transpose()?,
    };
    if let Some(name) = &vendor.call_id_header {
        sets_call_id_header(&vendor.headers, name, "vendor.headers")?;
    }
    let mut vendor_rules = Vec::with_capacity(file.errors.len());
    for (i, rule) in file.errors.into_iter().enumerate() {
        let place = format!("errors[{i}]");
        if rule.step.is_some() {
            return Err((
                format!("{place}.step"),
                "vendor-wide rules apply to every step; remove step".into(),
            ));
        }
        vendor_rules.push(compile_rule(rule, &place, defs)?);
    }
    let mut ops = HashMap::new();
    for (name, section) in file.ops {
        let place = format!("ops.\"{name}\"");
        let op = Op::named(&name).ok_or_else(|| {
            let known: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
            (
                place.clone(),
                format!("unknown operation; known: {}", known.join(", ")),
            )
        })?;
        let mut steps: Vec<Step> = Vec::with_capacity(section.steps.len());
        for (i, step) in section.steps.into_iter().enumerate() {
            let step_place = format!("{place}.steps[{i}] ({})", step.name);
            if steps.iter().any(|s| s.name == step.name) {
                return Err((step_place, "duplicate step name".into()));
            }
            let step = compile_step(step, &step_place, defs)?;
            if let Some(name) = &vendor.call_id_header {
                sets_call_id_header(&step.call.headers, name, &format!("{step_place}.headers"))?;
                if let Some(undo) = &step.compensate {
                    let place = format!("{step_place}.compensate.headers");
                    sets_call_id_header(&undo.headers, name, &place)?;
                }
            }
            steps.push(step);
        }
        let mut checks = Vec::with_capacity(section.checks.len());
        for (i, rule) in section.checks.into_iter().enumerate() {
            let check_place = format!("{place}.checks[{i}]");
            if rule.pause_ms.is_some() {
                return Err((
                    format!("{check_place}.pause_ms"),
                    "checks run before any vendor call; pause_ms belongs to error rules".into(),
                ));
            }
            if rule.step.is_some() {
                return Err((
                    format!("{check_place}.step"),
                    "checks run before any step; remove step".into(),
                ));
            }
            checks.push(compile_rule(rule, &check_place, defs)?);
        }
        let mut rules = Vec::with_capacity(section.errors.len());
        for (i, rule) in section.errors.into_iter().enumerate() {
            let rule_place = format!("{place}.errors[{i}]");
            if let Some(step) = &rule.step {
                if !steps.iter().any(|s| &s.name == step) {
                    return Err((
                        format!("{rule_place}.step"),
                        format!("no step named {step:?} in this operation"),
                    ));
                }
            }
            rules.push(compile_rule(rule, &rule_place, defs)?);
        }
        for step in &mut steps {
            // `verify` reads `.step` after the rules, and when it fails this step's own
            // compensation reads `.steps.<name>`: both must be there.
            step.copy_outcome = step.remember.is_some()
                || !step.verify.is_empty()
                || rules
                    .iter()
                    .filter(|r| r.step.as_deref().is_none_or(|n| n == step.name))
                    .chain(&vendor_rules)
                    .any(|r| r.may_read("steps"));
        }
        let response = section
            .response
            .map(|r| {
                Expr::compile_with(defs, &r.body).map_err(at(format!("{place}.response.body")))
            })
            .transpose()?;
        let recall = section
            .recall
            .iter()
            .map(|(name, key)| {
                Ok((
                    name.clone(),
                    Template::parse_with(key, defs)
                        .map_err(at(format!("{place}.recall.{name}")))?,
                ))
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        let invalidate = section
            .invalidate
            .iter()
            .enumerate()
            .map(|(i, key)| {
                Template::parse_with(key, defs).map_err(at(format!("{place}.invalidate[{i}]")))
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        if section.keep.is_some()
            && !matches!(op, Op::RetaildemandCreate | Op::RetailsalesreturnCreate)
        {
            return Err((
                format!("{place}.keep"),
                "only sales and returns keep values with their journal record; use a step's remember".into(),
            ));
        }
        let keep = section
            .keep
            .map(|k| Expr::compile_with(defs, &k).map_err(at(format!("{place}.keep"))))
            .transpose()?;
        let mut plan = OpPlan {
            keep,
            invalidate,
            recall,
            checks,
            steps,
            rules,
            response,
        };
        let reads = plan_needs(&plan, &vendor, &vendor_rules);
        for step in &mut plan.steps {
            step.answer_need = answer_need(reads.as_ref(), &step.name);
        }
        ops.insert(op, plan);
    }
    let mut examples = Vec::with_capacity(file.examples.len());
    for (i, example) in file.examples.into_iter().enumerate() {
        let steps_of = |op: Op| {
            let plan = ops.get(&op)?;
            Some(plan.steps.iter().map(|s| s.name.as_str()).collect())
        };
        examples.push(example::compile(
            example,
            &format!("examples[{i}]"),
            steps_of,
        )?);
    }
    Ok(Mapping {
        path: path.to_path_buf(),
        vendor,
        vendor_rules,
        ops,
        examples,
    })
}

/// What of the root object every expression, template and rule of `plan` (and the vendor's
/// headers and rules) may read together; `None` when one of them cannot say (jaq-only).
/// Every step's answer is parsed for all of them, whichever runs after it: a superset is safe.
fn plan_needs(plan: &OpPlan, vendor: &Vendor, vendor_rules: &[Rule]) -> Option<Need> {
    let mut reads: Vec<Option<Need>> = Vec::new();
    let call = |reads: &mut Vec<Option<Need>>, c: &Call| {
        reads.push(c.path.input_needs());
        reads.extend(c.query.iter().map(|(_, t)| t.input_needs()));
        reads.extend(c.headers.iter().map(|(_, t)| t.input_needs()));
        reads.extend(c.body.iter().map(Expr::input_needs));
    };
    reads.extend(vendor.headers.iter().map(|(_, t)| t.input_needs()));
    for rule in plan.rules.iter().chain(vendor_rules) {
        reads.push(rule.when.input_needs());
        reads.push(match &rule.action {
            RuleAction::Fail(e) => e.message.input_needs(),
            RuleAction::Respond(expr) => expr.input_needs(),
            RuleAction::Accept => Some(Need::kind()),
        });
    }
    for step in &plan.steps {
        call(&mut reads, &step.call);
        if let Some(c) = &step.compensate {
            call(&mut reads, c);
        }
        reads.extend(step.when.iter().map(Expr::input_needs));
        reads.extend(step.cache.iter().map(|c| c.key.input_needs()));
        if let Some(remember) = &step.remember {
            reads.push(remember.key.input_needs());
            reads.push(remember.value.input_needs());
        }
        for check in &step.verify {
            reads.push(check.that.input_needs());
            reads.push(check.error.message.input_needs());
        }
    }
    reads.extend(plan.invalidate.iter().map(Template::input_needs));
    reads.extend(
        plan.response
            .iter()
            .chain(&plan.keep)
            .map(Expr::input_needs),
    );
    let mut need = Need::kind();
    for read in reads {
        need.merge(read?);
    }
    Some(need)
}

/// What of step `name`'s answer body the plan may read, as `.step.body` (its rules) or
/// `.steps.<name>.body`; `None`: all of it.
fn answer_need(reads: Option<&Need>, name: &str) -> Option<Need> {
    let reads = reads?;
    let mut need = Need::kind();
    for path in [&["step", "body"][..], &["steps", name, "body"]] {
        if let Some(n) = reads.at(path) {
            need.merge(n);
        }
    }
    match need {
        Need::All => None,
        need => Some(need.settled()),
    }
}

fn millis(value: Option<u64>, place: &str) -> Result<Option<Duration>, Failure> {
    match value {
        Some(0) => Err((place.into(), "must be at least 1".into())),
        Some(ms) if ms > 600_000 => Err((place.into(), "must be at most 600000".into())),
        other => Ok(other.map(Duration::from_millis)),
    }
}

fn method(text: &str, place: &str) -> Result<Method, Failure> {
    file::method(text).map_err(|message| (place.to_string(), message))
}

/// A template for the header `vendor.call_id_header` names would be overwritten on every call.
fn sets_call_id_header(
    headers: &[(HeaderName, Template)],
    name: &HeaderName,
    place: &str,
) -> Result<(), Failure> {
    match headers.iter().find(|(h, _)| h == name) {
        Some(_) => Err((
            format!("{place}.{name}"),
            "vendor.call_id_header sets this header on every call; remove it here".into(),
        )),
        None => Ok(()),
    }
}

fn headers(
    map: &BTreeMap<String, String>,
    place: &str,
    defs: &str,
) -> Result<Vec<(HeaderName, Template)>, Failure> {
    map.iter()
        .map(|(name, value)| {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                (
                    format!("{place}.{name}"),
                    "not a valid header name".to_string(),
                )
            })?;
            let template =
                Template::parse_with(value, defs).map_err(at(format!("{place}.{name}")))?;
            Ok((header, template))
        })
        .collect()
}

fn compile_call(call: CallSection, place: &str, defs: &str) -> Result<Call, Failure> {
    let path = Template::parse_with(&call.path, defs).map_err(at(format!("{place}.path")))?;
    if !call.path.starts_with('/') && !call.path.starts_with('{') {
        return Err((
            format!("{place}.path"),
            "must start with / (it is appended to the tenant's base_url)".into(),
        ));
    }
    let query = call
        .query
        .iter()
        .map(|(k, v)| {
            Ok((
                encode_component(k),
                Template::parse_with(v, defs).map_err(at(format!("{place}.query.{k}")))?,
            ))
        })
        .collect::<Result<_, Failure>>()?;
    Ok(Call {
        method: method(&call.method, &format!("{place}.method"))?,
        path,
        query,
        headers: headers(&call.headers, &format!("{place}.headers"), defs)?,
        body: call
            .body
            .map(|b| Expr::compile_with(defs, &b).map_err(at(format!("{place}.body"))))
            .transpose()?,
    })
}

fn compile_step(step: StepSection, place: &str, defs: &str) -> Result<Step, Failure> {
    if step.name.is_empty()
        || !step
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err((
            format!("{place}.name"),
            "use letters, digits and _ (it is used as .steps.<name>)".into(),
        ));
    }
    let call = compile_call(
        CallSection {
            method: step.method,
            path: step.path,
            query: step.query,
            headers: step.headers,
            body: step.body,
        },
        place,
        defs,
    )?;
    let cache = step
        .cache
        .map(|c| {
            if c.ttl_secs == 0 {
                return Err((
                    format!("{place}.cache.ttl_secs"),
                    "must be at least 1".to_string(),
                ));
            }
            Ok(CachePlan {
                key: Template::parse_with(&c.key, defs)
                    .map_err(at(format!("{place}.cache.key")))?,
                ttl: Duration::from_secs(c.ttl_secs),
            })
        })
        .transpose()?;
    Ok(Step {
        name: step.name,
        call,
        when: step
            .when
            .map(|w| Expr::compile_with(defs, &w).map_err(at(format!("{place}.when"))))
            .transpose()?,
        idempotent: step.idempotent,
        timeout: millis(step.timeout_ms, &format!("{place}.timeout_ms"))?,
        cache,
        remember: step
            .remember
            .map(|r| {
                if r.ttl_secs == 0 {
                    return Err((
                        format!("{place}.remember.ttl_secs"),
                        "must be at least 1".to_string(),
                    ));
                }
                Ok(RememberPlan {
                    key: Template::parse_with(&r.key, defs)
                        .map_err(at(format!("{place}.remember.key")))?,
                    value: Expr::compile_with(defs, &r.value)
                        .map_err(at(format!("{place}.remember.value")))?,
                    ttl: Duration::from_secs(r.ttl_secs),
                })
            })
            .transpose()?,
        compensate: step
            .compensate
            .map(|c| compile_call(c, &format!("{place}.compensate"), defs))
            .transpose()?,
        verify: step
            .verify
            .into_iter()
            .enumerate()
            .map(|(i, check)| compile_verify(check, &format!("{place}.verify[{i}]"), defs))
            .collect::<Result<_, Failure>>()?,
        // Decided once the operation's rules are compiled.
        copy_outcome: true,
        answer_need: None,
    })
}

/// An `error` table: the LoyaltyAPI envelope a rule or a check answers.
fn compile_error(spec: ErrorSpec, place: &str, defs: &str) -> Result<ErrorPlan, Failure> {
    let status = StatusCode::from_u16(spec.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .ok_or_else(|| {
            (
                format!("{place}.status"),
                "must be a 4xx or 5xx status".to_string(),
            )
        })?;
    if spec.error.trim().is_empty() {
        return Err((
            format!("{place}.error"),
            "the title must not be empty".into(),
        ));
    }
    Ok(ErrorPlan {
        status,
        code: spec.code,
        error: spec.error,
        message: Template::parse_with(&spec.message, defs)
            .map_err(at(format!("{place}.message")))?,
        parameter: spec.parameter,
    })
}

/// A step's `verify` check. Its error is a 4xx: the vendor did answer, and what the plan did is
/// undone, so the refusal is definite. A 5xx reads as "vendor unavailable" to the journal, which
/// would accept a sale for the outbox to send again.
fn compile_verify(check: file::VerifySection, place: &str, defs: &str) -> Result<Verify, Failure> {
    let that = Expr::compile_with(defs, &check.that).map_err(at(format!("{place}.that")))?;
    let error = compile_error(check.error, &format!("{place}.error"), defs)?;
    if !error.status.is_client_error() {
        return Err((
            format!("{place}.error.status"),
            "must be a 4xx status: the step and the ones before it are undone, so the refusal \
             is definite (a 5xx would read as \"vendor unavailable\" and queue a sale for the outbox)"
                .into(),
        ));
    }
    Ok(Verify { that, error })
}

fn compile_rule(rule: RuleSection, place: &str, defs: &str) -> Result<Rule, Failure> {
    let when = Expr::compile_with(defs, &rule.when).map_err(at(format!("{place}.when")))?;
    let pause = match rule.pause_ms {
        None => None,
        Some(ms @ 1..=600_000) => Some(Duration::from_millis(ms)),
        Some(_) => {
            return Err((
                format!("{place}.pause_ms"),
                "must be between 1 and 600000 milliseconds".into(),
            ));
        }
    };
    let action = match (rule.error, rule.respond, rule.accept) {
        (Some(spec), None, false) => {
            RuleAction::Fail(compile_error(spec, &format!("{place}.error"), defs)?)
        }
        (None, Some(respond), false) => RuleAction::Respond(
            Expr::compile_with(defs, &respond).map_err(at(format!("{place}.respond")))?,
        ),
        (None, None, true) => RuleAction::Accept,
        _ => {
            return Err((
                place.into(),
                "give exactly one of error, respond or accept = true".into(),
            ));
        }
    };
    Ok(Rule {
        step: rule.step,
        when,
        action,
        pause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shipped(file: &str) -> Mapping {
        // The shipped mappings, at the repository's top (this crate is `crates/engine`).
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../mappings")
            .join(file);
        Mapping::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    fn step<'m>(mapping: &'m Mapping, op: Op, name: &str) -> &'m Step {
        let plan = mapping.op(op).expect("op mapped");
        plan.steps.iter().find(|s| s.name == name).expect("step")
    }

    /// The hot path's vendor answers are parsed to what the recalc reads: MAXMA's calculation
    /// keeps each row's id and total discount, not its bonuses and discounts by kind. A change to
    /// the mapping that makes the analysis give up (a jaq-only expression, a row passed on
    /// whole) shows here, not only as a slower benchmark.
    #[test]
    fn maxma_recalc_parses_only_what_it_reads() {
        let maxma = shipped("maxma.toml");
        let calc = step(&maxma, Op::RetaildemandRecalc, "calc");
        let need = calc
            .answer_need
            .as_ref()
            .expect("calc's answer is projected");
        let answer = json!({
            "calculationResult": {
                "rows": [{"id": "0", "totalDiscount": 18.85,
                          "bonuses": {"applied": 19, "collected": 11},
                          "discounts": {"auto": 0.0, "bonuses": 18.85}}],
                "bonuses": {"applied": 300, "collected": 176, "maxToApply": 500,
                            "error": {"code": 1, "description": "d", "extra": 1}},
                "summary": {"totalDiscount": 18.85}
            },
            "errorCode": 0, "description": "", "unrelated": [1, 2]
        });
        assert_eq!(
            need.project(&answer),
            json!({
                "calculationResult": {
                    "rows": [{"id": "0", "totalDiscount": 18.85}],
                    "bonuses": {"applied": 300, "collected": 176, "maxToApply": 500,
                                "error": {"code": 1, "description": "d", "extra": 1}}
                },
                "errorCode": 0, "description": ""
            })
        );
        // The cached balance answer is parsed for the recalc too (it is cached as text).
        let balance = step(&maxma, Op::RetaildemandRecalc, "balance");
        assert!(balance.answer_need.is_some());
    }

    /// What only a `verify` check reads of an answer is parsed too: without it the check would
    /// see `null` where MAXMA says how many bonuses it applied, and let a wrong answer through.
    #[test]
    fn the_fields_verify_reads_are_parsed() {
        let maxma = shipped("maxma.toml");
        let set = step(&maxma, Op::RetaildemandCreate, "set");
        assert!(!set.verify.is_empty());
        assert!(set.copy_outcome, "verify reads .step after the rules");
        let need = set.answer_need.as_ref().expect("the answer is projected");
        let answer = json!({"ticket": "T", "receiptInfo": [],
            "calculationResult": {"bonuses": {"applied": 0, "collected": 5}, "summary": {}}});
        assert_eq!(
            need.project(&answer),
            json!({"ticket": "T", "calculationResult": {"bonuses": {"applied": 0}}})
        );
    }

    #[test]
    fn verify_is_compiled_with_errors_naming_its_place() {
        let load = |verify: &str| {
            let text = format!(
                r#"
                [vendor]
                name = "v"
                [[ops."retaildemand.create".steps]]
                name = "sale"
                method = "POST"
                path = "/sale"
                [[ops."retaildemand.create".steps.verify]]
                {verify}
                "#
            );
            Mapping::parse(&text, Path::new("v.toml"))
        };
        let error =
            r#"error = { status = 409, code = 1, error = "Отказ", message = "{.step.body.n}" }"#;
        let ok = load(&format!("that = '.step.body.n == 1'\n{error}")).expect("compiles");
        let plan = ok.op(Op::RetaildemandCreate).expect("op");
        assert_eq!(plan.steps[0].verify.len(), 1);
        for (verify, at, says) in [
            (
                format!("that = '.step.body.n =='\n{error}"),
                r#"ops."retaildemand.create".steps[0] (sale).verify[0].that"#,
                "",
            ),
            (
                "that = 'true'\nerror = { status = 502, code = 1, error = \"x\", message = \"y\" }"
                    .to_string(),
                r#"ops."retaildemand.create".steps[0] (sale).verify[0].error.status"#,
                "must be a 4xx status",
            ),
            (
                "that = 'true'\nerror = { status = 409, code = 1, error = \"x\", message = \"{.a\" }"
                    .to_string(),
                r#"ops."retaildemand.create".steps[0] (sale).verify[0].error.message"#,
                "",
            ),
            (
                "that = 'true'".to_string(),
                "toml",
                "missing field `error`",
            ),
        ] {
            let e = load(&verify).expect_err(&verify);
            assert_eq!(e.at, at, "{verify}: {e}");
            assert!(e.message.contains(says), "{verify}: {e}");
        }
    }
}
