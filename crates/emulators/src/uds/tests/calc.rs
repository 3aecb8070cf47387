//! `POST /operations/calc`: the documented example, figures worked by hand, policies, refusals and validation.

use super::*;

#[tokio::test]
async fn calc_follows_the_documented_example() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let answer = srv
        .ok_post(
            "/operations/calc",
            by_phone(
                IVAN,
                json!({"total": n("1000.00"), "points": n("200.00"),
                       "skipLoyaltyTotal": n("100.00"), "unredeemableTotal": n("0")}),
            ),
        )
        .await;
    assert_eq!(answer["user"]["displayName"], json!("Иван Петров"));
    assert_eq!(dec(&answer["user"]["participant"]["points"]), d("350"));
    let purchase = &answer["purchase"];
    assert_figures(
        purchase,
        &[
            ("total", "1000"),
            ("maxPoints", "270"),
            ("points", "200"),
            ("pointsPercent", "20"),
            ("discountAmount", "0"),
            ("discountPercent", "0"),
            ("netDiscount", "200"),
            ("netDiscountPercent", "20"),
            ("cash", "800"),
            ("cashTotal", "800"),
            ("cashBack", "35"),
            ("skipLoyaltyTotal", "100"),
            ("unredeemableTotal", "0"),
            ("certificatePoints", "0"),
            ("maxScoresDiscount", "30"),
        ],
    );
    assert_eq!(purchase["extras"], json!({}));
    assert_eq!(purchase["cash"].to_string(), "800.00");
    // Calc changes nothing.
    assert_eq!(sandbox.points(IVAN), Some(d("350")));
    srv.stop().await;
}

#[tokio::test]
async fn calc_figures_worked_by_hand() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let calc = |receipt: Value| by_phone(IVAN, receipt);

    // Points omitted: as many as allowed. base 900, redeemable 600 → 180 (balance 350).
    let answer = srv
        .ok_post(
            "/operations/calc",
            calc(json!({"total": n("1000"), "skipLoyaltyTotal": n("100"),
                        "unredeemableTotal": n("300")})),
        )
        .await;
    assert_figures(
        &answer["purchase"],
        &[
            ("maxPoints", "180"),
            ("points", "180"),
            ("cash", "820"),
            ("cashBack", "36"), // (900 − 180) × 5 %
            ("pointsPercent", "18"),
        ],
    );

    // The balance limits: total 2000 → 30 % is 600, but only 350 points.
    let answer = srv
        .ok_post("/operations/calc", calc(json!({"total": n("2000")})))
        .await;
    assert_figures(
        &answer["purchase"],
        &[("maxPoints", "350"), ("points", "350"), ("cash", "1650")],
    );

    // Rounding: 30 % of 333.33 is 99.999 → 99.99; requested 99.999 → 99.99 too;
    // cashback (333.33 − 99.99) × 5 % = 11.667 → 11.66; 99.99 / 333.33 = 29.9973 % → 30.00.
    let answer = srv
        .ok_post(
            "/operations/calc",
            calc(json!({"total": n("333.33"), "points": n("99.999")})),
        )
        .await;
    assert_figures(
        &answer["purchase"],
        &[
            ("maxPoints", "99.99"),
            ("points", "99.99"),
            ("cash", "233.34"),
            ("cashBack", "11.66"),
            ("pointsPercent", "30.00"),
            ("netDiscountPercent", "30.00"),
        ],
    );
    // Money other than points is rounded half up: 10.005 → 10.01.
    let answer = srv
        .ok_post(
            "/operations/calc",
            calc(json!({"total": n("10.005"), "points": n("0")})),
        )
        .await;
    assert_figures(
        &answer["purchase"],
        &[("total", "10.01"), ("cash", "10.01"), ("cashBack", "0.50")],
    );

    // An unregistered phone: accepted, no user, no points, no cashback.
    let answer = srv
        .ok_post(
            "/operations/calc",
            by_phone(STRANGER, json!({"total": n("500")})),
        )
        .await;
    assert_eq!(answer["user"], Value::Null);
    assert_figures(
        &answer["purchase"],
        &[
            ("maxPoints", "0"),
            ("points", "0"),
            ("cash", "500"),
            ("cashBack", "0"),
        ],
    );

    // By uid: points default to 0.
    let uid = sandbox.customer(IVAN).unwrap()["uid"].clone();
    let answer = srv
        .ok_post(
            "/operations/calc",
            by_uid(uid.as_str().unwrap(), json!({"total": n("1000")})),
        )
        .await;
    assert_figures(
        &answer["purchase"],
        &[("maxPoints", "0"), ("points", "0"), ("cashBack", "50")],
    );

    // The company's limit applies when lower than the customer's.
    sandbox.set_settings(UdsSettings {
        max_scores_discount: d("10"),
        ..UdsSettings::default()
    });
    let answer = srv
        .ok_post("/operations/calc", calc(json!({"total": n("1000")})))
        .await;
    assert_figures(
        &answer["purchase"],
        &[("maxPoints", "100"), ("maxScoresDiscount", "10")],
    );
    srv.stop().await;
}

