//! The nine LoyaltyAPI operations: one file each, dispatched from [`Request`] (after mini-redis'
//! `Command`). The edge parses a call into a typed [`Request`]; [`Request::apply`] runs it for the
//! calling tenant and returns a typed [`Reply`] or an [`Error`]; the server renders either.

mod counterparty_create;
mod counterparty_detail;
mod counterparty_search;
mod counterparty_verify;
mod giftcard_search;
mod retaildemand_create;
mod retaildemand_recalc;
mod retaildemand_verify;
mod retailsalesreturn_create;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use engine::plan::Mapping;
use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::journal::Journal;
use super::models::{
    CounterpartyCreateRequest, CounterpartyDetailRequest, CounterpartyDetailResponse,
    CounterpartySearchQuery, CounterpartySearchResponse, CounterpartyVerifyRequest, GiftCardQuery,
    GiftCardResponse, RecalcRequest, RecalcResponse, RetaildemandVerifyRequest, ReturnRequest,
    SaleRequest, VerificationResponse,
};
use super::parse::{Query, json_body};
use super::validate::Validate;
use crate::cache::StepCache;
use crate::config::Tenant;
use crate::error::Error;
use crate::mapping::memory::Memory;
use crate::mapping::run::{Invocation, Outcome, run};
use crate::metrics::Metrics;
use crate::upstream::breaker::Breaker;
use crate::upstream::limit::TenantLimiter;
use crate::upstream::{Counted, Upstream};

/// The operations are the mapping language's (a mapping file names them); re-exported here
/// where the bridge's call sites know them.
pub use engine::op::Op;

/// A parsed, validated LoyaltyAPI call.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    CounterpartyCreate(CounterpartyCreateRequest),
    CounterpartySearch(CounterpartySearchQuery),
    CounterpartyDetail(CounterpartyDetailRequest),
    CounterpartyVerify(CounterpartyVerifyRequest),
    RetaildemandRecalc(RecalcRequest),
    RetaildemandVerify(RetaildemandVerifyRequest),
    RetaildemandCreate(SaleRequest),
    RetailsalesreturnCreate(ReturnRequest),
    GiftcardSearch(GiftCardQuery),
}

fn body<T: serde::de::DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, Error> {
    validated(json_body(bytes)?)
}

fn validated<T: Validate>(value: T) -> Result<T, Error> {
    value.validate()?;
    Ok(value)
}

impl Request {
    /// Parses and validates the query (GETs) or body (POSTs) of `op`.
    pub fn parse(op: Op, query: Option<&str>, bytes: &[u8]) -> Result<Request, Error> {
        Ok(match op {
            Op::CounterpartyCreate => Request::CounterpartyCreate(body(bytes)?),
            Op::CounterpartySearch => Request::CounterpartySearch(validated(
                counterparty_search::parse(&Query::parse(query))?,
            )?),
            Op::CounterpartyDetail => Request::CounterpartyDetail(body(bytes)?),
            Op::CounterpartyVerify => Request::CounterpartyVerify(body(bytes)?),
            Op::RetaildemandRecalc => Request::RetaildemandRecalc(body(bytes)?),
            Op::RetaildemandVerify => Request::RetaildemandVerify(body(bytes)?),
            Op::RetaildemandCreate => Request::RetaildemandCreate(body(bytes)?),
            Op::RetailsalesreturnCreate => Request::RetailsalesreturnCreate(body(bytes)?),
            Op::GiftcardSearch => {
                Request::GiftcardSearch(validated(giftcard_search::parse(&Query::parse(query))?)?)
            }
        })
    }

    pub fn op(&self) -> Op {
        match self {
            Request::CounterpartyCreate(_) => Op::CounterpartyCreate,
            Request::CounterpartySearch(_) => Op::CounterpartySearch,
            Request::CounterpartyDetail(_) => Op::CounterpartyDetail,
            Request::CounterpartyVerify(_) => Op::CounterpartyVerify,
            Request::RetaildemandRecalc(_) => Op::RetaildemandRecalc,
            Request::RetaildemandVerify(_) => Op::RetaildemandVerify,
            Request::RetaildemandCreate(_) => Op::RetaildemandCreate,
            Request::RetailsalesreturnCreate(_) => Op::RetailsalesreturnCreate,
            Request::GiftcardSearch(_) => Op::GiftcardSearch,
        }
    }

    /// Runs the operation for the calling tenant.
    pub async fn apply(self, ctx: &OpContext) -> Result<Reply, Error> {
        match self {
            Request::CounterpartyCreate(r) => counterparty_create::run(ctx, r).await,
            Request::CounterpartySearch(q) => counterparty_search::run(ctx, q).await,
            Request::CounterpartyDetail(r) => counterparty_detail::run(ctx, r).await,
            Request::CounterpartyVerify(r) => counterparty_verify::run(ctx, r).await,
            Request::RetaildemandRecalc(r) => retaildemand_recalc::run(ctx, r).await,
            Request::RetaildemandVerify(r) => retaildemand_verify::run(ctx, r).await,
            Request::RetaildemandCreate(r) => retaildemand_create::run(ctx, r).await,
            Request::RetailsalesreturnCreate(r) => retailsalesreturn_create::run(ctx, r).await,
            Request::GiftcardSearch(q) => giftcard_search::run(ctx, q).await,
        }
    }
}

