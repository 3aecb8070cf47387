//! One place that turns rows into the store's types, for both backends, and the store's values
//! into column text. A backend hands a row over as [`Columns`]; the column order is the one
//! the statements in `sql.rs` select.

use serde_json::Value;

use super::cluster::{Member, VendorSignal};
use super::key_value::StoredCode;
use super::outbox::ItemOwner;
use super::{
    AppFailure, AppState, AppTenant, FailureSource, Kind, OutboxItem, OutboxState, OutboxStats,
    Record, RecordState, StoreError,
};

/// Typed reads of one row's columns by position; a backend's failure to read one (a type the
/// schema does not have) comes back as that backend's error.
pub(super) trait Columns {
    fn text(&self, index: usize) -> Result<String, StoreError>;
    fn text_or_null(&self, index: usize) -> Result<Option<String>, StoreError>;
    fn int(&self, index: usize) -> Result<i64, StoreError>;
    fn int_or_null(&self, index: usize) -> Result<Option<i64>, StoreError>;
    /// A boolean column (an integer in SQLite).
    fn flag(&self, index: usize) -> Result<bool, StoreError>;
}

/// A JSON column's text.
pub(super) fn json_text(value: &Value) -> String {
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

pub(super) fn parse_app_state(text: &str) -> Result<AppState, StoreError> {
    AppState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown app state {text:?}")))
}

fn parse_failure_source(text: &str) -> Result<FailureSource, StoreError> {
    FailureSource::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown failure source {text:?}")))
}

/// A row of `record_columns!`.
pub(super) fn record(row: &dyn Columns) -> Result<Record, StoreError> {
    Ok(Record {
        tenant: row.text(0)?,
        kind: parse_kind(&row.text(1)?)?,
        id: row.text(2)?,
        state: parse_record_state(&row.text(3)?)?,
        kept: parse_json(&row.text(4)?, "records.kept")?,
        lease_until_ms: row.int(5)?,
        created_ms: row.int(6)?,
        updated_ms: row.int(7)?,
    })
}

/// A row of `outbox_columns!`.
pub(super) fn outbox_item(row: &dyn Columns) -> Result<OutboxItem, StoreError> {
    let seq = row.int(0)?;
    let attempts = row.int(6)?;
    Ok(OutboxItem {
        seq,
        tenant: row.text(1)?,
        kind: parse_kind(&row.text(2)?)?,
        id: row.text(3)?,
        request: parse_json(&row.text(4)?, "outbox.request")?,
        state: parse_outbox_state(&row.text(5)?)?,
        attempts: u32::try_from(attempts).map_err(|_| {
            StoreError::Corrupt(format!("outbox item {seq} has {attempts} attempts"))
        })?,
        next_attempt_ms: row.int(7)?,
        last_error: row.text_or_null(8)?,
        created_ms: row.int(9)?,
    })
}

/// A row of `app_columns!`.
pub(super) fn app_tenant(row: &dyn Columns) -> Result<AppTenant, StoreError> {
    Ok(AppTenant {
        account_id: row.text(0)?,
        app_id: row.text(1)?,
        account_name: row.text(2)?,
        state: parse_app_state(&row.text(3)?)?,
        access_token_sealed: row.text_or_null(4)?,
        token_sha256: row.text_or_null(5)?,
        mapping: row.text_or_null(6)?,
        base_url: row.text_or_null(7)?,
        credentials_sealed: row.text_or_null(8)?,
        settings: parse_json(&row.text(9)?, "app_tenants.settings")?,
        external_search: row.flag(10)?,
        vendor_note: row.text_or_null(11)?,
        created_ms: row.int(12)?,
        updated_ms: row.int(13)?,
        change_number: row.int(14)?,
    })
}

/// A row of `app_failure_columns!`.
pub(super) fn app_failure(row: &dyn Columns) -> Result<AppFailure, StoreError> {
    let times = row.int(2)?;
    Ok(AppFailure {
        source: parse_failure_source(&row.text(0)?)?,
        text: row.text(1)?,
        times: u64::try_from(times)
            .map_err(|_| StoreError::Corrupt(format!("a failure happened {times} times")))?,
        first_ms: row.int(3)?,
        last_ms: row.int(4)?,
    })
}

/// A row of [`super::sql::OUTBOX_STATS`].
pub(super) fn outbox_stats(row: &dyn Columns) -> Result<OutboxStats, StoreError> {
    Ok(OutboxStats {
        tenant: row.text(0)?,
        pending: row.int(1)?.max(0) as u64,
        failed: row.int(2)?.max(0) as u64,
        oldest_pending_ms: row.int_or_null(3)?,
    })
}

/// A row of [`super::sql::ITEM_OWNER_SQLITE`] / [`super::sql::ITEM_OWNER_POSTGRES`].
pub(super) fn item_owner(row: &dyn Columns) -> Result<ItemOwner, StoreError> {
    Ok(ItemOwner {
        tenant: row.text(0)?,
        kind: row.text(1)?,
        id: row.text(2)?,
        state: row.text(3)?,
    })
}

/// A row of [`super::sql::CODE_SQLITE`] / [`super::sql::CODE_POSTGRES`].
pub(super) fn stored_code(row: &dyn Columns) -> Result<StoredCode, StoreError> {
    Ok(StoredCode {
        code: row.text(0)?,
        expires_ms: row.int(1)?,
        attempts_left: row.int(2)?,
    })
}

/// A row of [`super::sql::KV_GET`].
pub(super) fn kv_value(row: &dyn Columns) -> Result<Value, StoreError> {
    parse_json(&row.text(0)?, "kv.value")
}

/// `instance, joined_ms, beat_ms`.
pub(super) fn member(row: &dyn Columns) -> Result<Member, StoreError> {
    Ok(Member {
        instance: row.text(0)?,
        joined_ms: row.int(1)?,
        beat_ms: row.int(2)?,
    })
}

/// `tenant, paused_until_ms, open_until_ms`.
pub(super) fn vendor_signal(row: &dyn Columns) -> Result<VendorSignal, StoreError> {
    Ok(VendorSignal {
        tenant: row.text(0)?,
        paused_until_ms: row.int(1)?,
        open_until_ms: row.int(2)?,
    })
}
