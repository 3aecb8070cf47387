//! Delivers the outbox: sales (and, where allowed, returns) accepted while a tenant's vendor
//! could not be reached. Per tenant, in the order they were accepted; one instance at a time
//! per tenant (a lease in the store), so two bridges on one database never deliver the same
//! tenant together. A transient failure postpones the item with growing backoff and stops that
//! tenant's round (a later sale must not overtake an earlier one); a refusal takes the item out
//! of the queue for an operator (`loyalty-bridge outbox list|retry|drop`). Delivery is
//! idempotent at the vendor: the mapping derives the vendor's key from MoySklad's `meta.id`.
//!
//! Also prunes old journal records (and app accounts' old failures), once at start and then
//! hourly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::App;
use crate::error::Error;
use crate::loyalty::journal::{self, Journal, vendor_down};
use crate::loyalty::ops::Op;
use crate::store::{Kind, OutboxItem, PruneBefore, duration_ms, now_ms};

/// How often the queue is looked at when nothing wakes the deliverer.
const POLL: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Runs until `stop` turns true, then returns once the item in hand is settled. `holder`
/// names this instance in the store's delivery leases.
pub(super) async fn deliver_forever(
    app: Arc<App>,
    journal: Arc<Journal>,
    holder: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let lease = Duration::from_millis(app.config.server.request_timeout_ms * 2)
        .max(Duration::from_secs(10));
    let mut last_prune: Option<Instant> = None;
    while !*stop.borrow() {
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            prune(&app, &journal).await;
            last_prune = Some(Instant::now());
        }
        let wait = round(&app, &journal, &holder, lease, &stop).await;
        publish_depth(&app, &journal).await;
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    // The server is gone without saying stop.
                    return;
                }
            }
            () = journal.queued.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Delivers what is due for every tenant, until `stop` turns true; returns how long until
/// something may be due.
async fn round(
    app: &App,
    journal: &Journal,
    holder: &str,
    lease: Duration,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Duration {
    let store = journal.store.as_ref();
    let tenants = match store.tenants_with_pending().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "outbox: cannot read the queue");
            return POLL;
        }
    };
    let mut wait = POLL;
    for name in tenants {
        // Another instance may serve tenants this one does not know.
        let Some(tenant) = app.tenants.by_name(&name) else {
            continue;
        };
        loop {
            if *stop.borrow() {
                return wait;
            }
            let now = now_ms();
            match store
                .lease_outbox(&name, holder, now, now + duration_ms(lease))
                .await
            {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(tenant = %name, error = %e, "outbox: cannot take the delivery lease");
                    break;
                }
            }
            let item = match store.next_pending(&name).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(tenant = %name, error = %e, "outbox: cannot read the queue");
                    break;
                }
            };
            if item.next_attempt_ms > now {
                let due =
                    Duration::from_millis(u64::try_from(item.next_attempt_ms - now).unwrap_or(0));
                wait = wait.min(due);
                break;
            }
            let seq = item.seq;
            let attempts = item.attempts;
            let result = deliver(app, journal, tenant.clone(), item).await;
            let now = now_ms();
            let stored = match result {
                Ok(kept) => {
                    tracing::info!(tenant = %name, seq, "outbox: delivered");
                    store.delivered(seq, &kept, now).await
                }
                Err(err) if transient(&err) => {
                    let pause = backoff(attempts);
                    tracing::warn!(tenant = %name, seq, attempt = attempts + 1, retry_in_ms = pause.as_millis() as u64,
                        error = %err, "outbox: vendor still unavailable");
                    let stored = store
                        .postpone(seq, &err.to_string(), now + duration_ms(pause))
                        .await;
                    wait = wait.min(pause);
                    if let Err(e) = stored {
                        tracing::warn!(tenant = %name, seq, error = %e, "outbox: cannot update the queue");
                    }
                    break;
                }
                Err(err) => {
                    tracing::error!(tenant = %name, seq, error = %err,
                        "outbox: the vendor refused a queued call; it waits for an operator (loyalty-bridge outbox list)");
                    store.refused(seq, &err.to_string(), now).await
                }
            };
            if let Err(e) = stored {
                tracing::warn!(tenant = %name, seq, error = %e, "outbox: cannot update the queue");
                break;
            }
        }
    }
    wait
}

/// Runs the queued call's plan, as a fresh request with its own deadline.
async fn deliver(
    app: &App,
    journal: &Journal,
    tenant: Arc<crate::config::Tenant>,
    item: OutboxItem,
) -> Result<Value, Error> {
    let deadline = Instant::now() + Duration::from_millis(app.config.server.request_timeout_ms);
    let request_id = format!("outbox-{}-{}", item.seq, item.attempts + 1);
    let (op, sale) = match item.kind {
        Kind::Sale => (Op::RetaildemandCreate, Value::Null),
        Kind::Return => {
            let sale_id = item
                .request
                .pointer("/demand/meta/id")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|id| !id.is_empty());
            let sale = journal::sale_of_return(journal, &tenant.name, sale_id).await?;
            (Op::RetailsalesreturnCreate, sale)
        }
    };
    let ctx = app.context(tenant, request_id, deadline);
    let outcome = ctx.execute_value(op, item.request, sale).await?;
    Ok(outcome.kept)
}

/// Worth trying again later (as opposed to a refusal an operator must look at).
fn transient(err: &Error) -> bool {
    use crate::error::UpstreamFailure;
    vendor_down(err)
        || matches!(
            err,
            Error::StoreUnavailable { .. }
                | Error::InProgress { .. }
                | Error::SaleQueued
                | Error::Upstream {
                    failure: UpstreamFailure::Throttled { .. } | UpstreamFailure::Status(429),
                    ..
                }
        )
}

/// 1 s, 2 s, 4 s, … up to 5 minutes, with up to 25 % jitter so that many tenants' retries
/// after an outage do not arrive together.
fn backoff(attempts: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let base = 1000u64.saturating_mul(1 << attempts.min(9)).min(300_000);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(base + random % (base / 4 + 1))
}

/// Outbox depth and age per tenant, for `/metrics` (a tenant with nothing queued shows 0).
async fn publish_depth(app: &App, journal: &Journal) {
    let stats = match journal.store.outbox_stats().await {
        Ok(stats) => stats,
        Err(e) => {
            tracing::debug!(error = %e, "outbox: cannot read its depth");
            return;
        }
    };
    let now = now_ms();
    for tenant in &app.config.tenants {
        let (pending, failed, age) =
            stats
                .iter()
                .find(|s| s.tenant == tenant.name)
                .map_or((0, 0, 0.0), |s| {
                    let age = s
                        .oldest_pending_ms
                        .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
                    (s.pending, s.failed, age)
                });
        app.metrics.set_outbox(&tenant.name, pending, failed, age);
    }
}

async fn prune(app: &App, journal: &Journal) {
    let keep = Duration::from_secs(u64::from(app.config.store.retention_days) * 86_400);
    let now = now_ms();
    let before = PruneBefore {
        settled_ms: now - duration_ms(keep),
        failures_ms: now - duration_ms(crate::app::recent::KEPT_FOR),
    };
    match journal.store.prune(before).await {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "pruned old journal records"),
        Err(e) => tracing::warn!(error = %e, "cannot prune old journal records"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) >= Duration::from_secs(1) && backoff(0) <= Duration::from_millis(1250));
        assert!(backoff(3) >= Duration::from_secs(8));
        assert!(backoff(30) <= Duration::from_secs(375));
    }
}