#[tokio::test]
async fn apply_discount_policy() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    sandbox.add_customer(UdsCustomer {
        phone: "+79990000003".into(),
        display_name: "Анна Скидкина".into(),
        points: d("350"),
        discount_rate: d("10"),
        ..UdsCustomer::default()
    });
    sandbox.set_settings(UdsSettings {
        base_discount_policy: "APPLY_DISCOUNT".into(),
        ..UdsSettings::default()
    });
    let srv = start(&sandbox).await;
    // base 900 → discount 90; redeemable 810 → 30 % = 243; no cashback.
    let answer = srv
        .ok_post(
            "/operations/calc",
            by_phone(
                "+79990000003",
                json!({"total": n("1000"), "skipLoyaltyTotal": n("100"), "points": n("0")}),
            ),
        )
        .await;
    assert_figures(
        &answer["purchase"],
        &[
            ("discountAmount", "90"),
            ("discountPercent", "9"),
            ("maxPoints", "243"),
            ("netDiscount", "90"),
            ("cash", "910"),
            ("cashBack", "0"),
        ],
    );
    let participant = &answer["user"]["participant"];
    assert_eq!(dec(&participant["discountRate"]), d("10"));
    assert_eq!(dec(&participant["cashbackRate"]), d("0"));
    assert_eq!(dec(&participant["membershipTier"]["rate"]), d("10"));

    // Default customers have no discount under APPLY_DISCOUNT, and earn nothing.
    let answer = srv
        .ok_post(
            "/operations/calc",
            by_phone(IVAN, json!({"total": n("1000"), "points": n("100")})),
        )
        .await;
    assert_figures(
        &answer["purchase"],
        &[
            ("discountAmount", "0"),
            ("points", "100"),
            ("netDiscount", "100"),
            ("cash", "900"),
            ("cashBack", "0"),
        ],
    );

    // A purchase with discount and points, then a full refund, adds up.
    let receipt = json!({"total": n("1000"), "skipLoyaltyTotal": n("100"),
                         "points": n("200"), "cash": n("710")});
    let op = srv
        .ok_post("/operations", purchase("+79990000003", None, receipt))
        .await;
    assert_eq!(dec(&op["cash"]), d("710"));
    assert_eq!(sandbox.points("+79990000003"), Some(d("150")));
    let id = id_of(&op["id"]);
    let first = srv
        .ok_post(
            &format!("/operations/{id}/refund"),
            json!({"partialAmount": n("333.33")}),
        )
        .await;
    let rest = srv
        .ok_post(&format!("/operations/{id}/refund"), json!({}))
        .await;
    // Discount 90 × 0.33333 = 29.9997 → 30.00; points 66.666 → 66.66.
    assert_eq!(dec(&first["points"]), d("66.66"));
    assert_eq!(dec(&first["cash"]), d("-236.67"));
    assert_eq!(dec(&first["points"]) + dec(&rest["points"]), d("200"));
    assert_eq!(dec(&first["cash"]) + dec(&rest["cash"]), d("-710"));
    assert_eq!(sandbox.points("+79990000003"), Some(d("350")));
    srv.stop().await;
}

