//! [`Store`] on PostgreSQL, for several bridge instances sharing one database.
//!
//! Every decision that more than one instance could race on is one atomic statement (`INSERT …
//! ON CONFLICT … DO UPDATE … WHERE … RETURNING`) or a transaction holding row locks (`SELECT …
//! FOR UPDATE`). Migrations run under a transaction-scoped advisory lock, so two instances
//! starting at once do not both apply one. Connections come from a deadpool pool.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio_postgres::{NoTls, Row};

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
        tenant          TEXT   NOT NULL,
        kind            TEXT   NOT NULL,
        id              TEXT   NOT NULL,
        state           TEXT   NOT NULL,
        kept            TEXT   NOT NULL DEFAULT 'null',
        lease_until_ms  BIGINT NOT NULL,
        created_ms      BIGINT NOT NULL,
        updated_ms      BIGINT NOT NULL,
        PRIMARY KEY (tenant, kind, id)
    );
    CREATE INDEX records_prune ON records (updated_ms) WHERE state IN ('done', 'failed');

    CREATE TABLE outbox (
        seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant          TEXT   NOT NULL,
        kind            TEXT   NOT NULL,
        id              TEXT   NOT NULL,
        request         TEXT   NOT NULL,
        state           TEXT   NOT NULL,
        attempts        BIGINT NOT NULL DEFAULT 0,
        next_attempt_ms BIGINT NOT NULL,
        last_error      TEXT,
        created_ms      BIGINT NOT NULL,
        updated_ms      BIGINT NOT NULL,
        FOREIGN KEY (tenant, kind, id) REFERENCES records (tenant, kind, id)
    );
    CREATE INDEX outbox_pending ON outbox (tenant, seq) WHERE state = 'pending';
    CREATE INDEX outbox_record ON outbox (tenant, kind, id);

    CREATE TABLE outbox_leases (
        tenant          TEXT   NOT NULL PRIMARY KEY,
        holder          TEXT   NOT NULL,
        until_ms        BIGINT NOT NULL
    );

    CREATE TABLE kv (
        tenant          TEXT   NOT NULL,
        key             TEXT   NOT NULL,
        value           TEXT   NOT NULL,
        expires_ms      BIGINT NOT NULL,
        PRIMARY KEY (tenant, key)
    );

    CREATE TABLE codes (
        tenant          TEXT   NOT NULL,
        key             TEXT   NOT NULL,
        code            TEXT   NOT NULL,
        expires_ms      BIGINT NOT NULL,
        attempts_left   BIGINT NOT NULL,
        PRIMARY KEY (tenant, key)
    );
    "#,
    ),
    (
        2,
        r#"
    CREATE TABLE claims (
        scope           TEXT   NOT NULL,
        key             TEXT   NOT NULL,
        until_ms        BIGINT NOT NULL,
        PRIMARY KEY (scope, key)
    );

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
        external_search     BOOLEAN NOT NULL DEFAULT FALSE,
        vendor_note         TEXT,
        created_ms          BIGINT  NOT NULL,
        updated_ms          BIGINT  NOT NULL
    );
    "#,
    ),
];

/// Key of the advisory lock migrations hold ("lb_store").
const MIGRATION_LOCK: i64 = 0x6c62_5f73_746f_7265;

/// How often `begin` re-tries when the record changed between its two statements.
const BEGIN_TRIES: usize = 5;

