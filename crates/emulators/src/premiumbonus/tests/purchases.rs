//! `/purchase-dry-run`, `/purchase`, approval, write-off confirmation and `/cancel-purchase`.

use super::*;

#[tokio::test]
async fn dry_run_figures_worked_by_hand() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    let srv = start(&sandbox).await;
    let dry = |write_off: &str| {
        json!({"phone": IVANOV, "sale_point_id": "3f04c71b-fbd7-4310-a84b-6fd34f0bd8ff",
               "items": three_items(), "write_off_bonus": n(write_off)})
    };
    // 100.00 = 10000 kopecks over 30000 : 10000 : 3333 (sum 43333):
    //   floors 6923, 2307, 769 = 9999; remainders 5641, 30769, 6923 → B gets the last one.
    //   Paid 230.77, 76.92, 25.64; earned 5 %: 11.5385 → 11.53, 3.846 → 3.84, 1.282 → 1.28.
    let answer = srv.ok("/purchase-dry-run", dry("100")).await;
    assert_eq!(answer["purchase_amount"].to_string(), "433.33");
    assert_eq!(answer["payment_amount"].to_string(), "333.33");
    assert_eq!(answer["total_write_off_bonus"].to_string(), "100.00");
    assert_eq!(answer["total_write_on_bonus"].to_string(), "16.65");
    assert_eq!(answer["total_discount_external"].to_string(), "0.00");
    assert_eq!(answer["total_discount_premiumbonus"].to_string(), "0.00");
    assert_eq!(answer["balance"].to_string(), "500.00");
    assert_eq!(answer["print_on_check"], json!("Спасибо за покупку!"));
    let items = answer["items"].as_array().unwrap();
    let figures: Vec<(Value, String, String, String, String, String)> = items
        .iter()
        .map(|i| {
            (
                i["external_item_id"].clone(),
                i["quantity"].to_string(),
                i["amount"].to_string(),
                i["write_off_bonus"].to_string(),
                i["write_on_bonus"].to_string(),
                i["payment_amount"].to_string(),
            )
        })
        .collect();
    let row = |id: Value, q: &str, a: &str, off: &str, on: &str, pay: &str| {
        (id, q.into(), a.into(), off.into(), on.into(), pay.into())
    };
    assert_eq!(
        figures,
        [
            row(json!("A-1"), "3", "300.00", "69.23", "11.53", "230.77"),
            row(json!("B-1"), "1", "100.00", "23.08", "3.84", "76.92"),
            row(Value::Null, "1", "33.33", "7.69", "1.28", "25.64"),
        ]
    );
    assert_eq!(items[2]["name"], json!("Пакет"));

    // The maximum is 50 % of 433.33 = 216.665, rounded down.
    let description = srv.refused("/purchase-dry-run", dry("216.67")).await;
    assert!(description.contains("maximum 216.66"), "{description}");
    assert!(description.contains("balance 500.00"), "{description}");
    let answer = srv.ok("/purchase-dry-run", dry("216.66")).await;
    assert_eq!(answer["payment_amount"].to_string(), "216.67");
    // Without a write-off, everything earns: 15.00 + 5.00 + 1.6665 → 1.66.
    let answer = srv.ok("/purchase-dry-run", dry("0")).await;
    assert_eq!(answer["total_write_on_bonus"].to_string(), "21.66");

    // The balance caps the write-off too.
    sandbox.add_buyer(PbBuyer {
        phone: Some("79995550000".into()),
        balance: d("12.345"),
        ..PbBuyer::default()
    });
    let mut body = dry("12.35");
    body["phone"] = json!("79995550000");
    let description = srv.refused("/purchase-dry-run", body.clone()).await;
    assert!(description.contains("maximum 12.34"), "{description}");

    // Unregistered: no bonuses at all; blocked: refused.
    let answer = srv
        .ok(
            "/purchase-dry-run",
            json!({"phone": "79110000000", "items": three_items()}),
        )
        .await;
    assert_eq!(answer["total_write_on_bonus"].to_string(), "0.00");
    assert_eq!(answer["balance"].to_string(), "0.00");
    assert_eq!(answer["payment_amount"].to_string(), "433.33");
    let mut body = dry("0.01");
    body["phone"] = json!("79110000000");
    let description = srv.refused("/purchase-dry-run", body).await;
    assert!(description.contains("not registered"), "{description}");
    let description = srv
        .refused(
            "/purchase-dry-run",
            json!({"identificator": "PB-0009", "items": three_items()}),
        )
        .await;
    assert!(description.contains("blocked"), "{description}");

    // Discounts are echoed: the receipt's, else the items' sum.
    let mut items = three_items();
    items[0]["discount"] = n("10");
    items[1]["discount"] = n("5.5");
    let answer = srv
        .ok(
            "/purchase-dry-run",
            json!({"identificator": "PB-0001", "items": items.clone()}),
        )
        .await;
    assert_eq!(answer["total_discount_external"].to_string(), "15.50");
    assert_eq!(answer["purchase_amount"].to_string(), "433.33");
    let answer = srv
        .ok(
            "/purchase-dry-run",
            json!({"identificator": "PB-0001", "items": items, "discount": 7}),
        )
        .await;
    assert_eq!(answer["total_discount_external"].to_string(), "7.00");

    let bad_items = [
        (json!([]), "at least one item"),
        (json!("A"), "items must be an array"),
        (json!([item(None, "A", "1.005", "1")]), "at most 2 decimals"),
        (json!([item(None, "A", "-1", "1")]), "between 0 and"),
        (json!([item(None, "A", "1e13", "1")]), "between 0 and"),
        (
            json!([item(None, "A", "1", "0")]),
            "quantity must be above 0",
        ),
        (
            json!([{"name": "A", "amount": "1", "quantity": 1}]),
            "amount must be a number",
        ),
        (
            json!([{"amount": 1, "quantity": 1}]),
            "items[0].name is required",
        ),
        (
            json!([{"name": "A", "quantity": 1}]),
            "items[0].amount is required",
        ),
        (
            json!([{"name": "A", "amount": 1}]),
            "items[0].quantity is required",
        ),
        (
            json!([{"name": "A", "amount": 1, "quantity": 1, "external_item_id": []}]),
            "external_item_id",
        ),
        (json!([1]), "items[0] must be an object"),
    ];
    for (items, expected) in bad_items {
        let description = srv
            .refused(
                "/purchase-dry-run",
                json!({"phone": IVANOV, "items": items}),
            )
            .await;
        assert!(description.contains(expected), "{description}");
    }
    let description = srv
        .refused(
            "/purchase-dry-run",
            json!({"phone": IVANOV, "items": three_items(), "sale_point_id": "x"}),
        )
        .await;
    assert!(description.contains("sale_point_id"), "{description}");
    let description = srv
        .refused("/purchase-dry-run", json!({"items": three_items()}))
        .await;
    assert!(
        description.contains("phone or identificator"),
        "{description}"
    );

    // Dry runs change nothing.
    assert_eq!(sandbox.balance(IVANOV), Some(d("500")));
    srv.stop().await;
}

