//! Routing, the token, bodies, h2c, graceful stop, the rate limit, faults, seeding and the helpers.

use super::*;

#[tokio::test]
async fn auth_routing_and_bodies_are_answered_as_documented() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    let srv = start(&sandbox).await;
    let body = json!({"identificator": IVANOV}).to_string();
    let bearer = format!("Bearer {TOKEN}");
    for (auth, expected) in [
        (None, "Authorization header is required"),
        (Some(bearer.as_str()), "without the \"Bearer\" prefix"),
        (Some("bearer x"), "without the \"Bearer\" prefix"),
        (Some("wrong-token"), "Invalid API token"),
        (Some(""), "Invalid API token"),
    ] {
        let resp = srv.send("/buyer-info", auth, &body).await;
        assert_eq!(resp.status().as_u16(), 400, "{auth:?}");
        let answer: Value = resp.json().await.unwrap();
        let description = assert_refusal(&answer);
        assert!(description.contains(expected), "{auth:?}: {description}");
        assert!(!description.contains(TOKEN), "{description}");
    }
    let resp = srv.send("/buyer-info", Some(TOKEN), &body).await;
    assert_eq!(resp.status().as_u16(), 200);

    let (status, answer) = srv.post("/no-such-method", &json!({})).await;
    assert_eq!(status, 404);
    assert!(assert_refusal(&answer).contains("Unknown method"));
    let resp = srv
        .http
        .get(format!("{}/buyer-info", srv.base))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    for (bad, expected) in [
        ("{", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ("\"text\"", "JSON object"),
        ("{\"identificator\": }", "not valid JSON"),
        (
            "",
            "identificator (phone, email or card number) is required",
        ),
    ] {
        let resp = srv.send("/buyer-info", Some(TOKEN), bad).await;
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
        let answer: Value = resp.json().await.unwrap();
        let description = assert_refusal(&answer);
        assert!(description.contains(expected), "{bad}: {description}");
    }
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(MAX_BODY_BYTES));
    let resp = srv.send("/buyer-info", Some(TOKEN), &big).await;
    assert_eq!(resp.status().as_u16(), 400);

    // Every answer gets its own logger.
    let a = srv
        .ok("/buyer-info", json!({"identificator": IVANOV}))
        .await;
    let b = srv
        .ok("/buyer-info", json!({"identificator": IVANOV}))
        .await;
    assert_ne!(a["logger"], b["logger"]);

    assert_eq!(sandbox.calls("/buyer-info"), 15);
    assert_eq!(sandbox.calls("buyer-info"), 15);
    assert_eq!(sandbox.calls("/no-such-method"), 1);
    let requests = sandbox.requests();
    assert_eq!(requests.len(), 16);
    assert_eq!(
        requests[0],
        ("/buyer-info".into(), json!({"identificator": IVANOV}))
    );
    assert_eq!(requests[7], ("/buyer-info".into(), Value::Null)); // the GET
    assert_eq!(requests[8].1, Value::String("{".into()));
    assert_eq!(requests[12], ("/buyer-info".into(), Value::Null)); // empty
    assert_eq!(requests[13], ("/buyer-info".into(), Value::Null)); // oversized
    srv.stop().await;
}

#[tokio::test]
async fn serves_h2c_and_shuts_down_gracefully() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    let srv = start(&sandbox).await;
    let h2 = http_client().http2_prior_knowledge().build().unwrap();
    let resp = h2
        .post(format!("{}/buyer-info", srv.base))
        .header("Authorization", TOKEN)
        .body(json!({"identificator": IVANOV}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 200);
    srv.stop().await; // serve() returned Ok
}

#[tokio::test]
async fn requests_beyond_the_rate_limit_get_429() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    sandbox.set_settings(PbSettings {
        requests_per_second: Some(2),
        ..PbSettings::default()
    });
    let srv = start(&sandbox).await;
    let body = json!({"identificator": IVANOV}).to_string();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = srv.send("/buyer-info", Some(TOKEN), &body).await;
        statuses.push(resp.status().as_u16());
        if resp.status().as_u16() == 429 {
            assert_eq!(
                resp.headers().get("retry-after").map(HeaderValue::as_bytes),
                Some(&b"1"[..])
            );
            let answer: Value = resp.json().await.unwrap();
            assert!(assert_refusal(&answer).contains("at most 2 per second"));
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    srv.ok("/buyer-info", json!({"identificator": IVANOV}))
        .await;
    assert_eq!(sandbox.calls("/buyer-info"), 4);
    sandbox.set_settings(PbSettings::default());
    for _ in 0..5 {
        srv.ok("/buyer-info", json!({"identificator": IVANOV}))
            .await;
    }
    srv.stop().await;
}

