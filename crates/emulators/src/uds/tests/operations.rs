//! `POST /operations`: what calc computed is committed, refused the same way, and nonces.

use super::*;

#[tokio::test]
async fn operations_commit_what_calc_computed() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let receipt = json!({"total": n("1000.00"), "points": n("200.00"),
                         "skipLoyaltyTotal": n("100.00")});
    let calc = srv
        .ok_post("/operations/calc", by_phone(IVAN, receipt.clone()))
        .await;
    let cash = calc["purchase"]["cash"].clone();

    // A wrong cash is refused and changes nothing.
    let mut wrong = receipt.clone();
    wrong["cash"] = n("900.00");
    let (status, code, answer) = srv
        .post_error("/operations", purchase(IVAN, None, wrong))
        .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "invalidChecksum"),
        "{answer}"
    );
    assert!(answer["message"].as_str().unwrap().contains("800.00"));
    assert_eq!(sandbox.points(IVAN), Some(d("350")));

    let mut right = receipt.clone();
    right["cash"] = cash;
    right["number"] = json!("00042");
    let op = srv
        .ok_post("/operations", purchase(IVAN, None, right))
        .await;
    let id = id_of(&op["id"]);
    assert_eq!(id, FIRST_OPERATION_ID);
    assert_eq!(op["action"], json!("PURCHASE"));
    assert_eq!(op["state"], json!("NORMAL"));
    assert_eq!(op["points"].to_string(), "-200.00");
    assert_eq!(dec(&op["cash"]), d("800"));
    assert_eq!(dec(&op["total"]), d("1000"));
    assert_eq!(dec(&op["certificatePoints"]), d("0"));
    assert_eq!(op["receiptNumber"], json!("00042"));
    assert_eq!(op["origin"], Value::Null);
    assert_eq!(op["customer"]["displayName"], json!("Иван Петров"));
    assert_eq!(id_of(&op["customer"]["id"]), 1 << 40);
    assert_eq!(
        op["customer"]["uid"],
        sandbox.customer(IVAN).unwrap()["uid"]
    );
    assert_eq!(op["cashier"], json!({"id": 1, "displayName": "Кассир 2"}));
    assert_eq!(
        op["branch"],
        json!({"id": BRANCH_ID, "displayName": BRANCH_NAME})
    );
    assert!(op["dateCreated"].as_str().unwrap().ends_with('Z'));
    // 350 − 200 + 35.
    assert_eq!(sandbox.points(IVAN), Some(d("185")));
    assert_eq!(sandbox.operation(id), Some(op.clone()));
    assert_eq!(srv.ok_get(&format!("/operations/{id}")).await, op);
    let found = srv
        .ok_get(&format!("/customers/find?phone={}", enc(IVAN)))
        .await;
    assert!(found["user"]["participant"]["lastTransactionTime"].is_string());
    let (status, code, _) = srv.get_error("/operations/1").await;
    assert_eq!((status, code.as_str()), (404, "notFound"));

    // Required fields, and the ones checked only here.
    let (status, _, answer) = srv
        .post_error(
            "/operations",
            json!({"participant": {"phone": IVAN},
                   "cashier": {"name": "Кассир", "externalId": "касса 1"},
                   "receipt": {"total": n("100"), "number": 42}, "tags": ["vip"]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        fields(&answer),
        vec![
            pair("receipt.cash", "nullable"),
            pair("receipt.points", "nullable"),
            pair("receipt.number", "typeMismatch"),
            pair("cashier.externalId", "invalidFormat"),
            pair("tags", "typeMismatch"),
        ]
    );

    // By uid without points; by code with points; the same cashier keeps its id.
    let uid = sandbox.customer(MARIA).unwrap()["uid"].clone();
    let op = srv
        .ok_post(
            "/operations",
            json!({"participant": {"uid": uid},
                   "cashier": {"externalId": "store1_kassa2"},
                   "receipt": {"total": n("100"), "cash": n("100"), "points": n("0")},
                   "tags": [1, 2]}),
        )
        .await;
    assert_eq!(
        op["cashier"],
        json!({"id": 1, "displayName": "store1_kassa2"})
    );
    assert_eq!(sandbox.points(MARIA), Some(d("5")));
    let code = sandbox.payment_code(IVAN).unwrap();
    let op = srv
        .ok_post(
            "/operations",
            json!({"code": code, "cashier": {"externalId": "kassa-3.1"},
                   "receipt": {"total": n("100"), "cash": n("70"), "points": n("30")}}),
        )
        .await;
    assert_eq!(id_of(&op["cashier"]["id"]), 2);
    // 185 − 30 + 3.50.
    assert_eq!(sandbox.points(IVAN), Some(d("158.50")));

    // An unregistered phone buys without points or cashback; no cashier → null.
    let op = srv
        .ok_post(
            "/operations",
            json!({"participant": {"phone": STRANGER},
                   "receipt": {"total": n("500"), "cash": n("500"), "points": n("0")}}),
        )
        .await;
    assert_eq!(
        op["customer"],
        json!({"id": null, "uid": null, "displayName": STRANGER, "membershipTier": null})
    );
    assert_eq!(op["cashier"], Value::Null);
    srv.stop().await;
}

#[tokio::test]
async fn operations_refuse_what_calc_refuses() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let uid = sandbox.customer(IVAN).unwrap()["uid"].clone();
    let receipt = |total: &str, cash: &str, points: &str| json!({"total": n(total), "cash": n(cash), "points": n(points)});
    let cases = [
        (
            purchase(IVAN, None, receipt("1000", "699", "301")),
            400,
            "discountLimitExceed",
        ),
        (
            purchase(IVAN, None, receipt("2000", "1649", "351")),
            400,
            "insufficientFunds",
        ),
        (
            purchase(BLOCKED, None, receipt("100", "100", "0")),
            400,
            "participantIsBlocked",
        ),
        (
            json!({"participant": {"uid": uid}, "receipt": receipt("100", "90", "10")}),
            400,
            "withdrawNotPermitted",
        ),
        (
            json!({"code": "abcdef", "receipt": receipt("100", "100", "0")}),
            404,
            "notFound",
        ),
        // Checked before the checksum: the points are wrong, not the cash.
        (
            purchase(MARIA, None, receipt("100", "1", "10")),
            400,
            "insufficientFunds",
        ),
    ];
    for (body, want_status, want) in cases {
        let (status, code, answer) = srv.post_error("/operations", body.clone()).await;
        assert_eq!(
            (status, code.as_str()),
            (want_status, want),
            "{body}: {answer}"
        );
    }
    sandbox.set_settings(UdsSettings {
        purchase_by_phone: false,
        ..UdsSettings::default()
    });
    let (status, code, _) = srv
        .post_error(
            "/operations",
            purchase(IVAN, None, receipt("100", "100", "0")),
        )
        .await;
    assert_eq!((status, code.as_str()), (400, "purchaseByPhoneDisabled"));
    assert_eq!(sandbox.points(IVAN), Some(d("350")));
    assert_eq!(sandbox.points(MARIA), Some(d("0")));
    assert_eq!(sandbox.operation(FIRST_OPERATION_ID), None);
    srv.stop().await;
}