#[tokio::test]
async fn purchase_follows_the_documented_example_and_is_idempotent() {
    let sandbox = PremiumBonusSandbox::new(TOKEN);
    sandbox.add_buyer(PbBuyer {
        phone: Some("79991234567".into()),
        balance: d("400"),
        ..PbBuyer::default()
    });
    let srv = start(&sandbox).await;
    let body: Value = serde_json::from_str(
        r#"{"phone": "79991234567", "sale_point_id": "3f04c71b-fbd7-4310-a84b-6fd34f0bd8ff",
            "external_purchase_id": "ms-6b1e0c2a", "cashier_name": "Кассир 2", "write_off_bonus": 100,
            "items": [{"external_item_id": "A-100", "name": "Кофе 250г", "quantity": 2, "amount": 1000.00}],
            "purchase_status": "approved"}"#,
    )
    .unwrap();
    let first = srv.ok("/purchase", body.clone()).await;
    assert_eq!(first["external_purchase_id"], json!("ms-6b1e0c2a"));
    assert!(Uuid::parse_str(first["purchase_id"].as_str().unwrap()).is_ok());
    assert_eq!(first["purchase_amount"].to_string(), "1000.00");
    assert_eq!(first["payment_amount"].to_string(), "900.00");
    assert_eq!(first["total_write_off_bonus"].to_string(), "100.00");
    assert_eq!(first["total_write_on_bonus"].to_string(), "45.00");
    assert_eq!(first["total_discount_external"].to_string(), "0.00");
    assert_eq!(first["total_discount_premiumbonus"].to_string(), "0.00");
    assert_eq!(first["balance"].to_string(), "345.00");
    assert_eq!(first["print_on_check"], json!("Спасибо за покупку!"));
    assert_eq!(first["purchase_status"], json!("approved"));
    assert_eq!(
        first["items"],
        json!([{"external_item_id": "A-100", "name": "Кофе 250г", "quantity": 2,
                "amount": n("1000.00"), "write_off_bonus": n("100.00"),
                "write_on_bonus": n("45.00"), "payment_amount": n("900.00")}])
    );
    assert_eq!(sandbox.balance("79991234567"), Some(d("345")));

    // A repeat, even with another body, answers the first purchase and changes nothing.
    let mut other = body.clone();
    other["write_off_bonus"] = json!(5);
    for repeat in [body.clone(), other] {
        let again = srv.ok("/purchase", repeat).await;
        let strip = |v: &Value| {
            let mut v = v.as_object().cloned().unwrap();
            v.remove("logger");
            v
        };
        assert_eq!(strip(&again), strip(&first));
        assert_ne!(again["logger"], first["logger"]);
    }
    assert_eq!(sandbox.balance("79991234567"), Some(d("345")));
    assert_eq!(sandbox.calls("/purchase"), 3);

    // purchase-info by either id.
    let id = first["purchase_id"].as_str().unwrap().to_owned();
    for query in [
        json!({"purchase_id": id}),
        json!({"purchase_id": id.to_uppercase()}),
        json!({"external_purchase_id": "ms-6b1e0c2a"}),
        json!({"purchase_id": id, "external_purchase_id": "ms-6b1e0c2a"}),
    ] {
        let info = srv.ok("/purchase-info", query).await;
        assert_eq!(info["purchase_id"], json!(id));
        assert_eq!(info["total_write_on_bonus"].to_string(), "45.00");
        assert_eq!(info["purchase_status"], json!("approved"));
        assert_eq!(info["balance"].to_string(), "345.00");
    }
    for (query, expected) in [
        (
            json!({"purchase_id": id, "external_purchase_id": "other"}),
            "different purchases",
        ),
        (json!({"external_purchase_id": "nope"}), "not found"),
        (
            json!({"purchase_id": Uuid::new_v4().to_string()}),
            "not found",
        ),
        (json!({"purchase_id": "nope"}), "must be a UUID"),
        (json!({}), "purchase_id or external_purchase_id is required"),
    ] {
        let description = srv.refused("/purchase-info", query).await;
        assert!(description.contains(expected), "{description}");
    }

    let mut without_id = body.clone();
    without_id
        .as_object_mut()
        .unwrap()
        .remove("external_purchase_id");
    let description = srv.refused("/purchase", without_id).await;
    assert!(description.contains("external_purchase_id is required"));
    let mut bad_status = body.clone();
    bad_status["external_purchase_id"] = json!("ms-2");
    bad_status["purchase_status"] = json!("done");
    let description = srv.refused("/purchase", bad_status).await;
    assert!(description.contains("purchase_status"), "{description}");
    // A refused purchase leaves its external_purchase_id free.
    let mut too_much = body.clone();
    too_much["external_purchase_id"] = json!("ms-2");
    too_much["write_off_bonus"] = json!(346);
    let description = srv.refused("/purchase", too_much.clone()).await;
    assert!(description.contains("maximum 345.00"), "{description}");
    too_much["write_off_bonus"] = json!(0);
    let answer = srv.ok("/purchase", too_much).await;
    assert_eq!(answer["balance"].to_string(), "395.00");

    // Anonymous purchases succeed without bonuses.
    let answer = srv
        .ok(
            "/purchase",
            purchase_body("anon", "79110000000", "0", three_items()),
        )
        .await;
    assert_eq!(answer["total_write_on_bonus"].to_string(), "0.00");
    assert_eq!(answer["balance"].to_string(), "0.00");
    srv.stop().await;
}

