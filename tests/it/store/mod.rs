//! One suite of [`Store`] tests, run against both backends (`store_suite!` below).
//!
//! SQLite: a fresh file in a temporary directory per test. PostgreSQL: a fresh database per
//! test, created through `LB_TEST_POSTGRES_URL` (an account that may `CREATE DATABASE`) and
//! dropped afterwards. Without that variable the PostgreSQL tests print `SKIPPED` and pass,
//! unless `LB_REQUIRE_POSTGRES=1` (as `.ci/run` sets), which makes them fail instead.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{FreshDatabase, connect_postgres};

use loyalty_bridge::store::{
    AppConnection, AppFailure, AppState, AppTenantChanges, Begin, CodeCheck, FAILURES_PER_ACCOUNT,
    FailureSource, Kind, OutboxState, PgStore, PruneBefore, RecordState, SqliteStore, Store,
    StoreError,
};
use serde_json::json;

/// A database of one test: opens as many store handles on it as the test wants.
struct TestDb {
    place: Place,
}

enum Place {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        admin: Box<tokio_postgres::Config>,
        config: Box<tokio_postgres::Config>,
        name: String,
    },
}

impl TestDb {
    async fn sqlite() -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("temp dir");
        // A directory that does not exist yet: open creates it.
        let path = dir.path().join("data").join("store.sqlite3");
        Some(TestDb {
            place: Place::Sqlite { _dir: dir, path },
        })
    }

    async fn postgres() -> Option<TestDb> {
        let db = FreshDatabase::create("PostgreSQL store test").await?;
        Some(TestDb {
            place: Place::Postgres {
                admin: Box::new(db.admin),
                config: Box::new(db.config),
                name: db.name,
            },
        })
    }

    async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match &self.place {
            Place::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).await?),
            Place::Postgres { config, .. } => {
                Arc::new(PgStore::open_config((**config).clone(), 8).await?)
            }
        })
    }

    async fn store(&self) -> Arc<dyn Store> {
        self.open().await.expect("store opens")
    }

    /// A connection of its own to the PostgreSQL database (`None` for SQLite).
    async fn postgres_client(&self) -> Option<tokio_postgres::Client> {
        match &self.place {
            Place::Sqlite { .. } => None,
            Place::Postgres { config, .. } => Some(connect_postgres(config).await),
        }
    }

    /// Runs SQL on the database behind the store's back.
    async fn raw(&self, sql: &str) {
        match &self.place {
            Place::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Place::Postgres { config, .. } => {
                connect_postgres(config)
                    .await
                    .batch_execute(sql)
                    .await
                    .unwrap();
            }
        }
    }
}

/// The schema as migrations 1 and 2 left it (a released migration never changes, so this copy
/// stays right), with `schema_version` saying so: a database from before the change numbers.
/// Placeholders as in `src/store/schema.rs`.
const SCHEMA_VERSION_2: &str = "
    CREATE TABLE schema_version (
        version    {int} NOT NULL PRIMARY KEY,
        applied_ms {int} NOT NULL
    );
    INSERT INTO schema_version (version, applied_ms) VALUES (1, 0), (2, 0);
    CREATE TABLE records (
        tenant TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL,
        kept TEXT NOT NULL DEFAULT 'null', lease_until_ms {int} NOT NULL,
        created_ms {int} NOT NULL, updated_ms {int} NOT NULL,
        PRIMARY KEY (tenant, kind, id)
    ) {clustered};
    CREATE INDEX records_prune ON records (updated_ms) WHERE state IN ('done', 'failed');
    CREATE TABLE outbox (
        seq {seq}, tenant TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
        request TEXT NOT NULL, state TEXT NOT NULL, attempts {int} NOT NULL DEFAULT 0,
        next_attempt_ms {int} NOT NULL, last_error TEXT, created_ms {int} NOT NULL,
        updated_ms {int} NOT NULL,
        FOREIGN KEY (tenant, kind, id) REFERENCES records (tenant, kind, id)
    );
    CREATE INDEX outbox_pending ON outbox (tenant, seq) WHERE state = 'pending';
    CREATE INDEX outbox_record ON outbox (tenant, kind, id);
    CREATE TABLE outbox_leases (
        tenant TEXT NOT NULL PRIMARY KEY, holder TEXT NOT NULL, until_ms {int} NOT NULL
    ) {clustered};
    CREATE TABLE kv (
        tenant TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires_ms {int} NOT NULL,
        PRIMARY KEY (tenant, key)
    ) {clustered};
    CREATE TABLE codes (
        tenant TEXT NOT NULL, key TEXT NOT NULL, code TEXT NOT NULL, expires_ms {int} NOT NULL,
        attempts_left {int} NOT NULL,
        PRIMARY KEY (tenant, key)
    ) {clustered};
    CREATE TABLE claims (
        scope TEXT NOT NULL, key TEXT NOT NULL, until_ms {int} NOT NULL,
        PRIMARY KEY (scope, key)
    ) {clustered};
    CREATE TABLE app_tenants (
        account_id TEXT NOT NULL PRIMARY KEY, app_id TEXT NOT NULL,
        account_name TEXT NOT NULL, state TEXT NOT NULL, access_token_sealed TEXT,
        token_sha256 TEXT UNIQUE, mapping TEXT, base_url TEXT, credentials_sealed TEXT,
        settings TEXT NOT NULL DEFAULT 'null', external_search {bool} NOT NULL DEFAULT {false},
        vendor_note TEXT, created_ms {int} NOT NULL, updated_ms {int} NOT NULL
    ) {clustered};
