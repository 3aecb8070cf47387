//! [`Store`] on PostgreSQL, for several bridge instances sharing one database.
//!
//! Every decision that more than one instance could race on is one atomic statement (`INSERT …
//! ON CONFLICT … DO UPDATE … WHERE … RETURNING`) or a transaction holding row locks (`SELECT …
//! FOR UPDATE`). Migrations run under a transaction-scoped advisory lock, so two instances
//! starting at once do not both apply one; a tenant's enqueues and an account's failure writes
//! take turns on one too. Connections come from a deadpool pool.
//!
//! The statements are the shared ones of `sql.rs`; this file binds their parameters, converts
//! values and runs them.

use std::time::Duration;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use serde_json::Value;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{IsolationLevel, NoTls, Row};

use super::app_tenants::counter_missing;
use super::journal::begin_answer;
use super::key_value::{CodeAction, check_code};
use super::outbox::ItemOwner;
use super::rows::{self, Columns, json_text, parse_app_state};
use super::schema::{self, Dialect};
use super::{
    AppConnection, AppFailure, AppFailureStore, AppState, AppTenant, AppTenantChanges,
    AppTenantStore, Begin, ClusterStore, CodeCheck, FAILURES_PER_ACCOUNT, JournalStore,
    KeyValueStore, Kind, Member, OutboxItem, OutboxStats, OutboxStore, PruneBefore, RateTake,
    Record, Store, StoreError, StoreFuture, VendorSignal, sql,
};

/// Parameters of a statement.
type Params<'a> = [&'a (dyn ToSql + Sync)];

/// Key of the advisory lock migrations hold ("lb_store").
const MIGRATION_LOCK: i64 = 0x6c62_5f73_746f_7265;

/// Lock spaces of [`sql::XACT_LOCK_POSTGRES`] (its two-key form, which never meets the
/// one-key [`MIGRATION_LOCK`]): a tenant's enqueues ("lb" 1), an account's failure writes
/// ("lb" 2).
const ENQUEUE_LOCKS: i32 = 0x6c62_0001;
const APP_FAILURE_LOCKS: i32 = 0x6c62_0002;

/// How often `begin` re-tries when the record changed between its two statements.
const BEGIN_TRIES: usize = 5;

