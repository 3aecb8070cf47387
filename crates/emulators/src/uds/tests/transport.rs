//! Routing, credentials, recording, h2c, graceful stop, faults, seeding and the helpers.

use super::*;

#[tokio::test]
async fn auth_routing_and_recording() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let url = format!("{}/settings", srv.base);

    // Missing, wrong key, wrong company, wrong scheme, garbage: all 401 unauthorized.
    let attempts = [
        srv.http.get(&url),
        srv.http.get(&url).basic_auth(COMPANY, Some("wrong")),
        srv.http.get(&url).basic_auth("1", Some(KEY)),
        srv.http.get(&url).basic_auth(COMPANY, None::<&str>),
        srv.http.get(&url).bearer_auth(KEY),
        srv.http.get(&url).header("Authorization", "Basic !!!"),
        srv.http.get(&url).header("Authorization", "Basic"),
    ];
    for attempt in attempts {
        let (status, answer) = read(attempt.send().await.unwrap()).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["errorCode"], json!("unauthorized"));
        assert!(answer["message"].is_string());
    }
    // The scheme is case-insensitive and padding optional: "549755813888:uds-test-key".
    let token = "NTQ5NzU1ODEzODg4OnVkcy10ZXN0LWtleQ";
    for header in [format!("basic {token}=="), format!("BASIC  {token}")] {
        let resp = srv
            .http
            .get(&url)
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }

    // Unknown paths and methods are 404 notFound, with or without credentials.
    for (method, path) in [
        (reqwest::Method::GET, "/nope"),
        (reqwest::Method::POST, "/settings"),
        (reqwest::Method::GET, "/operations/calc"),
        (reqwest::Method::DELETE, "/operations/1"),
        (reqwest::Method::GET, "/customers/abc"),
        (reqwest::Method::GET, "/customers/-1"),
        (reqwest::Method::GET, "/operations"),
        (reqwest::Method::GET, "/settings/"),
    ] {
        let resp = srv.request(method.clone(), path).send().await.unwrap();
        let (status, code, _) = error_shape(resp.status().as_u16(), resp.json().await.unwrap());
        assert_eq!(
            (status, code.as_str()),
            (404, "notFound"),
            "{method} {path}"
        );
    }
    let resp = srv
        .http
        .get(format!("{}/nope", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    // The real base path works too; request ids come back.
    let resp = srv
        .request(reqwest::Method::GET, "/partner/v2/settings")
        .header(
            "X-Origin-Request-Id",
            "6f1c1a8e-2f4b-4b8a-9d7e-1b2c3d4e5f60",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["x-origin-request-id"],
        "6f1c1a8e-2f4b-4b8a-9d7e-1b2c3d4e5f60"
    );
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "{request_id}");

    // Malformed bodies.
    for bad in ["{", "[1, 2]", "\"text\""] {
        let resp = srv
            .request(reqwest::Method::POST, "/operations/calc")
            .body(bad)
            .send()
            .await
            .unwrap();
        let (status, code, answer) =
            error_shape(resp.status().as_u16(), resp.json().await.unwrap());
        assert_eq!((status, code.as_str()), (400, "badRequest"), "{bad}");
        assert!(answer.get("errors").is_none(), "{answer}");
    }

    let find = format!("/customers/find?phone={}&total=100", enc(IVAN));
    srv.ok_get(&find).await;
    assert_eq!(sandbox.calls("/settings"), 11);
    assert_eq!(sandbox.calls("settings"), 11);
    assert_eq!(sandbox.calls("/partner/v2/settings"), 11);
    assert_eq!(sandbox.calls("/operations/calc"), 4);
    assert_eq!(sandbox.calls("/customers/find?phone=x"), 1);
    let requests = sandbox.requests();
    assert_eq!(
        requests.last().unwrap(),
        &("GET".to_owned(), find.clone(), Value::Null)
    );
    assert_eq!(requests[0], ("GET".into(), "/settings".into(), Value::Null));
    let calc_bodies: Vec<&Value> = requests
        .iter()
        .filter(|(m, p, _)| m == "POST" && p == "/operations/calc")
        .map(|(_, _, b)| b)
        .collect();
    assert_eq!(calc_bodies[0], &Value::String("{".into()));
    assert_eq!(calc_bodies[1], &json!([1, 2]));
    srv.stop().await;
}

#[tokio::test]
async fn serves_h2c_and_shuts_down_gracefully() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let h2 = http_client().http2_prior_knowledge().build().unwrap();
    let resp = h2
        .get(format!("{}/settings", srv.base))
        .basic_auth(COMPANY, Some(KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 200);
    srv.stop().await; // serve() returned Ok
}

#[tokio::test]
async fn faults_apply_to_every_request_until_cleared() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;

    sandbox.set_fault(Some(Fault::Http500));
    let resp = srv.request(reqwest::Method::GET, "/settings").send().await;
    assert_eq!(resp.unwrap().status().as_u16(), 500);

    sandbox.set_fault(Some(Fault::Garbage));
    let resp = srv.request(reqwest::Method::GET, "/settings").send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    sandbox.set_fault(Some(Fault::Throttle));
    let resp = srv.request(reqwest::Method::GET, "/nope").send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.headers()["retry-after"], "1");
    let (status, code, _) = error_shape(resp.status().as_u16(), resp.json().await.unwrap());
    assert_eq!((status, code.as_str()), (429, "tooManyRequests"));

    sandbox.set_fault(Some(Fault::DropConnection));
    let result = srv.request(reqwest::Method::GET, "/settings").send().await;
    assert!(result.is_err(), "{result:?}");

    // A faulted purchase never changes state.
    let receipt = json!({"total": n("100"), "cash": n("90"), "points": n("10")});
    sandbox.set_fault(Some(Fault::Throttle));
    let (status, _) = srv
        .post("/operations", &purchase(IVAN, None, receipt))
        .await;
    assert_eq!(status, 429);
    assert_eq!(sandbox.points(IVAN), Some(d("350")));

    sandbox.set_fault(Some(Fault::Delay(Duration::from_millis(300))));
    let started = std::time::Instant::now();
    let answer = srv
        .ok_get(&format!("/customers/find?phone={}", enc(IVAN)))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(dec(&answer["user"]["participant"]["points"]), d("350"));

    sandbox.set_fault(None);
    srv.ok_get("/settings").await;
    assert_eq!(sandbox.calls("/settings"), 4);
    assert_eq!(sandbox.calls("/operations"), 1);
    assert_eq!(sandbox.calls("/nope"), 1);
    srv.stop().await;
}

