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

mod suite {
    use super::*;

    pub async fn begin_started_then_in_flight_then_settled(db: &TestDb) {
        let s = db.store().await;
        assert_eq!(
            s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap(),
            Begin::Started
        );
        let Begin::InFlight(r) = s
            .begin("a", Kind::Sale, "s1", T0 + 1, T0 + 1 + MIN)
            .await
            .unwrap()
        else {
            panic!("the same id again is in flight")
        };
        assert_eq!(r.state, RecordState::InFlight);
        assert_eq!(r.lease_until_ms, T0 + MIN);
        assert_eq!(
            (r.tenant.as_str(), r.kind, r.id.as_str()),
            ("a", Kind::Sale, "s1")
        );
        // Sale and return journals are apart.
        assert_eq!(
            s.begin("a", Kind::Return, "s1", T0, T0 + MIN)
                .await
                .unwrap(),
            Begin::Started
        );
        s.finish("a", Kind::Sale, "s1", &json!({"op": 7}), T0 + 2)
            .await
            .unwrap();
        let Begin::Settled(r) = s
            .begin("a", Kind::Sale, "s1", T0 + 3, T0 + MIN)
            .await
            .unwrap()
        else {
            panic!("a finished sale is settled")
        };
        assert_eq!(r.state, RecordState::Done);
        assert_eq!(r.kept, json!({"op": 7}));
        // Even long after: done is done.
        assert!(matches!(
            s.begin("a", Kind::Sale, "s1", T0 + 100 * MIN, T0 + 101 * MIN)
                .await
                .unwrap(),
            Begin::Settled(_)
        ));
    }

    pub async fn failed_record_can_be_begun_again(db: &TestDb) {
        let s = db.store().await;
        assert_eq!(
            s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap(),
            Begin::Started
        );
        s.abandon("a", Kind::Sale, "s1", T0 + 1).await.unwrap();
        let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
        assert_eq!(r.state, RecordState::Failed);
        assert_eq!(
            s.begin("a", Kind::Sale, "s1", T0 + 2, T0 + 2 + MIN)
                .await
                .unwrap(),
            Begin::Started
        );
        let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
        assert_eq!(r.state, RecordState::InFlight);
        assert_eq!(r.lease_until_ms, T0 + 2 + MIN);
        assert_eq!(r.created_ms, T0);
        assert_eq!(r.updated_ms, T0 + 2);
    }

    pub async fn expired_lease_is_taken_over(db: &TestDb) {
        let s = db.store().await;
        assert_eq!(
            s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap(),
            Begin::Started
        );
        assert!(matches!(
            s.begin("a", Kind::Sale, "s1", T0 + MIN - 1, T0 + 2 * MIN)
                .await
                .unwrap(),
            Begin::InFlight(_)
        ));
        assert_eq!(
            s.begin("a", Kind::Sale, "s1", T0 + MIN, T0 + 3 * MIN)
                .await
                .unwrap(),
            Begin::Started
        );
        let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
        assert_eq!(r.lease_until_ms, T0 + 3 * MIN);
    }

