//! Routing, the key, bodies, h2c, graceful stop, faults and the seeding hooks.

use super::*;

#[tokio::test]
async fn auth_routing_and_malformed_bodies_are_answered_as_documented() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    let srv = start(&sandbox).await;
    let body = json!({"phoneNumber": IVANOV}).to_string();

    for key in [None, Some("wrong-key")] {
        let resp = srv.send("/get-balance", key, &body).await;
        assert_eq!(resp.status().as_u16(), 401);
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(
            answer,
            json!({"errorCode": 1, "description": "Invalid processing key"})
        );
    }

    let (status, answer) = srv.post("/no-such-method", &json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(
        answer,
        json!({"errorCode": 1, "description": "Unknown method"})
    );
    let resp = srv
        .http
        .get(format!("{}/get-balance", srv.base))
        .header("X-Processing-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    for bad in ["{", "[1, 2]", "\"text\"", "{\"phoneNumber\": }"] {
        let resp = srv.send("/get-balance", Some(KEY), bad).await;
        assert_eq!(resp.status().as_u16(), 200);
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(int(&answer["errorCode"]), 2, "{bad}: {answer}");
    }
    // An empty body is `{}`.
    let resp = srv.send("/get-settings", Some(KEY), "").await;
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["phoneVerification"], json!(false));

    assert_eq!(sandbox.calls("/get-balance"), 7);
    assert_eq!(sandbox.calls("get-balance"), 7);
    assert_eq!(sandbox.calls("/no-such-method"), 1);
    assert_eq!(sandbox.calls("/get-settings"), 1);
    let requests = sandbox.requests();
    assert_eq!(requests.len(), 9);
    assert_eq!(
        requests[0],
        ("/get-balance".into(), json!({"phoneNumber": IVANOV}))
    );
    assert_eq!(requests[3], ("/get-balance".into(), Value::Null)); // the GET
    assert_eq!(requests[4].1, Value::String("{".into()));
    assert_eq!(requests[8], ("/get-settings".into(), Value::Null));
    srv.stop().await;
}

#[tokio::test]
async fn serves_h2c_and_shuts_down_gracefully() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    let srv = start(&sandbox).await;
    let h2 = http_client().http2_prior_knowledge().build().unwrap();
    let resp = h2
        .post(format!("{}/get-settings", srv.base))
        .header("X-Processing-Key", KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 200);
    srv.stop().await; // serve() returned Ok
}

#[tokio::test]
async fn faults_apply_to_every_request_until_cleared() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    let srv = start(&sandbox).await;
    let query = json!({"phoneNumber": IVANOV});

    sandbox.set_fault(Some(Fault::Http500));
    let resp = srv
        .send("/get-balance", Some(KEY), &query.to_string())
        .await;
    assert_eq!(resp.status().as_u16(), 500);

    sandbox.set_fault(Some(Fault::Garbage));
    let resp = srv
        .send("/get-balance", Some(KEY), &query.to_string())
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    sandbox.set_fault(Some(Fault::Throttle));
    assert_eq!(srv.error("/get-balance", query.clone()).await, 49);

    sandbox.set_fault(Some(Fault::TooManyRequests {
        retry_after: Some("2".into()),
    }));
    let resp = srv
        .send("/get-balance", Some(KEY), &query.to_string())
        .await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");

    sandbox.set_fault(Some(Fault::DropConnection));
    let result = srv
        .http
        .post(format!("{}/get-balance", srv.base))
        .header("X-Processing-Key", KEY)
        .body(query.to_string())
        .send()
        .await;
    assert!(result.is_err(), "{result:?}");

    // A faulted purchase never changes state.
    let purchase = json!({"txid": "faulted", "calculationQuery":
        calc(ivanov(), json!([row("1", "A", 100.0, 1)]), json!({"applyBonuses": 10}))
            ["calculationQuery"]});
    sandbox.set_fault(Some(Fault::Throttle));
    assert_eq!(srv.error("/set-purchase", purchase).await, 49);
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(500));

    sandbox.set_fault(Some(Fault::Delay(Duration::from_millis(300))));
    let started = std::time::Instant::now();
    let answer = srv.ok("/get-balance", query.clone()).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(int(&answer["client"]["bonuses"]), 500);

    sandbox.set_fault(None);
    srv.ok("/get-balance", query).await;
    assert_eq!(sandbox.calls("/get-balance"), 7);
    assert_eq!(sandbox.calls("/set-purchase"), 1);
    srv.stop().await;
}

#[test]
fn demo_data_and_seeding_hooks() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    assert_eq!(sandbox.balance_by_phone("+7 999 000 00 01"), Some(500));
    assert_eq!(sandbox.balance_by_phone("+75551234567"), Some(0));
    assert_eq!(sandbox.balance_by_phone("+70000000000"), None);
    assert_eq!(sandbox.balance_by_phone("garbage"), None);
    assert_eq!(sandbox.gift_card_balance("123456"), Some(d("1000.00")));
    assert_eq!(sandbox.gift_card_balance("1234567"), Some(d("500")));
    assert_eq!(sandbox.gift_card_balance("nope"), None);
    assert_eq!(sandbox.last_code(IVANOV), None);
    assert_eq!(sandbox.calls("/get-balance"), 0);
    // Re-seeding a client replaces it instead of creating a duplicate.
    sandbox.add_client(SandboxClient {
        phone: Some("89990000001".into()),
        bonuses: 7,
        ..SandboxClient::default()
    });
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(7));
    assert!(!format!("{sandbox:?}").contains(KEY));
}
