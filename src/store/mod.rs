//! What the bridge must remember across requests, restarts and instances: the journal of sales
//! and returns (exactly-once, keyed by the tenant and MoySklad's `meta.id`), the values mappings
//! keep (`remember`/`recall`: vendor operation ids, codes the vendor issued), confirmation codes
//! the bridge checks itself, and the outbox of sales accepted while the vendor was down.
//!
//! Two backends implement [`Store`]: SQLite (embedded default, one file under `data/`) and
//! PostgreSQL (several bridge instances on one database). Both run versioned migrations at
//! open. Every "insert or get" is one atomic statement, never a check followed by an act.
//!
//! Times are wall-clock milliseconds since the Unix epoch ([`now_ms`]), taken by the caller's
//! process: leases and expiries tolerate the small skew between instances.

mod postgres;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

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

/// The answer of [`Store::begin`].
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// The caller owns the record (new, failed before, or its previous lease ran out) and must
    /// end it with [`Store::finish`], [`Store::abandon`] or [`Store::enqueue`].
    Started,
    /// Another request holds it: in flight, lease not yet out.
    InFlight(Record),
    /// Already done or queued: answer success without calling the vendor.
    Settled(Record),
}

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

/// The answer of [`Store::code_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right code: consumed.
    Accepted,
    /// Wrong code; this many attempts left before it is burnt.
    Wrong { attempts_left: u32 },
    /// No code, an expired one, or one burnt by too many wrong attempts.
    Missing,
}

/// Where a MoySklad account that installed the app is (see `src/app/mod.rs` for the lifecycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    /// Installed (or resumed) and not connected yet: the settings page must be filled in.
    SettingsRequired,
    /// Connected: its LoyaltyAPI token is accepted.
    Activated,
    /// MoySklad suspended it (subscription ended): everything is kept, its calls are refused.
    Suspended,
    /// Uninstalled: the access token, the credentials and the LoyaltyAPI token are forgotten.
    Uninstalled,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::SettingsRequired => "settings_required",
            AppState::Activated => "activated",
            AppState::Suspended => "suspended",
            AppState::Uninstalled => "uninstalled",
        }
    }

    pub fn parse(text: &str) -> Option<AppState> {
        match text {
            "settings_required" => Some(AppState::SettingsRequired),
            "activated" => Some(AppState::Activated),
            "suspended" => Some(AppState::Suspended),
            "uninstalled" => Some(AppState::Uninstalled),
            _ => None,
        }
    }

    /// Installed and not suspended (MoySklad's DELETE answers 200 for these, 204 otherwise).
    pub fn is_active(self) -> bool {
        matches!(self, AppState::SettingsRequired | AppState::Activated)
    }
}