#[tokio::test]
async fn not_approved_purchases_credit_on_approval() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    let srv = start(&sandbox).await;
    let mut body = purchase_body(
        "na-1",
        IVANOV,
        "100",
        json!([item(Some("A"), "A", "1000", "1")]),
    );
    body["purchase_status"] = json!("not_approved");
    let answer = srv.ok("/purchase", body).await;
    assert_eq!(answer["purchase_status"], json!("not_approved"));
    assert_eq!(answer["total_write_on_bonus"].to_string(), "45.00");
    assert_eq!(answer["balance"].to_string(), "400.00");
    let info = srv
        .ok("/buyer-info", json!({"identificator": IVANOV}))
        .await;
    assert_eq!(info["bonus_inactive"].to_string(), "45.00");

    let change = |status: &str| json!({"external_purchase_id": "na-1", "status": status});
    // Setting the status it already has does nothing.
    srv.ok("/change-purchase-status", change("not_approved"))
        .await;
    assert_eq!(sandbox.balance(IVANOV), Some(d("400")));
    let answer = srv.ok("/change-purchase-status", change("approved")).await;
    assert_eq!(answer["purchase_status"], json!("approved"));
    assert_eq!(answer["balance"].to_string(), "445.00");
    srv.ok("/change-purchase-status", change("approved")).await;
    assert_eq!(sandbox.balance(IVANOV), Some(d("445")));
    let info = srv
        .ok("/buyer-info", json!({"identificator": IVANOV}))
        .await;
    assert_eq!(info["bonus_inactive"].to_string(), "0.00");
    let description = srv
        .refused("/change-purchase-status", change("not_approved"))
        .await;
    assert!(description.contains("cannot go back"), "{description}");
    srv.refused("/change-purchase-status", change("done")).await;
    srv.refused(
        "/change-purchase-status",
        json!({"external_purchase_id": "na-1"}),
    )
    .await;

    // A cancelled not_approved purchase drops its pending bonuses.
    let mut body = purchase_body("na-2", IVANOV, "45", json!([item(None, "B", "200", "1")]));
    body["purchase_status"] = json!("not_approved");
    srv.ok("/purchase", body).await;
    assert_eq!(sandbox.balance(IVANOV), Some(d("400")));
    let answer = srv
        .ok("/cancel-purchase", json!({"external_purchase_id": "na-2"}))
        .await;
    assert_eq!(answer["purchase_status"], json!("cancelled"));
    assert_eq!(answer["balance"].to_string(), "445.00");
    let info = srv
        .ok("/buyer-info", json!({"identificator": IVANOV}))
        .await;
    assert_eq!(info["bonus_inactive"].to_string(), "0.00");
    let description = srv
        .refused(
            "/change-purchase-status",
            json!({"external_purchase_id": "na-2", "status": "approved"}),
        )
        .await;
    assert!(description.contains("cancelled"), "{description}");
    srv.stop().await;
}