";

impl TestDb {
    /// Makes the (empty) database one at schema version 2 ([`SCHEMA_VERSION_2`]).
    async fn create_schema_version_2(&self) {
        let words: [(&str, &str); 5] = match &self.place {
            Place::Sqlite { path, .. } => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                [
                    ("{int}", "INTEGER"),
                    ("{seq}", "INTEGER PRIMARY KEY AUTOINCREMENT"),
                    ("{clustered}", "WITHOUT ROWID"),
                    ("{bool}", "INTEGER"),
                    ("{false}", "0"),
                ]
            }
            Place::Postgres { .. } => [
                ("{int}", "BIGINT"),
                ("{seq}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
                ("{clustered}", ""),
                ("{bool}", "BOOLEAN"),
                ("{false}", "FALSE"),
            ],
        };
        let sql = words
            .iter()
            .fold(SCHEMA_VERSION_2.to_owned(), |sql, (from, to)| {
                sql.replace(from, to)
            });
        self.raw(&sql).await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Place::Postgres { admin, name, .. } = &self.place {
            let (admin, db) = ((**admin).clone(), name.clone());
            // Drop is not async: a thread with its own runtime, so this works inside a
            // runtime too.
            let dropped = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        connect_postgres(&admin)
                            .await
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                            .await
                    })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test database {name}");
            }
        }
    }
}

const MIN: i64 = 60_000;
/// A fixed "now" the tests count from (times are parameters, so no test sleeps).
const T0: i64 = 1_800_000_000_000;

/// A prune of settled things before `ms` that keeps every app failure.
fn settled_before(ms: i64) -> PruneBefore {
    PruneBefore {
        settled_ms: ms,
        failures_ms: i64::MIN,
    }
}

mod apps;
mod cluster;
mod lifetime;
mod records;
mod values;

/// The suite's tests, one file per concern; each runs on both backends (`store_suite!`).
mod suite {
    pub use super::apps::*;
    pub use super::cluster::*;
    pub use super::lifetime::*;
    pub use super::records::*;
    pub use super::values::*;
}

/// Instantiates every suite test for one backend: `store_suite!(module, constructor)`.
macro_rules! store_suite {
    ($backend:ident, $make:expr) => {
        store_suite!(@tests $backend, $make,
            begin_started_then_in_flight_then_settled,
            failed_record_can_be_begun_again,
            expired_lease_is_taken_over,
            fifty_concurrent_begins_on_two_handles_start_once,
            tenants_are_isolated,
            finish_keeps_what_the_mapping_keeps,
            enqueue_queues_the_record_and_begin_settles,
            next_pending_follows_seq_per_tenant,
            postpone_refused_delivered_count_attempts,
            delivered_marks_the_record_done,
            outbox_retry_and_drop,
            lease_outbox_is_exclusive_and_expires,
            tenants_with_pending_and_stats,
            kv_put_get_expiry_overwrite_and_isolation,
            codes_consumed_counted_burnt_and_expiring,
            prune_removes_only_old_settled_things,
            migrations_run_once_and_refuse_a_newer_schema,
            data_survives_close_and_reopen,
            claim_once_is_exclusive_until_it_runs_out,
            app_tenant_lifecycle,
            every_app_tenant_write_takes_the_next_change_number,
            concurrent_app_writers_never_hide_a_change_from_a_reader,
            the_migration_numbers_the_app_tenants_already_there,
            app_failures_counted_bounded_pruned_and_forgotten,
            heartbeats_count_instances_until_they_run_out_or_leave,
            rate_take_counts_each_call_once_across_handles,
            vendor_signals_only_rise_and_run_out,
        );
    };
    (@tests $backend:ident, $make:expr, $($test:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Some(db) = $make.await else { return };
                    suite::$test(&db).await;
                }
            )*
        }
    };
}