/// The PostgreSQL backend.
pub struct PgStore {
    pool: Pool,
    /// One connection of its own for the instances' bookkeeping (heartbeat, leave, reading the
    /// vendor signals): behind a pool busy with requests a heartbeat waited seconds, the other
    /// instances stopped counting this one, and each went on limiting alone (three times the
    /// vendor's rate in `benches/load/instances.sh`).
    control: Pool,
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
        let pool = |size: usize, wait: Duration| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(wait))
                .create_timeout(Some(Duration::from_secs(15)))
                .recycle_timeout(Some(Duration::from_secs(5)))
                .build()
                .map_err(|e| StoreError::Unavailable(format!("cannot build the pool: {e}")))
        };
        let store = PgStore {
            pool: pool(pool_size.max(1), Duration::from_secs(30))?,
            // Only the cluster task uses it, one call at a time: a wait means a call hangs,
            // and the next beat should not queue behind it for long.
            control: pool(1, Duration::from_secs(5))?,
            password,
        };
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

    /// The instances' bookkeeping connection ([`PgStore::control`]).
    async fn control_client(&self) -> Result<Object, StoreError> {
        self.control
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(self.mask(format!("postgres connection: {e}"))))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let known = schema::known_version();
        let mut client = self.client().await?;
        let lock = format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})");
        {
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            tx.batch_execute(&lock).await.map_err(|e| self.db(e))?;
            tx.batch_execute(&Dialect::Postgres.render(schema::SCHEMA_VERSION_TABLE))
                .await
                .map_err(|e| self.db(e))?;
            let found = self.schema_version(&tx).await?;
            tx.commit().await.map_err(|e| self.db(e))?;
            if found > known {
                return Err(schema::newer_schema(found, known));
            }
        }
        for &(number, text) in schema::MIGRATIONS {
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            tx.batch_execute(&lock).await.map_err(|e| self.db(e))?;
            if self.schema_version(&tx).await? >= number {
                continue;
            }
            tx.batch_execute(&Dialect::Postgres.render(text))
                .await
                .map_err(|e| {
                    StoreError::Unavailable(
                        self.mask(format!("postgres migration {number} failed: {e}")),
                    )
                })?;
            tx.execute(sql::RECORD_SCHEMA_VERSION, &[&number, &super::now_ms()])
                .await
                .map_err(|e| self.db(e))?;
            tx.commit().await.map_err(|e| self.db(e))?;
            tracing::info!(version = number, "postgres store migrated");
        }
        Ok(())
    }

    async fn schema_version(&self, client: &impl GenericClient) -> Result<i64, StoreError> {
        let row = client
            .query_one(sql::SCHEMA_VERSION, &[])
            .await
            .map_err(|e| self.db(e))?;
        PgRow::of(&row, "schema_version").int(0)
    }

    /// Runs a statement that returns no rows (prepared once per connection); how many rows it
    /// changed.
    async fn execute(
        &self,
        client: &impl GenericClient,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<u64, StoreError> {
        let stmt = client.prepare_cached(sql).await.map_err(|e| self.db(e))?;
        client.execute(&stmt, params).await.map_err(|e| self.db(e))
    }

    /// The first row, if any.
    async fn query_opt(
        &self,
        client: &impl GenericClient,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let stmt = client.prepare_cached(sql).await.map_err(|e| self.db(e))?;
        client
            .query_opt(&stmt, params)
            .await
            .map_err(|e| self.db(e))
    }

    /// Every row.
    async fn query(
        &self,
        client: &impl GenericClient,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let stmt = client.prepare_cached(sql).await.map_err(|e| self.db(e))?;
        client.query(&stmt, params).await.map_err(|e| self.db(e))
    }

    async fn get_record(
        &self,
        client: &impl GenericClient,
        tenant: &str,
        kind: Kind,
        id: &str,
    ) -> Result<Option<Record>, StoreError> {
        self.query_opt(client, sql::RECORD, &[&tenant, &kind.as_str(), &id])
            .await?
            .map(|row| rows::record(&PgRow::of(&row, "records")))
            .transpose()
    }

    /// The transaction of one app-tenant write and the change number it stamps, taken first
    /// (see [`sql::APP_NEXT_CHANGE`], which also says why READ COMMITTED).
    async fn app_write<'c>(
        &self,
        client: &'c mut Object,
    ) -> Result<(deadpool_postgres::Transaction<'c>, i64), StoreError> {
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(|e| self.db(e))?;
        let row = self
            .query_opt(&tx, sql::APP_NEXT_CHANGE, &[])
            .await?
            .ok_or_else(counter_missing)?;
        let change = PgRow::of(&row, "app_tenant_counter").int(0)?;
        Ok((tx, change))
    }

    /// The record an outbox item belongs to, and the item's state; the item's row stays
    /// locked until the transaction ends.
    async fn lock_item(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        seq: i64,
    ) -> Result<Option<ItemOwner>, StoreError> {
        self.query_opt(tx, sql::ITEM_OWNER_POSTGRES, &[&seq])
            .await?
            .map(|row| rows::item_owner(&PgRow::of(&row, "outbox")))
            .transpose()
    }
}

/// A row, and the table it comes from for the error a column that does not read gives.
struct PgRow<'r> {
    row: &'r Row,
    table: &'static str,
}

impl<'r> PgRow<'r> {
    fn of(row: &'r Row, table: &'static str) -> PgRow<'r> {
        PgRow { row, table }
    }

    fn get<'a, T: FromSql<'a>>(&'a self, index: usize) -> Result<T, StoreError> {
        self.row
            .try_get(index)
            .map_err(|e| StoreError::Corrupt(format!("{} row: {e}", self.table)))
    }
}

