//! [`Store`] on SQLite: one file, WAL, `synchronous=FULL` (a commit is on disk when it returns).
//!
//! rusqlite blocks, so every call runs on tokio's blocking pool; one connection behind a mutex
//! serialises them (SQLite serialises writers anyway). Where a read decides a write, the two
//! run in one `BEGIN IMMEDIATE` transaction, which takes the write lock first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::{
    APP_COLUMNS, AppConnection, AppState, AppTenant, AppTenantStore, Begin, CodeCheck,
    JournalStore, KeyValueStore, Kind, OutboxItem, OutboxStats, OutboxStore, Record, RecordState,
    Store, StoreError, StoreFuture, json_text, newer_schema, parse_app_state, parse_json,
    parse_kind, parse_outbox_state, parse_record_state,
};

/// Numbered migrations, applied in order, each in its own transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
    CREATE TABLE records (
        tenant          TEXT    NOT NULL,
        kind            TEXT    NOT NULL,
        id              TEXT    NOT NULL,
        state           TEXT    NOT NULL,
        kept            TEXT    NOT NULL DEFAULT 'null',
        lease_until_ms  INTEGER NOT NULL,
        created_ms      INTEGER NOT NULL,
        updated_ms      INTEGER NOT NULL,
        PRIMARY KEY (tenant, kind, id)
    ) WITHOUT ROWID;
    CREATE INDEX records_prune ON records (updated_ms) WHERE state IN ('done', 'failed');

    CREATE TABLE outbox (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant          TEXT    NOT NULL,
        kind            TEXT    NOT NULL,
        id              TEXT    NOT NULL,
        request         TEXT    NOT NULL,
        state           TEXT    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error      TEXT,
        created_ms      INTEGER NOT NULL,
        updated_ms      INTEGER NOT NULL,
        FOREIGN KEY (tenant, kind, id) REFERENCES records (tenant, kind, id)
    );
    CREATE INDEX outbox_pending ON outbox (tenant, seq) WHERE state = 'pending';
    CREATE INDEX outbox_record ON outbox (tenant, kind, id);

    CREATE TABLE outbox_leases (
        tenant          TEXT    NOT NULL PRIMARY KEY,
        holder          TEXT    NOT NULL,
        until_ms        INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE kv (
        tenant          TEXT    NOT NULL,
        key             TEXT    NOT NULL,
        value           TEXT    NOT NULL,
        expires_ms      INTEGER NOT NULL,
        PRIMARY KEY (tenant, key)
    ) WITHOUT ROWID;

    CREATE TABLE codes (
        tenant          TEXT    NOT NULL,
        key             TEXT    NOT NULL,
        code            TEXT    NOT NULL,
        expires_ms      INTEGER NOT NULL,
        attempts_left   INTEGER NOT NULL,
        PRIMARY KEY (tenant, key)
    ) WITHOUT ROWID;
    "#,
    ),
    (
        2,
        r#"
    CREATE TABLE claims (
        scope           TEXT    NOT NULL,
        key             TEXT    NOT NULL,
        until_ms        INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;

    CREATE TABLE app_tenants (
        account_id          TEXT    NOT NULL PRIMARY KEY,
        app_id              TEXT    NOT NULL,
        account_name        TEXT    NOT NULL,
        state               TEXT    NOT NULL,
        access_token_sealed TEXT,
        token_sha256        TEXT    UNIQUE,
        mapping             TEXT,
        base_url            TEXT,
        credentials_sealed  TEXT,
        settings            TEXT    NOT NULL DEFAULT 'null',
        external_search     INTEGER NOT NULL DEFAULT 0,
        vendor_note         TEXT,
        created_ms          INTEGER NOT NULL,
        updated_ms          INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    ),
];

/// The SQLite backend (the embedded default).
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) the database file and migrates it.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        let opened = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&opened))
            .await
            .map_err(|e| StoreError::Unavailable(format!("sqlite open task failed: {e}")))??;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    fn call<T, F>(&self, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                // A panic inside a call rolled its transaction back on unwind; the
                // connection itself is still usable.
                let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                f(&mut guard)
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("sqlite task failed: {e}")))?
        })
    }
}