store_suite!(sqlite, TestDb::sqlite());
store_suite!(postgres, TestDb::postgres());

/// Needs no server: a refused connection's error names neither the password nor hides the cause.
#[tokio::test]
async fn postgres_errors_never_show_the_password() {
    let error = PgStore::open("postgres://bridge:s3cr3t-pw@127.0.0.1:1/loyalty", 2)
        .await
        .expect_err("nothing listens on port 1");
    let message = error.to_string();
    assert!(matches!(error, StoreError::Unavailable(_)), "{message}");
    assert!(!message.contains("s3cr3t-pw"), "{message}");
    let error = PgStore::open("postgres://bridge:s3cr3t-pw@[::1", 2)
        .await
        .expect_err("not a URL");
    assert!(!error.to_string().contains("s3cr3t-pw"), "{error}");
}

/// Advisory locks waited for in the test's own database (other tests' databases have theirs).
async fn waiting_advisory_locks(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_locks
              WHERE locktype = 'advisory' AND NOT granted
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Two instances enqueue sales of one tenant at once; the first draws its seq, then its
/// transaction stays open (a trigger the test added waits at a gate the test holds). The second
/// sale must not become deliverable before the first: delivery follows seq, and the first's
/// seq is lower. (Without a lock of the tenant the second commits at once and a deliverer
/// would send it first; SQLite's one writer cannot interleave two enqueues at all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_tenants_sales_become_deliverable_in_the_order_of_their_seqs() {
    const GATE: i64 = 4242;
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (first_instance, second_instance) = (db.store().await, db.store().await);
    db.raw(&format!(
        "CREATE FUNCTION wait_at_gate() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.id = 'held' THEN PERFORM pg_advisory_xact_lock_shared({GATE}); END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER wait_at_gate AFTER INSERT ON outbox
             FOR EACH ROW EXECUTE FUNCTION wait_at_gate();"
    ))
    .await;
    let gate = db.postgres_client().await.unwrap();
    gate.batch_execute(&format!("SELECT pg_advisory_lock({GATE})"))
        .await
        .unwrap();
    let waiting_until = |count: i64| {
        let gate = &gate;
        async move {
            for _ in 0..500 {
                if waiting_advisory_locks(gate).await >= count {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("{count} advisory locks were never waited for");
        }
    };

    let s = first_instance.clone();
    let first = tokio::spawn(async move {
        s.enqueue("a", Kind::Sale, "held", &json!(1), T0)
            .await
            .unwrap()
    });
    waiting_until(1).await;
    // Another tenant's sales do not wait for tenant a's.
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        second_instance.enqueue("b", Kind::Sale, "other-tenant", &json!(2), T0 + 1),
    )
    .await
    .expect("tenant b's enqueue did not wait for tenant a's")
    .unwrap();
    let s = second_instance.clone();
    let second = tokio::spawn(async move {
        s.enqueue("a", Kind::Sale, "later", &json!(3), T0 + 2)
            .await
            .unwrap()
    });
    // The later sale either waits for the first (a second lock waited for) or is committed.
    for _ in 0..500 {
        if second.is_finished() || waiting_advisory_locks(&gate).await >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let next = first_instance.next_pending("a").await.unwrap();
    assert_eq!(
        next.map(|item| item.id),
        None,
        "while the first sale's enqueue is open, nothing of tenant a may be delivered"
    );

    gate.batch_execute(&format!("SELECT pg_advisory_unlock({GATE})"))
        .await
        .unwrap();
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert!(first < second, "seq {first} then {second}");
    let order: Vec<String> = first_instance
        .outbox_items(Some("a"), false)
        .await
        .unwrap()
        .into_iter()
        .map(|item| item.id)
        .collect();
    assert_eq!(order, ["held", "later"]);
    assert_eq!(
        first_instance.next_pending("a").await.unwrap().unwrap().id,
        "held"
    );
}