impl Columns for PgRow<'_> {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        self.get(index)
    }

    fn text_or_null(&self, index: usize) -> Result<Option<String>, StoreError> {
        self.get(index)
    }

    fn int(&self, index: usize) -> Result<i64, StoreError> {
        self.get(index)
    }

    fn int_or_null(&self, index: usize) -> Result<Option<i64>, StoreError> {
        self.get(index)
    }

    fn flag(&self, index: usize) -> Result<bool, StoreError> {
        self.get(index)
    }
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
            for _ in 0..BEGIN_TRIES {
                let params: [&(dyn ToSql + Sync); 5] =
                    [&tenant, &kind.as_str(), &id, &now_ms, &lease_until_ms];
                if self
                    .query_opt(&client, sql::BEGIN_RECORD, &params)
                    .await?
                    .is_some()
                {
                    return Ok(Begin::Started);
                }
                // Someone else's: report it as it is now. It may have been abandoned (or
                // its lease may have run out) since the statement above: then try again.
                let record = self.get_record(&client, &tenant, kind, &id).await?;
                if let Some(answer) = record.and_then(|r| begin_answer(r, now_ms)) {
                    return Ok(answer);
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
            let client = self.client().await?;
            let params: [&(dyn ToSql + Sync); 5] = [&tenant, &kind.as_str(), &id, &kept, &now_ms];
            self.execute(&client, sql::FINISH_RECORD, &params).await?;
            Ok(())
        })
    }

    fn abandon(&self, tenant: &str, kind: Kind, id: &str, now_ms: i64) -> StoreFuture<'_, ()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(async move {
            let client = self.client().await?;
            let params: [&(dyn ToSql + Sync); 4] = [&tenant, &kind.as_str(), &id, &now_ms];
            self.execute(&client, sql::ABANDON_RECORD, &params).await?;
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
            // Delivery follows `seq` within a tenant, so a tenant's seqs must become visible
            // in the order they are drawn. The identity column does not give that across
            // connections: A draws 5, B draws 6 and commits, the deliverer sends 6, then A
            // commits 5. So a tenant's enqueues take turns on a lock of the tenant, taken
            // before the seq is drawn and held until commit (or rollback): each draws after
            // the one before it committed, hence a higher seq (the identity caches no values
            // per connection). A transaction-level advisory lock rather than a per-tenant
            // counter row: no table or row to create first, it goes away with the
            // transaction, and only the same tenant's enqueues (rare: its vendor is down)
            // ever wait for it.
            self.execute(&tx, sql::XACT_LOCK_POSTGRES, &[&ENQUEUE_LOCKS, &tenant])
                .await?;
            let record: [&(dyn ToSql + Sync); 4] = [&tenant, &kind.as_str(), &id, &now_ms];
            self.execute(&tx, sql::QUEUE_RECORD, &record).await?;
            let item: [&(dyn ToSql + Sync); 5] = [&tenant, &kind.as_str(), &id, &request, &now_ms];
            let row = tx
                .query_one(sql::INSERT_ITEM, &item)
                .await
                .map_err(|e| self.db(e))?;
            let seq = PgRow::of(&row, "outbox").int(0)?;
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
            let params: [&(dyn ToSql + Sync); 4] = [&tenant, &holder, &now_ms, &until_ms];
            let changed = self.execute(&client, sql::LEASE_OUTBOX, &params).await?;
            Ok(changed == 1)
        })
    }

    fn release_outbox_leases(&self, holder: &str) -> StoreFuture<'_, ()> {
        let holder = holder.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            self.execute(&client, sql::RELEASE_OUTBOX_LEASES, &[&holder])
                .await?;
            Ok(())
        })
    }

    fn next_pending(&self, tenant: &str) -> StoreFuture<'_, Option<OutboxItem>> {
        let tenant = tenant.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            self.query_opt(&client, sql::NEXT_PENDING, &[&tenant])
                .await?
                .map(|row| rows::outbox_item(&PgRow::of(&row, "outbox")))
                .transpose()
        })
    }

    fn tenants_with_pending(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let client = self.client().await?;
            self.query(&client, sql::TENANTS_WITH_PENDING, &[])
                .await?
                .iter()
                .map(|row| PgRow::of(row, "outbox").text(0))
                .collect()
        })
    }

    fn delivered(&self, seq: i64, kept: &Value, now_ms: i64) -> StoreFuture<'_, ()> {
        let kept = json_text(kept);
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            if let Some(owner) = self.lock_item(&tx, seq).await? {
                self.execute(&tx, sql::DELIVER_ITEM, &[&seq, &now_ms])
                    .await?;
                let record: [&(dyn ToSql + Sync); 5] =
                    [&owner.tenant, &owner.kind, &owner.id, &kept, &now_ms];
                self.execute(&tx, sql::FINISH_DELIVERED_RECORD, &record)
                    .await?;
            }
            tx.commit().await.map_err(|e| self.db(e))
        })
    }

    fn postpone(&self, seq: i64, error: &str, next_attempt_ms: i64) -> StoreFuture<'_, ()> {
        let error = error.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            self.execute(
                &client,
                sql::POSTPONE_ITEM,
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
            if let Some(owner) = self.lock_item(&tx, seq).await?
                && owner.state == "pending"
            {
                self.execute(&tx, sql::REFUSE_ITEM, &[&seq, &error, &now_ms])
                    .await?;
                let record: [&(dyn ToSql + Sync); 4] =
                    [&owner.tenant, &owner.kind, &owner.id, &now_ms];
                self.execute(&tx, sql::FAIL_QUEUED_RECORD, &record).await?;
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
            self.query(&client, sql::OUTBOX_ITEMS, &[&tenant, &include_delivered])
                .await?
                .iter()
                .map(|row| rows::outbox_item(&PgRow::of(row, "outbox")))
                .collect()
        })
    }

    fn outbox_retry(&self, seq: i64, now_ms: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            let Some(owner) = self.lock_item(&tx, seq).await? else {
                return Ok(false);
            };
            match owner.state.as_str() {
                "pending" => {}
                "failed" => {
                    let record: [&(dyn ToSql + Sync); 4] =
                        [&owner.tenant, &owner.kind, &owner.id, &now_ms];
                    if self.execute(&tx, sql::REQUEUE_RECORD, &record).await? == 0 {
                        return Ok(false);
                    }
                }
                _ => return Ok(false),
            }
            self.execute(&tx, sql::RETRY_ITEM, &[&seq, &now_ms]).await?;
            tx.commit().await.map_err(|e| self.db(e))?;
            Ok(true)
        })
    }

    fn outbox_drop(&self, seq: i64, now_ms: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            let Some(owner) = self.lock_item(&tx, seq).await? else {
                return Ok(false);
            };
            if owner.state == "delivered" {
                return Ok(false);
            }
            self.execute(&tx, sql::DELETE_ITEM, &[&seq]).await?;
            let record: [&(dyn ToSql + Sync); 4] = [&owner.tenant, &owner.kind, &owner.id, &now_ms];
            self.execute(&tx, sql::FAIL_QUEUED_RECORD, &record).await?;
            tx.commit().await.map_err(|e| self.db(e))?;
            Ok(true)
        })
    }

    fn outbox_stats(&self) -> StoreFuture<'_, Vec<OutboxStats>> {
        Box::pin(async move {
            let client = self.client().await?;
            self.query(&client, sql::OUTBOX_STATS, &[])
                .await?
                .iter()
                .map(|row| rows::outbox_stats(&PgRow::of(row, "outbox")))
                .collect()
        })
    }
}