fn open_blocking(path: &Path) -> Result<Connection, StoreError> {
    if path == Path::new(crate::config::MEMORY_STORE) {
        // Tests and demos: the same schema and statements, nothing on disk.
        let mut conn = Connection::open_in_memory().map_err(unavailable)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .map_err(unavailable)?;
        migrate(&mut conn)?;
        return Ok(conn);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create directory {}: {e}", dir.display()))
        })?;
    }
    let mut conn = Connection::open(path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(unavailable)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(unavailable)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{} cannot use WAL (journal_mode is {mode})",
            path.display()
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(unavailable)?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |row| row.get(0),
    )
    .map_err(unavailable)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version    INTEGER NOT NULL PRIMARY KEY,
                 applied_ms INTEGER NOT NULL
             )",
        )
        .map_err(unavailable)?;
        let found = schema_version(&tx)?;
        tx.commit().map_err(unavailable)?;
        if found > known {
            return Err(newer_schema(found, known));
        }
    }
    for &(version, sql) in MIGRATIONS {
        // Another process may migrate the same file: decide inside the write lock.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        if schema_version(&tx)? >= version {
            continue;
        }
        tx.execute_batch(sql).map_err(|e| {
            StoreError::Unavailable(format!("sqlite migration {version} failed: {e}"))
        })?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_ms) VALUES (?1, ?2)",
            params![version, super::now_ms()],
        )
        .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        tracing::info!(version, "sqlite store migrated");
    }
    Ok(())
}

const RECORD_COLUMNS: &str =
    "tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms";

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Record, StoreError>> {
    let tenant: String = row.get(0)?;
    let kind: String = row.get(1)?;
    let id: String = row.get(2)?;
    let state: String = row.get(3)?;
    let kept: String = row.get(4)?;
    let lease_until_ms: i64 = row.get(5)?;
    let created_ms: i64 = row.get(6)?;
    let updated_ms: i64 = row.get(7)?;
    Ok((|| {
        Ok(Record {
            tenant,
            kind: parse_kind(&kind)?,
            id,
            state: parse_record_state(&state)?,
            kept: parse_json(&kept, "records.kept")?,
            lease_until_ms,
            created_ms,
            updated_ms,
        })
    })())
}

const OUTBOX_COLUMNS: &str =
    "seq, tenant, kind, id, request, state, attempts, next_attempt_ms, last_error, created_ms";

fn item_from_row(row: &Row<'_>) -> rusqlite::Result<Result<OutboxItem, StoreError>> {
    let seq: i64 = row.get(0)?;
    let tenant: String = row.get(1)?;
    let kind: String = row.get(2)?;
    let id: String = row.get(3)?;
    let request: String = row.get(4)?;
    let state: String = row.get(5)?;
    let attempts: i64 = row.get(6)?;
    let next_attempt_ms: i64 = row.get(7)?;
    let last_error: Option<String> = row.get(8)?;
    let created_ms: i64 = row.get(9)?;
    Ok((|| {
        Ok(OutboxItem {
            seq,
            tenant,
            kind: parse_kind(&kind)?,
            id,
            request: parse_json(&request, "outbox.request")?,
            state: parse_outbox_state(&state)?,
            attempts: u32::try_from(attempts).map_err(|_| {
                StoreError::Corrupt(format!("outbox item {seq} has {attempts} attempts"))
            })?,
            next_attempt_ms,
            last_error,
            created_ms,
        })
    })())
}

fn get_record(
    conn: &Connection,
    tenant: &str,
    kind: Kind,
    id: &str,
) -> Result<Option<Record>, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE tenant = ?1 AND kind = ?2 AND id = ?3"
        ),
        params![tenant, kind.as_str(), id],
        record_from_row,
    )
    .optional()
    .map_err(unavailable)?
    .transpose()
}

/// The record an outbox item belongs to, and the item's state.
fn item_owner(
    conn: &Connection,
    seq: i64,
) -> Result<Option<(String, String, String, String)>, StoreError> {
    conn.query_row(
        "SELECT tenant, kind, id, state FROM outbox WHERE seq = ?1",
        params![seq],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )
    .optional()
    .map_err(unavailable)
}

