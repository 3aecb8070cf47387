//! A store for a test's bridges: a fresh SQLite file, or a fresh PostgreSQL database.

pub enum TestStore {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl TestStore {
    pub fn sqlite() -> TestStore {
        let dir = std::env::temp_dir().join(format!(
            "lb-test-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        TestStore::Sqlite(dir.join("bridge.sqlite3"))
    }

    /// The SQLite file, if that is what it is.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            TestStore::Sqlite(path) => Some(path),
            TestStore::Postgres(_) => None,
        }
    }

    /// The `[store]` section of a config that uses it.
    pub fn section(&self) -> String {
        match self {
            TestStore::Sqlite(path) => format!(
                "[store]\nbackend = \"sqlite\"\npath = \"{}\"\n",
                path.display()
            ),
            TestStore::Postgres(url) => {
                format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n")
            }
        }
    }

    /// A handle of it of the test's own, as another instance would open it.
    pub async fn open(&self) -> std::sync::Arc<dyn loyalty_bridge::store::Store> {
        use loyalty_bridge::store::{PgStore, SqliteStore};
        match self {
            TestStore::Sqlite(path) => std::sync::Arc::new(SqliteStore::open(path).await.unwrap()),
            TestStore::Postgres(url) => std::sync::Arc::new(PgStore::open(url, 2).await.unwrap()),
        }
    }

    /// Whether two bridges may share it (both backends allow it; the test says so).
    pub fn shared_by_instances(&self) -> bool {
        true
    }
}

impl Drop for TestStore {
    /// The SQLite file's folder is the test's own: nothing of it stays in the temp dir. (A
    /// PostgreSQL test database stays on its server, which `.ci/run` starts fresh.)
    fn drop(&mut self) {
        if let TestStore::Sqlite(path) = self
            && let Some(dir) = path.parent()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl TestStore {
    /// A fresh database on the PostgreSQL server `LB_TEST_POSTGRES_URL` names, or `None` (see
    /// [`FreshDatabase::create`]). It stays on its server, which `.ci/run` starts fresh.
    pub async fn postgres() -> Option<TestStore> {
        let db = FreshDatabase::create("PostgreSQL test").await?;
        Some(TestStore::Postgres(db.url))
    }
}

/// A database just created on the PostgreSQL server `LB_TEST_POSTGRES_URL` names (an account
/// that may CREATE DATABASE).
pub struct FreshDatabase {
    /// The server's account, as the variable gives it (to drop the database again).
    pub admin: tokio_postgres::Config,
    pub name: String,
    /// The same server and account, on the new database.
    pub config: tokio_postgres::Config,
    pub url: String,
}

impl FreshDatabase {
    /// `None` (the test, `what`, is skipped, saying so) when `LB_TEST_POSTGRES_URL` is not set,
    /// unless `LB_REQUIRE_POSTGRES=1`, as `.ci/run` sets.
    pub async fn create(what: &str) -> Option<FreshDatabase> {
        let Ok(url) = std::env::var("LB_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("LB_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "LB_REQUIRE_POSTGRES=1 but LB_TEST_POSTGRES_URL is not set"
            );
            eprintln!(
                "SKIPPED: {what} (LB_TEST_POSTGRES_URL is not set; .ci/run starts PostgreSQL and sets it)"
            );
            return None;
        };
        let admin: tokio_postgres::Config = url.parse().expect("LB_TEST_POSTGRES_URL is a URL");
        let name = format!("lb_test_{}", uuid::Uuid::new_v4().simple());
        connect_postgres(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        let mut config = admin.clone();
        config.dbname(&name);
        // The URL of the same server and account, without the query.
        let (base, _) = url
            .split_once('?')
            .map_or((url.as_str(), ""), |(b, q)| (b, q));
        let server = base
            .rsplit_once('/')
            .filter(|(head, _)| head.contains("://") && !head.ends_with('/'))
            .map_or(base, |(head, _)| head);
        let url = format!("{server}/{name}");
        Some(FreshDatabase {
            admin,
            name,
            config,
            url,
        })
    }
}

/// A client of the PostgreSQL server `config` names, its connection driven on the runtime.
pub async fn connect_postgres(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}
