//! Starting a real bridge on 127.0.0.1:0 for black-box tests.
#![allow(dead_code)]

pub mod moysklad;

use std::net::SocketAddr;
use std::path::Path;

use loyalty_bridge::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TOKEN_A: &str = "token-a-0123456789";
pub const TOKEN_B: &str = "token-b-9876543210";
pub const API_KEY_A: &str = "maxma-key-of-shop-a";

fn env(name: &str) -> Option<String> {
    match name {
        "LB_TOKEN_A" => Some(TOKEN_A.into()),
        "LB_TOKEN_B" => Some(TOKEN_B.into()),
        "LB_KEY_A" => Some(API_KEY_A.into()),
        _ => None,
    }
}

/// A mapping that maps no operation (every call ends in 503 after parsing).
pub fn unconfigured_mapping() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mappings/unconfigured.toml")
        .display()
        .to_string()
}

/// Two tenants, A and B, plus whatever `[server]` keys the test needs.
pub fn config(server_keys: &str) -> Config {
    let mapping = unconfigured_mapping();
    let text = format!(
        r#"
        [store]
        path = ":memory:"
        [server]
        {server_keys}

        [[tenants]]
        name = "shop-a"
        token = "${{LB_TOKEN_A}}"
        mapping = "{mapping}"
        base_url = "http://127.0.0.1:9"
        credentials = {{ api_key = "${{LB_KEY_A}}" }}

        [[tenants]]
        name = "shop-b"
        token = "${{LB_TOKEN_B}}"
        mapping = "{mapping}"
        base_url = "http://127.0.0.1:9"
        "#
    );
    Config::parse(&text, "test config", Path::new("."), &env).expect("test config is valid")
}

pub struct Bridge {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<Result<(), loyalty_bridge::server::ServeError>>>,
}

impl Bridge {
    pub async fn start(server_keys: &str) -> Bridge {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(loyalty_bridge::run(listener, config(server_keys), async {
            let _ = rx.await;
        }));
        Bridge {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown; the server stops accepting and drains in-flight requests.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

pub fn client() -> reqwest::Client {
    loyalty_bridge::upstream::install_crypto();
    // No automatic decompression: the gzip tests look at the raw answer.
    reqwest::Client::builder().no_gzip().build().unwrap()
}

/// The single error of an envelope, checked for the keys LoyaltyAPI requires.
pub fn the_error(body: &serde_json::Value) -> &serde_json::Value {
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("not an envelope: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    let e = &errors[0];
    assert!(e["error"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
    assert!(
        e["error_message"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert!(e["code"].is_i64(), "{body}");
    e
}

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/loyaltyapi")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `.toml` files of a folder of the checkout, sorted; the folder must not be empty.
pub fn toml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .toml files in {}", dir.display());
    files
}

/// The message an invalid example file must fail with: its first line, `# error: <text>`.
pub fn expected_error(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# error: "))
        .unwrap_or_else(|| panic!("{}: first line must be `# error: <text>`", path.display()))
        .to_string()
}

/// One LoyaltyAPI call to a bridge as `token`: the status and the JSON answer (`Null` if empty).
pub async fn call_bridge(
    bridge: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut req = client()
        .request(method, format!("{bridge}{path}"))
        .header("Lognex-Discount-API-Auth-Token", token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    let value = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, value)
}

/// Serves `sandbox` (the MAXMA emulator) on 127.0.0.1:0: its base URL, and the sender that
/// stops it (dropping it stops it too).
pub async fn start_maxma(sandbox: emulators::maxma::MaxmaSandbox) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(sandbox.serve(listener, async {
        let _ = rx.await;
    }));
    (url, tx)
}

/// A bridge with one tenant, "shop", on `mappings/maxma.toml` against `vendor_url`, answering
/// once this returns (its `/readyz` was called, and counts as a request); MoySklad's
/// token is [`TOKEN_A`], MAXMA's key [`API_KEY_A`], `LB_METRICS_TOKEN` is "metrics-secret".
/// `server_keys` and `tenant_keys` are TOML lines added to `[server]` and to the tenant.
pub async fn start_maxma_bridge(
    vendor_url: &str,
    server_keys: &str,
    tenant_keys: &str,
) -> (String, oneshot::Sender<()>) {
    start_maxma_bridge_on(
        "[store]\npath = \":memory:\"",
        vendor_url,
        server_keys,
        tenant_keys,
    )
    .await
}

/// [`start_maxma_bridge`] with the given `[store]` section (e.g. [`TestStore::section`]).
pub async fn start_maxma_bridge_on(
    store_section: &str,
    vendor_url: &str,
    server_keys: &str,
    tenant_keys: &str,
) -> (String, oneshot::Sender<()>) {
    let mapping = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/maxma.toml");
    let text = format!(
        r#"
        {store_section}
        [server]
        {server_keys}
        [[tenants]]
        name = "shop"
        token = "${{LB_TOKEN_A}}"
        mapping = "{}"
        base_url = "{vendor_url}"
        credentials = {{ api_key = "${{LB_KEY_A}}" }}
        {tenant_keys}
        "#,
        mapping.display()
    );
    let env = |name: &str| match name {
        "LB_METRICS_TOKEN" => Some("metrics-secret".to_string()),
        other => env(other),
    };
    let config = Config::parse(&text, "maxma bridge", Path::new("."), &env).unwrap();
    start_ready_bridge(config).await
}

/// A bridge serving `config` on 127.0.0.1:0, answering once this returns (its `/readyz` was
/// called): its base URL, and the sender that stops it (dropping it stops it too).
pub async fn start_ready_bridge(config: Config) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(loyalty_bridge::run(listener, config, async {
        let _ = rx.await;
    }));
    // Compiling the mapping takes a moment: be ready before a test starts timing anything.
    let ready = client().get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    (url, tx)
}

/// Scrapes `{bridge}/metrics` (with a bearer token when given): the status and the text.
pub async fn scrape(bridge: &str, bearer: Option<&str>) -> (reqwest::StatusCode, String) {
    let mut req = client().get(format!("{bridge}/metrics"));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// The value of one sample in an exposition (`0` when the series is absent), e.g.
/// `sample(&text, "loyalty_bridge_requests_total", &[("op", "counterparty.detail"), ("status", "200")])`.
/// Labels must be given in the order the bridge writes them.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let series = if labels.is_empty() {
        name.to_string()
    } else {
        let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}}", inner.join(","))
    };
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str())?.strip_prefix(' '))
        .map_or(0.0, |v| {
            v.split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|e| panic!("{series}: {e}"))
        })
}

/// A store for a test's bridges: a fresh SQLite file, or a fresh PostgreSQL database.
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