fn app_from_row(row: &Row<'_>) -> rusqlite::Result<Result<AppTenant, StoreError>> {
    let state: String = row.get(3)?;
    let settings: String = row.get(9)?;
    let tenant = AppTenant {
        account_id: row.get(0)?,
        app_id: row.get(1)?,
        account_name: row.get(2)?,
        state: AppState::SettingsRequired,
        access_token_sealed: row.get(4)?,
        token_sha256: row.get(5)?,
        mapping: row.get(6)?,
        base_url: row.get(7)?,
        credentials_sealed: row.get(8)?,
        settings: Value::Null,
        external_search: row.get::<_, i64>(10)? != 0,
        vendor_note: row.get(11)?,
        created_ms: row.get(12)?,
        updated_ms: row.get(13)?,
    };
    Ok((|| {
        Ok(AppTenant {
            state: parse_app_state(&state)?,
            settings: parse_json(&settings, "app_tenants.settings")?,
            ..tenant
        })
    })())
}

impl JournalStore for SqliteStore {
    fn begin(
        &self,
        tenant: &str,
        kind: Kind,
        id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> StoreFuture<'_, Begin> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            // Creates the record, or takes it over when failed or its lease ran out; a row
            // comes back only when the caller now owns it.
            let owned = tx
                .query_row(
                    "INSERT INTO records (tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms)
                     VALUES (?1, ?2, ?3, 'in_flight', 'null', ?5, ?4, ?4)
                     ON CONFLICT (tenant, kind, id) DO UPDATE
                        SET state = 'in_flight', kept = 'null',
                            lease_until_ms = excluded.lease_until_ms, updated_ms = excluded.updated_ms
                      WHERE records.state = 'failed'
                         OR (records.state = 'in_flight' AND records.lease_until_ms <= excluded.updated_ms)
                     RETURNING 1",
                    params![tenant, kind.as_str(), id, now_ms, lease_until_ms],
                    |_| Ok(()),
                )
                .optional()
                .map_err(unavailable)?;
            let answer = match owned {
                Some(()) => Begin::Started,
                None => {
                    let record = get_record(&tx, &tenant, kind, &id)?.ok_or_else(|| {
                        StoreError::Corrupt(format!("record {tenant}/{}/{id} vanished", kind.as_str()))
                    })?;
                    match record.state {
                        RecordState::InFlight => Begin::InFlight(record),
                        RecordState::Done | RecordState::Queued => Begin::Settled(record),
                        RecordState::Failed => {
                            return Err(StoreError::Corrupt(format!(
                                "record {tenant}/{}/{id} is failed but could not be taken over",
                                kind.as_str()
                            )));
                        }
                    }
                }
            };
            tx.commit().map_err(unavailable)?;
            Ok(answer)
        })
    }

    fn record(&self, tenant: &str, kind: Kind, id: &str) -> StoreFuture<'_, Option<Record>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.call(move |conn| get_record(conn, &tenant, kind, &id))
    }

    fn finish(
        &self,
        tenant: &str,
        kind: Kind,
        id: &str,
        kept: &Value,
        now_ms: i64,
    ) -> StoreFuture<'_, ()> {
        let (tenant, id, kept) = (tenant.to_owned(), id.to_owned(), json_text(kept));
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO records (tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, 'done', ?4, 0, ?5, ?5)
                 ON CONFLICT (tenant, kind, id) DO UPDATE
                    SET state = 'done', kept = excluded.kept, updated_ms = excluded.updated_ms",
                params![tenant, kind.as_str(), id, kept, now_ms],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn abandon(&self, tenant: &str, kind: Kind, id: &str, now_ms: i64) -> StoreFuture<'_, ()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.call(move |conn| {
            conn.execute(
                "UPDATE records SET state = 'failed', updated_ms = ?4
                  WHERE tenant = ?1 AND kind = ?2 AND id = ?3 AND state = 'in_flight'",
                params![tenant, kind.as_str(), id, now_ms],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }
}

