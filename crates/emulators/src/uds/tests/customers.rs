//! `GET /settings`, `GET /customers/find`, codes and their lifetimes.

use super::*;

#[tokio::test]
async fn settings_reflect_set_settings() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let answer = srv.ok_get("/settings").await;
    assert_eq!(id_of(&answer["id"]), 549_755_813_888);
    assert_eq!(answer["baseDiscountPolicy"], json!("CHARGE_SCORES"));
    assert_eq!(answer["purchaseByPhone"], json!(true));
    assert_eq!(answer["usePointsByPhone"], json!(true));
    assert_eq!(answer["currency"], json!("RUB"));
    let loyalty = &answer["loyaltyProgramSettings"];
    assert_eq!(dec(&loyalty["maxScoresDiscount"]), d("30"));
    assert_eq!(
        dec(&loyalty["baseMembershipTier"]["maxScoresDiscount"]),
        d("30")
    );
    assert_eq!(loyalty["maxScoresDiscount"].to_string(), "30.00");

    sandbox.set_settings(UdsSettings {
        base_discount_policy: "APPLY_DISCOUNT".into(),
        max_scores_discount: d("50"),
        purchase_by_phone: false,
        use_points_by_phone: false,
        currency: "KZT".into(),
    });
    let answer = srv.ok_get("/settings").await;
    assert_eq!(answer["baseDiscountPolicy"], json!("APPLY_DISCOUNT"));
    assert_eq!(answer["purchaseByPhone"], json!(false));
    assert_eq!(answer["usePointsByPhone"], json!(false));
    assert_eq!(answer["currency"], json!("KZT"));
    assert_eq!(
        dec(&answer["loyaltyProgramSettings"]["maxScoresDiscount"]),
        d("50")
    );

    let named = UdsSandbox::new("not-a-number", KEY);
    let srv2 = start(&named).await;
    let resp = srv2
        .http
        .get(format!("{}/settings", srv2.base))
        .basic_auth("not-a-number", Some(KEY))
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["id"], json!("not-a-number"));
    srv.stop().await;
    srv2.stop().await;
}

#[tokio::test]
async fn find_by_phone_uid_and_code() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;

    let answer = srv
        .ok_get(&format!("/customers/find?phone={}", enc(IVAN)))
        .await;
    let user = &answer["user"];
    assert_eq!(user["displayName"], json!("Иван Петров"));
    assert_eq!(user["phone"], json!(IVAN));
    assert_eq!(user["gender"], json!("MALE"));
    assert_eq!(user["birthDate"], json!("1990-05-06"));
    assert_eq!(user["email"], Value::Null);
    assert_eq!(user["tags"], json!([]));
    let participant = &user["participant"];
    assert_eq!(participant["points"].to_string(), "350.00");
    assert_eq!(dec(&participant["discountRate"]), d("0"));
    assert_eq!(dec(&participant["cashbackRate"]), d("5"));
    assert_eq!(participant["membershipTier"]["uid"], json!("base"));
    assert_eq!(participant["membershipTier"]["name"], json!("Базовый"));
    assert_eq!(dec(&participant["membershipTier"]["rate"]), d("5"));
    assert_eq!(
        dec(&participant["membershipTier"]["maxScoresDiscount"]),
        d("30")
    );
    assert!(participant["dateCreated"].is_string());
    assert_eq!(participant["lastTransactionTime"], Value::Null);
    assert!(answer.get("purchase").is_none(), "{answer}");
    assert!(answer.get("code").is_none(), "{answer}");
    let uid = user["uid"].as_str().unwrap().to_owned();
    let participant_id = id_of(&participant["id"]);
    assert_eq!(participant_id, 1 << 40);
    assert_eq!(sandbox.customer(IVAN).unwrap(), *user);

    // By uid (any case) and by participant id.
    let by_uid = srv.ok_get(&format!("/customers/find?uid={uid}")).await;
    assert_eq!(by_uid["user"], *user);
    let upper = srv
        .ok_get(&format!("/customers/find?uid={}", uid.to_uppercase()))
        .await;
    assert_eq!(upper["user"]["uid"], json!(uid));
    let detail = srv.ok_get(&format!("/customers/{participant_id}")).await;
    assert_eq!(detail, *user);
    let (status, code, _) = srv.get_error("/customers/42").await;
    assert_eq!((status, code.as_str()), (404, "notFound"));

    // By payment code; the code wins over a phone that names someone else.
    let code = sandbox.payment_code(IVAN).unwrap();
    assert_eq!(code.len(), 6);
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    let by_code = srv.ok_get(&format!("/customers/find?code={code}")).await;
    assert_eq!(by_code["user"]["uid"], json!(uid));
    assert_eq!(by_code["type"], json!("PURCHASE"));
    let both = srv
        .ok_get(&format!("/customers/find?code={code}&phone={}", enc(MARIA)))
        .await;
    assert_eq!(both["user"]["uid"], json!(uid));

    // Not found.
    for query in [
        format!("phone={}", enc(STRANGER)),
        "uid=23684cea-ca50-4c5c-b399-eb473e85b5ad".to_owned(),
        "uid=garbage".to_owned(),
        "code=abcdef".to_owned(),
    ] {
        let (status, code, _) = srv.get_error(&format!("/customers/find?{query}")).await;
        assert_eq!((status, code.as_str()), (404, "notFound"), "{query}");
    }
    // A raw '+' decodes to a space: a validation error that names the encoding.
    let (status, _, answer) = srv
        .get_error(&format!("/customers/find?phone={IVAN}"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(fields(&answer), vec![pair("phone", "invalidFormat")]);
    assert_eq!(answer["errors"][0]["value"], json!(" 79990000001"));
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("%2b")
    );
    let (status, _, answer) = srv.get_error("/customers/find").await;
    assert_eq!(status, 400);
    assert_eq!(fields(&answer), vec![pair("phone", "nullable")]);
    let (_, _, answer) = srv
        .get_error(&format!(
            "/customers/find?phone={}&total=abc&exchangeCode=yes&skipLoyaltyTotal=-1",
            enc(IVAN)
        ))
        .await;
    assert_eq!(
        fields(&answer),
        vec![
            pair("exchangeCode", "typeMismatch"),
            pair("total", "typeMismatch"),
            pair("skipLoyaltyTotal", "min"),
        ]
    );

    // Blocked customers are refused.
    let (status, code, _) = srv
        .get_error(&format!("/customers/find?phone={}", enc(BLOCKED)))
        .await;
    assert_eq!((status, code.as_str()), (400, "participantIsBlocked"));
    srv.stop().await;
}