/// The PostgreSQL backend.
pub struct PgStore {
    pool: Pool,
    /// Masked out of every error message.
    password: Option<String>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool_size", &self.pool.status().max_size)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Opens a pool on `url` (`postgres://user:password@host:port/db` or key=value form) and
    /// migrates the database. Error messages never contain the password.
    pub async fn open(url: &str, pool_size: usize) -> Result<PgStore, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|_| {
            StoreError::Unavailable(
                "the PostgreSQL URL is not valid (postgres://user:password@host:port/database)"
                    .into(),
            )
        })?;
        PgStore::open_config(config, pool_size).await
    }

    /// Like [`PgStore::open`], from connection settings already parsed.
    pub async fn open_config(
        mut config: tokio_postgres::Config,
        pool_size: usize,
    ) -> Result<PgStore, StoreError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("loyalty-bridge");
        }
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .filter(|p| !p.is_empty());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(15)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot build the pool: {e}")))?;
        let store = PgStore { pool, password };
        store.migrate().await?;
        Ok(store)
    }

    /// A message without the password.
    fn mask(&self, message: String) -> String {
        match &self.password {
            Some(p) => message.replace(p.as_str(), "****"),
            None => message,
        }
    }

    fn db(&self, e: tokio_postgres::Error) -> StoreError {
        StoreError::Unavailable(self.mask(format!("postgres: {e}")))
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(self.mask(format!("postgres connection: {e}"))))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        let mut client = self.client().await?;
        let lock = format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})");
        let version = "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version";
        {
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            tx.batch_execute(&lock).await.map_err(|e| self.db(e))?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (
                     version    BIGINT NOT NULL PRIMARY KEY,
                     applied_ms BIGINT NOT NULL
                 )",
            )
            .await
            .map_err(|e| self.db(e))?;
            let found: i64 = tx
                .query_one(version, &[])
                .await
                .map_err(|e| self.db(e))?
                .get(0);
            tx.commit().await.map_err(|e| self.db(e))?;
            if found > known {
                return Err(newer_schema(found, known));
            }
        }
        for &(number, sql) in MIGRATIONS {
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            tx.batch_execute(&lock).await.map_err(|e| self.db(e))?;
            let found: i64 = tx
                .query_one(version, &[])
                .await
                .map_err(|e| self.db(e))?
                .get(0);
            if found >= number {
                continue;
            }
            tx.batch_execute(sql).await.map_err(|e| {
                StoreError::Unavailable(
                    self.mask(format!("postgres migration {number} failed: {e}")),
                )
            })?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)",
                &[&number, &super::now_ms()],
            )
            .await
            .map_err(|e| self.db(e))?;
            tx.commit().await.map_err(|e| self.db(e))?;
            tracing::info!(version = number, "postgres store migrated");
        }
        Ok(())
    }
}

const RECORD_COLUMNS: &str =
    "tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms";

fn record_from_row(row: &Row) -> Result<Record, StoreError> {
    let corrupt = |e: tokio_postgres::Error| StoreError::Corrupt(format!("records row: {e}"));
    Ok(Record {
        tenant: row.try_get(0).map_err(corrupt)?,
        kind: parse_kind(row.try_get(1).map_err(corrupt)?)?,
        id: row.try_get(2).map_err(corrupt)?,
        state: parse_record_state(row.try_get(3).map_err(corrupt)?)?,
        kept: parse_json(row.try_get(4).map_err(corrupt)?, "records.kept")?,
        lease_until_ms: row.try_get(5).map_err(corrupt)?,
        created_ms: row.try_get(6).map_err(corrupt)?,
        updated_ms: row.try_get(7).map_err(corrupt)?,
    })
}

const OUTBOX_COLUMNS: &str =
    "seq, tenant, kind, id, request, state, attempts, next_attempt_ms, last_error, created_ms";

fn item_from_row(row: &Row) -> Result<OutboxItem, StoreError> {
    let corrupt = |e: tokio_postgres::Error| StoreError::Corrupt(format!("outbox row: {e}"));
    let seq: i64 = row.try_get(0).map_err(corrupt)?;
    let attempts: i64 = row.try_get(6).map_err(corrupt)?;
    Ok(OutboxItem {
        seq,
        tenant: row.try_get(1).map_err(corrupt)?,
        kind: parse_kind(row.try_get(2).map_err(corrupt)?)?,
        id: row.try_get(3).map_err(corrupt)?,
        request: parse_json(row.try_get(4).map_err(corrupt)?, "outbox.request")?,
        state: parse_outbox_state(row.try_get(5).map_err(corrupt)?)?,
        attempts: u32::try_from(attempts).map_err(|_| {
            StoreError::Corrupt(format!("outbox item {seq} has {attempts} attempts"))
        })?,
        next_attempt_ms: row.try_get(7).map_err(corrupt)?,
        last_error: row.try_get(8).map_err(corrupt)?,
        created_ms: row.try_get(9).map_err(corrupt)?,
    })
}

/// The record an outbox item belongs to, and the item's state; the item's row stays locked
/// until the transaction ends.
async fn lock_item(
    tx: &deadpool_postgres::Transaction<'_>,
    seq: i64,
) -> Result<Option<(String, String, String, String)>, tokio_postgres::Error> {
    let row = tx
        .query_opt(
            "SELECT tenant, kind, id, state FROM outbox WHERE seq = $1 FOR UPDATE",
            &[&seq],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))))
}