/// A tenant created by the MoySklad app lifecycle (one per MoySklad account). Secrets are held
/// sealed (`crate::app::crypto`): the store never sees them in clear text.
#[derive(Debug, Clone, PartialEq)]
pub struct AppTenant {
    pub account_id: String,
    pub app_id: String,
    pub account_name: String,
    pub state: AppState,
    /// MoySklad's JSON-API access token, sealed.
    pub access_token_sealed: Option<String>,
    /// Hex SHA-256 of the LoyaltyAPI token issued to this account; `None` until connected.
    pub token_sha256: Option<String>,
    /// The vendor mapping's name (`maxma` → `<mappings_dir>/maxma.toml`).
    pub mapping: Option<String>,
    pub base_url: Option<String>,
    /// The vendor credentials (a JSON object of strings), sealed.
    pub credentials_sealed: Option<String>,
    /// What the mapping reads as `.settings`.
    pub settings: Value,
    pub external_search: bool,
    /// MoySklad's last answer to our Vendor API calls (or the error), for the settings page.
    pub vendor_note: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What connecting an app tenant stores (see [`Store::app_connect`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AppConnection {
    pub token_sha256: String,
    pub mapping: String,
    pub base_url: String,
    pub credentials_sealed: String,
    pub settings: Value,
    pub external_search: bool,
}

fn parse_app_state(text: &str) -> Result<AppState, StoreError> {
    AppState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown app state {text:?}")))
}

const APP_COLUMNS: &str = "account_id, app_id, account_name, state, access_token_sealed, token_sha256, \
     mapping, base_url, credentials_sealed, settings, external_search, vendor_note, created_ms, updated_ms";

/// The durable state behind the bridge. Tenant names scope every key: one tenant never reads
/// another's records.
pub trait Store: Send + Sync {
    /// Backend name for logs and metrics ("sqlite", "postgres").
    fn backend(&self) -> &'static str;

    // --- journal: exactly-once sales and returns ---

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

    // --- outbox ---

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

    // --- values mappings keep (remember / recall) ---

    fn kv_get(&self, tenant: &str, key: &str, now_ms: i64) -> StoreFuture<'_, Option<Value>>;

    fn kv_put(
        &self,
        tenant: &str,
        key: &str,
        value: &Value,
        expires_ms: i64,
    ) -> StoreFuture<'_, ()>;

    // --- confirmation codes the bridge checks itself ---

    /// Stores `code` under `key` (replacing an earlier one) until `expires_ms`, allowing
    /// `max_attempts` wrong tries.
    fn code_put(
        &self,
        tenant: &str,
        key: &str,
        code: &str,
        expires_ms: i64,
        max_attempts: u32,
    ) -> StoreFuture<'_, ()>;

    /// Checks `code` atomically: a right one is consumed; a wrong one uses an attempt, and the
    /// last attempt burns the code.
    fn code_check(
        &self,
        tenant: &str,
        key: &str,
        code: &str,
        now_ms: i64,
    ) -> StoreFuture<'_, CodeCheck>;

    // --- replay protection shared by instances ---

    /// Atomically claims `(scope, key)` until `until_ms`: `true` for the first caller, `false`
    /// while an earlier claim has not run out (one statement; instances race safely).
    fn claim_once(
        &self,
        scope: &str,
        key: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreFuture<'_, bool>;

    // --- MoySklad app tenants ---

    /// Install / Resume / TariffChanged / Autoprolongation: creates or updates the account's
    /// tenant in one statement. It becomes `Activated` if it was connected before (a resumed
    /// account keeps its settings), else `SettingsRequired`. A new access token replaces the
    /// kept one; `None` keeps it.
    fn app_activate(
        &self,
        account_id: &str,
        app_id: &str,
        account_name: &str,
        access_token_sealed: Option<&str>,
        now_ms: i64,
    ) -> StoreFuture<'_, AppTenant>;

    /// Suspend (`uninstall = false`: everything kept, calls refused) or Uninstall (the access
    /// token, credentials and LoyaltyAPI token forgotten). Returns the state before, `None`
    /// for an unknown account (nothing is created).
    fn app_deactivate(
        &self,
        account_id: &str,
        uninstall: bool,
        now_ms: i64,
    ) -> StoreFuture<'_, Option<AppState>>;

    /// Stores a connection (LoyaltyAPI token hash, vendor, sealed credentials) of an installed,
    /// not suspended account; `false` otherwise. The state is not changed: see [`Store::app_mark`].
    fn app_connect(
        &self,
        account_id: &str,
        connection: &AppConnection,
        now_ms: i64,
    ) -> StoreFuture<'_, bool>;

    /// Records MoySklad's answer to our Vendor API calls and, with `activated`, makes a
    /// connected, installed account `Activated`. `false` if nothing changed.
    fn app_mark(
        &self,
        account_id: &str,
        activated: bool,
        note: &str,
        now_ms: i64,
    ) -> StoreFuture<'_, bool>;

    fn app_tenant(&self, account_id: &str) -> StoreFuture<'_, Option<AppTenant>>;

    /// Every app tenant that has a LoyaltyAPI token (activated or suspended), for the
    /// in-memory token map.
    fn app_tenants_connected(&self) -> StoreFuture<'_, Vec<AppTenant>>;

    // --- retention ---

    /// Deletes done/failed records, delivered outbox items, and expired values and codes
    /// last changed before `before_ms`; returns how many rows went.
    fn prune(&self, before_ms: i64) -> StoreFuture<'_, u64>;
}

/// The refusal to open a database that a newer loyalty-bridge has migrated.
fn newer_schema(found: i64, known: i64) -> StoreError {
    StoreError::Corrupt(format!(
        "the database schema is at version {found}, newer than the {known} this loyalty-bridge \
         knows: run a newer loyalty-bridge (or restore the database from before the upgrade)"
    ))
}

/// A JSON column's text.
fn json_text(value: &Value) -> String {
    value.to_string()
}

fn parse_json(text: &str, column: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("column {column} does not hold JSON: {e}")))
}

fn parse_kind(text: &str) -> Result<Kind, StoreError> {
    Kind::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown record kind {text:?}")))
}

fn parse_record_state(text: &str) -> Result<RecordState, StoreError> {
    RecordState::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown record state {text:?}")))
}

fn parse_outbox_state(text: &str) -> Result<OutboxState, StoreError> {
    OutboxState::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown outbox state {text:?}")))
}

/// A duration as the store's milliseconds (saturating: a huge duration is "far away").
pub fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
