//! [`Store`] on SQLite: one file, WAL, `synchronous=FULL` (a commit is on disk when it returns).
//!
//! rusqlite blocks, so every call runs on tokio's blocking pool; one connection behind a mutex
//! serialises them (SQLite serialises writers anyway). Where a read decides a write, the two
//! run in one `BEGIN IMMEDIATE` transaction, which takes the write lock first.
//!
//! The statements are the shared ones of `sql.rs`; this file binds their parameters (by name:
//! see [`bind`]), converts values and runs them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{CachedStatement, Connection, Row, ToSql, TransactionBehavior};
use serde_json::Value;

use super::app_tenants::counter_missing;
use super::journal::begin_answer;
use super::key_value::{CodeAction, check_code};
use super::rows::{self, Columns, json_text, parse_app_state};
use super::schema::{self, Dialect};
use super::{
    AppConnection, AppFailure, AppFailureStore, AppState, AppTenant, AppTenantChanges,
    AppTenantStore, Begin, ClusterStore, CodeCheck, FAILURES_PER_ACCOUNT, JournalStore,
    KeyValueStore, Kind, Member, OutboxItem, OutboxStats, OutboxStore, PruneBefore, RateTake,
    Record, Store, StoreError, StoreFuture, VendorSignal, sql,
};

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

/// Room for every statement of `sql.rs` (rusqlite keeps 16 by default), so none is parsed
/// again once the store has run it.
const STATEMENT_CACHE: usize = 64;

fn open_blocking(path: &Path) -> Result<Connection, StoreError> {
    if path == Path::new(crate::config::MEMORY_STORE) {
        // Tests and demos: the same schema and statements, nothing on disk.
        let mut conn = Connection::open_in_memory().map_err(unavailable)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
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
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
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

/// The shared statements' parameters, by name: SQLite numbers `$N` by first appearance, not by
/// N (see `sql.rs`).
const PARAMETERS: [&str; 9] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9"];

/// `sql` prepared (cached per connection) with `params` bound to `$1`, `$2`…; refuses a
/// statement that takes a different number of parameters, which would otherwise run with the
/// missing ones NULL.
fn bind<'c>(
    conn: &'c Connection,
    sql: &str,
    params: &[&dyn ToSql],
) -> Result<CachedStatement<'c>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(unavailable)?;
    if stmt.parameter_count() != params.len() || params.len() > PARAMETERS.len() {
        return Err(StoreError::Unavailable(format!(
            "sqlite: a statement takes {} parameters, {} given: {sql}",
            stmt.parameter_count(),
            params.len()
        )));
    }
    for (name, value) in PARAMETERS.iter().zip(params) {
        stmt.raw_bind_parameter(*name, value).map_err(unavailable)?;
    }
    Ok(stmt)
}

/// Runs a statement that returns no rows; how many rows it changed.
fn execute(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> Result<usize, StoreError> {
    bind(conn, sql, params)?.raw_execute().map_err(unavailable)
}

/// The first row, mapped.
fn query_opt<T>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    map: impl FnOnce(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut stmt = bind(conn, sql, params)?;
    let mut rows = stmt.raw_query();
    match rows.next().map_err(unavailable)? {
        Some(row) => map(row).map(Some),
        None => Ok(None),
    }
}

/// A statement that always returns a row returned none (as rusqlite's `query_row` says it).
fn no_rows() -> StoreError {
    unavailable(rusqlite::Error::QueryReturnedNoRows)
}

/// Every row, mapped.
fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    map: impl Fn(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = bind(conn, sql, params)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// A column SQLite cannot convert is reported like any failed statement.
impl Columns for Row<'_> {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        self.get(index).map_err(unavailable)
    }

    fn text_or_null(&self, index: usize) -> Result<Option<String>, StoreError> {
        self.get(index).map_err(unavailable)
    }

    fn int(&self, index: usize) -> Result<i64, StoreError> {
        self.get(index).map_err(unavailable)
    }

    fn int_or_null(&self, index: usize) -> Result<Option<i64>, StoreError> {
        self.get(index).map_err(unavailable)
    }

    fn flag(&self, index: usize) -> Result<bool, StoreError> {
        Ok(self.get::<_, i64>(index).map_err(unavailable)? != 0)
    }
}

