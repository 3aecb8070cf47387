//! Running golden examples (`engine::example`): each example's MoySklad request goes through
//! the operation's handler, as the server would run it, against a vendor that answers from the
//! example's canned table; the engine then holds what happened against what the example expects.
//! `loyalty-bridge check` and `cargo test` run them; `loyalty-bridge map` uses the same
//! machinery for a dry run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use engine::example::{Canned, EXAMPLE_BASE_URL, Example, Given, MadeCall, Observed, relative};
use engine::plan::Mapping;
use serde_json::Map;

use super::journal::Journal;
use super::ops::{self, OpContext};
use crate::cache::StepCache;
use crate::config::{Limits, OutboxPolicy, Tenant, TokenHash};
use crate::error::{self, Error};
use crate::mapping::memory::Memory;
use crate::secret::Secret;
use crate::store::{Kind, Store};
use crate::upstream::{Upstream, UpstreamError, UpstreamFuture, UpstreamRequest, UpstreamResponse};

/// How long an example's `remembered` values live: the whole example, whatever it waits for.
const SEEDED_FOR: Duration = Duration::from_secs(3600);

/// Answers from a table by step name, and records every request.
pub struct CannedUpstream {
    answers: BTreeMap<String, Canned>,
    /// Answer for steps without a canned one (`None`: such a call is an error).
    fallback: Option<Canned>,
    pub calls: Mutex<Vec<UpstreamRequest>>,
}

impl CannedUpstream {
    pub fn new(answers: BTreeMap<String, Canned>, fallback: Option<Canned>) -> Self {
        CannedUpstream {
            answers,
            fallback,
            calls: Mutex::new(Vec::new()),
        }
    }

    pub fn take_calls(&self) -> Vec<UpstreamRequest> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Upstream for CannedUpstream {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture<'_> {
        let canned = self
            .answers
            .get(&request.step)
            .or(self.fallback.as_ref())
            .cloned();
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request);
        Box::pin(async move {
            match canned {
                Some(Canned::Answer { status, body }) => Ok(UpstreamResponse {
                    status,
                    body: Bytes::from(body),
                    retry_after: None,
                }),
                Some(Canned::Timeout) => Err(UpstreamError::Timeout),
                Some(Canned::Unreachable) => Err(UpstreamError::Connect("canned".into())),
                None => Err(UpstreamError::Transport(
                    "the example has no canned answer for this step".into(),
                )),
            }
        })
    }
}

/// The name of the tenant examples and dry runs run as.
pub const EXAMPLE_TENANT: &str = "example";

/// A tenant for examples: no secrets, no settings, the pretend vendor's URL.
pub fn example_tenant(mapping: &Mapping) -> Tenant {
    Tenant {
        name: EXAMPLE_TENANT.into(),
        token_hash: TokenHash::of(""),
        mapping: mapping.path.clone(),
        base_url: EXAMPLE_BASE_URL.into(),
        credentials: BTreeMap::new(),
        // What a configured tenant without `[tenants.settings]` has.
        settings: Value::Object(Map::new()),
        limits: Limits::default(),
        // Examples check the mapping's answer to a failing vendor, not the outbox's.
        outbox: OutboxPolicy {
            earning_sales: false,
            spending_sales: false,
            returns: false,
        },
    }
}

/// The MoySklad answer: status and JSON body (`Null` when empty).
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// For a mapping failure, what went wrong where (the envelope hides it from MoySklad).
    pub detail: Option<String>,
}

/// Runs one MoySklad request through `mapping` against `upstream`, as the server would, for
/// the example tenant.
pub async fn answer(
    mapping: Arc<Mapping>,
    op: ops::Op,
    request: &Value,
    upstream: Arc<dyn Upstream>,
) -> Answer {
    let tenant = Arc::new(example_tenant(&mapping));
    answer_as(tenant, mapping, op, request, upstream).await
}

/// [`answer`] for a given tenant (its base URL and credentials).
pub async fn answer_as(
    tenant: Arc<Tenant>,
    mapping: Arc<Mapping>,
    op: ops::Op,
    request: &Value,
    upstream: Arc<dyn Upstream>,
) -> Answer {
    answer_with_memory(
        tenant,
        mapping,
        op,
        request,
        upstream,
        Arc::new(Memory::new()),
    )
    .await
}

/// [`answer_as`] sharing `memory` with other calls (a verify, then the sale that needs its code).
pub async fn answer_with_memory(
    tenant: Arc<Tenant>,
    mapping: Arc<Mapping>,
    op: ops::Op,
    request: &Value,
    upstream: Arc<dyn Upstream>,
    memory: Arc<Memory>,
) -> Answer {
    answer_with_state(tenant, mapping, op, request, upstream, memory, None).await
}

/// A journal in an in-memory SQLite database, for examples and tests that need sales and
/// returns to go through one (a return that reads what its sale kept).
pub async fn memory_journal() -> Result<Arc<Journal>, crate::store::StoreError> {
    let store =
        crate::store::SqliteStore::open(std::path::Path::new(crate::config::MEMORY_STORE)).await?;
    Ok(Arc::new(Journal {
        store: Arc::new(store),
        queued: Default::default(),
    }))
}