impl PgStore {
    async fn get_record(
        &self,
        client: &Object,
        tenant: &str,
        kind: Kind,
        id: &str,
    ) -> Result<Option<Record>, StoreError> {
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE tenant = $1 AND kind = $2 AND id = $3"
            ))
            .await
            .map_err(|e| self.db(e))?;
        client
            .query_opt(&stmt, &[&tenant, &kind.as_str(), &id])
            .await
            .map_err(|e| self.db(e))?
            .map(|row| record_from_row(&row))
            .transpose()
    }

    /// Runs one statement that changes rows; how many.
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(|e| self.db(e))?;
        client.execute(&stmt, params).await.map_err(|e| self.db(e))
    }
}

fn app_from_row(row: &Row) -> Result<AppTenant, StoreError> {
    let corrupt = |e: tokio_postgres::Error| StoreError::Corrupt(format!("app_tenants row: {e}"));
    Ok(AppTenant {
        account_id: row.try_get(0).map_err(corrupt)?,
        app_id: row.try_get(1).map_err(corrupt)?,
        account_name: row.try_get(2).map_err(corrupt)?,
        state: parse_app_state(row.try_get(3).map_err(corrupt)?)?,
        access_token_sealed: row.try_get(4).map_err(corrupt)?,
        token_sha256: row.try_get(5).map_err(corrupt)?,
        mapping: row.try_get(6).map_err(corrupt)?,
        base_url: row.try_get(7).map_err(corrupt)?,
        credentials_sealed: row.try_get(8).map_err(corrupt)?,
        settings: parse_json(row.try_get(9).map_err(corrupt)?, "app_tenants.settings")?,
        external_search: row.try_get(10).map_err(corrupt)?,
        vendor_note: row.try_get(11).map_err(corrupt)?,
        created_ms: row.try_get(12).map_err(corrupt)?,
        updated_ms: row.try_get(13).map_err(corrupt)?,
    })
}

impl JournalStore for PgStore {
    fn begin(
        &self,
        tenant: &str,
        kind: Kind,
        id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> StoreFuture<'_, Begin> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(async move {
            let client = self.client().await?;
            // One statement decides: the row comes back only when this caller owns it. On a
            // conflict PostgreSQL locks the existing row and re-checks the WHERE on its latest
            // version, so of many concurrent callers exactly one wins.
            let take = client
                .prepare_cached(
                    "INSERT INTO records (tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms)
                     VALUES ($1, $2, $3, 'in_flight', 'null', $5, $4, $4)
                     ON CONFLICT (tenant, kind, id) DO UPDATE
                        SET state = 'in_flight', kept = 'null',
                            lease_until_ms = EXCLUDED.lease_until_ms, updated_ms = EXCLUDED.updated_ms
                      WHERE records.state = 'failed'
                         OR (records.state = 'in_flight' AND records.lease_until_ms <= EXCLUDED.updated_ms)
                     RETURNING 1",
                )
                .await
                .map_err(|e| self.db(e))?;
            for _ in 0..BEGIN_TRIES {
                let owned = client
                    .query_opt(
                        &take,
                        &[&tenant, &kind.as_str(), &id, &now_ms, &lease_until_ms],
                    )
                    .await
                    .map_err(|e| self.db(e))?;
                if owned.is_some() {
                    return Ok(Begin::Started);
                }
                // Someone else's: report it as it is now. It may have been abandoned (or
                // its lease may have run out) since the statement above: then try again.
                match self.get_record(&client, &tenant, kind, &id).await? {
                    Some(r) if r.state == RecordState::InFlight && r.lease_until_ms > now_ms => {
                        return Ok(Begin::InFlight(r));
                    }
                    Some(r) if matches!(r.state, RecordState::Done | RecordState::Queued) => {
                        return Ok(Begin::Settled(r));
                    }
                    _ => continue,
                }
            }
            Err(StoreError::Unavailable(format!(
                "record {tenant}/{}/{id} kept changing under begin",
                kind.as_str()
            )))
        })
    }

    fn record(&self, tenant: &str, kind: Kind, id: &str) -> StoreFuture<'_, Option<Record>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(async move {
            let client = self.client().await?;
            self.get_record(&client, &tenant, kind, &id).await
        })
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
        Box::pin(async move {
            self.execute(
                "INSERT INTO records (tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms)
                 VALUES ($1, $2, $3, 'done', $4, 0, $5, $5)
                 ON CONFLICT (tenant, kind, id) DO UPDATE
                    SET state = 'done', kept = EXCLUDED.kept, updated_ms = EXCLUDED.updated_ms",
                &[&tenant, &kind.as_str(), &id, &kept, &now_ms],
            )
            .await?;
            Ok(())
        })
    }

    fn abandon(&self, tenant: &str, kind: Kind, id: &str, now_ms: i64) -> StoreFuture<'_, ()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(async move {
            self.execute(
                "UPDATE records SET state = 'failed', updated_ms = $4
                  WHERE tenant = $1 AND kind = $2 AND id = $3 AND state = 'in_flight'",
                &[&tenant, &kind.as_str(), &id, &now_ms],
            )
            .await?;
            Ok(())
        })
    }
}