impl OutboxStore for SqliteStore {
    fn enqueue(
        &self,
        tenant: &str,
        kind: Kind,
        id: &str,
        request: &Value,
        now_ms: i64,
    ) -> StoreFuture<'_, i64> {
        let (tenant, id, request) = (tenant.to_owned(), id.to_owned(), json_text(request));
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO records (tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, 'queued', 'null', 0, ?4, ?4)
                 ON CONFLICT (tenant, kind, id) DO UPDATE
                    SET state = 'queued', updated_ms = excluded.updated_ms",
                params![tenant, kind.as_str(), id, now_ms],
            )
            .map_err(unavailable)?;
            let seq = tx
                .query_row(
                    "INSERT INTO outbox (tenant, kind, id, request, state, attempts, next_attempt_ms, created_ms, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5)
                     RETURNING seq",
                    params![tenant, kind.as_str(), id, request, now_ms],
                    |row| row.get(0),
                )
                .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(seq)
        })
    }

    fn lease_outbox(
        &self,
        tenant: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreFuture<'_, bool> {
        let (tenant, holder) = (tenant.to_owned(), holder.to_owned());
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "INSERT INTO outbox_leases (tenant, holder, until_ms) VALUES (?1, ?2, ?4)
                     ON CONFLICT (tenant) DO UPDATE
                        SET holder = excluded.holder, until_ms = excluded.until_ms
                      WHERE outbox_leases.holder = excluded.holder OR outbox_leases.until_ms <= ?3",
                    params![tenant, holder, now_ms, until_ms],
                )
                .map_err(unavailable)?;
            Ok(changed == 1)
        })
    }

    fn release_outbox_leases(&self, holder: &str) -> StoreFuture<'_, ()> {
        let holder = holder.to_owned();
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM outbox_leases WHERE holder = ?1",
                params![holder],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn next_pending(&self, tenant: &str) -> StoreFuture<'_, Option<OutboxItem>> {
        let tenant = tenant.to_owned();
        self.call(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox
                      WHERE tenant = ?1 AND state = 'pending' ORDER BY seq LIMIT 1"
                ),
                params![tenant],
                item_from_row,
            )
            .optional()
            .map_err(unavailable)?
            .transpose()
        })
    }

    fn tenants_with_pending(&self) -> StoreFuture<'_, Vec<String>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT DISTINCT tenant FROM outbox WHERE state = 'pending' ORDER BY tenant",
                )
                .map_err(unavailable)?;
            let rows = stmt.query_map([], |row| row.get(0)).map_err(unavailable)?;
            rows.collect::<Result<Vec<String>, _>>()
                .map_err(unavailable)
        })
    }

    fn delivered(&self, seq: i64, kept: &Value, now_ms: i64) -> StoreFuture<'_, ()> {
        let kept = json_text(kept);
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            if let Some((tenant, kind, id, _)) = item_owner(&tx, seq)? {
                tx.execute(
                    "UPDATE outbox SET state = 'delivered', updated_ms = ?2 WHERE seq = ?1",
                    params![seq, now_ms],
                )
                .map_err(unavailable)?;
                tx.execute(
                    "UPDATE records SET state = 'done', kept = ?4, updated_ms = ?5
                      WHERE tenant = ?1 AND kind = ?2 AND id = ?3",
                    params![tenant, kind, id, kept, now_ms],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
    }

    fn postpone(&self, seq: i64, error: &str, next_attempt_ms: i64) -> StoreFuture<'_, ()> {
        let error = error.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_ms = ?3
                  WHERE seq = ?1 AND state = 'pending'",
                params![seq, error, next_attempt_ms],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn refused(&self, seq: i64, error: &str, now_ms: i64) -> StoreFuture<'_, ()> {
        let error = error.to_owned();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            if let Some((tenant, kind, id, state)) = item_owner(&tx, seq)?
                && state == "pending"
            {
                tx.execute(
                    "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?2,
                            updated_ms = ?3
                      WHERE seq = ?1",
                    params![seq, error, now_ms],
                )
                .map_err(unavailable)?;
                tx.execute(
                    "UPDATE records SET state = 'failed', updated_ms = ?4
                      WHERE tenant = ?1 AND kind = ?2 AND id = ?3 AND state = 'queued'",
                    params![tenant, kind, id, now_ms],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
    }

    fn outbox_items(
        &self,
        tenant: Option<&str>,
        include_delivered: bool,
    ) -> StoreFuture<'_, Vec<OutboxItem>> {
        let tenant = tenant.map(str::to_owned);
        self.call(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox
                      WHERE (?1 IS NULL OR tenant = ?1) AND (?2 OR state != 'delivered')
                      ORDER BY seq"
                ))
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![tenant, include_delivered], item_from_row)
                .map_err(unavailable)?;
            let mut items = Vec::new();
            for row in rows {
                items.push(row.map_err(unavailable)??);
            }
            Ok(items)
        })
    }

    fn outbox_retry(&self, seq: i64, now_ms: i64) -> StoreFuture<'_, bool> {
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let Some((tenant, kind, id, state)) = item_owner(&tx, seq)? else {
                return Ok(false);
            };
            match state.as_str() {
                "pending" => {}
                "failed" => {
                    // Back in the queue, so a repeat answers success again — unless a repeat
                    // has meanwhile taken the record over (it is in flight or done): then
                    // delivering this item too would do the sale twice.
                    let requeued = tx
                        .execute(
                            "UPDATE records SET state = 'queued', updated_ms = ?4
                              WHERE tenant = ?1 AND kind = ?2 AND id = ?3
                                AND state IN ('failed', 'queued')",
                            params![tenant, kind, id, now_ms],
                        )
                        .map_err(unavailable)?;
                    if requeued == 0 {
                        return Ok(false);
                    }
                }
                _ => return Ok(false),
            }
            tx.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_ms = ?2, updated_ms = ?2
                  WHERE seq = ?1",
                params![seq, now_ms],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
    }

    fn outbox_drop(&self, seq: i64, now_ms: i64) -> StoreFuture<'_, bool> {
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let Some((tenant, kind, id, state)) = item_owner(&tx, seq)? else {
                return Ok(false);
            };
            if state == "delivered" {
                return Ok(false);
            }
            tx.execute("DELETE FROM outbox WHERE seq = ?1", params![seq])
                .map_err(unavailable)?;
            // A record a repeat has meanwhile taken over (in flight, done) stays as it is.
            tx.execute(
                "UPDATE records SET state = 'failed', updated_ms = ?4
                  WHERE tenant = ?1 AND kind = ?2 AND id = ?3 AND state = 'queued'",
                params![tenant, kind, id, now_ms],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
    }

    fn outbox_stats(&self) -> StoreFuture<'_, Vec<OutboxStats>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT tenant,
                            SUM(state = 'pending'),
                            SUM(state = 'failed'),
                            MIN(CASE WHEN state = 'pending' THEN created_ms END)
                       FROM outbox WHERE state IN ('pending', 'failed')
                      GROUP BY tenant ORDER BY tenant",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok(OutboxStats {
                        tenant: row.get(0)?,
                        pending: row.get::<_, i64>(1)?.max(0) as u64,
                        failed: row.get::<_, i64>(2)?.max(0) as u64,
                        oldest_pending_ms: row.get(3)?,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
    }
}