/// What an operation knows about the call it serves.
pub struct OpContext {
    pub tenant: Arc<Tenant>,
    pub request_id: String,
    /// The tenant's vendor mapping (None if it could not be loaded).
    pub mapping: Option<Arc<Mapping>>,
    pub upstream: Arc<dyn Upstream>,
    /// Vendor calls made for this request so far (for the access log).
    pub upstream_calls: AtomicU32,
    /// When the whole request must be answered by.
    pub deadline: Instant,
    /// Values mappings keep between calls.
    pub memory: Arc<Memory>,
    /// Cached vendor answers.
    pub cache: Arc<StepCache>,
    /// The tenant's vendor rate limit.
    pub limiter: Option<Arc<TenantLimiter>>,
    /// The tenant's circuit breaker.
    pub breaker: Option<Arc<Breaker>>,
    /// The durable journal that makes sales and returns exactly-once (none in golden examples
    /// and dry runs).
    pub journal: Option<Arc<Journal>>,
    /// Where vendor calls are counted (none in golden examples and dry runs).
    pub metrics: Option<Arc<Metrics>>,
}

impl OpContext {
    /// Who asks, for the journal's lease and logs.
    pub fn caller(&self) -> super::journal::Caller<'_> {
        super::journal::Caller {
            tenant: &self.tenant.name,
            request_id: &self.request_id,
            deadline: self.deadline,
        }
    }

    /// Runs the tenant's mapping for `op` on the validated request; what it produced is read by
    /// [`OpContext::answer`].
    async fn execute<T: Serialize>(&self, op: Op, request: &T) -> Result<Outcome, Error> {
        let req = to_json(op, request)?;
        self.execute_value(op, req, Value::Null).await
    }

    /// Runs the tenant's mapping for `op` on a request already in JSON form (`.req`), with
    /// `sale` as `.sale`.
    pub async fn execute_value(&self, op: Op, req: Value, sale: Value) -> Result<Outcome, Error> {
        let not_configured = || Error::MappingNotConfigured {
            tenant: self.tenant.name.clone(),
            op,
        };
        let mapping = self.mapping.as_ref().ok_or_else(not_configured)?;
        let plan = mapping.op(op).ok_or_else(not_configured)?;
        let invocation = Invocation {
            sale,
            op,
            req,
            tenant: &self.tenant,
            request_id: &self.request_id,
            deadline: self.deadline,
            memory: &self.memory,
            cache: &self.cache,
            limiter: self.limiter.as_deref(),
            breaker: self.breaker.as_deref(),
            metrics: self.metrics.as_deref(),
        };
        let counted = Counted {
            inner: self.upstream.as_ref(),
            calls: &self.upstream_calls,
        };
        run(mapping, plan, invocation, &counted).await
    }

    /// The mapping's answer read as the LoyaltyAPI model `T`; a misfit names the field.
    fn answer<T: DeserializeOwned + Serialize>(
        &self,
        op: Op,
        outcome: Outcome,
    ) -> Result<T, Error> {
        let failed = |at: String, detail: String| Error::MappingFailed { op, at, detail };
        let no_answer = || {
            failed(
                "response".into(),
                "the mapping builds no answer for this operation".into(),
            )
        };
        let plan = self
            .mapping
            .as_ref()
            .and_then(|m| m.op(op))
            .ok_or_else(no_answer)?;
        // Untracked first (straight from the evaluation where the fast path answers): tracking
        // the path costs an allocation per key, and only a misfit needs it.
        let body = match outcome.read::<T>(plan, op, &self.tenant)? {
            None => return Err(no_answer()),
            Some(Ok(answer)) => return Ok(answer),
            Some(Err(body)) => body,
        };
        serde_path_to_error::deserialize(body).map_err(|e| {
            failed(
                format!("response.body: {}", e.path()),
                e.into_inner().to_string(),
            )
        })
    }
}

fn to_json<T: Serialize>(op: Op, request: &T) -> Result<Value, Error> {
    serde_json::to_value(request)
        .map_err(|e| Error::Internal(format!("cannot serialize {op}: {e}")))
}

/// A successful answer, rendered at the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `POST /counterparty`: 201, empty body.
    CustomerCreated,
    Customers(CounterpartySearchResponse),
    Balance(CounterpartyDetailResponse),
    CodeSent(VerificationResponse),
    Priced(Box<RecalcResponse>),
    /// `POST /retaildemand`: 201.
    SaleRecorded,
    /// `POST /retailsalesreturn`: 201.
    ReturnRecorded,
    GiftCard(GiftCardResponse),
}

impl Reply {
    pub fn status(&self) -> StatusCode {
        match self {
            Reply::CustomerCreated | Reply::SaleRecorded | Reply::ReturnRecorded => {
                StatusCode::CREATED
            }
            _ => StatusCode::OK,
        }
    }

    /// The JSON body, if the answer has one.
    pub fn body(&self) -> Result<Option<Vec<u8>>, serde_json::Error> {
        match self {
            Reply::CustomerCreated | Reply::SaleRecorded | Reply::ReturnRecorded => Ok(None),
            Reply::Customers(v) => serde_json::to_vec(v).map(Some),
            Reply::Balance(v) => serde_json::to_vec(v).map(Some),
            Reply::CodeSent(v) => serde_json::to_vec(v).map(Some),
            // A priced cart is a few KB: one buffer of about that size rather than doubling
            // from serde_json's 128 bytes (the hot path's answer).
            Reply::Priced(v) => {
                let mut out = Vec::with_capacity(512 + 512 * v.positions.len());
                serde_json::to_writer(&mut out, v)?;
                Ok(Some(out))
            }
            Reply::GiftCard(v) => serde_json::to_vec(v).map(Some),
        }
    }
}