#[tokio::test]
async fn a_repeated_nonce_returns_the_first_operation() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let nonce = "6f1c1a8e-2f4b-4b8a-9d7e-1b2c3d4e5f60";
    let receipt = json!({"total": n("1000"), "cash": n("800"), "points": n("200")});

    // A failed attempt does not use the nonce up.
    let mut wrong = receipt.clone();
    wrong["cash"] = n("1000");
    let (_, code, _) = srv
        .post_error("/operations", purchase(IVAN, Some(nonce), wrong))
        .await;
    assert_eq!(code, "invalidChecksum");

    let first = srv
        .ok_post("/operations", purchase(IVAN, Some(nonce), receipt.clone()))
        .await;
    let again = srv
        .ok_post("/operations", purchase(IVAN, Some(nonce), receipt.clone()))
        .await;
    assert_eq!(again, first);
    // Even a different body gets the first operation back.
    let other = srv
        .ok_post(
            "/operations",
            purchase(MARIA, Some(nonce), json!({"total": n("1")})),
        )
        .await;
    assert_eq!(other, first);
    // 350 − 200 + 40, once.
    assert_eq!(sandbox.points(IVAN), Some(d("190")));
    assert_eq!(sandbox.points(MARIA), Some(d("0")));
    // Another nonce is another purchase.
    let second = srv
        .ok_post(
            "/operations",
            purchase(
                IVAN,
                Some("another"),
                json!({"total": n("100"), "cash": n("100"),
                                                    "points": n("0")}),
            ),
        )
        .await;
    assert_ne!(second["id"], first["id"]);
    assert_eq!(sandbox.points(IVAN), Some(d("195")));
    srv.stop().await;
}
