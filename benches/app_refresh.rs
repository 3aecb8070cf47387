//! One refresh of the MoySklad-app tenants with 10,000 connected accounts (issue #26): its
//! time and the rows it reads, on SQLite and (with `LB_TEST_POSTGRES_URL`) PostgreSQL, for
//!
//! - a full read: every row read and every account's credentials opened, the map rebuilt —
//!   what every refresh did, every second, before the change numbers (and what the 5-minute
//!   safety net does now);
//! - nothing changed: the read after the newest change number seen;
//! - one account changed (MoySklad's answer recorded on it) since the last refresh.
//!
//! Run: `cargo bench --bench app_refresh` (`LB_BENCH_ACCOUNTS` to change the 10,000). The
//! accounts are seeded through the store API (install, connect, MoySklad's answer: three
//! writes each); PostgreSQL gets a database of its own, dropped at the end.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loyalty_bridge::Config;
use loyalty_bridge::app::AppContext;
use loyalty_bridge::app::refresh::{AppRefresh, Refreshed};
use loyalty_bridge::loyalty::auth::Tenants;
use loyalty_bridge::mapping::registry::Mappings;
use loyalty_bridge::secret::Secret;
use loyalty_bridge::store::{AppConnection, PgStore, SqliteStore, Store, now_ms};

const ENCRYPTION_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const FULL_RUNS: usize = 7;
const QUICK_RUNS: usize = 101;

/// The account ids, as MoySklad's (UUIDs).
fn account(i: usize) -> String {
    format!("1f2e3d4c-0000-4000-8000-{i:012}")
}

fn app_config() -> Config {
    let mappings = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let text = format!(
        r#"
        [moysklad_app]
        app_id = "4c5b1a2e-7d3f-4a9b-8c1d-2e3f4a5b6c7d"
        app_uid = "loyalty-bridge.bench"
        secret_key = "${{SECRET}}"
        public_base_url = "https://bridge.example"
        encryption_key = "${{ENC_KEY}}"
        mappings_dir = "{}"
        "#,
        mappings.display()
    );
    let env = |name: &str| match name {
        "SECRET" => Some("app-secret-key-0123456789abcdef".to_owned()),
        "ENC_KEY" => Some(ENCRYPTION_KEY.to_owned()),
        _ => None,
    };
    Config::parse(&text, "bench", Path::new("."), &env).expect("the bench config")
}