impl OutboxStore for PgStore {
    fn enqueue(
        &self,
        tenant: &str,
        kind: Kind,
        id: &str,
        request: &Value,
        now_ms: i64,
    ) -> StoreFuture<'_, i64> {
        let (tenant, id, request) = (tenant.to_owned(), id.to_owned(), json_text(request));
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            tx.execute(
                "INSERT INTO records (tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms)
                 VALUES ($1, $2, $3, 'queued', 'null', 0, $4, $4)
                 ON CONFLICT (tenant, kind, id) DO UPDATE
                    SET state = 'queued', updated_ms = EXCLUDED.updated_ms",
                &[&tenant, &kind.as_str(), &id, &now_ms],
            )
            .await
            .map_err(|e| self.db(e))?;
            let seq: i64 = tx
                .query_one(
                    "INSERT INTO outbox (tenant, kind, id, request, state, attempts, next_attempt_ms, created_ms, updated_ms)
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)
                     RETURNING seq",
                    &[&tenant, &kind.as_str(), &id, &request, &now_ms],
                )
                .await
                .map_err(|e| self.db(e))?
                .get(0);
            tx.commit().await.map_err(|e| self.db(e))?;
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
        Box::pin(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO outbox_leases (tenant, holder, until_ms) VALUES ($1, $2, $4)
                     ON CONFLICT (tenant) DO UPDATE
                        SET holder = EXCLUDED.holder, until_ms = EXCLUDED.until_ms
                      WHERE outbox_leases.holder = EXCLUDED.holder
                         OR outbox_leases.until_ms <= $3
                     RETURNING 1",
                )
                .await
                .map_err(|e| self.db(e))?;
            let row = client
                .query_opt(&stmt, &[&tenant, &holder, &now_ms, &until_ms])
                .await
                .map_err(|e| self.db(e))?;
            Ok(row.is_some())
        })
    }

    fn release_outbox_leases(&self, holder: &str) -> StoreFuture<'_, ()> {
        let holder = holder.to_owned();
        Box::pin(async move {
            self.execute("DELETE FROM outbox_leases WHERE holder = $1", &[&holder])
                .await?;
            Ok(())
        })
    }

    fn next_pending(&self, tenant: &str) -> StoreFuture<'_, Option<OutboxItem>> {
        let tenant = tenant.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox
                      WHERE tenant = $1 AND state = 'pending' ORDER BY seq LIMIT 1"
                ))
                .await
                .map_err(|e| self.db(e))?;
            client
                .query_opt(&stmt, &[&tenant])
                .await
                .map_err(|e| self.db(e))?
                .map(|row| item_from_row(&row))
                .transpose()
        })
    }

    fn tenants_with_pending(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT DISTINCT tenant FROM outbox WHERE state = 'pending' ORDER BY tenant",
                    &[],
                )
                .await
                .map_err(|e| self.db(e))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn delivered(&self, seq: i64, kept: &Value, now_ms: i64) -> StoreFuture<'_, ()> {
        let kept = json_text(kept);
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            if let Some((tenant, kind, id, _)) =
                lock_item(&tx, seq).await.map_err(|e| self.db(e))?
            {
                tx.execute(
                    "UPDATE outbox SET state = 'delivered', updated_ms = $2 WHERE seq = $1",
                    &[&seq, &now_ms],
                )
                .await
                .map_err(|e| self.db(e))?;
                tx.execute(
                    "UPDATE records SET state = 'done', kept = $4, updated_ms = $5
                      WHERE tenant = $1 AND kind = $2 AND id = $3",
                    &[&tenant, &kind, &id, &kept, &now_ms],
                )
                .await
                .map_err(|e| self.db(e))?;
            }
            tx.commit().await.map_err(|e| self.db(e))
        })
    }

    fn postpone(&self, seq: i64, error: &str, next_attempt_ms: i64) -> StoreFuture<'_, ()> {
        let error = error.to_owned();
        Box::pin(async move {
            self.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_ms = $3
                  WHERE seq = $1 AND state = 'pending'",
                &[&seq, &error, &next_attempt_ms],
            )
            .await?;
            Ok(())
        })
    }

    fn refused(&self, seq: i64, error: &str, now_ms: i64) -> StoreFuture<'_, ()> {
        let error = error.to_owned();
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            if let Some((tenant, kind, id, state)) =
                lock_item(&tx, seq).await.map_err(|e| self.db(e))?
                && state == "pending"
            {
                tx.execute(
                    "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $2,
                            updated_ms = $3
                      WHERE seq = $1",
                    &[&seq, &error, &now_ms],
                )
                .await
                .map_err(|e| self.db(e))?;
                tx.execute(
                    "UPDATE records SET state = 'failed', updated_ms = $4
                      WHERE tenant = $1 AND kind = $2 AND id = $3 AND state = 'queued'",
                    &[&tenant, &kind, &id, &now_ms],
                )
                .await
                .map_err(|e| self.db(e))?;
            }
            tx.commit().await.map_err(|e| self.db(e))
        })
    }

    fn outbox_items(
        &self,
        tenant: Option<&str>,
        include_delivered: bool,
    ) -> StoreFuture<'_, Vec<OutboxItem>> {
        let tenant = tenant.map(str::to_owned);
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {OUTBOX_COLUMNS} FROM outbox
                          WHERE ($1::TEXT IS NULL OR tenant = $1::TEXT)
                            AND ($2::BOOLEAN OR state <> 'delivered')
                          ORDER BY seq"
                    ),
                    &[&tenant, &include_delivered],
                )
                .await
                .map_err(|e| self.db(e))?;
            rows.iter().map(item_from_row).collect()
        })
    }

    fn outbox_retry(&self, seq: i64, now_ms: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            let Some((tenant, kind, id, state)) =
                lock_item(&tx, seq).await.map_err(|e| self.db(e))?
            else {
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
                            "UPDATE records SET state = 'queued', updated_ms = $4
                              WHERE tenant = $1 AND kind = $2 AND id = $3
                                AND state IN ('failed', 'queued')",
                            &[&tenant, &kind, &id, &now_ms],
                        )
                        .await
                        .map_err(|e| self.db(e))?;
                    if requeued == 0 {
                        return Ok(false);
                    }
                }
                _ => return Ok(false),
            }
            tx.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_ms = $2, updated_ms = $2
                  WHERE seq = $1",
                &[&seq, &now_ms],
            )
            .await
            .map_err(|e| self.db(e))?;
            tx.commit().await.map_err(|e| self.db(e))?;
            Ok(true)
        })
    }

    fn outbox_drop(&self, seq: i64, now_ms: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            let Some((tenant, kind, id, state)) =
                lock_item(&tx, seq).await.map_err(|e| self.db(e))?
            else {
                return Ok(false);
            };
            if state == "delivered" {
                return Ok(false);
            }
            tx.execute("DELETE FROM outbox WHERE seq = $1", &[&seq])
                .await
                .map_err(|e| self.db(e))?;
            // A record a repeat has meanwhile taken over (in flight, done) stays as it is.
            tx.execute(
                "UPDATE records SET state = 'failed', updated_ms = $4
                  WHERE tenant = $1 AND kind = $2 AND id = $3 AND state = 'queued'",
                &[&tenant, &kind, &id, &now_ms],
            )
            .await
            .map_err(|e| self.db(e))?;
            tx.commit().await.map_err(|e| self.db(e))?;
            Ok(true)
        })
    }

    fn outbox_stats(&self) -> StoreFuture<'_, Vec<OutboxStats>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT tenant,
                            COUNT(*) FILTER (WHERE state = 'pending'),
                            COUNT(*) FILTER (WHERE state = 'failed'),
                            MIN(created_ms) FILTER (WHERE state = 'pending')
                       FROM outbox WHERE state IN ('pending', 'failed')
                      GROUP BY tenant ORDER BY tenant",
                    &[],
                )
                .await
                .map_err(|e| self.db(e))?;
            Ok(rows
                .iter()
                .map(|row| OutboxStats {
                    tenant: row.get(0),
                    pending: row.get::<_, i64>(1).max(0) as u64,
                    failed: row.get::<_, i64>(2).max(0) as u64,
                    oldest_pending_ms: row.get(3),
                })
                .collect())
        })
    }
}