/// Takes the database's write lock first: the reads inside decide the writes.
fn immediate(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)
}

/// The next app-tenant change number, inside the caller's write transaction (see
/// [`sql::APP_NEXT_CHANGE`]).
fn next_app_change(tx: &rusqlite::Transaction<'_>) -> Result<i64, StoreError> {
    query_opt(tx, sql::APP_NEXT_CHANGE, &[], |row| row.int(0))?.ok_or_else(counter_missing)
}

fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(query_opt(conn, sql::SCHEMA_VERSION, &[], |row| row.int(0))?.unwrap_or(0))
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = schema::known_version();
    {
        let tx = immediate(conn)?;
        tx.execute_batch(&Dialect::Sqlite.render(schema::SCHEMA_VERSION_TABLE))
            .map_err(unavailable)?;
        let found = schema_version(&tx)?;
        tx.commit().map_err(unavailable)?;
        if found > known {
            return Err(schema::newer_schema(found, known));
        }
    }
    for &(version, text) in schema::MIGRATIONS {
        // Another process may migrate the same file: decide inside the write lock.
        let tx = immediate(conn)?;
        if schema_version(&tx)? >= version {
            continue;
        }
        tx.execute_batch(&Dialect::Sqlite.render(text))
            .map_err(|e| {
                StoreError::Unavailable(format!("sqlite migration {version} failed: {e}"))
            })?;
        execute(
            &tx,
            sql::RECORD_SCHEMA_VERSION,
            &[&version, &super::now_ms()],
        )?;
        tx.commit().map_err(unavailable)?;
        tracing::info!(version, "sqlite store migrated");
    }
    Ok(())
}

