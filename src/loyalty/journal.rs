//! Exactly-once sales and returns. Each is a journal record keyed by (tenant, MoySklad
//! `meta.id`), claimed with one atomic insert-or-get before the vendor is called:
//! - a repeat of a recorded (or queued) one answers success without calling the vendor;
//! - a repeat while the first is still running waits for it, then answers as it did, or gets a
//!   "retry shortly" envelope if the first is still running when time is up;
//! - one the vendor refused (or that failed in transport) may be tried again;
//! - when the vendor cannot be reached and the tenant's `[tenants.outbox]` policy allows it, the
//!   call is accepted and queued durably; the outbox delivers it later (`server::outbox`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;

use crate::error::{Error, UpstreamFailure};
use crate::mapping::run::Outcome;
use crate::store::{Begin, Kind, RecordState, Store, duration_ms, now_ms};

/// The durable journal a server's operations run through.
pub struct Journal {
    pub store: Arc<dyn Store>,
    /// Wakes the outbox deliverer when something is queued.
    pub queued: Arc<Notify>,
}

/// How often a repeat polls a record that another request holds.
const POLL: Duration = Duration::from_millis(100);
/// A lease outlives its request's deadline by this much: a request that died without ending
/// its record (a killed process) blocks repeats only this long past its deadline.
const LEASE_GRACE: Duration = Duration::from_secs(2);

/// Who asks for a sale or return, and by when (for the lease and the logs).
pub struct Caller<'a> {
    pub tenant: &'a str,
    pub request_id: &'a str,
    pub deadline: Instant,
}

/// Runs the sale or return `id` at most once with the vendor: `send` is called with the
/// request only when this call holds the record (not for a repeat of a settled one).
pub async fn once<F, Fut>(
    ctx: Caller<'_>,
    journal: &Journal,
    kind: Kind,
    id: &str,
    queueable: bool,
    req: Value,
    send: F,
) -> Result<(), Error>
where
    F: FnOnce(Value) -> Fut,
    Fut: Future<Output = Result<Outcome, Error>>,
{
    let tenant = ctx.tenant;
    let store = journal.store.as_ref();
    loop {
        let now = now_ms();
        let left = ctx.deadline.saturating_duration_since(Instant::now());
        let lease_until = now + duration_ms(left + LEASE_GRACE);
        match store.begin(tenant, kind, id, now, lease_until).await? {
            Begin::Started => break,
            Begin::Settled(record) => {
                tracing::info!(request_id = %ctx.request_id, tenant, kind = kind.as_str(), id,
                    state = record.state.as_str(), "repeat of a recorded call: answered from the journal");
                return Ok(());
            }
            Begin::InFlight(_) => {
                if left <= POLL * 3 {
                    return Err(Error::InProgress {
                        kind: kind.as_str(),
                    });
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
    let result = send(req.clone()).await;
    match result {
        Ok(Outcome { kept, .. }) => {
            if let Err(e) = store.finish(tenant, kind, id, &kept, now_ms()).await {
                // The vendor has it; the record stays in flight until its lease runs out, and a
                // repeat then runs it again, which the vendor deduplicates by the key the
                // mapping derives from meta.id. Answering an error here would be worse.
                tracing::error!(request_id = %ctx.request_id, tenant, kind = kind.as_str(), id,
                    error = %e, "recorded at the vendor, but the journal could not be updated");
            }
            Ok(())
        }
        Err(err) if queueable && vendor_down(&err) => {
            store.enqueue(tenant, kind, id, &req, now_ms()).await?;
            journal.queued.notify_one();
            tracing::warn!(request_id = %ctx.request_id, tenant, kind = kind.as_str(), id,
                error = %err, "vendor unavailable: accepted and queued in the outbox");
            Ok(())
        }
        Err(err) => {
            if let Err(e) = store.abandon(tenant, kind, id, now_ms()).await {
                tracing::error!(request_id = %ctx.request_id, tenant, kind = kind.as_str(), id,
                    error = %e, "cannot release a failed call's journal record (it frees itself when its lease ends)");
            }
            Err(err)
        }
    }
}

/// What a return's plan sees as `.sale`: the journal record of the sale it returns, or null if
/// the bridge does not know that sale (the mapping decides whether that is an error).
pub async fn sale_of_return(
    journal: &Journal,
    tenant: &str,
    sale_id: Option<&str>,
) -> Result<Value, Error> {
    let Some(sale_id) = sale_id else {
        return Ok(Value::Null);
    };
    let record = journal.store.record(tenant, Kind::Sale, sale_id).await?;
    match record {
        None => Ok(Value::Null),
        Some(r) => match r.state {
            RecordState::Done => Ok(serde_json::json!({"id": r.id, "kept": r.kept})),
            RecordState::Queued => Err(Error::SaleQueued),
            RecordState::InFlight => Err(Error::InProgress { kind: "sale" }),
            RecordState::Failed => Ok(Value::Null),
        },
    }
}

/// The vendor could not be reached or is failing (as opposed to refusing this call): what the
/// outbox may take over. A timeout counts: the delivery repeats the call with the same
/// idempotency key, so a call that did go through is not doubled.
pub fn vendor_down(err: &Error) -> bool {
    match err {
        Error::Upstream { failure, .. } => match failure {
            UpstreamFailure::Timeout
            | UpstreamFailure::Unreachable
            | UpstreamFailure::CircuitOpen { .. } => true,
            UpstreamFailure::Status(status) => *status >= 500,
            UpstreamFailure::BadAnswer | UpstreamFailure::Throttled { .. } => false,
        },
        // A mapping rule that reads a vendor's "temporarily unavailable" answer as a 5xx.
        Error::Refused { status, .. } => status.is_server_error(),
        Error::DeadlineExceeded { .. } => true,
        _ => false,
    }
}