impl KeyValueStore for PgStore {
    fn kv_get(&self, tenant: &str, key: &str, now_ms: i64) -> StoreFuture<'_, Option<Value>> {
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        Box::pin(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT value FROM kv WHERE tenant = $1 AND key = $2 AND expires_ms > $3",
                )
                .await
                .map_err(|e| self.db(e))?;
            let row = client
                .query_opt(&stmt, &[&tenant, &key, &now_ms])
                .await
                .map_err(|e| self.db(e))?;
            row.map(|r| parse_json(r.get(0), "kv.value")).transpose()
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
        Box::pin(async move {
            self.execute(
                "INSERT INTO kv (tenant, key, value, expires_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, key) DO UPDATE
                    SET value = EXCLUDED.value, expires_ms = EXCLUDED.expires_ms",
                &[&tenant, &key, &value, &expires_ms],
            )
            .await?;
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
        Box::pin(async move {
            self.execute(
                "INSERT INTO codes (tenant, key, code, expires_ms, attempts_left)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant, key) DO UPDATE
                    SET code = EXCLUDED.code, expires_ms = EXCLUDED.expires_ms,
                        attempts_left = EXCLUDED.attempts_left",
                &[&tenant, &key, &code, &expires_ms, &i64::from(max_attempts)],
            )
            .await?;
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
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            let Some(row) = tx
                .query_opt(
                    "SELECT code, expires_ms, attempts_left FROM codes
                      WHERE tenant = $1 AND key = $2 FOR UPDATE",
                    &[&tenant, &key],
                )
                .await
                .map_err(|e| self.db(e))?
            else {
                return Ok(CodeCheck::Missing);
            };
            let stored: String = row.get(0);
            let expires_ms: i64 = row.get(1);
            let attempts_left: i64 = row.get(2);
            let delete = "DELETE FROM codes WHERE tenant = $1 AND key = $2";
            let answer = if expires_ms <= now_ms || attempts_left <= 0 {
                tx.execute(delete, &[&tenant, &key])
                    .await
                    .map_err(|e| self.db(e))?;
                CodeCheck::Missing
            } else if bool::from(stored.as_bytes().ct_eq(code.as_bytes())) {
                tx.execute(delete, &[&tenant, &key])
                    .await
                    .map_err(|e| self.db(e))?;
                CodeCheck::Accepted
            } else {
                let left = attempts_left - 1;
                if left == 0 {
                    tx.execute(delete, &[&tenant, &key])
                        .await
                        .map_err(|e| self.db(e))?;
                } else {
                    tx.execute(
                        "UPDATE codes SET attempts_left = $3 WHERE tenant = $1 AND key = $2",
                        &[&tenant, &key, &left],
                    )
                    .await
                    .map_err(|e| self.db(e))?;
                }
                CodeCheck::Wrong {
                    attempts_left: u32::try_from(left).unwrap_or(0),
                }
            };
            tx.commit().await.map_err(|e| self.db(e))?;
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
        Box::pin(async move {
            let changed = self
                .execute(
                    "INSERT INTO claims (scope, key, until_ms) VALUES ($1, $2, $4)
                     ON CONFLICT (scope, key) DO UPDATE SET until_ms = excluded.until_ms
                      WHERE claims.until_ms <= $3",
                    &[&scope, &key, &now_ms, &until_ms],
                )
                .await?;
            Ok(changed == 1)
        })
    }
}

impl AppTenantStore for PgStore {
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
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one(
                    &format!(
                        "INSERT INTO app_tenants (account_id, app_id, account_name, state,
                                                  access_token_sealed, created_ms, updated_ms)
                         VALUES ($1, $2, $3, 'settings_required', $4, $5, $5)
                         ON CONFLICT (account_id) DO UPDATE
                            SET app_id = excluded.app_id, account_name = excluded.account_name,
                                state = CASE WHEN app_tenants.token_sha256 IS NULL
                                             THEN 'settings_required' ELSE 'activated' END,
                                access_token_sealed = COALESCE(excluded.access_token_sealed,
                                                               app_tenants.access_token_sealed),
                                updated_ms = excluded.updated_ms
                         RETURNING {APP_COLUMNS}"
                    ),
                    &[&account_id, &app_id, &account_name, &sealed, &now_ms],
                )
                .await
                .map_err(|e| self.db(e))?;
            app_from_row(&row)
        })
    }

    fn app_deactivate(
        &self,
        account_id: &str,
        uninstall: bool,
        now_ms: i64,
    ) -> StoreFuture<'_, Option<AppState>> {
        let account_id = account_id.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            // One statement: the row is locked by the sub-select, so the state returned is
            // the one this update replaced.
            let row = client
                .query_opt(
                    "UPDATE app_tenants t
                        SET state = CASE WHEN $2 THEN 'uninstalled'
                                         WHEN old.state = 'uninstalled' THEN old.state
                                         ELSE 'suspended' END,
                            access_token_sealed = CASE WHEN $2 THEN NULL ELSE t.access_token_sealed END,
                            credentials_sealed = CASE WHEN $2 THEN NULL ELSE t.credentials_sealed END,
                            token_sha256 = CASE WHEN $2 THEN NULL ELSE t.token_sha256 END,
                            updated_ms = $3
                       FROM (SELECT account_id, state FROM app_tenants
                              WHERE account_id = $1 FOR UPDATE) old
                      WHERE t.account_id = old.account_id
                  RETURNING old.state",
                    &[&account_id, &uninstall, &now_ms],
                )
                .await
                .map_err(|e| self.db(e))?;
            row.map(|r| parse_app_state(r.get(0))).transpose()
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
        Box::pin(async move {
            let settings = json_text(&c.settings);
            let changed = self
                .execute(
                    "UPDATE app_tenants
                        SET token_sha256 = $2, mapping = $3, base_url = $4,
                            credentials_sealed = $5, settings = $6, external_search = $7,
                            updated_ms = $8
                      WHERE account_id = $1 AND state IN ('settings_required', 'activated')",
                    &[
                        &account_id,
                        &c.token_sha256,
                        &c.mapping,
                        &c.base_url,
                        &c.credentials_sealed,
                        &settings,
                        &c.external_search,
                        &now_ms,
                    ],
                )
                .await?;
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
        Box::pin(async move {
            let changed = self
                .execute(
                    "UPDATE app_tenants
                        SET vendor_note = $2, updated_ms = $4,
                            state = CASE WHEN $3 AND token_sha256 IS NOT NULL
                                          AND state IN ('settings_required', 'activated')
                                         THEN 'activated' ELSE state END
                      WHERE account_id = $1",
                    &[&account_id, &note, &activated, &now_ms],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn app_tenant(&self, account_id: &str) -> StoreFuture<'_, Option<AppTenant>> {
        let account_id = account_id.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            client
                .query_opt(
                    &format!("SELECT {APP_COLUMNS} FROM app_tenants WHERE account_id = $1"),
                    &[&account_id],
                )
                .await
                .map_err(|e| self.db(e))?
                .map(|row| app_from_row(&row))
                .transpose()
        })
    }

    fn app_tenants_connected(&self) -> StoreFuture<'_, Vec<AppTenant>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {APP_COLUMNS} FROM app_tenants
                          WHERE token_sha256 IS NOT NULL ORDER BY account_id"
                    ),
                    &[],
                )
                .await
                .map_err(|e| self.db(e))?;
            rows.iter().map(app_from_row).collect()
        })
    }
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn prune(&self, before_ms: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            let mut gone = 0;
            for sql in [
                "DELETE FROM outbox WHERE state = 'delivered' AND updated_ms < $1",
                // A record an outbox item still points at (one refused, waiting for an
                // operator) stays.
                "DELETE FROM records r
                  WHERE r.state IN ('done', 'failed') AND r.updated_ms < $1
                    AND NOT EXISTS (SELECT 1 FROM outbox o
                                     WHERE o.tenant = r.tenant AND o.kind = r.kind AND o.id = r.id)",
                "DELETE FROM kv WHERE expires_ms < $1",
                "DELETE FROM codes WHERE expires_ms < $1",
                "DELETE FROM outbox_leases WHERE until_ms < $1",
                "DELETE FROM claims WHERE until_ms < $1",
            ] {
                gone += tx
                    .execute(sql, &[&before_ms])
                    .await
                    .map_err(|e| self.db(e))?;
            }
            tx.commit().await.map_err(|e| self.db(e))?;
            Ok(gone)
        })
    }
}