impl KeyValueStore for PgStore {
    fn kv_get(&self, tenant: &str, key: &str, now_ms: i64) -> StoreFuture<'_, Option<Value>> {
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        Box::pin(async move {
            let client = self.client().await?;
            self.query_opt(&client, sql::KV_GET, &[&tenant, &key, &now_ms])
                .await?
                .map(|row| rows::kv_value(&PgRow::of(&row, "kv")))
                .transpose()
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
            let client = self.client().await?;
            let params: [&(dyn ToSql + Sync); 4] = [&tenant, &key, &value, &expires_ms];
            self.execute(&client, sql::KV_PUT, &params).await?;
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
            let client = self.client().await?;
            let attempts = i64::from(max_attempts);
            let params: [&(dyn ToSql + Sync); 5] = [&tenant, &key, &code, &expires_ms, &attempts];
            self.execute(&client, sql::CODE_PUT, &params).await?;
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
            let Some(row) = self
                .query_opt(&tx, sql::CODE_POSTGRES, &[&tenant, &key])
                .await?
            else {
                return Ok(CodeCheck::Missing);
            };
            let stored = rows::stored_code(&PgRow::of(&row, "codes"))?;
            let (answer, action) = check_code(&stored, &code, now_ms);
            match action {
                CodeAction::Delete => {
                    self.execute(&tx, sql::CODE_DELETE, &[&tenant, &key])
                        .await?
                }
                CodeAction::SetAttemptsLeft(left) => {
                    self.execute(&tx, sql::CODE_SET_ATTEMPTS, &[&tenant, &key, &left])
                        .await?
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
            let client = self.client().await?;
            let params: [&(dyn ToSql + Sync); 4] = [&scope, &key, &now_ms, &until_ms];
            let changed = self.execute(&client, sql::CLAIM, &params).await?;
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
            let mut client = self.client().await?;
            let (tx, change) = self.app_write(&mut client).await?;
            let params: [&(dyn ToSql + Sync); 6] = [
                &account_id,
                &app_id,
                &account_name,
                &sealed,
                &now_ms,
                &change,
            ];
            let row = tx
                .query_one(sql::APP_ACTIVATE, &params)
                .await
                .map_err(|e| self.db(e))?;
            let tenant = rows::app_tenant(&PgRow::of(&row, "app_tenants"))?;
            tx.commit().await.map_err(|e| self.db(e))?;
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
        Box::pin(async move {
            let mut client = self.client().await?;
            let (tx, change) = self.app_write(&mut client).await?;
            let params: [&(dyn ToSql + Sync); 4] = [&account_id, &uninstall, &now_ms, &change];
            let before = self
                .query_opt(&tx, sql::APP_DEACTIVATE_POSTGRES, &params)
                .await?
                .map(|row| parse_app_state(&PgRow::of(&row, "app_tenants").text(0)?))
                .transpose()?;
            if uninstall {
                self.execute(&tx, sql::APP_FAILURES_FORGET, &[&account_id])
                    .await?;
            }
            tx.commit().await.map_err(|e| self.db(e))?;
            Ok(before)
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
            let mut client = self.client().await?;
            let (tx, change) = self.app_write(&mut client).await?;
            let settings = json_text(&c.settings);
            let params: [&(dyn ToSql + Sync); 9] = [
                &account_id,
                &c.token_sha256,
                &c.mapping,
                &c.base_url,
                &c.credentials_sealed,
                &settings,
                &c.external_search,
                &now_ms,
                &change,
            ];
            let changed = self.execute(&tx, sql::APP_CONNECT, &params).await?;
            tx.commit().await.map_err(|e| self.db(e))?;
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
            let mut client = self.client().await?;
            let (tx, change) = self.app_write(&mut client).await?;
            let params: [&(dyn ToSql + Sync); 5] =
                [&account_id, &note, &activated, &now_ms, &change];
            let changed = self.execute(&tx, sql::APP_MARK, &params).await?;
            tx.commit().await.map_err(|e| self.db(e))?;
            Ok(changed == 1)
        })
    }

    fn app_tenant(&self, account_id: &str) -> StoreFuture<'_, Option<AppTenant>> {
        let account_id = account_id.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            self.query_opt(&client, sql::APP_TENANT, &[&account_id])
                .await?
                .map(|row| rows::app_tenant(&PgRow::of(&row, "app_tenants")))
                .transpose()
        })
    }