#[tokio::test]
async fn find_with_total_shows_the_purchase() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    // uds.md's example: total 1000 → maxPoints 300, cash 1000, cashBack 50, points 0.
    let answer = srv
        .ok_get(&format!("/customers/find?phone={}&total=1000", enc(IVAN)))
        .await;
    assert_figures(
        &answer["purchase"],
        &[
            ("maxPoints", "300"),
            ("total", "1000"),
            ("cash", "1000"),
            ("cashBack", "50"),
            ("points", "0"),
            ("maxScoresDiscount", "30"),
        ],
    );
    assert_eq!(answer["purchase"]["maxPoints"].to_string(), "300.00");

    // skip 100 and unredeemable 300: redeemable 600 → 180; cashback on 900.
    let answer = srv
        .ok_get(&format!(
            "/customers/find?phone={}&total=1000.00&skipLoyaltyTotal=100&unredeemableTotal=300",
            enc(IVAN)
        ))
        .await;
    assert_figures(
        &answer["purchase"],
        &[
            ("maxPoints", "180"),
            ("skipLoyaltyTotal", "100"),
            ("unredeemableTotal", "300"),
            ("cashBack", "45"),
        ],
    );

    // By uid nothing can be spent.
    let uid = sandbox.customer(IVAN).unwrap()["uid"].clone();
    let answer = srv
        .ok_get(&format!(
            "/customers/find?uid={}&total=1000",
            uid.as_str().unwrap()
        ))
        .await;
    assert_figures(
        &answer["purchase"],
        &[("maxPoints", "0"), ("cashBack", "50")],
    );

    let (status, _, answer) = srv
        .get_error(&format!(
            "/customers/find?phone={}&total=100&skipLoyaltyTotal=60&unredeemableTotal=50",
            enc(IVAN)
        ))
        .await;
    assert_eq!(status, 400);
    assert_eq!(fields(&answer), vec![pair("total", "invalid")]);
    srv.stop().await;
}

#[tokio::test]
async fn exchange_code_swaps_a_payment_code_for_a_long_one() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let short = sandbox.payment_code(IVAN).unwrap();
    let answer = srv
        .ok_get(&format!(
            "/customers/find?code={short}&exchangeCode=true&total=1000"
        ))
        .await;
    let long = answer["code"].as_str().unwrap().to_owned();
    assert_eq!(long.len(), 12, "{long}");
    assert!(long.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(dec(&answer["purchase"]["maxPoints"]), d("300"));

    // The short code is used up; the long one works everywhere, and stays as it is.
    let (status, code, _) = srv
        .get_error(&format!("/customers/find?code={short}"))
        .await;
    assert_eq!((status, code.as_str()), (404, "notFound"));
    let again = srv
        .ok_get(&format!("/customers/find?code={long}&exchangeCode=TRUE"))
        .await;
    assert_eq!(again["code"], json!(long));
    let calc = srv
        .ok_post(
            "/operations/calc",
            by_code(&long, json!({"total": n("1000"), "points": n("100")})),
        )
        .await;
    assert_eq!(dec(&calc["purchase"]["points"]), d("100"));

    // Without a code there is nothing to exchange.
    let by_phone = srv
        .ok_get(&format!(
            "/customers/find?phone={}&exchangeCode=true",
            enc(IVAN)
        ))
        .await;
    assert_eq!(by_phone["code"], Value::Null);
    assert!(by_phone.as_object().unwrap().contains_key("code"));
    let plain = srv
        .ok_get(&format!("/customers/find?code={long}&exchangeCode=false"))
        .await;
    assert!(plain.get("code").is_none());
    srv.stop().await;
}

#[test]
fn codes_expire() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let short = sandbox.payment_code(IVAN).unwrap();
    let mut state = sandbox.shared.lock();
    let now = Now::current();
    let later = |minutes: u64| Now {
        wall: now.wall,
        mono: now.mono + Duration::from_secs(minutes * 60),
    };
    let find = |state: &mut State, code: &str, at: &Now| {
        state
            .apply(
                Route::FindCustomer,
                &format!("code={code}&exchangeCode=true"),
                &Map::new(),
                at,
            )
            .map_err(|e| e.code)
    };
    assert_eq!(
        find(&mut state, &short, &later(46)).unwrap_err(),
        "notFound"
    );
    let answer = find(&mut state, &short, &later(44)).unwrap();
    let long = answer["code"].as_str().unwrap().to_owned();
    // Issued at minute 44, valid for 24 h.
    assert!(find(&mut state, &long, &later(44 + 24 * 60 - 1)).is_ok());
    assert_eq!(
        find(&mut state, &long, &later(44 + 24 * 60 + 1)).unwrap_err(),
        "notFound"
    );
    // Expired codes are dropped when the next one is issued.
    state.issue_code(0, later(24 * 60 * 2).mono, false);
    assert_eq!(state.codes.len(), 1);
}
