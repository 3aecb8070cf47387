//! Several bridge instances on one PostgreSQL store are one client of the vendor (issue #26):
//! a tenant's vendor rate holds across them, and a vendor's pause or a circuit-breaker opening
//! seen by one holds for all. (A store that is not shared, SQLite, keeps all of it in memory:
//! the other test files.)

use crate::common;

use std::time::{Duration, Instant};

use common::{API_KEY_A, ServedEmulator, TestBridge, TestStore, TestTenant, client, the_error};
use emulators::maxma::{Fault, MaxmaSandbox};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn detail(i: usize) -> Value {
    json!({"retailStore": {"meta": {"id": "s1"}}, "meta": {"id": format!("c-{i}")}, "phone": "+79990000001"})
}

/// Two bridges on `store`, each with the MAXMA tenant of `vendor` and these `limits` keys.
async fn two_bridges(
    store: &TestStore,
    vendor: &ServedEmulator,
    limits: &str,
) -> (TestBridge, TestBridge) {
    let tenant = || TestTenant::maxma(vendor.url()).keys(limits);
    let first = TestBridge::builder()
        .store(store)
        .tenant(tenant())
        .start()
        .await;
    // The second serves only once the first counts it (it waits for the first's heartbeat).
    let second = TestBridge::builder()
        .store(store)
        .tenant(tenant())
        .start()
        .await;
    (first, second)
}

/// POSTs `/counterparty/detail` to `bridge`; the status, the `Retry-After` header and the body.
async fn detail_on(bridge: &TestBridge, i: usize) -> (StatusCode, Option<u64>, Value) {
    let resp = client()
        .post(bridge.url_of("/counterparty/detail"))
        .header("Lognex-Discount-API-Auth-Token", bridge.token())
        .header("content-type", "application/json")
        .body(detail(i).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (status, retry_after, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_keep_one_vendor_rate() {
    let Some(store) = TestStore::postgres().await else {
        return;
    };
    // It counts the turns refilled while the calls ran.
    let _alone = common::alone().lock().await;
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let vendor = ServedEmulator::start(sandbox.clone()).await;
    let limits = "limits = { requests_per_second = 1, burst = 4, max_wait_ms = 0 }";
    let (first, second) = two_bridges(&store, &vendor, limits).await;
    // All at once, half to each: alone, each instance would let its burst of 4 through.
    let started = Instant::now();
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let bridge = if i % 2 == 0 { &first } else { &second };
            let (url, token) = (
                bridge.url_of("/counterparty/detail"),
                bridge.token().to_owned(),
            );
            tokio::spawn(async move {
                let resp = client()
                    .post(url)
                    .header("Lognex-Discount-API-Auth-Token", token)
                    .header("content-type", "application/json")
                    .body(detail(i).to_string())
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                let retry_after = resp.headers().contains_key("retry-after");
                (status, retry_after, resp.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let (mut answered, mut refused) = (0, 0);
    for call in calls {
        let (status, retry_after, body) = call.await.unwrap();
        match status {
            StatusCode::OK => answered += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry_after, "a 429 says when to come back");
                assert_eq!(the_error(&body)["code"], 9429, "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    // One burst of 4 for both, plus one turn a second for as long as the calls took.
    let allowed = 4 + started.elapsed().as_secs_f64().ceil() as usize;
    let vendor_calls = sandbox.calls("get-balance");
    assert!(
        vendor_calls <= allowed && answered <= allowed,
        "{vendor_calls} calls reached MAXMA and {answered} were answered, {allowed} allowed"
    );
    assert_eq!(answered + refused, 16);
    assert!(answered >= 4, "the burst goes through: {answered}");
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_pause_seen_by_one_instance_holds_for_the_other() {
    let Some(store) = TestStore::postgres().await else {
        return;
    };
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let vendor = ServedEmulator::start(sandbox.clone()).await;
    // Calls may wait 100 ms: far less than the pause the vendor asks for.
    let (first, second) = two_bridges(&store, &vendor, "limits = { max_wait_ms = 100 }").await;
    sandbox.set_fault(Some(Fault::TooManyRequests {
        retry_after: Some("3".into()),
    }));
    let started = Instant::now();
    let (status, _, body) = detail_on(&first, 1).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(sandbox.calls("get-balance"), 1);
    sandbox.set_fault(None);
    // The other instance reads the running pauses every 250 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, retry_after, body) = detail_on(&second, 2).await;
    assert!(started.elapsed() < Duration::from_millis(2_500));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(the_error(&body)["code"], 9429, "{body}");
    assert!(
        matches!(retry_after, Some(1..=3)),
        "Retry-After {retry_after:?}"
    );
    assert_eq!(sandbox.calls("get-balance"), 1, "the vendor was not called");
    // Once the pause is over, both call again.
    tokio::time::sleep(Duration::from_millis(3_100).saturating_sub(started.elapsed())).await;
    assert_eq!(detail_on(&second, 3).await.0, StatusCode::OK);
    assert_eq!(detail_on(&first, 4).await.0, StatusCode::OK);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_on_one_instance_opens_on_the_other() {
    let Some(store) = TestStore::postgres().await else {
        return;
    };
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let vendor = ServedEmulator::start(sandbox.clone()).await;
    let limits = "limits = { breaker_failures = 2, breaker_open_ms = 5000 }";
    let (first, second) = two_bridges(&store, &vendor, limits).await;
    sandbox.set_fault(Some(Fault::Http500));
    for i in 0..2 {
        let (status, _, body) = detail_on(&first, i).await;
        assert!(status.is_server_error(), "{status} {body}");
    }
    let failing = sandbox.calls("get-balance");
    sandbox.set_fault(None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The vendor is back, but the breaker the first opened holds the second's calls too.
    let (status, _, body) = detail_on(&second, 10).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        sandbox.calls("get-balance"),
        failing,
        "the vendor was not called"
    );
    first.stop().await;
    second.stop().await;
}