fn get_record(
    conn: &Connection,
    tenant: &str,
    kind: Kind,
    id: &str,
) -> Result<Option<Record>, StoreError> {
    query_opt(
        conn,
        sql::RECORD,
        &[&tenant, &kind.as_str(), &id],
        rows::record,
    )
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
            let tx = immediate(conn)?;
            let params: [&dyn ToSql; 5] = [&tenant, &kind.as_str(), &id, &now_ms, &lease_until_ms];
            if query_opt(&tx, sql::BEGIN_RECORD, &params, |_| Ok(()))?.is_some() {
                tx.commit().map_err(unavailable)?;
                return Ok(Begin::Started);
            }
            // Inside the write lock the record cannot have changed since the statement above.
            let record = get_record(&tx, &tenant, kind, &id)?.ok_or_else(|| {
                StoreError::Corrupt(format!("record {tenant}/{}/{id} vanished", kind.as_str()))
            })?;
            let state = record.state;
            let answer = begin_answer(record, now_ms).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "record {tenant}/{}/{id} is {} but could not be taken over",
                    kind.as_str(),
                    state.as_str()
                ))
            })?;
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
            execute(
                conn,
                sql::FINISH_RECORD,
                &[&tenant, &kind.as_str(), &id, &kept, &now_ms],
            )?;
            Ok(())
        })
    }

    fn abandon(&self, tenant: &str, kind: Kind, id: &str, now_ms: i64) -> StoreFuture<'_, ()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.call(move |conn| {
            execute(
                conn,
                sql::ABANDON_RECORD,
                &[&tenant, &kind.as_str(), &id, &now_ms],
            )?;
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
            // Nothing more keeps a tenant's items in the order they were accepted: this
            // transaction holds the database's one write lock from before its seq is drawn
            // until it commits, so seqs are committed in the order they are drawn.
            let tx = immediate(conn)?;
            execute(
                &tx,
                sql::QUEUE_RECORD,
                &[&tenant, &kind.as_str(), &id, &now_ms],
            )?;
            let seq = query_opt(
                &tx,
                sql::INSERT_ITEM,
                &[&tenant, &kind.as_str(), &id, &request, &now_ms],
                |row| row.int(0),
            )?
            .ok_or_else(no_rows)?;
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
            let changed = execute(
                conn,
                sql::LEASE_OUTBOX,
                &[&tenant, &holder, &now_ms, &until_ms],
            )?;
            Ok(changed == 1)
        })
    }

    fn release_outbox_leases(&self, holder: &str) -> StoreFuture<'_, ()> {
        let holder = holder.to_owned();
        self.call(move |conn| {
            execute(conn, sql::RELEASE_OUTBOX_LEASES, &[&holder])?;
            Ok(())
        })
    }

    fn next_pending(&self, tenant: &str) -> StoreFuture<'_, Option<OutboxItem>> {
        let tenant = tenant.to_owned();
        self.call(move |conn| query_opt(conn, sql::NEXT_PENDING, &[&tenant], rows::outbox_item))
    }

    fn tenants_with_pending(&self) -> StoreFuture<'_, Vec<String>> {
        self.call(|conn| query_all(conn, sql::TENANTS_WITH_PENDING, &[], |row| row.text(0)))
    }

    fn delivered(&self, seq: i64, kept: &Value, now_ms: i64) -> StoreFuture<'_, ()> {
        let kept = json_text(kept);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            if let Some(owner) = query_opt(&tx, sql::ITEM_OWNER_SQLITE, &[&seq], rows::item_owner)?
            {
                execute(&tx, sql::DELIVER_ITEM, &[&seq, &now_ms])?;
                execute(
                    &tx,
                    sql::FINISH_DELIVERED_RECORD,
                    &[&owner.tenant, &owner.kind, &owner.id, &kept, &now_ms],
                )?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
    }

    fn postpone(&self, seq: i64, error: &str, next_attempt_ms: i64) -> StoreFuture<'_, ()> {
        let error = error.to_owned();
        self.call(move |conn| {
            execute(conn, sql::POSTPONE_ITEM, &[&seq, &error, &next_attempt_ms])?;
            Ok(())
        })
    }

    fn refused(&self, seq: i64, error: &str, now_ms: i64) -> StoreFuture<'_, ()> {
        let error = error.to_owned();
        self.call(move |conn| {
            let tx = immediate(conn)?;
            if let Some(owner) = query_opt(&tx, sql::ITEM_OWNER_SQLITE, &[&seq], rows::item_owner)?
                && owner.state == "pending"
            {
                execute(&tx, sql::REFUSE_ITEM, &[&seq, &error, &now_ms])?;
                execute(
                    &tx,
                    sql::FAIL_QUEUED_RECORD,
                    &[&owner.tenant, &owner.kind, &owner.id, &now_ms],
                )?;
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
            query_all(
                conn,
                sql::OUTBOX_ITEMS,
                &[&tenant, &include_delivered],
                rows::outbox_item,
            )
        })
    }

    fn outbox_retry(&self, seq: i64, now_ms: i64) -> StoreFuture<'_, bool> {
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let Some(owner) = query_opt(&tx, sql::ITEM_OWNER_SQLITE, &[&seq], rows::item_owner)?
            else {
                return Ok(false);
            };
            match owner.state.as_str() {
                "pending" => {}
                "failed" => {
                    let requeued = execute(
                        &tx,
                        sql::REQUEUE_RECORD,
                        &[&owner.tenant, &owner.kind, &owner.id, &now_ms],
                    )?;
                    if requeued == 0 {
                        return Ok(false);
                    }
                }
                _ => return Ok(false),
            }
            execute(&tx, sql::RETRY_ITEM, &[&seq, &now_ms])?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
    }

    fn outbox_drop(&self, seq: i64, now_ms: i64) -> StoreFuture<'_, bool> {
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let Some(owner) = query_opt(&tx, sql::ITEM_OWNER_SQLITE, &[&seq], rows::item_owner)?
            else {
                return Ok(false);
            };
            if owner.state == "delivered" {
                return Ok(false);
            }
            execute(&tx, sql::DELETE_ITEM, &[&seq])?;
            execute(
                &tx,
                sql::FAIL_QUEUED_RECORD,
                &[&owner.tenant, &owner.kind, &owner.id, &now_ms],
            )?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
    }

    fn outbox_stats(&self) -> StoreFuture<'_, Vec<OutboxStats>> {
        self.call(|conn| query_all(conn, sql::OUTBOX_STATS, &[], rows::outbox_stats))
    }
}

