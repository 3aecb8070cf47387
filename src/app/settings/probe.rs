//! "Check": the credentials an admin typed, tried by a live call to the vendor.
//!
//! The check is the mapping's own customer search (`counterparty.search`) for a phone, run through
//! the normal mapping engine and upstream client, exactly as a cashier's search would run for the
//! account once connected: a vendor that refuses the key gives the same error the cashier would
//! see (the mapping's rules turn it into the LoyaltyAPI error text). Nothing is written: the
//! check runs with its own empty cache (an answer cached for other credentials must not make
//! wrong ones look right), in-process memory for `remember`, no journal. It does go through the
//! account's vendor rate limiter (the one its LoyaltyAPI calls use), so checks cannot push the
//! vendor past the account's rate or ignore a pause the vendor asked for. No circuit breaker:
//! new credentials are not judged by the old ones' failures, nor the reverse.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cache::StepCache;
use crate::config::{Tenant, TokenHash};
use crate::error::{Error, cashier_texts};
use crate::loyalty::ops::{Op, OpContext, Reply, Request};
use crate::mapping::memory::Memory;
use crate::mapping::registry::Mappings;
use crate::secret::Secret;
use crate::upstream::Upstream;
use crate::upstream::limit::TenantLimiter;

/// Longest a check may take (the vendor's own timeouts apply within it).
const CHECK_DEADLINE: Duration = Duration::from_secs(15);
/// Any GUID: mappings do not send the point of sale in a customer search.
const CHECK_RETAIL_STORE: &str = "00000000-0000-4000-8000-000000000000";

/// What the vendor said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The vendor answered the search: the credentials work.
    Accepted { customers: usize },
    /// The vendor (or the way to it) failed: the LoyaltyAPI error texts a cashier would see.
    Refused { title: String, message: String },
}

/// What to check.
pub struct CheckTarget<'a> {
    pub account_id: &'a str,
    pub mapping: PathBuf,
    pub base_url: &'a str,
    pub credentials: &'a BTreeMap<String, Secret>,
    pub settings: &'a Value,
    pub phone: &'a str,
    /// The account's vendor rate limiter.
    pub limiter: Option<Arc<TenantLimiter>>,
}

pub async fn check(
    mappings: &Arc<Mappings>,
    upstream: &Arc<dyn Upstream>,
    target: CheckTarget<'_>,
) -> CheckOutcome {
    let tenant_name = format!("{}{}", crate::app::TENANT_PREFIX, target.account_id);
    let refused = |err: &Error| {
        let (title, message) = cashier_texts(err);
        CheckOutcome::Refused { title, message }
    };
    let not_configured = Error::MappingNotConfigured {
        tenant: tenant_name.clone(),
        op: Op::CounterpartySearch,
    };
    // Compiling a mapping is CPU work: off the request threads, once (the registry keeps it).
    let loaded = {
        let (mappings, path) = (mappings.clone(), target.mapping.clone());
        tokio::task::spawn_blocking(move || mappings.ensure(&path)).await
    };
    match loaded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(mapping = %target.mapping.display(), error = %e, "mapping does not load for a credential check");
            return refused(&not_configured);
        }
        Err(e) => {
            tracing::error!(error = %e, "credential check: mapping load task failed");
            return refused(&not_configured);
        }
    }
    let Some(mapping) = mappings.get(&target.mapping) else {
        return refused(&not_configured);
    };
    let tenant = Tenant {
        name: tenant_name,
        // Never compared: this tenant is not in the token map.
        token_hash: TokenHash::of(""),
        mapping: target.mapping.clone(),
        base_url: target.base_url.to_owned(),
        credentials: target.credentials.clone(),
        settings: target.settings.clone(),
        limits: crate::app::app_tenant_limits(),
        outbox: Default::default(),
    };
    let context = OpContext {
        tenant: Arc::new(tenant),
        request_id: format!("check-{}", uuid::Uuid::new_v4().simple()),
        mapping: Some(mapping),
        upstream: upstream.clone(),
        upstream_calls: AtomicU32::new(0),
        deadline: Instant::now() + CHECK_DEADLINE,
        memory: Arc::new(Memory::local()),
        cache: Arc::new(StepCache::new(16)),
        limiter: target.limiter.clone(),
        breaker: None,
        journal: None,
        metrics: None,
    };
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("search", target.phone)
        .append_pair("retailStoreId", CHECK_RETAIL_STORE)
        .finish();
    let request = match Request::parse(Op::CounterpartySearch, Some(&query), &[]) {
        Ok(request) => request,
        Err(e) => return refused(&e),
    };
    let answer = tokio::time::timeout(CHECK_DEADLINE, request.apply(&context))
        .await
        .unwrap_or(Err(Error::DeadlineExceeded {
            ms: u64::try_from(CHECK_DEADLINE.as_millis()).unwrap_or(u64::MAX),
        }));
    match answer {
        Ok(Reply::Customers(found)) => CheckOutcome::Accepted {
            customers: found.rows.len(),
        },
        Ok(_) => CheckOutcome::Accepted { customers: 0 },
        Err(e) => {
            tracing::info!(account_id = %target.account_id, error = %e, "credential check refused");
            refused(&e)
        }
    }
}