    fn app_tenants_changed(&self, after: i64) -> StoreFuture<'_, AppTenantChanges> {
        Box::pin(async move {
            let client = self.client().await?;
            let tenants = self
                .query(&client, sql::APP_TENANTS_CHANGED, &[&after])
                .await?
                .iter()
                .map(|row| rows::app_tenant(&PgRow::of(row, "app_tenants")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(AppTenantChanges::read_after(after, tenants))
        })
    }
}

impl AppFailureStore for PgStore {
    fn app_failures_add(&self, account_id: &str, failures: &[AppFailure]) -> StoreFuture<'_, ()> {
        let (account_id, failures) = (account_id.to_owned(), failures.to_vec());
        Box::pin(async move {
            if failures.is_empty() {
                return Ok(());
            }
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            // Instances writing one account's failures take turns, so each trim sees the rows
            // the others added: the account keeps exactly its newest, and two trims never
            // wait for each other's rows in opposite orders.
            self.execute(
                &tx,
                sql::XACT_LOCK_POSTGRES,
                &[&APP_FAILURE_LOCKS, &account_id],
            )
            .await?;
            for f in &failures {
                let times = i64::try_from(f.times).unwrap_or(i64::MAX);
                let params: [&(dyn ToSql + Sync); 6] = [
                    &account_id,
                    &f.source.as_str(),
                    &f.text,
                    &times,
                    &f.first_ms,
                    &f.last_ms,
                ];
                self.execute(&tx, sql::APP_FAILURE_ADD, &params).await?;
            }
            let keep = FAILURES_PER_ACCOUNT as i64;
            self.execute(&tx, sql::APP_FAILURES_TRIM, &[&account_id, &keep])
                .await?;
            tx.commit().await.map_err(|e| self.db(e))
        })
    }