/// [`answer_with_memory`], sales and returns going through `journal` when given.
pub async fn answer_with_state(
    tenant: Arc<Tenant>,
    mapping: Arc<Mapping>,
    op: ops::Op,
    request: &Value,
    upstream: Arc<dyn Upstream>,
    memory: Arc<Memory>,
    journal: Option<Arc<Journal>>,
) -> Answer {
    let (query, body) = if op.has_body() {
        (None, serde_json::to_vec(request).unwrap_or_default())
    } else {
        (Some(query_string(request)), Vec::new())
    };
    let outcome = match ops::Request::parse(op, query.as_deref(), &body) {
        Ok(parsed) => {
            let ctx = OpContext {
                tenant,
                request_id: "example".into(),
                mapping: Some(mapping),
                upstream,
                upstream_calls: Default::default(),
                deadline: Instant::now() + Duration::from_secs(30),
                memory,
                cache: Arc::new(StepCache::new(1_000)),
                limiter: None,
                breaker: None,
                journal,
                metrics: None,
            };
            parsed.apply(&ctx).await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(reply) => Answer {
            status: reply.status().as_u16(),
            body: reply
                .body()
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null),
            detail: None,
        },
        Err(err) => Answer {
            status: err.status().as_u16(),
            body: serde_json::from_slice(&error::envelope(&err)).unwrap_or(Value::Null),
            detail: match &err {
                Error::MappingFailed { at, detail, .. } => {
                    Some(format!("mapping failed at {at}: {detail}"))
                }
                _ => None,
            },
        },
    }
}

/// `{"search": "+7…", "retailStoreId": "…"}` → `search=%2B7…&retailStoreId=…`.
fn query_string(request: &Value) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    if let Value::Object(map) = request {
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.append_pair(k, &text);
        }
    }
    out.finish()
}

/// A journal that knows the return's sale (`demand.meta.id`) as done, keeping `sale.kept`.
async fn seed_sale(tenant: &str, request: &Value, sale: &Value) -> Result<Arc<Journal>, String> {
    let id = request
        .pointer("/demand/meta/id")
        .and_then(Value::as_str)
        .filter(|id| !id.trim().is_empty())
        .ok_or("a return of a known sale needs the request's demand.meta.id")?;
    let journal = memory_journal().await.map_err(|e| e.to_string())?;
    let kept = sale.get("kept").cloned().unwrap_or(Value::Null);
    let store: &dyn Store = journal.store.as_ref();
    store
        .begin(tenant, Kind::Sale, id, 0, i64::MAX / 2)
        .await
        .map_err(|e| e.to_string())?;
    store
        .finish(tenant, Kind::Sale, id, &kept, 0)
        .await
        .map_err(|e| e.to_string())?;
    Ok(journal)
}

/// The outcome of one example: empty `problems` means it passed.
pub struct ExampleReport {
    pub name: String,
    pub problems: Vec<String>,
}

/// Runs every example of `mapping`.
pub async fn run_examples(mapping: &Arc<Mapping>) -> Vec<ExampleReport> {
    let mut reports = Vec::with_capacity(mapping.examples.len());
    for example in &mapping.examples {
        reports.push(run_example(mapping, example).await);
    }
    reports
}

/// What one run of a request in a [`Given`] world left: the answer, and the memory (to read
/// what the call remembered).
pub struct GivenRun {
    pub answer: Answer,
    pub memory: Arc<Memory>,
}

/// Runs `request` as the example tenant in the world `given` describes: its settings and
/// credentials, its remembered values in a fresh memory, the returned sale in a fresh journal.
/// An error says why the sale cannot be seeded (the request names no sale).
pub async fn answer_given(
    mapping: &Arc<Mapping>,
    op: ops::Op,
    request: &Value,
    given: &Given,
    upstream: Arc<dyn Upstream>,
) -> Result<GivenRun, String> {
    let tenant = Arc::new(Tenant {
        settings: Value::Object(given.settings.clone()),
        credentials: given
            .credentials
            .iter()
            .map(|(name, value)| (name.clone(), Secret::new(value.clone())))
            .collect(),
        ..example_tenant(mapping)
    });
    let memory = Arc::new(Memory::new());
    for (key, value) in &given.remembered {
        // In-process memory: storing cannot fail.
        let _ = memory
            .put(&tenant.name, key, value.clone(), SEEDED_FOR)
            .await;
    }
    let journal = match &given.sale {
        Some(sale) => Some(seed_sale(&tenant.name, request, sale).await?),
        None => None,
    };
    let answer = answer_with_state(
        tenant,
        mapping.clone(),
        op,
        request,
        upstream,
        memory.clone(),
        journal,
    )
    .await;
    Ok(GivenRun { answer, memory })
}

async fn run_example(mapping: &Arc<Mapping>, example: &Example) -> ExampleReport {
    let name = format!("{} [{}]", example.name, example.op);
    let upstream = Arc::new(CannedUpstream::new(example.upstream.clone(), None));
    let run = answer_given(
        mapping,
        example.op,
        &example.request,
        &example.given,
        upstream.clone(),
    )
    .await;
    let GivenRun {
        answer: got,
        memory,
    } = match run {
        Ok(run) => run,
        Err(problem) => {
            return ExampleReport {
                name,
                problems: vec![format!("sale: {problem}")],
            };
        }
    };
    let mut remembered = Map::new();
    for key in example.expect_remembered.keys() {
        let kept = memory
            .get(EXAMPLE_TENANT, key)
            .await
            .ok()
            .flatten()
            .unwrap_or(Value::Null);
        remembered.insert(key.clone(), kept);
    }
    let calls = upstream
        .take_calls()
        .into_iter()
        .map(|call| MadeCall {
            path: relative(&call.url).to_string(),
            step: call.step,
            method: call.method,
            headers: call.headers,
            body: call.body,
        })
        .collect();
    let observed = Observed {
        calls,
        status: got.status,
        body: got.body,
        detail: got.detail,
        remembered,
    };
    ExampleReport {
        name,
        problems: example.problems(&observed),
    }
}