impl KeyValueStore for SqliteStore {
    fn kv_get(&self, tenant: &str, key: &str, now_ms: i64) -> StoreFuture<'_, Option<Value>> {
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        self.call(move |conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT value FROM kv WHERE tenant = ?1 AND key = ?2 AND expires_ms > ?3",
                    params![tenant, key, now_ms],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            text.map(|t| parse_json(&t, "kv.value")).transpose()
        })
    }

    fn kv_put(
        &self,
        tenant: &str,
        key: &str,
        value: &Value,
        expires_ms: i64,
    ) -> StoreFuture<'_, ()> {
        let (tenant, key, value) = (tenant.to_owned(), key.to_owned(), json_text(value));
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO kv (tenant, key, value, expires_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, key) DO UPDATE
                    SET value = excluded.value, expires_ms = excluded.expires_ms",
                params![tenant, key, value, expires_ms],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn code_put(
        &self,
        tenant: &str,
        key: &str,
        code: &str,
        expires_ms: i64,
        max_attempts: u32,
    ) -> StoreFuture<'_, ()> {
        let (tenant, key, code) = (tenant.to_owned(), key.to_owned(), code.to_owned());
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO codes (tenant, key, code, expires_ms, attempts_left)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, key) DO UPDATE
                    SET code = excluded.code, expires_ms = excluded.expires_ms,
                        attempts_left = excluded.attempts_left",
                params![tenant, key, code, expires_ms, i64::from(max_attempts)],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn code_check(
        &self,
        tenant: &str,
        key: &str,
        code: &str,
        now_ms: i64,
    ) -> StoreFuture<'_, CodeCheck> {
        let (tenant, key, code) = (tenant.to_owned(), key.to_owned(), code.to_owned());
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let stored: Option<(String, i64, i64)> = tx
                .query_row(
                    "SELECT code, expires_ms, attempts_left FROM codes WHERE tenant = ?1 AND key = ?2",
                    params![tenant, key],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let Some((stored, expires_ms, attempts_left)) = stored else {
                return Ok(CodeCheck::Missing);
            };
            let delete = |tx: &rusqlite::Transaction<'_>| {
                tx.execute(
                    "DELETE FROM codes WHERE tenant = ?1 AND key = ?2",
                    params![tenant, key],
                )
                .map_err(unavailable)
            };
            let answer = if expires_ms <= now_ms || attempts_left <= 0 {
                delete(&tx)?;
                CodeCheck::Missing
            } else if bool::from(stored.as_bytes().ct_eq(code.as_bytes())) {
                delete(&tx)?;
                CodeCheck::Accepted
            } else {
                let left = attempts_left - 1;
                if left == 0 {
                    delete(&tx)?;
                } else {
                    tx.execute(
                        "UPDATE codes SET attempts_left = ?3 WHERE tenant = ?1 AND key = ?2",
                        params![tenant, key, left],
                    )
                    .map_err(unavailable)?;
                }
                CodeCheck::Wrong {
                    attempts_left: u32::try_from(left).unwrap_or(0),
                }
            };
            tx.commit().map_err(unavailable)?;
            Ok(answer)
        })
    }

    fn claim_once(
        &self,
        scope: &str,
        key: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreFuture<'_, bool> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "INSERT INTO claims (scope, key, until_ms) VALUES (?1, ?2, ?4)
                     ON CONFLICT (scope, key) DO UPDATE SET until_ms = excluded.until_ms
                      WHERE claims.until_ms <= ?3",
                    params![scope, key, now_ms, until_ms],
                )
                .map_err(unavailable)?;
            Ok(changed == 1)
        })
    }
}

