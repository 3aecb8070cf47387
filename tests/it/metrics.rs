//! `/metrics` against a bridge driving the MAXMA sandbox: exact counts after known calls, the
//! optional bearer token, and a vendor's 429 pausing the tenant's calls.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    API_KEY_A, MaxmaWorld, ServedEmulator, TOKEN_A, TestBridge, TestTenant, call_bridge, client,
    sample, scrape, the_error,
};
use emulators::maxma::{Fault, MaxmaSandbox};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn detail(meta_id: &str, phone: &str) -> Value {
    json!({"retailStore": {"meta": {"id": "s1"}}, "meta": {"id": meta_id}, "phone": phone})
}

const SHOP: (&str, &str) = ("tenant", "shop");

#[tokio::test]
async fn metrics_count_requests_vendor_calls_and_cache_hits() {
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let w = MaxmaWorld::start(sandbox.clone()).await;

    let resp = client().get(w.url_of("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let before = resp.text().await.unwrap();
    assert!(before.ends_with("# EOF\n"), "{before}");
    assert_eq!(
        sample(&before, "loyalty_bridge_breaker_state", &[SHOP]),
        0.0
    );

    // Twice the same customer's balance (the second from the cache), one search, one unknown path.
    for _ in 0..2 {
        let (status, body) = w
            .post("/counterparty/detail", &detail("demo-1", "+79990000001"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = w
        .get("/counterparty?search=%2B79990000003&retailStoreId=s1")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = w.get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, text) = scrape(w.url(), None).await;
    assert_eq!(status, StatusCode::OK);
    let requests = |op: &str, status: &str| {
        sample(
            &text,
            "loyalty_bridge_requests_total",
            &[("op", op), ("status", status)],
        )
    };
    assert_eq!(requests("counterparty.detail", "200"), 2.0, "{text}");
    assert_eq!(requests("counterparty.search", "200"), 1.0);
    assert_eq!(requests("-", "404"), 1.0);
    assert_eq!(requests("-", "200"), 2.0, "/readyz and the first scrape");
    assert_eq!(
        sample(
            &text,
            "loyalty_bridge_request_duration_seconds_count",
            &[("op", "counterparty.detail"), ("status", "200")]
        ),
        2.0
    );
    // Every call the sandbox saw, and no other.
    let vendor_calls = sandbox.calls("/get-balance");
    assert_eq!(vendor_calls, 2);
    let balance = [SHOP, ("step", "balance")];
    assert_eq!(
        sample(
            &text,
            "loyalty_bridge_upstream_calls_total",
            &[SHOP, ("step", "balance"), ("outcome", "2xx")]
        ),
        vendor_calls as f64
    );
    assert_eq!(
        sample(
            &text,
            "loyalty_bridge_upstream_call_duration_seconds_count",
            &balance
        ),
        vendor_calls as f64
    );
    assert_eq!(
        sample(&text, "loyalty_bridge_upstream_retries_total", &balance),
        0.0
    );
    assert_eq!(
        sample(&text, "loyalty_bridge_cache_hits_total", &[SHOP]),
        1.0
    );
    assert_eq!(
        sample(&text, "loyalty_bridge_cache_misses_total", &[SHOP]),
        2.0
    );
    assert_eq!(
        sample(&text, "loyalty_bridge_cache_loads_total", &[SHOP]),
        2.0
    );
    assert_eq!(
        sample(&text, "loyalty_bridge_limiter_waits_total", &[SHOP]),
        0.0
    );
    assert!(
        text.contains("loyalty_bridge_limiter_rejections_total{tenant=\"shop\"} 0"),
        "{text}"
    );
    assert!(text.contains("loyalty_bridge_breaker_opened_total{tenant=\"shop\"} 0"));
}

#[tokio::test]
async fn a_metrics_token_guards_the_endpoint() {
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let w = MaxmaWorld::start_with(sandbox, |bridge, shop| {
        bridge
            .server(r#"metrics_token = "${LB_METRICS_TOKEN}""#)
            .tenant(shop)
    })
    .await;
    for bearer in [None, Some("wrong"), Some(""), Some(TOKEN_A)] {
        let (status, text) = scrape(w.url(), bearer).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bearer:?}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(the_error(&body)["code"], 9401);
        assert!(!text.contains("loyalty_bridge_"));
    }
    // The LoyaltyAPI's own token is not accepted in the LoyaltyAPI header either.
    let resp = client()
        .get(w.url_of("/metrics"))
        .header("Lognex-Discount-API-Auth-Token", TOKEN_A)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, text) = scrape(w.url(), Some("metrics-secret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sample(
            &text,
            "loyalty_bridge_requests_total",
            &[("op", "-"), ("status", "401")]
        ),
        5.0
    );
}

#[tokio::test]
async fn a_vendor_429_pauses_the_tenant_for_its_retry_after() {
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    // Calls may wait 100 ms for a permit: far less than the vendor's pause.
    let w = MaxmaWorld::start_with(sandbox.clone(), |bridge, shop| {
        bridge.tenant(shop.keys("limits = { max_wait_ms = 100 }"))
    })
    .await;
    sandbox.set_fault(Some(Fault::TooManyRequests {
        retry_after: Some("2".into()),
    }));
    let started = Instant::now();
    let (status, body) = w
        .post("/counterparty/detail", &detail("demo-1", "+79990000001"))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(
        sandbox.calls("/get-balance"),
        1,
        "not retried: the pause is longer than the call may wait"
    );
    // The vendor would answer now, but the tenant is paused: refused without a call.
    sandbox.set_fault(None);
    let resp = client()
        .post(w.url_of("/counterparty/detail"))
        .header("Lognex-Discount-API-Auth-Token", TOKEN_A)
        .header("content-type", "application/json")
        .body(detail("demo-3", "+79990000003").to_string())
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(1_500));
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(the_error(&body)["code"], 9429);
    assert_eq!(
        sandbox.calls("/get-balance"),
        1,
        "the vendor was not called"
    );

    let (_, text) = scrape(w.url(), None).await;
    let outcome = |o: &str| {
        sample(
            &text,
            "loyalty_bridge_upstream_calls_total",
            &[SHOP, ("step", "balance"), ("outcome", o)],
        )
    };
    assert_eq!((outcome("4xx"), outcome("throttled")), (1.0, 1.0), "{text}");
    assert_eq!(
        sample(&text, "loyalty_bridge_limiter_rejections_total", &[SHOP]),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "loyalty_bridge_upstream_call_duration_seconds_count",
            &[SHOP, ("step", "balance")]
        ),
        1.0,
        "a throttled call never went out"
    );

    // Once the pause is over, calls go through again.
    tokio::time::sleep(Duration::from_millis(2_100).saturating_sub(started.elapsed())).await;
    let (status, body) = w
        .post("/counterparty/detail", &detail("demo-3", "+79990000003"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sandbox.calls("/get-balance"), 2);
}

#[tokio::test]
async fn a_retry_after_a_429_waits_out_the_pause() {
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let w = std::sync::Arc::new(
        MaxmaWorld::start_with(sandbox.clone(), |bridge, shop| {
            bridge.tenant(shop.keys("limits = { max_wait_ms = 3000 }"))
        })
        .await,
    );
    sandbox.set_fault(Some(Fault::TooManyRequests {
        retry_after: Some("1".into()),
    }));
    let started = Instant::now();
    let call = {
        let w = w.clone();
        tokio::spawn(async move {
            w.post("/counterparty/detail", &detail("demo-1", "+79990000001"))
                .await
        })
    };
    // Well within the pause: the vendor recovers, but the retry waits until the pause ends.
    tokio::time::sleep(Duration::from_millis(400)).await;
    sandbox.set_fault(None);
    let (status, body) = call.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        sandbox.calls("/get-balance"),
        2,
        "one 429, one retry after the pause"
    );
    let (_, text) = scrape(w.url(), None).await;
    let balance = [SHOP, ("step", "balance")];
    assert_eq!(
        sample(&text, "loyalty_bridge_upstream_retries_total", &balance),
        1.0
    );
    assert_eq!(
        sample(&text, "loyalty_bridge_limiter_waits_total", &[SHOP]),
        1.0
    );
}

/// `server.max_in_flight`: requests beyond it wait for a turn (within their deadline) instead
/// of all reaching the vendor at once; every one is still answered.
#[tokio::test]
async fn requests_beyond_max_in_flight_wait_for_a_turn() {
    // Three calls in parallel must take less than three in a row: a busy CPU would blur it.
    let _alone = common::alone().lock().await;
    let delay = Duration::from_millis(400);
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    sandbox.set_fault(Some(Fault::Delay(delay)));
    let vendor = ServedEmulator::start(sandbox.clone()).await;
    let three_at_once = |bridge: String| async move {
        let started = Instant::now();
        let calls: Vec<_> = (0..3)
            .map(|i| {
                let bridge = bridge.clone();
                tokio::spawn(async move {
                    let body = detail(&format!("in-flight-{i}"), &format!("+7999000100{i}"));
                    call_bridge(
                        &bridge,
                        TOKEN_A,
                        Method::POST,
                        "/counterparty/detail",
                        Some(&body),
                    )
                    .await
                    .0
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for call in calls {
            statuses.push(call.await.unwrap());
        }
        (started.elapsed(), statuses)
    };

    let one_at_a_time = TestBridge::builder()
        .server("max_in_flight = 1")
        .tenant(TestTenant::maxma(vendor.url()))
        .start()
        .await;
    let (took, statuses) = three_at_once(one_at_a_time.url().to_string()).await;
    assert!(statuses.iter().all(|s| s.as_u16() < 500), "{statuses:?}");
    assert!(took >= delay * 3, "three calls in {took:?} with one turn");

    let three_turns = TestBridge::builder()
        .server("max_in_flight = 3\ntenant_max_in_flight = 3")
        .tenant(TestTenant::maxma(vendor.url()))
        .start()
        .await;
    let (took, statuses) = three_at_once(three_turns.url().to_string()).await;
    assert!(statuses.iter().all(|s| s.as_u16() < 500), "{statuses:?}");
    assert!(
        took < delay * 3 - Duration::from_millis(50),
        "three calls in {took:?} with three turns"
    );
}