#[tokio::test]
async fn calc_refusals() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let uid = sandbox.customer(IVAN).unwrap()["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases = [
        // 30 % of 1000 is 300.
        (
            by_phone(IVAN, json!({"total": n("1000"), "points": n("300.01")})),
            "discountLimitExceed",
        ),
        // Above the balance of 350 comes first.
        (
            by_phone(IVAN, json!({"total": n("1000"), "points": n("351")})),
            "insufficientFunds",
        ),
        (
            by_phone(IVAN, json!({"total": n("2000"), "points": n("350.01")})),
            "insufficientFunds",
        ),
        (
            by_phone(MARIA, json!({"total": n("1000"), "points": n("10")})),
            "insufficientFunds",
        ),
        (
            by_phone(STRANGER, json!({"total": n("1000"), "points": n("10")})),
            "insufficientFunds",
        ),
        (
            by_uid(&uid, json!({"total": n("1000"), "points": n("10")})),
            "withdrawNotPermitted",
        ),
        (
            by_phone(BLOCKED, json!({"total": n("1000"), "points": n("0")})),
            "participantIsBlocked",
        ),
    ];
    for (body, want) in cases {
        let (status, code, answer) = srv.post_error("/operations/calc", body.clone()).await;
        assert_eq!((status, code.as_str()), (400, want), "{body}: {answer}");
    }
    let blocked_code = sandbox.payment_code(BLOCKED).unwrap();
    let (_, code, _) = srv
        .post_error(
            "/operations/calc",
            by_code(&blocked_code, json!({"total": n("100")})),
        )
        .await;
    assert_eq!(code, "participantIsBlocked");
    for body in [
        by_code("123", json!({"total": n("100")})),
        by_uid(
            "23684cea-ca50-4c5c-b399-eb473e85b5ad",
            json!({"total": n("100")}),
        ),
    ] {
        let (status, code, _) = srv.post_error("/operations/calc", body).await;
        assert_eq!((status, code.as_str()), (404, "notFound"));
    }

    // Settings: spending by phone off → withdrawNotPermitted (and maxPoints 0), a code still
    // spends; purchases by phone off → purchaseByPhoneDisabled, even for unknown phones.
    sandbox.set_settings(UdsSettings {
        use_points_by_phone: false,
        ..UdsSettings::default()
    });
    let (_, code, _) = srv
        .post_error(
            "/operations/calc",
            by_phone(IVAN, json!({"total": n("1000"), "points": n("1")})),
        )
        .await;
    assert_eq!(code, "withdrawNotPermitted");
    let answer = srv
        .ok_post(
            "/operations/calc",
            by_phone(IVAN, json!({"total": n("1000")})),
        )
        .await;
    assert_figures(&answer["purchase"], &[("maxPoints", "0"), ("points", "0")]);
    let ivan_code = sandbox.payment_code(IVAN).unwrap();
    let answer = srv
        .ok_post(
            "/operations/calc",
            by_code(&ivan_code, json!({"total": n("1000")})),
        )
        .await;
    assert_figures(
        &answer["purchase"],
        &[("maxPoints", "300"), ("points", "300")],
    );

    sandbox.set_settings(UdsSettings {
        purchase_by_phone: false,
        ..UdsSettings::default()
    });
    for phone in [IVAN, STRANGER] {
        let (status, code, _) = srv
            .post_error(
                "/operations/calc",
                by_phone(phone, json!({"total": n("1000")})),
            )
            .await;
        assert_eq!((status, code.as_str()), (400, "purchaseByPhoneDisabled"));
    }
    srv.ok_post(
        "/operations/calc",
        by_code(&ivan_code, json!({"total": n("1000")})),
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn calc_validation() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let cases = [
        (
            json!({}),
            vec![pair("participant", "nullable"), pair("receipt", "nullable")],
        ),
        (
            json!({"participant": {"phone": IVAN}, "receipt": {}}),
            vec![pair("receipt.total", "nullable")],
        ),
        (
            json!({"participant": {"phone": IVAN},
                   "receipt": {"total": n("-1"), "points": "10"}}),
            vec![
                pair("receipt.total", "min"),
                pair("receipt.points", "typeMismatch"),
            ],
        ),
        (
            json!({"participant": {"phone": IVAN},
                   "receipt": {"total": n("100"), "skipLoyaltyTotal": n("60"),
                               "unredeemableTotal": n("50")}}),
            vec![pair("receipt.total", "invalid")],
        ),
        (
            json!({"participant": {"phone": "89990000001"},
                   "receipt": {"total": n("1e13")}}),
            vec![
                pair("participant.phone", "invalidFormat"),
                pair("receipt.total", "max"),
            ],
        ),
        (
            json!({"code": 123456, "participant": "x", "receipt": []}),
            vec![
                pair("code", "typeMismatch"),
                pair("participant", "typeMismatch"),
                pair("participant", "nullable"),
                pair("receipt", "typeMismatch"),
            ],
        ),
    ];
    for (body, want) in cases {
        let (status, _, answer) = srv.post_error("/operations/calc", body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(fields(&answer), want, "{body}: {answer}");
    }
    // Each error names its value.
    let (_, _, answer) = srv
        .post_error(
            "/operations/calc",
            json!({"participant": {"phone": IVAN}, "receipt": {}}),
        )
        .await;
    assert_eq!(answer["message"], json!("Validation failed"));
    assert_eq!(
        answer["errors"][0],
        json!({"errorCode": "nullable", "message": "Property [receipt.total] cannot be null",
               "field": "receipt.total", "value": null})
    );
    srv.stop().await;
}