impl KeyValueStore for SqliteStore {
    fn kv_get(&self, tenant: &str, key: &str, now_ms: i64) -> StoreFuture<'_, Option<Value>> {
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        self.call(move |conn| {
            query_opt(conn, sql::KV_GET, &[&tenant, &key, &now_ms], rows::kv_value)
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
            execute(conn, sql::KV_PUT, &[&tenant, &key, &value, &expires_ms])?;
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
            execute(
                conn,
                sql::CODE_PUT,
                &[&tenant, &key, &code, &expires_ms, &i64::from(max_attempts)],
            )?;
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
            let tx = immediate(conn)?;
            let Some(stored) =
                query_opt(&tx, sql::CODE_SQLITE, &[&tenant, &key], rows::stored_code)?
            else {
                return Ok(CodeCheck::Missing);
            };
            let (answer, action) = check_code(&stored, &code, now_ms);
            match action {
                CodeAction::Delete => execute(&tx, sql::CODE_DELETE, &[&tenant, &key])?,
                CodeAction::SetAttemptsLeft(left) => {
                    execute(&tx, sql::CODE_SET_ATTEMPTS, &[&tenant, &key, &left])?
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
            let changed = execute(conn, sql::CLAIM, &[&scope, &key, &now_ms, &until_ms])?;
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
            let tx = immediate(conn)?;
            let change = next_app_change(&tx)?;
            let tenant = query_opt(
                &tx,
                sql::APP_ACTIVATE,
                &[
                    &account_id,
                    &app_id,
                    &account_name,
                    &sealed,
                    &now_ms,
                    &change,
                ],
                rows::app_tenant,
            )?
            .ok_or_else(no_rows)?;
            tx.commit().map_err(unavailable)?;
            Ok(tenant)
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
            let tx = immediate(conn)?;
            let Some(before) = query_opt(&tx, sql::APP_STATE_SQLITE, &[&account_id], |row| {
                parse_app_state(&row.text(0)?)
            })?
            else {
                return Ok(None);
            };
            let update = if uninstall {
                // An uninstalled account's failures go with its secrets.
                execute(&tx, sql::APP_FAILURES_FORGET, &[&account_id])?;
                sql::APP_UNINSTALL_SQLITE
            } else {
                sql::APP_SUSPEND_SQLITE
            };
            let change = next_app_change(&tx)?;
            execute(&tx, update, &[&account_id, &now_ms, &change])?;
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
            let tx = immediate(conn)?;
            let change = next_app_change(&tx)?;
            let changed = execute(
                &tx,
                sql::APP_CONNECT,
                &[
                    &account_id,
                    &c.token_sha256,
                    &c.mapping,
                    &c.base_url,
                    &c.credentials_sealed,
                    &json_text(&c.settings),
                    &c.external_search,
                    &now_ms,
                    &change,
                ],
            )?;
            tx.commit().map_err(unavailable)?;
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
            let tx = immediate(conn)?;
            let change = next_app_change(&tx)?;
            let changed = execute(
                &tx,
                sql::APP_MARK,
                &[&account_id, &note, &activated, &now_ms, &change],
            )?;
            tx.commit().map_err(unavailable)?;
            Ok(changed == 1)
        })
    }

    fn app_tenant(&self, account_id: &str) -> StoreFuture<'_, Option<AppTenant>> {
        let account_id = account_id.to_owned();
        self.call(move |conn| query_opt(conn, sql::APP_TENANT, &[&account_id], rows::app_tenant))
    }

    fn app_tenants_changed(&self, after: i64) -> StoreFuture<'_, AppTenantChanges> {
        self.call(move |conn| {
            let tenants = query_all(conn, sql::APP_TENANTS_CHANGED, &[&after], rows::app_tenant)?;
            Ok(AppTenantChanges::read_after(after, tenants))
        })
    }
}

impl AppFailureStore for SqliteStore {
    fn app_failures_add(&self, account_id: &str, failures: &[AppFailure]) -> StoreFuture<'_, ()> {
        let (account_id, failures) = (account_id.to_owned(), failures.to_vec());
        self.call(move |conn| {
            if failures.is_empty() {
                return Ok(());
            }
            let tx = immediate(conn)?;
            for f in &failures {
                let times = i64::try_from(f.times).unwrap_or(i64::MAX);
                execute(
                    &tx,
                    sql::APP_FAILURE_ADD,
                    &[
                        &account_id,
                        &f.source.as_str(),
                        &f.text,
                        &times,
                        &f.first_ms,
                        &f.last_ms,
                    ],
                )?;
            }
            execute(
                &tx,
                sql::APP_FAILURES_TRIM,
                &[&account_id, &(FAILURES_PER_ACCOUNT as i64)],
            )?;
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
    }

    fn app_failures(&self, account_id: &str) -> StoreFuture<'_, Vec<AppFailure>> {
        let account_id = account_id.to_owned();
        self.call(move |conn| {
            query_all(
                conn,
                sql::APP_FAILURES,
                &[&account_id, &(FAILURES_PER_ACCOUNT as i64)],
                rows::app_failure,
            )
        })
    }
}