    pub async fn fifty_concurrent_begins_on_two_handles_start_once(db: &TestDb) {
        let handles = [db.store().await, db.store().await];
        for round in 0..3 {
            let id = format!("sale-{round}");
            let mut tasks = Vec::new();
            for i in 0..50 {
                let s = Arc::clone(&handles[i % 2]);
                let id = id.clone();
                tasks.push(tokio::spawn(async move {
                    s.begin("a", Kind::Sale, &id, T0, T0 + MIN).await.unwrap()
                }));
            }
            let mut started = 0;
            for t in tasks {
                match t.await.unwrap() {
                    Begin::Started => started += 1,
                    Begin::InFlight(r) => assert_eq!(r.state, RecordState::InFlight),
                    Begin::Settled(r) => panic!("nothing settled it: {r:?}"),
                }
            }
            assert_eq!(started, 1, "round {round}");
        }
        // Taking over a failed record concurrently: exactly one too.
        handles[0]
            .abandon("a", Kind::Sale, "sale-0", T0 + 1)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let s = Arc::clone(&handles[i % 2]);
            tasks.push(tokio::spawn(async move {
                s.begin("a", Kind::Sale, "sale-0", T0 + 2, T0 + MIN)
                    .await
                    .unwrap()
            }));
        }
        let mut started = 0;
        for t in tasks {
            if t.await.unwrap() == Begin::Started {
                started += 1;
            }
        }
        assert_eq!(started, 1, "take-over of a failed record");
    }

    pub async fn tenants_are_isolated(db: &TestDb) {
        let s = db.store().await;
        assert_eq!(
            s.begin("a", Kind::Sale, "x", T0, T0 + MIN).await.unwrap(),
            Begin::Started
        );
        assert_eq!(
            s.begin("b", Kind::Sale, "x", T0, T0 + MIN).await.unwrap(),
            Begin::Started
        );
        s.finish("a", Kind::Sale, "x", &json!("a's"), T0)
            .await
            .unwrap();
        assert!(matches!(
            s.begin("b", Kind::Sale, "x", T0 + 1, T0 + MIN)
                .await
                .unwrap(),
            Begin::InFlight(_)
        ));
        s.abandon("b", Kind::Sale, "x", T0 + 2).await.unwrap();
        assert_eq!(
            s.record("a", Kind::Sale, "x").await.unwrap().unwrap().state,
            RecordState::Done
        );
        assert_eq!(
            s.record("b", Kind::Sale, "x").await.unwrap().unwrap().state,
            RecordState::Failed
        );
        assert_eq!(s.record("c", Kind::Sale, "x").await.unwrap(), None);
    }

    pub async fn finish_keeps_what_the_mapping_keeps(db: &TestDb) {
        let s = db.store().await;
        assert_eq!(s.record("a", Kind::Return, "r1").await.unwrap(), None);
        assert_eq!(
            s.begin("a", Kind::Return, "r1", T0, T0 + MIN)
                .await
                .unwrap(),
            Begin::Started
        );
        let r = s.record("a", Kind::Return, "r1").await.unwrap().unwrap();
        assert_eq!(r.kept, serde_json::Value::Null);
        let kept: serde_json::Value = serde_json::from_str(
            r#"{"purchase_id": "p-1", "amount": 1107.50, "rows": [1, 2.25, "x"], "big": 123456789012345678901234}"#,
        )
        .unwrap();
        s.finish("a", Kind::Return, "r1", &kept, T0 + 5)
            .await
            .unwrap();
        let r = s.record("a", Kind::Return, "r1").await.unwrap().unwrap();
        assert_eq!(r.state, RecordState::Done);
        assert_eq!(r.kept, kept);
        assert_eq!(
            r.kept["amount"].to_string(),
            "1107.50",
            "numbers are kept as written"
        );
        assert_eq!((r.created_ms, r.updated_ms), (T0, T0 + 5));
    }

    pub async fn enqueue_queues_the_record_and_begin_settles(db: &TestDb) {
        let s = db.store().await;
        assert_eq!(
            s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap(),
            Begin::Started
        );
        let request = json!({"meta": {"id": "s1"}, "sum": 10.5});
        let seq = s
            .enqueue("a", Kind::Sale, "s1", &request, T0 + 1)
            .await
            .unwrap();
        let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
        assert_eq!(r.state, RecordState::Queued);
        let Begin::Settled(r) = s
            .begin("a", Kind::Sale, "s1", T0 + 10 * MIN, T0 + 11 * MIN)
            .await
            .unwrap()
        else {
            panic!("a queued sale is settled")
        };
        assert_eq!(r.state, RecordState::Queued);
        let item = s.next_pending("a").await.unwrap().unwrap();
        assert_eq!(item.seq, seq);
        assert_eq!(item.request, request);
        assert_eq!((item.kind, item.id.as_str()), (Kind::Sale, "s1"));
        assert_eq!(item.state, OutboxState::Pending);
        assert_eq!(item.attempts, 0);
        assert_eq!(item.next_attempt_ms, T0 + 1);
        assert_eq!(item.created_ms, T0 + 1);
        assert_eq!(item.last_error, None);
    }

    pub async fn next_pending_follows_seq_per_tenant(db: &TestDb) {
        let s = db.store().await;
        let mut seqs = Vec::new();
        for (i, tenant) in ["a", "b", "a", "b", "a"].into_iter().enumerate() {
            let id = format!("s{i}");
            s.begin(tenant, Kind::Sale, &id, T0, T0 + MIN)
                .await
                .unwrap();
            seqs.push(
                s.enqueue(tenant, Kind::Sale, &id, &json!(i), T0 + i as i64)
                    .await
                    .unwrap(),
            );
        }
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "seq increases: {seqs:?}"
        );
        assert_eq!(s.next_pending("a").await.unwrap().unwrap().id, "s0");
        assert_eq!(s.next_pending("b").await.unwrap().unwrap().id, "s1");
        // A postponed head is still next: a later item never overtakes it.
        s.postpone(seqs[0], "timeout", T0 + 60 * MIN).await.unwrap();
        assert_eq!(s.next_pending("a").await.unwrap().unwrap().id, "s0");
        s.delivered(seqs[0], &json!(null), T0 + 1).await.unwrap();
        assert_eq!(s.next_pending("a").await.unwrap().unwrap().id, "s2");
        s.delivered(seqs[2], &json!(null), T0 + 1).await.unwrap();
        s.delivered(seqs[4], &json!(null), T0 + 1).await.unwrap();
        assert_eq!(s.next_pending("a").await.unwrap(), None);
        assert_eq!(s.next_pending("b").await.unwrap().unwrap().id, "s1");
        assert_eq!(s.next_pending("nobody").await.unwrap(), None);
        let all: Vec<_> = s
            .outbox_items(None, false)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(all, ["s1", "s3"]);
        let all: Vec<_> = s
            .outbox_items(None, true)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.seq)
            .collect();
        assert_eq!(all, seqs, "newest last");
        let a: Vec<_> = s
            .outbox_items(Some("a"), true)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(a, ["s0", "s2", "s4"]);
    }

    pub async fn postpone_refused_delivered_count_attempts(db: &TestDb) {
        let s = db.store().await;
        s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap();
        let seq = s
            .enqueue("a", Kind::Sale, "s1", &json!({}), T0)
            .await
            .unwrap();
        s.postpone(seq, "vendor timeout", T0 + MIN).await.unwrap();
        s.postpone(seq, "vendor 503", T0 + 3 * MIN).await.unwrap();
        let item = s.next_pending("a").await.unwrap().unwrap();
        assert_eq!(item.attempts, 2);
        assert_eq!(item.last_error.as_deref(), Some("vendor 503"));
        assert_eq!(item.next_attempt_ms, T0 + 3 * MIN);
        assert_eq!(item.state, OutboxState::Pending);

        s.refused(seq, "card blocked", T0 + 4 * MIN).await.unwrap();
        assert_eq!(s.next_pending("a").await.unwrap(), None);
        let items = s.outbox_items(Some("a"), false).await.unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].state, OutboxState::Failed);
        assert_eq!(items[0].attempts, 3);
        assert_eq!(items[0].last_error.as_deref(), Some("card blocked"));
        let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
        assert_eq!(r.state, RecordState::Failed);
        // Postponing a refused item changes nothing.
        s.postpone(seq, "late", T0).await.unwrap();
        assert_eq!(
            s.outbox_items(Some("a"), false).await.unwrap()[0].attempts,
            3
        );
    }

    pub async fn delivered_marks_the_record_done(db: &TestDb) {
        let s = db.store().await;
        s.begin("a", Kind::Return, "r1", T0, T0 + MIN)
            .await
            .unwrap();
        let seq = s
            .enqueue("a", Kind::Return, "r1", &json!({"r": 1}), T0)
            .await
            .unwrap();
        s.delivered(seq, &json!({"vendor_id": 42}), T0 + 7)
            .await
            .unwrap();
        let r = s.record("a", Kind::Return, "r1").await.unwrap().unwrap();
        assert_eq!(r.state, RecordState::Done);
        assert_eq!(r.kept, json!({"vendor_id": 42}));
        assert_eq!(r.updated_ms, T0 + 7);
        assert_eq!(s.next_pending("a").await.unwrap(), None);
        assert!(s.outbox_items(None, false).await.unwrap().is_empty());
        let all = s.outbox_items(None, true).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].state, OutboxState::Delivered);
        // Delivered is final for the operator too.
        assert!(!s.outbox_retry(seq, T0).await.unwrap());
        assert!(!s.outbox_drop(seq, T0).await.unwrap());
    }

    pub async fn outbox_retry_and_drop(db: &TestDb) {
        let s = db.store().await;
        for id in ["s1", "s2", "s3"] {
            s.begin("a", Kind::Sale, id, T0, T0 + MIN).await.unwrap();
        }
        let one = s
            .enqueue("a", Kind::Sale, "s1", &json!(1), T0)
            .await
            .unwrap();
        let two = s
            .enqueue("a", Kind::Sale, "s2", &json!(2), T0)
            .await
            .unwrap();
        let three = s
            .enqueue("a", Kind::Sale, "s3", &json!(3), T0)
            .await
            .unwrap();

        // Retry a refused item: pending again, due now, its record queued again.
        s.refused(one, "no such card", T0 + 1).await.unwrap();
        assert!(s.outbox_retry(one, T0 + 2).await.unwrap());
        let item = s.next_pending("a").await.unwrap().unwrap();
        assert_eq!(
            (item.seq, item.state, item.next_attempt_ms),
            (one, OutboxState::Pending, T0 + 2)
        );
        assert_eq!(
            s.record("a", Kind::Sale, "s1")
                .await
                .unwrap()
                .unwrap()
                .state,
            RecordState::Queued
        );
        // Retry a postponed pending item: due now.
        s.postpone(two, "timeout", T0 + 60 * MIN).await.unwrap();
        assert!(s.outbox_retry(two, T0 + 3).await.unwrap());
        let items = s.outbox_items(Some("a"), false).await.unwrap();
        assert_eq!(items[1].next_attempt_ms, T0 + 3);
        assert!(!s.outbox_retry(999_999, T0).await.unwrap(), "unknown");

        // Drop: the item goes, the record fails, so MoySklad's repeat may try again.
        assert!(s.outbox_drop(two, T0 + 4).await.unwrap());
        assert!(!s.outbox_drop(two, T0 + 4).await.unwrap(), "already gone");
        assert_eq!(
            s.record("a", Kind::Sale, "s2")
                .await
                .unwrap()
                .unwrap()
                .state,
            RecordState::Failed
        );
        assert_eq!(
            s.begin("a", Kind::Sale, "s2", T0 + 5, T0 + MIN)
                .await
                .unwrap(),
            Begin::Started
        );
        let left: Vec<_> = s
            .outbox_items(None, true)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.seq)
            .collect();
        assert_eq!(left, [one, three]);

        // A refused item whose sale a repeat has meanwhile done another way is not retried:
        // delivering it too would do the sale twice.
        s.refused(three, "refused", T0 + 6).await.unwrap();
        assert_eq!(
            s.begin("a", Kind::Sale, "s3", T0 + 7, T0 + MIN)
                .await
                .unwrap(),
            Begin::Started
        );
        s.finish("a", Kind::Sale, "s3", &json!("direct"), T0 + 8)
            .await
            .unwrap();
        assert!(!s.outbox_retry(three, T0 + 9).await.unwrap());
        // Dropping it leaves the done record alone.
        assert!(s.outbox_drop(three, T0 + 10).await.unwrap());
        let r = s.record("a", Kind::Sale, "s3").await.unwrap().unwrap();
        assert_eq!((r.state, r.kept), (RecordState::Done, json!("direct")));
    }

    pub async fn lease_outbox_is_exclusive_and_expires(db: &TestDb) {
        let (x, y) = (db.store().await, db.store().await);
        assert!(x.lease_outbox("a", "inst-x", T0, T0 + MIN).await.unwrap());
        assert!(
            !y.lease_outbox("a", "inst-y", T0 + 1, T0 + MIN)
                .await
                .unwrap()
        );
        // Another tenant's right is separate.
        assert!(
            y.lease_outbox("b", "inst-y", T0 + 1, T0 + MIN)
                .await
                .unwrap()
        );
        // The holder renews.
        assert!(
            x.lease_outbox("a", "inst-x", T0 + 2, T0 + 2 * MIN)
                .await
                .unwrap()
        );
        assert!(
            !y.lease_outbox("a", "inst-y", T0 + MIN + 1, T0 + 3 * MIN)
                .await
                .unwrap()
        );
        // Ran out: the other takes it, and the first one no longer has it.
        assert!(
            y.lease_outbox("a", "inst-y", T0 + 2 * MIN, T0 + 3 * MIN)
                .await
                .unwrap()
        );
        assert!(
            !x.lease_outbox("a", "inst-x", T0 + 2 * MIN + 1, T0 + 4 * MIN)
                .await
                .unwrap()
        );
        // Released (by its holder only): free at once.
        x.release_outbox_leases("inst-x").await.unwrap();
        assert!(
            !x.lease_outbox("a", "inst-x", T0 + 2 * MIN + 2, T0 + 4 * MIN)
                .await
                .unwrap()
        );
        // A holder gives back all its leases at once (at shutdown), and only its own.
        assert!(
            y.lease_outbox("b", "inst-y", T0 + 2 * MIN, T0 + 3 * MIN)
                .await
                .unwrap()
        );
        assert!(
            x.lease_outbox("d", "inst-x", T0 + 2 * MIN, T0 + 3 * MIN)
                .await
                .unwrap()
        );
        y.release_outbox_leases("inst-y").await.unwrap();
        assert!(
            x.lease_outbox("a", "inst-x", T0 + 2 * MIN + 3, T0 + 4 * MIN)
                .await
                .unwrap()
        );
        assert!(
            x.lease_outbox("b", "inst-x", T0 + 2 * MIN + 3, T0 + 4 * MIN)
                .await
                .unwrap()
        );
        assert!(
            !y.lease_outbox("d", "inst-y", T0 + 2 * MIN + 3, T0 + 4 * MIN)
                .await
                .unwrap(),
            "inst-x's lease on d stays"
        );

        // Many at once across the two handles: exactly one wins.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let s = Arc::clone(if i % 2 == 0 { &x } else { &y });
            tasks.push(tokio::spawn(async move {
                s.lease_outbox("c", &format!("h{i}"), T0, T0 + MIN)
                    .await
                    .unwrap()
            }));
        }
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap());
        }
        assert_eq!(won, 1);
    }

    pub async fn tenants_with_pending_and_stats(db: &TestDb) {
        let s = db.store().await;
        assert!(s.tenants_with_pending().await.unwrap().is_empty());
        assert!(s.outbox_stats().await.unwrap().is_empty());
        let mut seqs = Vec::new();
        for (tenant, id, at) in [
            ("b", "1", T0 + 5),
            ("a", "1", T0 + 3),
            ("a", "2", T0 + 1),
            ("c", "1", T0),
        ] {
            s.begin(tenant, Kind::Sale, id, T0, T0 + MIN).await.unwrap();
            seqs.push(
                s.enqueue(tenant, Kind::Sale, id, &json!({}), at)
                    .await
                    .unwrap(),
            );
        }
        s.refused(seqs[1], "no", T0 + 9).await.unwrap(); // a/1
        s.delivered(seqs[3], &json!(null), T0 + 9).await.unwrap(); // c/1
        assert_eq!(s.tenants_with_pending().await.unwrap(), ["a", "b"]);
        let stats = s.outbox_stats().await.unwrap();
        assert_eq!(stats.len(), 2, "{stats:?}");
        assert_eq!(stats[0].tenant, "a");
        assert_eq!((stats[0].pending, stats[0].failed), (1, 1));
        assert_eq!(stats[0].oldest_pending_ms, Some(T0 + 1));
        assert_eq!(stats[1].tenant, "b");
        assert_eq!((stats[1].pending, stats[1].failed), (1, 0));
        assert_eq!(stats[1].oldest_pending_ms, Some(T0 + 5));
        s.delivered(seqs[2], &json!(null), T0 + 9).await.unwrap(); // a/2
        let stats = s.outbox_stats().await.unwrap();
        assert_eq!(
            (stats[0].tenant.as_str(), stats[0].pending, stats[0].failed),
            ("a", 0, 1)
        );
        assert_eq!(stats[0].oldest_pending_ms, None);
        assert_eq!(s.tenants_with_pending().await.unwrap(), ["b"]);
    }

    pub async fn kv_put_get_expiry_overwrite_and_isolation(db: &TestDb) {
        let s = db.store().await;
        assert_eq!(s.kv_get("a", "k", T0).await.unwrap(), None);
        s.kv_put("a", "k", &json!({"v": 1}), T0 + MIN)
            .await
            .unwrap();
        assert_eq!(s.kv_get("a", "k", T0).await.unwrap(), Some(json!({"v": 1})));
        assert_eq!(
            s.kv_get("a", "k", T0 + MIN - 1).await.unwrap(),
            Some(json!({"v": 1}))
        );
        assert_eq!(s.kv_get("a", "k", T0 + MIN).await.unwrap(), None, "expired");
        assert_eq!(
            s.kv_get("b", "k", T0).await.unwrap(),
            None,
            "another tenant's"
        );
        s.kv_put("a", "k", &json!("two"), T0 + 2 * MIN)
            .await
            .unwrap();
        assert_eq!(
            s.kv_get("a", "k", T0 + MIN).await.unwrap(),
            Some(json!("two"))
        );
        s.kv_put("b", "k", &json!(3), T0 + MIN).await.unwrap();
        assert_eq!(s.kv_get("a", "k", T0).await.unwrap(), Some(json!("two")));
        assert_eq!(s.kv_get("b", "k", T0).await.unwrap(), Some(json!(3)));
        s.kv_put("a", "null", &json!(null), T0 + MIN).await.unwrap();
        assert_eq!(s.kv_get("a", "null", T0).await.unwrap(), Some(json!(null)));
    }

    pub async fn codes_consumed_counted_burnt_and_expiring(db: &TestDb) {
        let s = db.store().await;
        assert_eq!(
            s.code_check("a", "+7999", "1234", T0).await.unwrap(),
            CodeCheck::Missing
        );
        s.code_put("a", "+7999", "1234", T0 + MIN, 3).await.unwrap();
        assert_eq!(
            s.code_check("b", "+7999", "1234", T0).await.unwrap(),
            CodeCheck::Missing,
            "tenant b has none"
        );
        assert_eq!(
            s.code_check("a", "+7999", "0000", T0).await.unwrap(),
            CodeCheck::Wrong { attempts_left: 2 }
        );
        assert_eq!(
            s.code_check("a", "+7999", "1234", T0).await.unwrap(),
            CodeCheck::Accepted
        );
        assert_eq!(
            s.code_check("a", "+7999", "1234", T0).await.unwrap(),
            CodeCheck::Missing,
            "consumed"
        );

        s.code_put("a", "+7999", "5678", T0 + MIN, 3).await.unwrap();
        assert_eq!(
            s.code_check("a", "+7999", "1", T0).await.unwrap(),
            CodeCheck::Wrong { attempts_left: 2 }
        );
        assert_eq!(
            s.code_check("a", "+7999", "2", T0).await.unwrap(),
            CodeCheck::Wrong { attempts_left: 1 }
        );
        assert_eq!(
            s.code_check("a", "+7999", "3", T0).await.unwrap(),
            CodeCheck::Wrong { attempts_left: 0 }
        );
        assert_eq!(
            s.code_check("a", "+7999", "5678", T0).await.unwrap(),
            CodeCheck::Missing,
            "burnt"
        );

        // A new code replaces the old one, attempts afresh.
        s.code_put("a", "+7999", "1111", T0 + MIN, 2).await.unwrap();
        assert_eq!(
            s.code_check("a", "+7999", "9", T0).await.unwrap(),
            CodeCheck::Wrong { attempts_left: 1 }
        );
        s.code_put("a", "+7999", "2222", T0 + MIN, 2).await.unwrap();
        assert_eq!(
            s.code_check("a", "+7999", "1111", T0).await.unwrap(),
            CodeCheck::Wrong { attempts_left: 1 }
        );
        assert_eq!(
            s.code_check("a", "+7999", "2222", T0 + MIN).await.unwrap(),
            CodeCheck::Missing,
            "expired"
        );

        // Concurrent checks of the right code: one is accepted.
        s.code_put("a", "k2", "4242", T0 + MIN, 5).await.unwrap();
        let other = db.store().await;
        let mut tasks = Vec::new();
        for i in 0..10 {
            let h = Arc::clone(if i % 2 == 0 { &s } else { &other });
            tasks.push(tokio::spawn(async move {
                h.code_check("a", "k2", "4242", T0).await.unwrap()
            }));
        }
        let mut accepted = 0;
        for t in tasks {
            if t.await.unwrap() == CodeCheck::Accepted {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 1);
    }

    pub async fn prune_removes_only_old_settled_things(db: &TestDb) {
        let s = db.store().await;
        let old = T0;
        let cut = T0 + 100 * MIN;
        let new = T0 + 200 * MIN;
        // Old and settled: go.
        s.begin("a", Kind::Sale, "done-old", old, old + MIN)
            .await
            .unwrap();
        s.finish("a", Kind::Sale, "done-old", &json!(1), old)
            .await
            .unwrap();
        s.begin("a", Kind::Sale, "failed-old", old, old + MIN)
            .await
            .unwrap();
        s.abandon("a", Kind::Sale, "failed-old", old).await.unwrap();
        s.begin("a", Kind::Sale, "delivered-old", old, old + MIN)
            .await
            .unwrap();
        let delivered = s
            .enqueue("a", Kind::Sale, "delivered-old", &json!({}), old)
            .await
            .unwrap();
        s.delivered(delivered, &json!(2), old).await.unwrap();
        s.kv_put("a", "expired", &json!(1), old + MIN)
            .await
            .unwrap();
        s.code_put("a", "expired", "1", old + MIN, 3).await.unwrap();
        // Never: in flight (even with a long-gone lease), queued, pending, refused awaiting an
        // operator, recent, or not expired.
        s.begin("a", Kind::Sale, "in-flight-old", old, old + MIN)
            .await
            .unwrap();
        s.begin("a", Kind::Sale, "queued-old", old, old + MIN)
            .await
            .unwrap();
        s.enqueue("a", Kind::Sale, "queued-old", &json!({}), old)
            .await
            .unwrap();
        s.begin("a", Kind::Sale, "refused-old", old, old + MIN)
            .await
            .unwrap();
        let refused = s
            .enqueue("a", Kind::Sale, "refused-old", &json!({}), old)
            .await
            .unwrap();
        s.refused(refused, "no", old).await.unwrap();
        s.begin("a", Kind::Sale, "done-new", new, new + MIN)
            .await
            .unwrap();
        s.finish("a", Kind::Sale, "done-new", &json!(3), new)
            .await
            .unwrap();
        s.kv_put("a", "alive", &json!(1), new + MIN).await.unwrap();
        s.code_put("a", "alive", "1", new + MIN, 3).await.unwrap();

        let gone = s.prune(settled_before(cut)).await.unwrap();
        assert_eq!(gone, 6, "3 records, 1 delivered item, 1 value, 1 code");
        for id in ["done-old", "failed-old", "delivered-old"] {
            assert_eq!(s.record("a", Kind::Sale, id).await.unwrap(), None, "{id}");
        }
        for id in ["in-flight-old", "queued-old", "refused-old", "done-new"] {
            assert!(
                s.record("a", Kind::Sale, id).await.unwrap().is_some(),
                "{id} stays"
            );
        }
        let items: Vec<_> = s
            .outbox_items(None, true)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(items, ["queued-old", "refused-old"]);
        assert_eq!(s.kv_get("a", "alive", new).await.unwrap(), Some(json!(1)));
        assert_eq!(
            s.code_check("a", "alive", "1", new).await.unwrap(),
            CodeCheck::Accepted
        );
        assert_eq!(
            s.prune(settled_before(cut)).await.unwrap(),
            0,
            "nothing more"
        );
    }

    pub async fn migrations_run_once_and_refuse_a_newer_schema(db: &TestDb) {
        let first = db.store().await;
        first
            .begin("a", Kind::Sale, "s1", T0, T0 + MIN)
            .await
            .unwrap();
        // Opening again (and twice at once) is a no-op that keeps the data.
        let (second, third) = tokio::join!(db.open(), db.open());
        let (second, _third) = (second.unwrap(), third.unwrap());
        assert!(
            second
                .record("a", Kind::Sale, "s1")
                .await
                .unwrap()
                .is_some()
        );
        drop((first, second, _third));

        db.raw("INSERT INTO schema_version (version, applied_ms) VALUES (999, 0)")
            .await;
        match db.open().await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("999"), "{message}");
                assert!(message.contains("newer"), "{message}");
            }
            Err(other) => panic!("expected Corrupt, got {other}"),
            Ok(_) => panic!("a newer schema must be refused"),
        }
    }

    pub async fn data_survives_close_and_reopen(db: &TestDb) {
        let s = db.store().await;
        assert!(!s.backend().is_empty());
        s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap();
        s.finish("a", Kind::Sale, "s1", &json!({"id": "v1"}), T0)
            .await
            .unwrap();
        s.begin("a", Kind::Sale, "s2", T0, T0 + MIN).await.unwrap();
        let seq = s
            .enqueue("a", Kind::Sale, "s2", &json!({"x": 1}), T0)
            .await
            .unwrap();
        s.kv_put("a", "k", &json!("v"), T0 + MIN).await.unwrap();
        s.code_put("a", "c", "77", T0 + MIN, 3).await.unwrap();
        drop(s);

        let s = db.store().await;
        let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
        assert_eq!((r.state, r.kept), (RecordState::Done, json!({"id": "v1"})));
        assert!(matches!(
            s.begin("a", Kind::Sale, "s2", T0 + 1, T0 + MIN)
                .await
                .unwrap(),
            Begin::Settled(_)
        ));
        assert_eq!(s.next_pending("a").await.unwrap().unwrap().seq, seq);
        assert_eq!(s.kv_get("a", "k", T0).await.unwrap(), Some(json!("v")));
        assert_eq!(
            s.code_check("a", "c", "77", T0).await.unwrap(),
            CodeCheck::Accepted
        );
        // A later enqueue gets a later seq.
        s.begin("a", Kind::Sale, "s3", T0, T0 + MIN).await.unwrap();
        assert!(
            s.enqueue("a", Kind::Sale, "s3", &json!({}), T0)
                .await
                .unwrap()
                > seq
        );
    }

    pub async fn heartbeats_count_instances_until_they_run_out_or_leave(db: &TestDb) {
        let (s1, s2) = (db.store().await, db.store().await);
        let names = |members: Vec<loyalty_bridge::store::Member>| {
            members.into_iter().map(|m| m.instance).collect::<Vec<_>>()
        };
        assert_eq!(
            names(s1.heartbeat("a", T0, T0 + 3_000).await.unwrap()),
            ["a"]
        );
        let seen = s2.heartbeat("b", T0 + 500, T0 + 3_500).await.unwrap();
        assert_eq!(names(seen.clone()), ["a", "b"]);
        assert_eq!(
            (seen[0].joined_ms, seen[0].beat_ms, seen[1].joined_ms),
            (T0, T0, T0 + 500)
        );
        // A later beat keeps the first one's join time.
        let seen = s1.heartbeat("a", T0 + 1_000, T0 + 4_000).await.unwrap();
        assert_eq!((seen[0].joined_ms, seen[0].beat_ms), (T0, T0 + 1_000));
        // "b" stops beating: it runs out.
        assert_eq!(
            names(s1.heartbeat("a", T0 + 3_600, T0 + 6_600).await.unwrap()),
            ["a"]
        );
        // One that leaves stops counting at once.
        s2.heartbeat("b", T0 + 3_700, T0 + 6_700).await.unwrap();
        s2.leave("b").await.unwrap();
        assert_eq!(
            names(s1.heartbeat("a", T0 + 3_800, T0 + 6_800).await.unwrap()),
            ["a"]
        );
        assert!(s1.prune(settled_before(T0 + 10 * MIN)).await.unwrap() >= 1);
        assert!(
            s1.heartbeat("c", T0 + 10 * MIN, T0 + 10 * MIN + 1)
                .await
                .unwrap()
                .len()
                == 1
        );
    }

    pub async fn rate_take_counts_each_call_once_across_handles(db: &TestDb) {
        use loyalty_bridge::store::RateTake;
        let (s1, s2) = (db.store().await, db.store().await);
        // One call every 100 s, a burst of 5: nothing comes back while the test runs (the
        // rate's clock is the database's own).
        const INTERVAL: i64 = 100_000_000;
        const TOLERANCE: i64 = 4 * INTERVAL;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let s = if i % 2 == 0 { s1.clone() } else { s2.clone() };
            tasks.push(tokio::spawn(async move {
                s.rate_take("t1", INTERVAL, TOLERANCE, 0, 0).await.unwrap()
            }));
        }
        let mut went = 0;
        for t in tasks {
            match t.await.unwrap() {
                RateTake::Go { wait_us } => {
                    assert_eq!(wait_us, 0);
                    went += 1;
                }
                RateTake::Refused { wait_us } => {
                    assert!(
                        wait_us > INTERVAL - 60_000_000 && wait_us <= INTERVAL,
                        "{wait_us}"
                    );
                }
            }
        }
        assert_eq!(went, 5, "the burst, and not one call more");
        // Callers that may wait are counted with their turn: one interval apart.
        let go = |t| match t {
            RateTake::Go { wait_us } => wait_us,
            RateTake::Refused { wait_us } => panic!("refused, wait {wait_us}"),
        };
        let first = go(s1
            .rate_take("t1", INTERVAL, TOLERANCE, 250_000_000, 0)
            .await
            .unwrap());
        let second = go(s2
            .rate_take("t1", INTERVAL, TOLERANCE, 250_000_000, 0)
            .await
            .unwrap());
        assert!(
            first > INTERVAL - 60_000_000 && first <= INTERVAL,
            "{first}"
        );
        assert!(
            (second - first - INTERVAL).abs() < 60_000_000,
            "{first} {second}"
        );
        assert!(matches!(
            s1.rate_take("t1", INTERVAL, TOLERANCE, 250_000_000, 0).await.unwrap(),
            RateTake::Refused { wait_us } if wait_us > 250_000_000
        ));
        // Tenants are separate; a charged burst is spent but for one call.
        assert_eq!(
            s1.rate_take("t2", INTERVAL, TOLERANCE, 0, TOLERANCE)
                .await
                .unwrap(),
            RateTake::Go { wait_us: 0 }
        );
        assert!(matches!(
            s2.rate_take("t2", INTERVAL, TOLERANCE, 0, 0).await.unwrap(),
            RateTake::Refused { .. }
        ));
        // Old rows are pruned (the rate's times are microseconds; prune takes milliseconds).
        let far = chrono::Utc::now().timestamp_millis() + 1_000 * 24 * 3600 * 1000;
        assert!(s1.prune(settled_before(far)).await.unwrap() >= 2);
        assert_eq!(
            s1.rate_take("t1", INTERVAL, TOLERANCE, 0, 0).await.unwrap(),
            RateTake::Go { wait_us: 0 }
        );
    }

    pub async fn vendor_signals_only_rise_and_run_out(db: &TestDb) {
        let (s1, s2) = (db.store().await, db.store().await);
        s1.vendor_signal("t1", T0 + 5_000, 0).await.unwrap();
        s2.vendor_signal("t1", T0 + 2_000, T0 + 8_000)
            .await
            .unwrap();
        s2.vendor_signal("t2", 0, T0 + 1_000).await.unwrap();
        let mut seen = s2.vendor_signals(T0).await.unwrap();
        seen.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        let view: Vec<_> = seen
            .iter()
            .map(|s| (s.tenant.as_str(), s.paused_until_ms, s.open_until_ms))
            .collect();
        assert_eq!(
            view,
            [("t1", T0 + 5_000, T0 + 8_000), ("t2", 0, T0 + 1_000)]
        );
        // Only running ones come back.
        let later = s1.vendor_signals(T0 + 6_000).await.unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(
            (later[0].tenant.as_str(), later[0].open_until_ms),
            ("t1", T0 + 8_000)
        );
        assert!(s1.vendor_signals(T0 + 8_000).await.unwrap().is_empty());
        assert!(s1.prune(settled_before(T0 + 9_000)).await.unwrap() >= 2);
    }

    pub async fn claim_once_is_exclusive_until_it_runs_out(db: &TestDb) {
        let (s1, s2) = (db.store().await, db.store().await);
        // Many claims at once on two handles: exactly one wins.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let s = if i % 2 == 0 { s1.clone() } else { s2.clone() };
            tasks.push(tokio::spawn(async move {
                s.claim_once("jti", "abc", T0, T0 + MIN).await.unwrap()
            }));
        }
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap());
        }
        assert_eq!(won, 1);
        assert!(
            !s1.claim_once("jti", "abc", T0 + MIN - 1, T0 + 2 * MIN)
                .await
                .unwrap()
        );
        // Scopes and keys are separate.
        assert!(s1.claim_once("other", "abc", T0, T0 + MIN).await.unwrap());
        assert!(s1.claim_once("jti", "abd", T0, T0 + MIN).await.unwrap());
        // Once it ran out, it can be claimed again (and pruned before that).
        assert!(
            s2.claim_once("jti", "abc", T0 + MIN, T0 + 2 * MIN)
                .await
                .unwrap()
        );
        assert!(s1.prune(settled_before(T0 + 3 * MIN)).await.unwrap() >= 3);
        assert!(s1.claim_once("jti", "abc", T0, T0 + MIN).await.unwrap());
    }

    fn connection(hash: &str) -> AppConnection {
        AppConnection {
            token_sha256: hash.into(),
            mapping: "maxma".into(),
            base_url: "http://vendor".into(),
            credentials_sealed: "sealed-creds".into(),
            settings: json!({"x": 1}),
            external_search: true,
        }
    }

    /// How many app tenants hold a LoyaltyAPI token.
    async fn connected(s: &Arc<dyn Store>) -> usize {
        let all = s.app_tenants_changed(0).await.unwrap().tenants;
        all.iter().filter(|t| t.token_sha256.is_some()).count()
    }

    pub async fn app_tenant_lifecycle(db: &TestDb) {
        let s = db.store().await;
        assert_eq!(s.app_tenant("acc-1").await.unwrap(), None);
        assert_eq!(s.app_deactivate("acc-1", false, T0).await.unwrap(), None);
        assert_eq!(
            s.app_tenant("acc-1").await.unwrap(),
            None,
            "DELETE creates nothing"
        );
        assert!(!s.app_connect("acc-1", &connection("h1"), T0).await.unwrap());

        let t = s
            .app_activate("acc-1", "app", "Shop", Some("sealed-at"), T0)
            .await
            .unwrap();
        assert_eq!(t.state, AppState::SettingsRequired);
        assert_eq!(t.access_token_sealed.as_deref(), Some("sealed-at"));
        assert_eq!((t.created_ms, t.updated_ms), (T0, T0));
        // A repeat (MoySklad's retry) is the same answer; no access token keeps the old one.
        let again = s
            .app_activate("acc-1", "app", "Shop 2", None, T0 + 1)
            .await
            .unwrap();
        assert_eq!(again.state, AppState::SettingsRequired);
        assert_eq!(again.access_token_sealed.as_deref(), Some("sealed-at"));
        assert_eq!(again.account_name, "Shop 2");
        assert_eq!(again.created_ms, T0);
        assert_eq!(connected(&s).await, 0);

        // Connecting stores; activation comes with MoySklad's answer.
        assert!(
            s.app_connect("acc-1", &connection("h1"), T0 + 2)
                .await
                .unwrap()
        );
        let t = s.app_tenant("acc-1").await.unwrap().unwrap();
        assert_eq!(t.state, AppState::SettingsRequired);
        assert_eq!(t.token_sha256.as_deref(), Some("h1"));
        assert_eq!(t.settings, json!({"x": 1}));
        assert!(t.external_search);
        assert!(s.app_mark("acc-1", true, "ok", T0 + 3).await.unwrap());
        let t = s.app_tenant("acc-1").await.unwrap().unwrap();
        assert_eq!(
            (t.state, t.vendor_note.as_deref()),
            (AppState::Activated, Some("ok"))
        );
        assert_eq!(connected(&s).await, 1);

        // Suspend keeps everything; Resume comes back Activated.
        assert_eq!(
            s.app_deactivate("acc-1", false, T0 + 4).await.unwrap(),
            Some(AppState::Activated)
        );
        let t = s.app_tenant("acc-1").await.unwrap().unwrap();
        assert_eq!(t.state, AppState::Suspended);
        assert_eq!(t.token_sha256.as_deref(), Some("h1"));
        assert!(
            !s.app_connect("acc-1", &connection("h2"), T0).await.unwrap(),
            "suspended"
        );
        assert!(s.app_mark("acc-1", true, "late", T0 + 5).await.unwrap());
        assert_eq!(
            s.app_tenant("acc-1").await.unwrap().unwrap().state,
            AppState::Suspended,
            "a late answer does not resume"
        );
        assert_eq!(
            s.app_deactivate("acc-1", false, T0 + 5).await.unwrap(),
            Some(AppState::Suspended)
        );
        let t = s
            .app_activate("acc-1", "app", "Shop", None, T0 + 6)
            .await
            .unwrap();
        assert_eq!(t.state, AppState::Activated);
        assert_eq!(t.credentials_sealed.as_deref(), Some("sealed-creds"));

        // Uninstall forgets the secrets and the token; a new install needs settings again.
        assert_eq!(
            s.app_deactivate("acc-1", true, T0 + 7).await.unwrap(),
            Some(AppState::Activated)
        );
        let t = s.app_tenant("acc-1").await.unwrap().unwrap();
        assert_eq!(t.state, AppState::Uninstalled);
        assert_eq!(t.access_token_sealed, None);
        assert_eq!(t.credentials_sealed, None);
        assert_eq!(t.token_sha256, None);
        assert_eq!(
            t.mapping.as_deref(),
            Some("maxma"),
            "non-secret settings are kept"
        );
        assert_eq!(
            s.app_deactivate("acc-1", false, T0 + 8).await.unwrap(),
            Some(AppState::Uninstalled)
        );
        assert_eq!(
            s.app_tenant("acc-1").await.unwrap().unwrap().state,
            AppState::Uninstalled,
            "a suspend after uninstall stays uninstalled"
        );
        assert_eq!(connected(&s).await, 0);
        let t = s
            .app_activate("acc-1", "app", "Shop", Some("new"), T0 + 9)
            .await
            .unwrap();
        assert_eq!(t.state, AppState::SettingsRequired);

        // Accounts are isolated; a token hash belongs to one account only.
        s.app_activate("acc-2", "app", "Other", None, T0)
            .await
            .unwrap();
        assert!(s.app_connect("acc-2", &connection("h9"), T0).await.unwrap());
        assert_eq!(
            s.app_tenant("acc-1").await.unwrap().unwrap().token_sha256,
            None
        );
        assert!(
            s.app_connect("acc-1", &connection("h9"), T0).await.is_err(),
            "the same LoyaltyAPI token hash for two accounts is refused"
        );
        // Survives a reopen.
        drop(s);
        let s = db.store().await;
        assert_eq!(
            s.app_tenant("acc-2")
                .await
                .unwrap()
                .unwrap()
                .token_sha256
                .as_deref(),
            Some("h9")
        );
    }

    fn failure(source: FailureSource, text: &str, times: u64, first: i64, last: i64) -> AppFailure {
        AppFailure {
            source,
            text: text.into(),
            times,
            first_ms: first,
            last_ms: last,
        }
    }

    /// `(source, text, times, first, last)` of each failure listed, in order.
    async fn failures_of(
        s: &Arc<dyn Store>,
        account: &str,
    ) -> Vec<(FailureSource, String, u64, i64, i64)> {
        s.app_failures(account)
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.source, f.text, f.times, f.first_ms, f.last_ms))
            .collect()
    }

    pub async fn app_failures_counted_bounded_pruned_and_forgotten(db: &TestDb) {
        use FailureSource::{LoyaltyApi, Moysklad, VendorCheck};
        // Two handles: two instances writing one account's failures.
        let (s, other) = (db.store().await, db.store().await);
        // Nothing is kept for an account that never installed the app.
        s.app_failures_add("ghost", &[failure(LoyaltyApi, "x", 1, T0, T0)])
            .await
            .unwrap();
        assert!(s.app_failures("ghost").await.unwrap().is_empty());
        for account in ["acc-1", "acc-2"] {
            s.app_activate(account, "app", "Shop", None, T0)
                .await
                .unwrap();
        }
        s.app_failures_add("acc-1", &[]).await.unwrap();
        assert!(s.app_failures("acc-1").await.unwrap().is_empty());

        // One source and text is one failure, counted, whichever instance saw it; the same
        // text from another source is another.
        s.app_failures_add(
            "acc-1",
            &[
                failure(LoyaltyApi, "search → 502", 3, T0, T0 + 2),
                failure(VendorCheck, "bad key", 1, T0 + 1, T0 + 1),
            ],
        )
        .await
        .unwrap();
        other
            .app_failures_add(
                "acc-1",
                &[failure(LoyaltyApi, "search → 502", 2, T0 + 5, T0 + 9)],
            )
            .await
            .unwrap();
        other
            .app_failures_add(
                "acc-1",
                &[failure(Moysklad, "search → 502", 1, T0 + 3, T0 + 3)],
            )
            .await
            .unwrap();
        // A late write of earlier repeats widens the first time, never moves the last back.
        s.app_failures_add(
            "acc-1",
            &[failure(LoyaltyApi, "search → 502", 1, T0 - 5, T0 - 5)],
        )
        .await
        .unwrap();
        assert_eq!(
            failures_of(&other, "acc-1").await,
            [
                (LoyaltyApi, "search → 502".to_owned(), 6, T0 - 5, T0 + 9),
                (Moysklad, "search → 502".to_owned(), 1, T0 + 3, T0 + 3),
                (VendorCheck, "bad key".to_owned(), 1, T0 + 1, T0 + 1),
            ],
            "the last seen first"
        );

        // Bounded: twelve more, from both instances at once; the ten last seen stay.
        let mut tasks = Vec::new();
        for i in 0..12_i64 {
            let s = if i % 2 == 0 { s.clone() } else { other.clone() };
            tasks.push(tokio::spawn(async move {
                let at = T0 + 100 + i;
                s.app_failures_add("acc-1", &[failure(LoyaltyApi, &format!("e{i}"), 1, at, at)])
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let texts: Vec<String> = failures_of(&s, "acc-1")
            .await
            .into_iter()
            .map(|f| f.1)
            .collect();
        let newest: Vec<String> = (2..12).rev().map(|i| format!("e{i}")).collect();
        assert_eq!(texts, newest);
        assert_eq!(texts.len(), FAILURES_PER_ACCOUNT);
        s.app_failures_add("acc-2", &[failure(Moysklad, "refused", 1, T0, T0)])
            .await
            .unwrap();
        assert_eq!(
            failures_of(&s, "acc-2").await.len(),
            1,
            "accounts are apart"
        );

        // Pruned by when they were last seen, apart from the settled things' age.
        let gone = s
            .prune(PruneBefore {
                settled_ms: i64::MIN,
                failures_ms: T0 + 105,
            })
            .await
            .unwrap();
        assert_eq!(gone, 4, "e2, e3, e4 and acc-2's");
        assert_eq!(failures_of(&s, "acc-1").await.len(), 7);
        assert!(failures_of(&s, "acc-2").await.is_empty());

        // A suspended account keeps them; an uninstalled one's go, and a write that arrives
        // after the uninstall adds nothing.
        s.app_deactivate("acc-1", false, T0 + 200).await.unwrap();
        assert_eq!(failures_of(&s, "acc-1").await.len(), 7);
        other.app_deactivate("acc-1", true, T0 + 201).await.unwrap();
        assert!(failures_of(&s, "acc-1").await.is_empty());
        s.app_failures_add(
            "acc-1",
            &[failure(LoyaltyApi, "late", 1, T0 + 199, T0 + 199)],
        )
        .await
        .unwrap();
        assert!(failures_of(&s, "acc-1").await.is_empty());
        // Reinstalled, it starts with none and keeps new ones.
        s.app_activate("acc-1", "app", "Shop", None, T0 + 300)
            .await
            .unwrap();
        s.app_failures_add(
            "acc-1",
            &[failure(VendorCheck, "again", 1, T0 + 301, T0 + 301)],
        )
        .await
        .unwrap();
        assert_eq!(failures_of(&s, "acc-1").await.len(), 1);
    }

    /// `(account, change number)` of each tenant read.
    fn numbered(changes: &AppTenantChanges) -> Vec<(&str, i64)> {
        let tenants = changes.tenants.iter();
        tenants
            .map(|t| (t.account_id.as_str(), t.change_number))
            .collect()
    }

    pub async fn every_app_tenant_write_takes_the_next_change_number(db: &TestDb) {
        let s = db.store().await;
        let nothing = s.app_tenants_changed(0).await.unwrap();
        assert_eq!((nothing.tenants.len(), nothing.newest), (0, 0));

        let a = s.app_activate("a", "app", "A", None, T0).await.unwrap();
        let b = s.app_activate("b", "app", "B", None, T0).await.unwrap();
        assert!(a.change_number > 0 && b.change_number > a.change_number);
        let mut seen = b.change_number;
        let all = s.app_tenants_changed(0).await.unwrap();
        assert_eq!(numbered(&all), [("a", a.change_number), ("b", seen)]);
        assert_eq!(all.newest, seen);
        let none = s.app_tenants_changed(seen).await.unwrap();
        assert_eq!(
            (none.tenants.len(), none.newest),
            (0, seen),
            "nothing after"
        );

        // Each writer stamps the row it changes, with a number above every earlier one.
        let later = |s: Arc<dyn Store>, after: i64| async move {
            let changes = s.app_tenants_changed(after).await.unwrap();
            assert_eq!(changes.tenants.len(), 1, "{changes:?}");
            let t = changes.tenants.into_iter().next().unwrap();
            assert_eq!(
                (t.account_id.as_str(), t.change_number),
                ("a", changes.newest)
            );
            assert!(changes.newest > after);
            t
        };
        assert!(s.app_connect("a", &connection("h1"), T0 + 1).await.unwrap());
        let t = later(s.clone(), seen).await;
        assert_eq!(t.token_sha256.as_deref(), Some("h1"));
        seen = t.change_number;
        assert!(s.app_mark("a", true, "ok", T0 + 2).await.unwrap());
        let t = later(s.clone(), seen).await;
        assert_eq!(t.state, AppState::Activated);
        seen = t.change_number;
        s.app_deactivate("a", false, T0 + 3).await.unwrap();
        let t = later(s.clone(), seen).await;
        assert_eq!(t.state, AppState::Suspended);
        seen = t.change_number;
        let resumed = s.app_activate("a", "app", "A", None, T0 + 4).await.unwrap();
        let t = later(s.clone(), seen).await;
        assert_eq!(
            (t.state, t.change_number),
            (AppState::Activated, resumed.change_number)
        );
        seen = t.change_number;
        // One that stopped being connected is read too, so a reader can drop it.
        s.app_deactivate("a", true, T0 + 5).await.unwrap();
        let t = later(s.clone(), seen).await;
        assert_eq!((t.state, t.token_sha256), (AppState::Uninstalled, None));
        seen = t.change_number;

        // A write that changes nothing is not read.
        assert!(!s.app_connect("a", &connection("h2"), T0 + 6).await.unwrap());
        assert_eq!(
            s.app_deactivate("nobody", true, T0 + 6).await.unwrap(),
            None
        );
        assert!(
            s.app_tenants_changed(seen)
                .await
                .unwrap()
                .tenants
                .is_empty()
        );
        // The numbers go on after a reopen.
        drop(s);
        let s = db.store().await;
        let c = s.app_activate("c", "app", "C", None, T0 + 7).await.unwrap();
        assert!(c.change_number > seen);
        let changes = s.app_tenants_changed(seen).await.unwrap();
        assert_eq!(numbered(&changes), [("c", c.change_number)]);
        assert_eq!(
            numbered(&s.app_tenants_changed(0).await.unwrap()),
            [("b", b.change_number), ("a", seen), ("c", c.change_number)],
            "everything, in the order of the changes"
        );
    }

    /// Two store handles (two instances' pools) write app tenants at once while a third reads
    /// only what changed after the newest number it saw, again and again. If a write could
    /// become visible with a number below one the reader had already seen, the reader would
    /// never read it, and its copy of that account would differ from the store's in the end.
    pub async fn concurrent_app_writers_never_hide_a_change_from_a_reader(db: &TestDb) {
        const ACCOUNTS: usize = 24;
        const TASKS_PER_WRITER: usize = 6;
        const WRITES_PER_TASK: usize = 30;
        let (one, two, reader) = (db.store().await, db.store().await, db.store().await);
        for i in 0..ACCOUNTS {
            one.app_activate(&format!("acc-{i}"), "app", "start", None, T0)
                .await
                .unwrap();
        }
        let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let read = {
            let writing = writing.clone();
            tokio::spawn(async move {
                let mut copy = std::collections::BTreeMap::new();
                let (mut seen, mut reads) = (0, 0);
                loop {
                    // Read once more after the writers are done.
                    let last = !writing.load(std::sync::atomic::Ordering::SeqCst);
                    let changes = reader.app_tenants_changed(seen).await.unwrap();
                    reads += 1;
                    for t in changes.tenants {
                        assert!(t.change_number > seen, "{} after {seen}", t.change_number);
                        seen = t.change_number;
                        copy.insert(t.account_id.clone(), t);
                    }
                    assert_eq!(changes.newest, seen);
                    if last {
                        return (copy, reads);
                    }
                }
            })
        };
        let mut tasks = Vec::new();
        for (w, store) in [one, two].into_iter().enumerate() {
            for task in 0..TASKS_PER_WRITER {
                let s = store.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..WRITES_PER_TASK {
                        let account = format!("acc-{}", (task * 7 + i * 5 + w) % ACCOUNTS);
                        let label = format!("w{w}-t{task}-{i}");
                        let now = T0 + i as i64;
                        match i % 3 {
                            0 => {
                                s.app_activate(&account, "app", &label, None, now)
                                    .await
                                    .unwrap();
                            }
                            1 => {
                                s.app_connect(&account, &connection(&label), now)
                                    .await
                                    .unwrap();
                            }
                            _ => {
                                s.app_mark(&account, true, &label, now).await.unwrap();
                            }
                        }
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        writing.store(false, std::sync::atomic::Ordering::SeqCst);
        let (copy, reads) = read.await.unwrap();
        assert!(
            reads > 2,
            "the reader read while they wrote ({reads} reads)"
        );

        let store = db
            .store()
            .await
            .app_tenants_changed(0)
            .await
            .unwrap()
            .tenants;
        let mut numbers: Vec<i64> = store.iter().map(|t| t.change_number).collect();
        numbers.dedup();
        assert_eq!(
            numbers.len(),
            ACCOUNTS,
            "one number per write: no two rows share one"
        );
        let store: std::collections::BTreeMap<_, _> = store
            .into_iter()
            .map(|t| (t.account_id.clone(), t))
            .collect();
        assert_eq!(copy, store, "the reader's copy is the store");
    }

    pub async fn the_migration_numbers_the_app_tenants_already_there(db: &TestDb) {
        db.create_schema_version_2().await;
        db.raw(
            "INSERT INTO app_tenants (account_id, app_id, account_name, state, created_ms,
                                      updated_ms)
             VALUES ('late', 'app', 'L', 'settings_required', 1, 300),
                    ('early', 'app', 'E', 'settings_required', 1, 100),
                    ('b-same', 'app', 'B', 'settings_required', 1, 200),
                    ('a-same', 'app', 'A', 'settings_required', 1, 200)",
        )
        .await;
        let s = db.store().await;
        let all = s.app_tenants_changed(0).await.unwrap();
        assert_eq!(
            numbered(&all),
            [("early", 1), ("a-same", 2), ("b-same", 3), ("late", 4)],
            "in the order they last changed"
        );
        assert_eq!(all.newest, 4);
        let next = s.app_mark("early", false, "note", T0).await;
        assert!(next.unwrap());
        let changes = s.app_tenants_changed(4).await.unwrap();
        assert_eq!(
            numbered(&changes),
            [("early", 5)],
            "the counter goes on from them"
        );
    }
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
