//! `kill -9` of the real binary, with sales queued in the outbox and others in flight at the
//! vendor: after a restart every sale MoySklad was told is recorded reaches MAXMA exactly once,
//! and those that got no answer, repeated as MoySklad repeats them, too. On both store
//! backends (PostgreSQL when `LB_TEST_POSTGRES_URL` is set).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BridgeProcess, ServedEmulator, TestStore};
use emulators::maxma::{Fault, MaxmaSandbox, SandboxClient};
use http::StatusCode;
use serde_json::{Value, json};

pub(crate) const TOKEN: &str = "crash-test-token-0001";
pub(crate) const KEY: &str = "crash-test-maxma-key";
pub(crate) const PHONE: &str = "79161234567";

pub(crate) fn sale(id: &str) -> Value {
    json!({"retailStore": {"meta": {"id": "s1"}, "name": "Касса 1"}, "name": "00042",
           "meta": {"id": id}, "agent": {"meta": {"id": "c-1"}, "phone": format!("+{PHONE}")},
           "positions": [{"assortment": {"meta": {"id": "sku-coffee"}}, "quantity": 1, "price": 200.00}],
           "bonusProgram": {"bonusValueToSpend": 0, "bonusValueToEarn": 10}, "cashSum": 200.00, "noCashSum": 0})
}

/// Sends one sale; `None` when the connection failed (the bridge was killed under it).
pub(crate) async fn post_sale(
    client: &reqwest::Client,
    addr: &str,
    id: &str,
) -> Option<StatusCode> {
    client
        .post(format!("http://{addr}/retaildemand"))
        .header("Lognex-Discount-API-Auth-Token", TOKEN)
        .header("content-type", "application/json")
        .body(sale(id).to_string())
        .send()
        .await
        .ok()
        .map(|r| r.status())
}

/// How many times MAXMA confirmed each txid.
pub(crate) fn confirmed(sandbox: &MaxmaSandbox) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for (path, body) in sandbox.requests() {
        if path == "/confirm-ticket" {
            if let Some(txid) = body["txid"].as_str() {
                *seen.entry(txid.to_string()).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// MAXMA with the crash tests' customer ([`PHONE`]), served.
pub(crate) async fn maxma_with_customer() -> (MaxmaSandbox, ServedEmulator) {
    let sandbox = MaxmaSandbox::new(KEY);
    sandbox.add_client(SandboxClient {
        phone: Some(PHONE.into()),
        external_id: Some("c-1".into()),
        ..Default::default()
    });
    let vendor = ServedEmulator::start(sandbox.clone()).await;
    (sandbox, vendor)
}

/// The environment the config of [`write_config`] reads its token and key from.
pub(crate) const ENV: [(&str, &str); 2] = [("LB_CRASH_TOKEN", TOKEN), ("LB_CRASH_KEY", KEY)];

/// A config file in `dir` for the binary: `store`, JSON logs (the process helper reads the
/// address from them), tenant "shop" on `vendor` with these `limits` keys.
pub(crate) fn write_config(
    dir: &Path,
    store: &TestStore,
    vendor: &ServedEmulator,
    limits: &str,
) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    let mapping = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/maxma.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            {store}
            [server]
            listen = "127.0.0.1:0"
            request_timeout_ms = 2000
            [log]
            format = "json"
            level = "info"
            [[tenants]]
            name = "shop"
            token = "${{LB_CRASH_TOKEN}}"
            mapping = "{mapping}"
            base_url = "{vendor}"
            credentials = {{ api_key = "${{LB_CRASH_KEY}}" }}
            limits = {{ {limits} }}
            "#,
            store = store.section(),
            mapping = mapping.display(),
            vendor = vendor.url(),
        ),
    )
    .unwrap();
    config
}

async fn sales_survive_kill_9(store: TestStore) {
    let (sandbox, vendor) = maxma_with_customer().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &store, &vendor, "breaker_failures = 1000");
    loyalty_bridge::upstream::install_crypto();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // 1. MAXMA is down: earning sales are accepted and queued.
    sandbox.set_fault(Some(Fault::Http500));
    let bridge = BridgeProcess::start(&config, &ENV);
    let queued: Vec<String> = (0..5)
        .map(|i| format!("c0000000-0000-4000-8000-{i:012}"))
        .collect();
    for id in &queued {
        assert_eq!(
            post_sale(&client, &bridge.addr, id).await,
            Some(StatusCode::CREATED)
        );
    }
    // The operator's view of the queue, from another process, while the bridge runs.
    let list = Command::new(env!("CARGO_BIN_EXE_loyalty-bridge"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "outbox",
            "list",
            "--json",
        ])
        .envs(ENV)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listed}");
    assert_eq!(listed.lines().count(), 5, "{listed}");

    // 2. MAXMA is back but slow; more sales arrive, and the process is killed under them.
    sandbox.set_fault(Some(Fault::Delay(Duration::from_millis(150))));
    let in_flight: Vec<String> = (0..10)
        .map(|i| format!("c0000000-0000-4000-8000-0000000001{i:02}"))
        .collect();
    let sends: Vec<_> = in_flight
        .iter()
        .map(|id| {
            let (client, addr, id) = (client.clone(), bridge.addr.clone(), id.clone());
            tokio::spawn(async move { post_sale(&client, &addr, &id).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(250)).await;
    bridge.kill_9();
    let mut unanswered = Vec::new();
    for (id, send) in in_flight.iter().zip(sends) {
        match send.await.unwrap() {
            Some(StatusCode::CREATED) => {}
            _ => unanswered.push(id.clone()),
        }
    }
    sandbox.set_fault(None);

    // 3. Restart: the queue resumes; MoySklad repeats what got no answer until it gets one.
    let bridge = BridgeProcess::start(&config, &ENV);
    let started = Instant::now();
    while let Some(id) = unanswered.first().cloned() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "repeats of {id} not accepted"
        );
        if post_sale(&client, &bridge.addr, &id).await == Some(StatusCode::CREATED) {
            unanswered.remove(0);
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let all: Vec<&String> = queued.iter().chain(&in_flight).collect();
    while confirmed(&sandbox).len() < all.len() {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "not delivered: {:?}",
            confirmed(&sandbox)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settled: nothing more goes out.
    let calls = sandbox.requests().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sandbox.requests().len(),
        calls,
        "the bridge kept calling MAXMA"
    );
    let confirmed = confirmed(&sandbox);
    assert_eq!(confirmed.len(), all.len(), "{confirmed:?}");
    // A sale killed between MAXMA taking its confirm-ticket and the answer arriving is run
    // again after the restart (nobody can know it landed): MAXMA refuses the repeated txid
    // (17 "already processed") and the mapping takes that as success. What counts is the
    // effect: 15 sales of 200 ₽ earning 5 % each credit 10 points apiece, exactly once.
    assert_eq!(sandbox.balance_by_phone(PHONE), Some(150), "{confirmed:?}");
    drop(bridge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sales_survive_kill_9() {
    sales_survive_kill_9(TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sales_survive_kill_9() {
    if let Some(store) = TestStore::postgres().await {
        sales_survive_kill_9(store).await;
    }
}