/// One instance per SQLite file: the heartbeat and the shared rate still work (tests run the
/// same contract on both backends), but the server never asks a store that is not
/// [`Store::shared`] to limit its calls.
impl ClusterStore for SqliteStore {
    fn heartbeat(
        &self,
        instance: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreFuture<'_, Vec<Member>> {
        let instance = instance.to_owned();
        self.call(move |conn| {
            execute(conn, sql::HEARTBEAT, &[&instance, &now_ms, &until_ms])?;
            query_all(conn, sql::MEMBERS, &[&now_ms], rows::member)
        })
    }

    fn leave(&self, instance: &str) -> StoreFuture<'_, ()> {
        let instance = instance.to_owned();
        self.call(move |conn| {
            execute(conn, sql::LEAVE, &[&instance])?;
            Ok(())
        })
    }

    fn rate_take(
        &self,
        tenant: &str,
        interval_us: i64,
        tolerance_us: i64,
        max_wait_us: i64,
        charge_us: i64,
    ) -> StoreFuture<'_, RateTake> {
        let tenant = tenant.to_owned();
        self.call(move |conn| {
            let params: [&dyn ToSql; 5] = [
                &tenant,
                &interval_us,
                &tolerance_us,
                &max_wait_us,
                &charge_us,
            ];
            if let Some(wait_us) =
                query_opt(conn, sql::RATE_TAKE_SQLITE, &params, |row| row.int(0))?
            {
                return Ok(RateTake::Go { wait_us });
            }
            let wait_us = query_opt(
                conn,
                sql::RATE_WAIT_SQLITE,
                &[&tenant, &tolerance_us],
                |row| row.int(0),
            )?;
            Ok(RateTake::Refused {
                wait_us: wait_us.unwrap_or(0),
            })
        })
    }

    fn vendor_signal(
        &self,
        tenant: &str,
        paused_until_ms: i64,
        open_until_ms: i64,
    ) -> StoreFuture<'_, ()> {
        let tenant = tenant.to_owned();
        self.call(move |conn| {
            execute(
                conn,
                sql::VENDOR_SIGNAL,
                &[&tenant, &paused_until_ms, &open_until_ms],
            )?;
            Ok(())
        })
    }

    fn vendor_signals(&self, now_ms: i64) -> StoreFuture<'_, Vec<VendorSignal>> {
        self.call(move |conn| query_all(conn, sql::VENDOR_SIGNALS, &[&now_ms], rows::vendor_signal))
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn shared(&self) -> bool {
        false
    }

    fn prune(&self, before: PruneBefore) -> StoreFuture<'_, u64> {
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let mut gone = 0;
            for statement in sql::PRUNE {
                gone += execute(&tx, statement, &[&before.settled_ms])?;
            }
            gone += execute(&tx, sql::PRUNE_APP_FAILURES, &[&before.failures_ms])?;
            tx.commit().map_err(unavailable)?;
            Ok(gone as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_bind_by_number_whatever_their_order_in_the_text() {
        let conn = Connection::open_in_memory().unwrap();
        // SQLite numbers `$2` first here; bound by name, it still gets the second value.
        let row = query_opt(&conn, "SELECT $2, $1", &[&"first", &"second"], |row| {
            Ok((row.text(0)?, row.text(1)?))
        })
        .unwrap();
        assert_eq!(row, Some(("second".to_owned(), "first".to_owned())));
    }

    #[test]
    fn a_statement_with_other_parameters_than_given_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        let (one, three): (&[&dyn ToSql], &[&dyn ToSql]) = (&[&1_i64], &[&1_i64, &2_i64, &3_i64]);
        for params in [one, three] {
            let error = query_opt(&conn, "SELECT $1, $2", params, |_| Ok(())).unwrap_err();
            assert!(error.to_string().contains("takes 2 parameters"), "{error}");
        }
    }
}
