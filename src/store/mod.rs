//! What the bridge must remember across requests, restarts and instances: the journal of sales
//! and returns (exactly-once, keyed by the tenant and MoySklad's `meta.id`), the values mappings
//! keep (`remember`/`recall`: vendor operation ids, codes the vendor issued), confirmation codes
//! the bridge checks itself, the outbox of sales accepted while the vendor was down, MoySklad app
//! accounts and their recent failures.
//!
//! Two backends implement [`Store`]: SQLite (embedded default, one file under `data/`) and
//! PostgreSQL (several bridge instances on one database). Both run versioned migrations at
//! open. Every "insert or get" is one atomic statement, never a check followed by an act.
//!
//! Times are wall-clock milliseconds since the Unix epoch ([`now_ms`]), taken by the caller's
//! process: leases and expiries tolerate the small skew between instances.

mod app_failures;
mod app_tenants;
mod cluster;
mod journal;
mod key_value;
mod outbox;
mod postgres;
mod rows;
mod schema;
mod sql;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use app_failures::{AppFailure, AppFailureStore, FAILURES_PER_ACCOUNT, FailureSource};
pub use app_tenants::{AppConnection, AppState, AppTenant, AppTenantChanges, AppTenantStore};
pub use cluster::{ClusterStore, Member, RateTake, VendorSignal};
pub use journal::{Begin, JournalStore, Kind, Record, RecordState};
pub use key_value::{CodeCheck, KeyValueStore};
pub use outbox::{OutboxItem, OutboxState, OutboxStats, OutboxStore};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::config::{StoreBackend, StoreConfig};

/// Opens the configured backend and brings its schema up to date.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.backend {
        StoreBackend::Sqlite { path } => Arc::new(SqliteStore::open(path).await?),
        StoreBackend::Postgres { url, pool_size } => {
            Arc::new(PgStore::open(url.expose(), *pool_size).await?)
        }
    })
}

/// A future returned by a [`Store`] method (boxed: the trait is used as `dyn Store`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the statement.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database holds something this version cannot read (a newer schema, a bad row).
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

/// The durable state behind the bridge, one contract per concern. Tenant names scope every
/// key: one tenant never reads another's records.
///
/// One supertrait rather than a struct of handles: every caller keeps one `Arc<dyn Store>`
/// and calls any concern's methods on it without importing that concern's trait, and
/// [`Store::prune`] stays one transaction across all tables.
pub trait Store:
    JournalStore + OutboxStore + KeyValueStore + AppTenantStore + AppFailureStore + ClusterStore
{
    /// Backend name for logs and metrics ("sqlite", "postgres").
    fn backend(&self) -> &'static str;

    /// Whether several instances may share this store (PostgreSQL); SQLite is one instance's.
    fn shared(&self) -> bool;

    /// Deletes what is older than `before` says; returns how many rows went.
    fn prune(&self, before: PruneBefore) -> StoreFuture<'_, u64>;
}

/// The ages [`Store::prune`] deletes at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneBefore {
    /// Done and failed records, delivered outbox items, expired values, codes, leases and
    /// claims, last changed (or expired) before this.
    pub settled_ms: i64,
    /// App accounts' failures last seen before this (they are "recent" for less long).
    pub failures_ms: i64,
}

/// A duration as the store's milliseconds (saturating: a huge duration is "far away").
pub fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
