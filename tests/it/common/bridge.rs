//! One way to start an in-process bridge for a test: [`TestBridge::builder`] writes its config
//! (store, `[server]` keys, tenants, `[moysklad_app]`) and serves it on 127.0.0.1:0 with
//! `loyalty_bridge::run`, as `main` does with a real listener.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use loyalty_bridge::Config;
use loyalty_bridge::server::ServeError;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::store::TestStore;
use super::tenant::TestTenant;
use super::{METRICS_TOKEN, call_bridge_on, client};

/// What a bridge is started with; [`TestBridgeBuilder::start`] serves it.
pub struct TestBridgeBuilder {
    store: String,
    server: Vec<String>,
    moysklad_app: Option<String>,
    tenants: Vec<TestTenant>,
    env: BTreeMap<String, String>,
    listener: Option<TcpListener>,
    wait_until_ready: bool,
}

impl TestBridgeBuilder {
    /// `[server]` keys, as TOML lines (may be called again: the lines add up).
    pub fn server(mut self, keys: impl Into<String>) -> Self {
        self.server.push(keys.into());
        self
    }

    /// The store: a test's SQLite file or PostgreSQL database (default: SQLite in memory).
    pub fn store(self, store: &TestStore) -> Self {
        self.store_section(store.section())
    }

    /// The whole `[store]` section, as TOML.
    pub fn store_section(mut self, section: impl Into<String>) -> Self {
        self.store = section.into();
        self
    }

    /// One more tenant (in order: the first is the one [`TestBridge::call`] calls as).
    pub fn tenant(mut self, tenant: TestTenant) -> Self {
        self.tenants.push(tenant);
        self
    }

    /// A `[moysklad_app]` section with these keys, as TOML lines.
    pub fn moysklad_app(mut self, keys: impl Into<String>) -> Self {
        self.moysklad_app = Some(keys.into());
        self
    }

    /// What `${name}` expands to in the config (tenants' tokens and credentials are added by
    /// themselves; `LB_METRICS_TOKEN` is [`METRICS_TOKEN`] unless set here).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Serve on this listener (bound by the test when its config must name the bridge's URL).
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Return as soon as the server task is spawned, without asking `/readyz` first.
    pub fn without_waiting_until_ready(mut self) -> Self {
        self.wait_until_ready = false;
        self
    }

    /// The config text: secrets as `${VAR}` (the config refuses them in clear), their values
    /// in [`TestBridgeBuilder::env_vars`].
    pub fn toml(&self) -> String {
        let mut text = format!("{}\n", self.store);
        if !self.server.is_empty() {
            text += &format!("[server]\n{}\n", self.server.join("\n"));
        }
        if let Some(keys) = &self.moysklad_app {
            text += &format!("[moysklad_app]\n{keys}\n");
        }
        for (i, tenant) in self.tenants.iter().enumerate() {
            text += &tenant.toml(&format!("LB_TENANT_{i}"));
        }
        text
    }

    /// The variables the config text refers to, and their values.
    pub fn env_vars(&self) -> BTreeMap<String, String> {
        let mut vars = self.env.clone();
        for (i, tenant) in self.tenants.iter().enumerate() {
            vars.extend(tenant.env_vars(&format!("LB_TENANT_{i}")));
        }
        vars
    }

    /// The config, parsed and validated (a test that runs the server itself, or reads it).
    pub fn config(&self) -> Config {
        let vars = self.env_vars();
        let text = self.toml();
        Config::parse(&text, "test bridge", Path::new("."), &|name| {
            vars.get(name).cloned()
        })
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// Serves the config on 127.0.0.1:0 (or the given listener); answering once this returns,
    /// unless told not to wait (`/readyz` was called, and counts as a request).
    pub async fn start(mut self) -> TestBridge {
        let config = self.config();
        let listener = match self.listener.take() {
            Some(listener) => listener,
            None => TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(loyalty_bridge::run(listener, config.clone(), async {
            // A dropped sender stops the bridge too.
            let _ = rx.await;
        }));
        let bridge = TestBridge {
            addr,
            url: format!("http://{addr}"),
            config,
            tokens: self.tenants.iter().map(|t| t.token.clone()).collect(),
            http: client(),
            shutdown: Some(tx),
            task: Some(task),
        };
        if self.wait_until_ready {
            // Compiling the mappings takes a moment: be ready before a test starts timing. (A
            // client of its own, whose connection closes with it.)
            let ready = client().get(bridge.url_of("/readyz")).send().await.unwrap();
            assert_eq!(ready.status(), StatusCode::OK);
        }
        bridge
    }
}

/// A bridge served in-process; dropping it begins its shutdown (without waiting for it).
pub struct TestBridge {
    addr: SocketAddr,
    url: String,
    config: Config,
    tokens: Vec<String>,
    /// The client of [`TestBridge::call`], kept: building one takes about 40 ms in a debug
    /// build, so ten calls "at once", each through a new client, would not be.
    http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestBridge {
    /// No tenants, SQLite in memory, no `[server]` keys, waits until ready: add what the test
    /// needs.
    pub fn builder() -> TestBridgeBuilder {
        TestBridgeBuilder {
            store: "[store]\npath = \":memory:\"".into(),
            server: Vec::new(),
            moysklad_app: None,
            tenants: Vec::new(),
            env: BTreeMap::from([("LB_METRICS_TOKEN".into(), METRICS_TOKEN.into())]),
            listener: None,
            wait_until_ready: true,
        }
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of `path` (and query) on it.
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The config it serves.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The MoySklad token of its first tenant.
    pub fn token(&self) -> &str {
        self.tokens.first().expect("the bridge has a tenant")
    }

    /// One LoyaltyAPI call as the first tenant: the status and the JSON answer (`Null` if empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        self.call_as(self.token(), method, path, body).await
    }

    /// One LoyaltyAPI call with `token`.
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        call_bridge_on(&self.http, &self.url, token, method, path, body).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path_and_query: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path_and_query, None).await
    }

    /// Signals shutdown; the server stops accepting and drains in-flight requests.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts it down and waits until the server task has ended, without an error.
    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    /// [`TestBridge::stop`] for a bridge the test does not own (a world's).
    pub async fn stop_in_place(&mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            task.await
                .expect("the server task did not panic")
                .expect("the server stopped without an error");
        }
    }

    /// [`TestBridge::stop`], failing the test when the server takes longer than `within`.
    pub async fn stop_within(self, within: Duration) {
        tokio::time::timeout(within, self.stop())
            .await
            .expect("server stopped");
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// `tests/fixtures/mappings/unconfigured.toml`: a mapping that maps no operation (every call
/// ends in 503 after parsing).
pub(super) fn unconfigured_mapping() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mappings/unconfigured.toml")
}

/// `mappings/<vendor>.toml` of the checkout.
pub(super) fn vendor_mapping(vendor: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("mappings/{vendor}.toml"))
}