#[tokio::test]
async fn write_offs_need_a_verified_phone_when_required() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    sandbox.set_settings(PbSettings {
        write_off_confirmation_required: true,
        ..PbSettings::default()
    });
    let srv = start(&sandbox).await;
    let items = json!([item(None, "A", "100", "1")]);
    let info = srv
        .ok("/buyer-info", json!({"identificator": IVANOV}))
        .await;
    assert_eq!(info["write_off_confirmation_required"], json!(true));

    // Dry runs and purchases without a write-off need no code.
    srv.ok(
        "/purchase-dry-run",
        json!({"phone": IVANOV, "items": items, "write_off_bonus": 50}),
    )
    .await;
    srv.ok(
        "/purchase",
        purchase_body("w-0", IVANOV, "0", items.clone()),
    )
    .await;
    let description = srv
        .refused(
            "/purchase",
            purchase_body("w-1", IVANOV, "50", items.clone()),
        )
        .await;
    assert!(description.contains("must be confirmed"), "{description}");
    assert_eq!(sandbox.balance(IVANOV), Some(d("505")));

    srv.ok(
        "/send-write-off-confirmation-code",
        json!({"phone": IVANOV, "purchase_amount": 100, "write_off_bonus": 50}),
    )
    .await;
    // A code that was sent but not verified is not enough.
    srv.refused(
        "/purchase",
        purchase_body("w-1", IVANOV, "50", items.clone()),
    )
    .await;
    let code = sandbox.last_code(IVANOV).unwrap();
    srv.ok(
        "/verify-confirmation-code",
        json!({"phone": IVANOV, "code": code}),
    )
    .await;
    // By card: the verification belongs to the buyer's phone.
    let mut by_card = purchase_body("w-1", IVANOV, "50", items.clone());
    by_card.as_object_mut().unwrap().remove("phone");
    by_card["identificator"] = json!("PB-0001");
    let answer = srv.ok("/purchase", by_card).await;
    assert_eq!(answer["total_write_off_bonus"].to_string(), "50.00");
    // 505 − 50 + 2.50
    assert_eq!(sandbox.balance(IVANOV), Some(d("457.5")));
    srv.stop().await;
}