    fn app_failures(&self, account_id: &str) -> StoreFuture<'_, Vec<AppFailure>> {
        let account_id = account_id.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            let keep = FAILURES_PER_ACCOUNT as i64;
            self.query(&client, sql::APP_FAILURES, &[&account_id, &keep])
                .await?
                .iter()
                .map(|row| rows::app_failure(&PgRow::of(row, "app_failures")))
                .collect()
        })
    }
}

impl ClusterStore for PgStore {
    fn heartbeat(
        &self,
        instance: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreFuture<'_, Vec<Member>> {
        let instance = instance.to_owned();
        Box::pin(async move {
            let client = self.control_client().await?;
            let params: [&(dyn ToSql + Sync); 3] = [&instance, &now_ms, &until_ms];
            self.execute(&client, sql::HEARTBEAT, &params).await?;
            self.query(&client, sql::MEMBERS, &[&now_ms])
                .await?
                .iter()
                .map(|row| rows::member(&PgRow::of(row, "instances")))
                .collect()
        })
    }

    fn leave(&self, instance: &str) -> StoreFuture<'_, ()> {
        let instance = instance.to_owned();
        Box::pin(async move {
            let client = self.control_client().await?;
            self.execute(&client, sql::LEAVE, &[&instance]).await?;
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
        Box::pin(async move {
            let client = self.client().await?;
            let params: [&(dyn ToSql + Sync); 5] = [
                &tenant,
                &interval_us,
                &tolerance_us,
                &max_wait_us,
                &charge_us,
            ];
            if let Some(row) = self
                .query_opt(&client, sql::RATE_TAKE_POSTGRES, &params)
                .await?
            {
                let wait_us = PgRow::of(&row, "vendor_rates").int(0)?;
                return Ok(RateTake::Go { wait_us });
            }
            let row = self
                .query_opt(&client, sql::RATE_WAIT_POSTGRES, &[&tenant, &tolerance_us])
                .await?;
            let wait_us = match row {
                Some(row) => PgRow::of(&row, "vendor_rates").int(0)?,
                None => 0,
            };
            Ok(RateTake::Refused { wait_us })
        })
    }

    fn vendor_signal(
        &self,
        tenant: &str,
        paused_until_ms: i64,
        open_until_ms: i64,
    ) -> StoreFuture<'_, ()> {
        let tenant = tenant.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            let params: [&(dyn ToSql + Sync); 3] = [&tenant, &paused_until_ms, &open_until_ms];
            self.execute(&client, sql::VENDOR_SIGNAL, &params).await?;
            Ok(())
        })
    }

    fn vendor_signals(&self, now_ms: i64) -> StoreFuture<'_, Vec<VendorSignal>> {
        Box::pin(async move {
            let client = self.control_client().await?;
            self.query(&client, sql::VENDOR_SIGNALS, &[&now_ms])
                .await?
                .iter()
                .map(|row| rows::vendor_signal(&PgRow::of(row, "vendor_signals")))
                .collect()
        })
    }
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn shared(&self) -> bool {
        true
    }

    fn prune(&self, before: PruneBefore) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.db(e))?;
            let mut gone = 0;
            for statement in sql::PRUNE {
                gone += self.execute(&tx, statement, &[&before.settled_ms]).await?;
            }
            gone += self
                .execute(&tx, sql::PRUNE_APP_FAILURES, &[&before.failures_ms])
                .await?;
            tx.commit().await.map_err(|e| self.db(e))?;
            Ok(gone)
        })
    }
}