/// Installs, connects and activates `count` accounts, several at a time.
async fn seed(ctx: &Arc<AppContext>, count: usize) {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (ctx, next) = (ctx.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let id = account(i);
                let store = &ctx.store;
                let now = now_ms();
                store
                    .app_activate(&id, &ctx.config.app_id, "Shop", Some("sealed"), now)
                    .await
                    .unwrap();
                let credentials =
                    BTreeMap::from([("api_key".to_owned(), Secret::new(format!("key-{i}")))]);
                let connection = AppConnection {
                    token_sha256: hex_sha256(&format!("token-{i}")),
                    mapping: "maxma".into(),
                    base_url: "https://api.maxma.com".into(),
                    credentials_sealed: ctx.seal_credentials(&id, &credentials),
                    settings: serde_json::json!({}),
                    external_search: false,
                };
                assert!(store.app_connect(&id, &connection, now).await.unwrap());
                assert!(store.app_mark(&id, true, "Activated", now).await.unwrap());
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    eprintln!(
        "  seeded {count} accounts in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn hex_sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Milliseconds of each run, and what the last one read.
struct Timings {
    ms: Vec<f64>,
    last: Option<Refreshed>,
}

impl Timings {
    fn new() -> Timings {
        Timings {
            ms: Vec::new(),
            last: None,
        }
    }

    fn add(&mut self, took: Duration, refreshed: Refreshed) {
        self.ms.push(took.as_secs_f64() * 1000.0);
        self.last = Some(refreshed);
    }

    fn row(&self, backend: &str, what: &str) -> String {
        let mut ms = self.ms.clone();
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        let rows = self.last.map_or(0, |r| r.rows);
        format!(
            "| {backend} | {what} | {rows} | {median:.3} | {:.3}–{:.3} | {} |",
            ms[0],
            ms[ms.len() - 1],
            ms.len()
        )
    }
}

/// Times the three kinds of refresh on `store`, seeded with `count` accounts.
async fn measure(backend: &str, store: Arc<dyn Store>, count: usize) -> Vec<String> {
    let config = app_config();
    let app_config = config.moysklad_app.clone().expect("[moysklad_app]");
    let ctx = Arc::new(AppContext::new(app_config, "", store.clone()).expect("the app context"));
    seed(&ctx, count).await;
    let tenants = Tenants::new([]);
    let mappings = Arc::new(Mappings::load([]).expect("no mappings"));
    let mut refresh = AppRefresh::new();
    // The first one also compiles the mapping: not timed.
    let first = refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
    assert_eq!((first.full, first.rows), (true, count));
    assert_eq!(tenants.active_apps(), count);

    let mut full = Timings::new();
    for _ in 0..FULL_RUNS {
        refresh.reread_all();
        let started = Instant::now();
        let refreshed = refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
        full.add(started.elapsed(), refreshed);
        assert!(refreshed.full && refreshed.rows == count);
    }
    let mut unchanged = Timings::new();
    for _ in 0..QUICK_RUNS {
        let started = Instant::now();
        let refreshed = refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
        unchanged.add(started.elapsed(), refreshed);
        assert!(!refreshed.full && refreshed.rows == 0);
    }
    let mut one = Timings::new();
    for i in 0..QUICK_RUNS {
        let id = account(i * 97 % count);
        let note = format!("answer {i}");
        assert!(store.app_mark(&id, true, &note, now_ms()).await.unwrap());
        let started = Instant::now();
        let refreshed = refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
        one.add(started.elapsed(), refreshed);
        assert!(!refreshed.full && refreshed.rows == 1);
    }
    assert_eq!(tenants.active_apps(), count);
    vec![
        full.row(backend, "full read (before; now every 5 min)"),
        unchanged.row(backend, "nothing changed"),
        one.row(backend, "one account changed"),
    ]
}

/// The plan of the read after the newest change number (the refresh's read when nothing
/// changed), as the database chooses it for that number.
fn sqlite_plan(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    let newest: i64 = conn
        .query_row("SELECT MAX(change_number) FROM app_tenants", [], |row| {
            row.get(0)
        })
        .unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN SELECT * FROM app_tenants WHERE change_number > {newest} \
             ORDER BY change_number"
        ))
        .unwrap();
    let details: Vec<String> = stmt
        .query_map([], |row| row.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    details.join("; ")
}

async fn postgres_plan(client: &tokio_postgres::Client) -> String {
    let newest: i64 = client
        .query_one("SELECT MAX(change_number) FROM app_tenants", &[])
        .await
        .unwrap()
        .get(0);
    let rows = client
        .query(
            &format!(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
                 SELECT * FROM app_tenants WHERE change_number > {newest}
                  ORDER BY change_number"
            ),
            &[],
        )
        .await
        .unwrap();
    let lines: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    lines.join(" / ")
}

async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn main() {
    let count: usize = std::env::var("LB_BENCH_ACCOUNTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut table = vec![
            "| backend | refresh | rows read | median ms | min–max ms | runs |".to_owned(),
            "|---|---|---:|---:|---|---:|".to_owned(),
        ];
        let mut plans = Vec::new();

        eprintln!("SQLite:");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.sqlite3");
        let store = Arc::new(SqliteStore::open(&path).await.unwrap());
        table.extend(measure("SQLite", store, count).await);
        plans.push(format!("SQLite: {}", sqlite_plan(&path)));

        match std::env::var("LB_TEST_POSTGRES_URL") {
            Err(_) => eprintln!("PostgreSQL: skipped (LB_TEST_POSTGRES_URL is not set)"),
            Ok(url) => {
                eprintln!("PostgreSQL:");
                let admin: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
                let name = format!("lb_bench_{}", uuid::Uuid::new_v4().simple());
                connect(&admin)
                    .await
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                let mut config = admin.clone();
                config.dbname(&name);
                let store = Arc::new(PgStore::open_config(config.clone(), 8).await.unwrap());
                table.extend(measure("PostgreSQL", store.clone(), count).await);
                drop(store);
                plans.push(format!(
                    "PostgreSQL: {}",
                    postgres_plan(&connect(&config).await).await
                ));
                connect(&admin)
                    .await
                    .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
                    .await
                    .unwrap();
            }
        }
        println!("{count} accounts, all connected and activated\n");
        for line in table {
            println!("{line}");
        }
        println!("\nThe read after the newest change number, as planned:");
        for plan in plans {
            println!("- {plan}");
        }
    });
}