#[test]
fn demo_data_and_seeding_hooks() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    assert_eq!(sandbox.points(IVAN), Some(d("350")));
    assert_eq!(sandbox.points("8 (999) 000-00-01"), Some(d("350")));
    assert_eq!(sandbox.points(MARIA), Some(d("0")));
    assert_eq!(sandbox.points(BLOCKED), Some(d("100")));
    assert_eq!(sandbox.points(STRANGER), None);
    assert_eq!(sandbox.payment_code(STRANGER), None);
    assert_eq!(sandbox.operation(FIRST_OPERATION_ID), None);
    assert_eq!(sandbox.calls("/settings"), 0);
    assert!(sandbox.requests().is_empty());
    let uid = sandbox.customer(IVAN).unwrap()["uid"].clone();
    // Stable across runs: a UUID v5 of the phone.
    assert_eq!(
        uid,
        json!(customer_uid(IVAN)),
        "{uid} is not derived from the phone"
    );
    assert_eq!(
        UdsSandbox::with_demo_data("1", "2").customer(IVAN).unwrap()["uid"],
        uid
    );
    // Re-seeding replaces, keeping the ids.
    sandbox.add_customer(UdsCustomer {
        phone: "+7 999 000-00-01".into(),
        display_name: "Иван Петров".into(),
        points: d("7"),
        ..UdsCustomer::default()
    });
    assert_eq!(sandbox.points(IVAN), Some(d("7")));
    let again = sandbox.customer(IVAN).unwrap();
    assert_eq!(again["uid"], uid);
    assert_eq!(id_of(&again["participant"]["id"]), 1 << 40);
    assert_eq!(sandbox.shared.lock().customers.len(), 3);
    let debug = format!("{sandbox:?}");
    assert!(!debug.contains(KEY), "{debug}");
    assert!(debug.contains(COMPANY), "{debug}");
    let defaults = UdsCustomer::default();
    assert_eq!(
        (
            defaults.cashback_rate,
            defaults.max_scores_discount,
            defaults.discount_rate
        ),
        (d("5"), d("30"), d("0"))
    );
}

#[test]
fn helpers() {
    assert_eq!(money(d("150")).to_string(), "150.00");
    assert_eq!(money(d("0.005")).to_string(), "0.01");
    assert_eq!(money(d("-0.001")).to_string(), "0.00");
    assert_eq!(money(d("-200")).to_string(), "-200.00");
    assert_eq!(floor_money(d("99.999")), d("99.99"));
    assert_eq!(percent_of(d("1"), d("3")), d("33.33"));
    assert_eq!(percent_of(d("2"), d("3")), d("66.67"));
    assert_eq!(percent_of(d("1"), d("0")), d("0"));

    for (raw, want) in [
        ("+79990000001", "+79990000001"),
        ("79990000001", "+79990000001"),
        ("89990000001", "+79990000001"),
        (" +7 (999) 000-00-01 ", "+79990000001"),
        ("garbage", "garbage"),
    ] {
        assert_eq!(normalize_phone(raw), want, "{raw}");
    }
    for ok in ["+79990000001", "+4915112345678", "+1234567890"] {
        assert!(is_e164(ok), "{ok}");
    }
    for bad in [
        "79990000001",
        " 79990000001",
        "+7999",
        "+0999000000",
        "+7999000000a",
        "",
    ] {
        assert!(!is_e164(bad), "{bad}");
    }

    for (path, want) in [
        ("/settings", Some(Route::Settings)),
        ("/customers/find", Some(Route::FindCustomer)),
        ("/customers/12", Some(Route::Customer(12))),
        ("/customers/99999999999999999999", None),
        ("/customers/+1", None),
        ("/customers/", None),
        ("", None),
    ] {
        assert_eq!(Route::parse(&Method::GET, path), want, "{path}");
    }
    assert_eq!(
        Route::parse(&Method::POST, "/operations/7/refund"),
        Some(Route::Refund(7))
    );
    assert_eq!(strip_base("/partner/v2/settings"), "/settings");
    assert_eq!(strip_base("/partner/v2"), "/");
    assert_eq!(strip_base("/partner/v22/settings"), "/partner/v22/settings");

    let query = Query::parse("phone=%2b79990000001&phone=x&raw=+7&empty=");
    assert_eq!(query.get("phone"), Some("+79990000001"));
    assert_eq!(query.get("raw"), Some(" 7"));
    assert_eq!(query.get("empty"), None);
    assert!(is_plain_decimal("1000") && is_plain_decimal("-5") && is_plain_decimal("99.90"));
    for bad in ["", "1e3", "+1", "1.", ".5", "NaN", "1_000"] {
        assert!(!is_plain_decimal(bad), "{bad}");
    }
    let code = random_digits(6);
    assert_eq!(code.len(), 6);
    assert_eq!(random_digits(12).len(), 12);
}
