//! Mapping files reload while the bridge runs: a good change takes effect, a broken one is
//! refused and the previous version keeps serving.

use crate::common;

use std::time::{Duration, Instant};

use common::{TOKEN_A, TestBridge, TestTenant, client};
use serde_json::Value;
use tokio::net::TcpListener;

const DETAIL: &str = r#"{"retailStore":{"meta":{"id":"s"}},"meta":{"id":"c1"}}"#;

fn answering(balance: u32) -> String {
    format!(
        r#"
        [vendor]
        name = "fixed"
        [[ops."counterparty.detail".checks]]
        when = 'true'
        respond = '{{bonusProgram: {{agentBonusBalance: {balance}}}}}'
        "#
    )
}

async fn balance(url: &str) -> (u16, Value) {
    let resp = client()
        .post(format!("{url}/counterparty/detail"))
        .header("Lognex-Discount-API-Auth-Token", TOKEN_A)
        .body(DETAIL)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn eventually(url: &str, want: u32) {
    let started = Instant::now();
    loop {
        let (status, body) = balance(url).await;
        if status == 200 && body["bonusProgram"]["agentBonusBalance"] == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mapping_changes_apply_and_broken_ones_are_refused() {
    let dir = std::env::temp_dir().join(format!("lb-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mapping = dir.join("vendor.toml");
    std::fs::write(&mapping, answering(1)).unwrap();
    let bridge = TestBridge::builder()
        .server("mapping_reload_ms = 50")
        .tenant(TestTenant::custom("a", &mapping))
        .start()
        .await;
    let url = bridge.url();
    eventually(url, 1).await;

    // Modification times have a coarse grain on some file systems: wait past it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&mapping, answering(2)).unwrap();
    eventually(url, 2).await;

    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&mapping, "[vendor]\nname = \"fixed\"\n[[ops.\"counterparty.detail\".checks]]\nwhen = '(((('\nrespond = '1'\n").unwrap();
    // Give the watcher several rounds: the broken version must never take over.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let (status, body) = balance(url).await;
        assert_eq!(
            (status, body["bonusProgram"]["agentBonusBalance"].clone()),
            (200, Value::from(2))
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_server_does_not_start_on_a_broken_mapping() {
    let dir = std::env::temp_dir().join(format!("lb-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mapping = dir.join("vendor.toml");
    std::fs::write(
        &mapping,
        "[vendor]\nname = \"x\"\n[ops.\"retaildemand.recalc\".response]\nbody = '{'\n",
    )
    .unwrap();
    let config = TestBridge::builder()
        .tenant(TestTenant::custom("a", &mapping).token("t"))
        .config();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = loyalty_bridge::run(listener, config, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("vendor.toml") && err.contains("response.body"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
