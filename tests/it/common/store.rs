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
    /// A fresh database on the PostgreSQL server `LB_TEST_POSTGRES_URL` names (an account that
    /// may CREATE DATABASE); `None` (the test is skipped, saying so) when it is not set, unless
    /// `LB_REQUIRE_POSTGRES=1`, as `.ci/run` sets.
    pub async fn postgres() -> Option<TestStore> {
        let Ok(url) = std::env::var("LB_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("LB_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "LB_REQUIRE_POSTGRES=1 but LB_TEST_POSTGRES_URL is not set"
            );
            eprintln!("SKIPPED: PostgreSQL test (LB_TEST_POSTGRES_URL is not set)");
            return None;
        };
        let admin: tokio_postgres::Config = url.parse().expect("LB_TEST_POSTGRES_URL is a URL");
        let (client, connection) = admin
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
        tokio::spawn(connection);
        let name = format!("lb_test_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        // Same server and account, the new database (the test databases live as long as the
        // server: .ci/run's is a throwaway).
        let (base, _) = url
            .split_once('?')
            .map_or((url.as_str(), ""), |(b, q)| (b, q));
        let server = base
            .rsplit_once('/')
            .filter(|(head, _)| head.contains("://") && !head.ends_with('/'))
            .map_or(base, |(head, _)| head);
        Some(TestStore::Postgres(format!("{server}/{name}")))
    }
}