#[tokio::test]
async fn cancel_reverses_everything_once() {
    let sandbox = PremiumBonusSandbox::new(TOKEN);
    let phone = "79995550001";
    sandbox.add_buyer(PbBuyer {
        phone: Some(phone.into()),
        ..PbBuyer::default()
    });
    let srv = start(&sandbox).await;
    // Earn 50.00, then spend it all on another purchase (+2.50).
    let first = srv
        .ok(
            "/purchase",
            purchase_body("c-1", phone, "0", json!([item(None, "A", "1000", "1")])),
        )
        .await;
    srv.ok(
        "/purchase",
        purchase_body("c-2", phone, "50", json!([item(None, "B", "100", "1")])),
    )
    .await;
    assert_eq!(sandbox.balance(phone), Some(d("2.5")));

    // Cancelling the first takes its 50.00 back: the balance goes negative.
    let id = first["purchase_id"].as_str().unwrap().to_owned();
    let cancelled = srv.ok("/cancel-purchase", json!({"purchase_id": id})).await;
    assert_eq!(cancelled["purchase_status"], json!("cancelled"));
    assert_eq!(cancelled["total_write_on_bonus"].to_string(), "50.00");
    assert_eq!(cancelled["balance"].to_string(), "-47.50");
    assert_eq!(sandbox.balance(phone), Some(d("-47.5")));
    let info = srv.ok("/buyer-info", json!({"phone": phone})).await;
    assert_eq!(info["balance"].to_string(), "-47.50");
    // Nothing can be written off from a negative balance.
    let description = srv
        .refused(
            "/purchase-dry-run",
            json!({"phone": phone, "items": [item(None, "A", "10", "1")], "write_off_bonus": 0.01}),
        )
        .await;
    assert!(description.contains("maximum 0.00"), "{description}");

    // A repeated cancel answers the same and changes nothing.
    let again = srv
        .ok("/cancel-purchase", json!({"external_purchase_id": "c-1"}))
        .await;
    assert_eq!(again["balance"], cancelled["balance"]);
    assert_eq!(again["purchase_id"], cancelled["purchase_id"]);
    assert_eq!(sandbox.balance(phone), Some(d("-47.5")));

    // The second purchase: its 50.00 written off comes back, its 2.50 goes.
    let answer = srv
        .ok("/cancel-purchase", json!({"external_purchase_id": "c-2"}))
        .await;
    assert_eq!(answer["balance"].to_string(), "0.00");

    let info = srv
        .ok("/purchase-info", json!({"external_purchase_id": "c-1"}))
        .await;
    assert_eq!(info["purchase_status"], json!("cancelled"));
    // A repeated /purchase still answers the first answer.
    let repeat = srv
        .ok(
            "/purchase",
            purchase_body("c-1", phone, "0", json!([item(None, "A", "1000", "1")])),
        )
        .await;
    assert_eq!(repeat["purchase_status"], json!("approved"));
    assert_eq!(sandbox.balance(phone), Some(Decimal::ZERO));

    let description = srv
        .refused("/cancel-purchase", json!({"external_purchase_id": "nope"}))
        .await;
    assert!(description.contains("not found"), "{description}");
    let description = srv
        .refused(
            "/edit-purchase",
            json!({"external_purchase_id": "c-1", "items": []}),
        )
        .await;
    assert!(description.contains("cancelled"), "{description}");
    srv.stop().await;
}
