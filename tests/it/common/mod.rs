//! What the integration tests share: starting bridges ([`TestBridge`]) and emulators
//! ([`ServedEmulator`]), one world per vendor ([`MaxmaWorld`], [`UdsWorld`], [`PbWorld`], and
//! [`moysklad::AppWorld`] for the MoySklad app), stores ([`TestStore`]), calls and checks.
#![allow(dead_code)]

mod bridge;
mod emulator;
pub mod moysklad;
mod process;
mod store;
mod tenant;
mod worlds;

use std::path::Path;

use tokio::sync::Mutex;

pub use bridge::{TestBridge, TestBridgeBuilder};
pub use emulator::ServedEmulator;
pub use process::BridgeProcess;
pub use store::{FreshDatabase, TestStore, connect_postgres};
pub use tenant::{PB_TOKEN, TestTenant, UDS_COMPANY, UDS_KEY};
pub use worlds::{MaxmaWorld, PbWorld, UdsWorld};

pub const TOKEN_A: &str = "token-a-0123456789";
pub const TOKEN_B: &str = "token-b-9876543210";
pub const API_KEY_A: &str = "maxma-key-of-shop-a";
/// What `${LB_METRICS_TOKEN}` expands to in a test bridge's config.
pub const METRICS_TOKEN: &str = "metrics-secret";

/// Held by the tests that measure time and by the CPU-heavy ones, so that none of them runs
/// while another does. All the integration tests run in one process (on 2 test threads; the
/// per-file binaries used to run apart), and a proptest run, the load test or a rate limiter
/// being hammered next to a test that times a bridge would make its clock lie. Async tests:
/// `let _alone = common::alone().lock().await;`, sync ones `common::alone().blocking_lock()`.
pub fn alone() -> &'static Mutex<()> {
    static ALONE: Mutex<()> = Mutex::const_new(());
    &ALONE
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
    call_bridge_on(&client(), bridge, token, method, path, body).await
}

/// [`call_bridge`] through `http` (and its kept-alive connections).
pub async fn call_bridge_on(
    http: &reqwest::Client,
    bridge: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut req = http
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

/// A JSON number as an exact decimal (from its text: the tests compare money to the kopeck).
pub fn dec(v: &serde_json::Value) -> rust_decimal::Decimal {
    v.to_string()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {v}"))
}

/// A decimal literal.
pub fn d(s: &str) -> rust_decimal::Decimal {
    s.parse().unwrap()
}
