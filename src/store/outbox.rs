//! The outbox: sales (and returns) accepted while the vendor was down, delivered in order per
//! tenant by one instance at a time.

use serde_json::Value;

use super::{Kind, StoreFuture};

/// Where an outbox item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting to be delivered (due at `next_attempt_ms`).
    Pending,
    /// The vendor refused it (a definite 4xx/rule refusal): kept for an operator to retry or drop.
    Failed,
    /// Delivered (kept until pruned).
    Delivered,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Failed => "failed",
            OutboxState::Delivered => "delivered",
        }
    }

    pub fn parse(text: &str) -> Option<OutboxState> {
        match text {
            "pending" => Some(OutboxState::Pending),
            "failed" => Some(OutboxState::Failed),
            "delivered" => Some(OutboxState::Delivered),
            _ => None,
        }
    }
}

/// A sale (or return) accepted while the vendor was down, waiting to be delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// Increasing: delivery follows it within a tenant.
    pub seq: i64,
    pub tenant: String,
    pub kind: Kind,
    /// MoySklad's `meta.id` (the journal record it belongs to).
    pub id: String,
    /// The validated LoyaltyAPI request, as the mapping sees it (`.req`).
    pub request: Value,
    pub state: OutboxState,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
}

/// Outbox depth and age of one tenant (for `/metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxStats {
    pub tenant: String,
    /// Pending items.
    pub pending: u64,
    /// Items the vendor refused, waiting for an operator.
    pub failed: u64,
    /// `created_ms` of the oldest pending item.
    pub oldest_pending_ms: Option<i64>,
}

/// The queue of sales waiting for the vendor.
pub trait OutboxStore: Send + Sync {
    /// In one transaction: marks the owned record `Queued` and appends an outbox item; returns
    /// the item's `seq`.
    fn enqueue(
        &self,
        tenant: &str,
        kind: Kind,
        id: &str,
        request: &Value,
        now_ms: i64,
    ) -> StoreFuture<'_, i64>;

    /// Takes (or renews) the right to deliver `tenant`'s outbox until `until_ms`; only one
    /// holder at a time across instances. `false` if another holder's lease is still running.
    fn lease_outbox(
        &self,
        tenant: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreFuture<'_, bool>;

    /// Gives back every delivery right `holder` has (at shutdown), whichever tenants they are
    /// for: the configured ones and those the MoySklad app installed.
    fn release_outbox_leases(&self, holder: &str) -> StoreFuture<'_, ()>;

    /// The oldest pending item of `tenant` (lowest `seq`), due or not: delivery is in order,
    /// so a later item never overtakes a waiting one.
    fn next_pending(&self, tenant: &str) -> StoreFuture<'_, Option<OutboxItem>>;

    /// Tenants that have pending items.
    fn tenants_with_pending(&self) -> StoreFuture<'_, Vec<String>>;

    /// In one transaction: the item is delivered and its record done with `kept`.
    fn delivered(&self, seq: i64, kept: &Value, now_ms: i64) -> StoreFuture<'_, ()>;

    /// A transient failure: count the attempt, note the error, try again at `next_attempt_ms`.
    fn postpone(&self, seq: i64, error: &str, next_attempt_ms: i64) -> StoreFuture<'_, ()>;

    /// The vendor refused the item: it leaves the queue (state `Failed`), its record too.
    fn refused(&self, seq: i64, error: &str, now_ms: i64) -> StoreFuture<'_, ()>;

    /// Items, newest last; all tenants when `tenant` is `None`; delivered ones only if asked.
    fn outbox_items(
        &self,
        tenant: Option<&str>,
        include_delivered: bool,
    ) -> StoreFuture<'_, Vec<OutboxItem>>;

    /// Operator: puts a failed (or pending) item back to pending, due now. `false` if unknown
    /// or already delivered.
    fn outbox_retry(&self, seq: i64, now_ms: i64) -> StoreFuture<'_, bool>;

    /// Operator: removes an item that is not delivered; its record becomes `Failed` so
    /// MoySklad's repeat can try again. `false` if unknown or delivered.
    fn outbox_drop(&self, seq: i64, now_ms: i64) -> StoreFuture<'_, bool>;

    fn outbox_stats(&self) -> StoreFuture<'_, Vec<OutboxStats>>;
}

/// The record an outbox item belongs to, as stored (kind and state stay text: they are only
/// compared and bound again), and the item's state.
pub(super) struct ItemOwner {
    pub tenant: String,
    pub kind: String,
    pub id: String,
    pub state: String,
}