impl AppTenantStore for SqliteStore {
    fn app_activate(
        &self,
        account_id: &str,
        app_id: &str,
        account_name: &str,
        access_token_sealed: Option<&str>,
        now_ms: i64,
    ) -> StoreFuture<'_, AppTenant> {
        let (account_id, app_id, account_name) = (
            account_id.to_owned(),
            app_id.to_owned(),
            account_name.to_owned(),
        );
        let sealed = access_token_sealed.map(str::to_owned);
        self.call(move |conn| {
            conn.query_row(
                &format!(
                    "INSERT INTO app_tenants (account_id, app_id, account_name, state,
                                              access_token_sealed, created_ms, updated_ms)
                     VALUES (?1, ?2, ?3, 'settings_required', ?4, ?5, ?5)
                     ON CONFLICT (account_id) DO UPDATE
                        SET app_id = excluded.app_id, account_name = excluded.account_name,
                            state = CASE WHEN app_tenants.token_sha256 IS NULL
                                         THEN 'settings_required' ELSE 'activated' END,
                            access_token_sealed = COALESCE(excluded.access_token_sealed,
                                                           app_tenants.access_token_sealed),
                            updated_ms = excluded.updated_ms
                     RETURNING {APP_COLUMNS}"
                ),
                params![account_id, app_id, account_name, sealed, now_ms],
                app_from_row,
            )
            .map_err(unavailable)?
        })
    }

    fn app_deactivate(
        &self,
        account_id: &str,
        uninstall: bool,
        now_ms: i64,
    ) -> StoreFuture<'_, Option<AppState>> {
        let account_id = account_id.to_owned();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let before: Option<String> = tx
                .query_row(
                    "SELECT state FROM app_tenants WHERE account_id = ?1",
                    params![account_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            let Some(before) = before else {
                return Ok(None);
            };
            let before = parse_app_state(&before)?;
            if uninstall {
                tx.execute(
                    "UPDATE app_tenants
                        SET state = 'uninstalled', access_token_sealed = NULL,
                            credentials_sealed = NULL, token_sha256 = NULL, updated_ms = ?2
                      WHERE account_id = ?1",
                    params![account_id, now_ms],
                )
                .map_err(unavailable)?;
            } else {
                tx.execute(
                    "UPDATE app_tenants SET state = 'suspended', updated_ms = ?2
                      WHERE account_id = ?1 AND state != 'uninstalled'",
                    params![account_id, now_ms],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(Some(before))
        })
    }

    fn app_connect(
        &self,
        account_id: &str,
        connection: &AppConnection,
        now_ms: i64,
    ) -> StoreFuture<'_, bool> {
        let account_id = account_id.to_owned();
        let c = connection.clone();
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE app_tenants
                        SET token_sha256 = ?2, mapping = ?3, base_url = ?4,
                            credentials_sealed = ?5, settings = ?6, external_search = ?7,
                            updated_ms = ?8
                      WHERE account_id = ?1 AND state IN ('settings_required', 'activated')",
                    params![
                        account_id,
                        c.token_sha256,
                        c.mapping,
                        c.base_url,
                        c.credentials_sealed,
                        json_text(&c.settings),
                        i64::from(c.external_search),
                        now_ms
                    ],
                )
                .map_err(unavailable)?;
            Ok(changed == 1)
        })
    }

    fn app_mark(
        &self,
        account_id: &str,
        activated: bool,
        note: &str,
        now_ms: i64,
    ) -> StoreFuture<'_, bool> {
        let (account_id, note) = (account_id.to_owned(), note.to_owned());
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE app_tenants
                        SET vendor_note = ?2, updated_ms = ?4,
                            state = CASE WHEN ?3 AND token_sha256 IS NOT NULL
                                          AND state IN ('settings_required', 'activated')
                                         THEN 'activated' ELSE state END
                      WHERE account_id = ?1",
                    params![account_id, note, activated, now_ms],
                )
                .map_err(unavailable)?;
            Ok(changed == 1)
        })
    }

    fn app_tenant(&self, account_id: &str) -> StoreFuture<'_, Option<AppTenant>> {
        let account_id = account_id.to_owned();
        self.call(move |conn| {
            conn.query_row(
                &format!("SELECT {APP_COLUMNS} FROM app_tenants WHERE account_id = ?1"),
                params![account_id],
                app_from_row,
            )
            .optional()
            .map_err(unavailable)?
            .transpose()
        })
    }

    fn app_tenants_connected(&self) -> StoreFuture<'_, Vec<AppTenant>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {APP_COLUMNS} FROM app_tenants
                      WHERE token_sha256 IS NOT NULL ORDER BY account_id"
                ))
                .map_err(unavailable)?;
            let rows = stmt.query_map([], app_from_row).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(unavailable)??);
            }
            Ok(out)
        })
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn prune(&self, before_ms: i64) -> StoreFuture<'_, u64> {
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let mut gone = 0;
            for sql in [
                "DELETE FROM outbox WHERE state = 'delivered' AND updated_ms < ?1",
                // A record an outbox item still points at (one refused, waiting for an
                // operator) stays.
                "DELETE FROM records
                  WHERE state IN ('done', 'failed') AND updated_ms < ?1
                    AND NOT EXISTS (SELECT 1 FROM outbox o
                                     WHERE o.tenant = records.tenant AND o.kind = records.kind
                                       AND o.id = records.id)",
                "DELETE FROM kv WHERE expires_ms < ?1",
                "DELETE FROM codes WHERE expires_ms < ?1",
                "DELETE FROM outbox_leases WHERE until_ms < ?1",
                "DELETE FROM claims WHERE until_ms < ?1",
            ] {
                gone += tx.execute(sql, params![before_ms]).map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(gone as u64)
        })
    }
}