#[test]
fn the_rate_window_slides() {
    let mut state = State::default();
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    assert!(state.admit(2, at(0)));
    assert!(state.admit(2, at(500)));
    assert!(!state.admit(2, at(999)));
    // The first request left the window; the refusal did not count.
    assert!(state.admit(2, at(1000)));
    assert!(!state.admit(2, at(1499)));
    assert!(state.admit(2, at(1500)));
    assert!(!state.admit(0, at(5000)));
}

#[tokio::test]
async fn faults_apply_to_every_request_until_cleared() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    let srv = start(&sandbox).await;
    let query = json!({"identificator": IVANOV});

    sandbox.set_fault(Some(Fault::Http500));
    let (status, answer) = srv.post("/buyer-info", &query).await;
    assert_eq!(status, 500);
    assert_refusal(&answer);

    sandbox.set_fault(Some(Fault::Garbage));
    let resp = srv
        .send("/buyer-info", Some(TOKEN), &query.to_string())
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    sandbox.set_fault(Some(Fault::Throttle));
    let resp = srv
        .send("/buyer-info", Some(TOKEN), &query.to_string())
        .await;
    assert_eq!(resp.status().as_u16(), 429);
    let answer: Value = resp.json().await.unwrap();
    assert_refusal(&answer);
    // Faults act before routing and authorization.
    let resp = srv.send("/no-such-method", None, "{}").await;
    assert_eq!(resp.status().as_u16(), 429);

    sandbox.set_fault(Some(Fault::DropConnection));
    let result = srv
        .http
        .post(format!("{}/buyer-info", srv.base))
        .header("Authorization", TOKEN)
        .body(query.to_string())
        .send()
        .await;
    assert!(result.is_err(), "{result:?}");

    // A faulted purchase never changes state.
    let purchase = purchase_body(
        "faulted",
        IVANOV,
        "10",
        json!([item(None, "A", "100", "1")]),
    );
    sandbox.set_fault(Some(Fault::Throttle));
    let (status, _) = srv.post("/purchase", &purchase).await;
    assert_eq!(status, 429);
    assert_eq!(sandbox.balance(IVANOV), Some(d("500")));

    sandbox.set_fault(Some(Fault::Delay(Duration::from_millis(300))));
    let started = std::time::Instant::now();
    let answer = srv.ok("/buyer-info", query.clone()).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(dec(&answer["balance"]), d("500"));

    sandbox.set_fault(None);
    srv.ok("/buyer-info", query).await;
    srv.refused("/purchase-info", json!({"external_purchase_id": "faulted"}))
        .await;
    assert_eq!(sandbox.calls("/buyer-info"), 6);
    assert_eq!(sandbox.calls("/purchase"), 1);
    assert_eq!(sandbox.calls("/no-such-method"), 1);
    srv.stop().await;
}

#[test]
fn demo_data_and_seeding_hooks() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    assert_eq!(sandbox.balance("+7 999 000 00 01"), Some(d("500.00")));
    assert_eq!(sandbox.balance("89990000002"), Some(Decimal::ZERO));
    assert_eq!(sandbox.balance(BLOCKED), Some(d("100")));
    assert_eq!(sandbox.balance("70000000000"), None);
    assert_eq!(sandbox.balance("garbage"), None);
    assert_eq!(sandbox.last_code(IVANOV), None);
    assert_eq!(sandbox.calls("/buyer-info"), 0);
    assert!(sandbox.requests().is_empty());
    // Re-seeding a buyer replaces it instead of creating a duplicate.
    sandbox.add_buyer(PbBuyer {
        phone: Some("8 (999) 000-00-01".into()),
        balance: d("7"),
        ..PbBuyer::default()
    });
    assert_eq!(sandbox.balance(IVANOV), Some(d("7")));
    {
        let state = sandbox.shared.lock();
        let live = state.buyers.iter().flatten().count();
        assert_eq!(live, 3);
    }
    assert!(!format!("{sandbox:?}").contains(TOKEN));
    assert_eq!(PbSettings::default().earn_percent, d("5"));
    assert_eq!(PbSettings::default().max_write_off_percent, d("50"));
}

#[test]
fn phone_formats() {
    assert!(is_pb_phone("79990000001"));
    for bad in [
        "",
        "7999000000",
        "+79990000001",
        "89990000001",
        "7999000000٣",
    ] {
        assert!(!is_pb_phone(bad), "{bad}");
    }
    // How seeds and hooks read phones: crate::phone (tested there).
    assert!(looks_like_phone("+7999"));
    assert!(looks_like_phone("8 (999) 000-00-01"));
    assert!(!looks_like_phone("89990000001"));
    assert!(!looks_like_phone("PB-0001"));
    assert!(!looks_like_phone("12-34"));
}

#[test]
fn quantities_and_messages_are_written_short() {
    // Money is written as crate::money writes it (tested there).
    assert_eq!(number(d("2.500")).to_string(), "2.5");
    assert_eq!(shorten(&"я".repeat(100)).chars().count(), 65);
}
