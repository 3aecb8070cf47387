//! The journal: one record per sale or return of a tenant, keyed by MoySklad's `meta.id`, so
//! that a repeated request never reaches the vendor twice.

use serde_json::Value;

#[cfg(doc)]
use super::OutboxStore;
use super::StoreFuture;

/// Which journal a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Sale,
    Return,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sale => "sale",
            Kind::Return => "return",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "sale" => Some(Kind::Sale),
            "return" => Some(Kind::Return),
            _ => None,
        }
    }
}

/// Where a journal record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// A request is running it now (until `lease_until`).
    InFlight,
    /// The vendor confirmed it: a repeat answers success without calling the vendor.
    Done,
    /// Accepted while the vendor was down; waiting in the outbox.
    Queued,
    /// The vendor refused it, or it was abandoned: a repeat may try again.
    Failed,
}

impl RecordState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::InFlight => "in_flight",
            RecordState::Done => "done",
            RecordState::Queued => "queued",
            RecordState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RecordState> {
        match text {
            "in_flight" => Some(RecordState::InFlight),
            "done" => Some(RecordState::Done),
            "queued" => Some(RecordState::Queued),
            "failed" => Some(RecordState::Failed),
            _ => None,
        }
    }
}

/// One sale or return of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub tenant: String,
    pub kind: Kind,
    /// MoySklad's `meta.id` of the sale or return.
    pub id: String,
    pub state: RecordState,
    /// What the mapping asked to keep (vendor operation ids…); `Value::Null` until done.
    pub kept: Value,
    /// Meaningful while `InFlight`.
    pub lease_until_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// The answer of [`JournalStore::begin`].
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// The caller owns the record (new, failed before, or its previous lease ran out) and must
    /// end it with [`JournalStore::finish`], [`JournalStore::abandon`] or
    /// [`OutboxStore::enqueue`].
    Started,
    /// Another request holds it: in flight, lease not yet out.
    InFlight(Record),
    /// Already done or queued: answer success without calling the vendor.
    Settled(Record),
}

/// Exactly-once sales and returns.
pub trait JournalStore: Send + Sync {
    /// Atomically creates the record `(tenant, kind, id)` as in flight until `lease_until_ms`,
    /// or takes it over if it is `Failed` or its lease ran out, or reports it as it is.
    fn begin(
        &self,
        tenant: &str,
        kind: Kind,
        id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> StoreFuture<'_, Begin>;

    /// The record, if any.
    fn record(&self, tenant: &str, kind: Kind, id: &str) -> StoreFuture<'_, Option<Record>>;

    /// Marks an owned record done, with what the mapping keeps.
    fn finish(
        &self,
        tenant: &str,
        kind: Kind,
        id: &str,
        kept: &Value,
        now_ms: i64,
    ) -> StoreFuture<'_, ()>;

    /// Marks an owned record failed (the vendor refused, or the call gave up): a repeat may
    /// try again.
    fn abandon(&self, tenant: &str, kind: Kind, id: &str, now_ms: i64) -> StoreFuture<'_, ()>;
}

/// How [`JournalStore::begin`] answers a caller that did not get `record` (someone else's):
/// `None` if the record changed meanwhile into one the caller may take (abandoned, or its lease
/// ran out) — worth another try.
pub(super) fn begin_answer(record: Record, now_ms: i64) -> Option<Begin> {
    match record.state {
        RecordState::InFlight if record.lease_until_ms > now_ms => Some(Begin::InFlight(record)),
        RecordState::Done | RecordState::Queued => Some(Begin::Settled(record)),
        RecordState::InFlight | RecordState::Failed => None,
    }
}
