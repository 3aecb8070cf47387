//! `/v2/calculate-purchase`: bonuses, anonymous receipts, gift cards.

use proptest::prelude::*;

use super::*;

#[tokio::test]
async fn calculate_purchase_follows_the_documented_example() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    let srv = start(&sandbox).await;
    let rows = json!([
        {"id": "pos-1", "qty": 2,
         "product": {"sku": "A-100", "title": "Кофе 250г", "blackPrice": 500.00}},
        {"id": "pos-2", "qty": 1,
         "product": {"sku": "B-7", "title": "Сигареты", "blackPrice": 250.00},
         "noApplyBonuses": true, "noCollectBonuses": true}
    ]);
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(
                ivanov(),
                rows,
                json!({"applyBonuses": 150, "collectBonuses": "auto", "giftCards": ["123456"]}),
            ),
        )
        .await;
    let result = &answer["calculationResult"];
    let first = &result["rows"][0];
    assert_eq!(first["id"], json!("pos-1"));
    assert_eq!(first["totalDiscount"].to_string(), "150.00");
    assert_eq!(dec(&first["discounts"]["bonuses"]), d("150"));
    assert_eq!(dec(&first["discounts"]["auto"]), Decimal::ZERO);
    assert_eq!(int(&first["bonuses"]["applied"]), 150);
    assert_eq!(int(&first["bonuses"]["collected"]), 42); // floor(5% of 850)
    let second = &result["rows"][1];
    assert_eq!(dec(&second["totalDiscount"]), Decimal::ZERO);
    assert_eq!(int(&second["bonuses"]["applied"]), 0);
    assert_eq!(int(&second["bonuses"]["collected"]), 0);
    assert_eq!(dec(&result["summary"]["totalDiscount"]), d("150"));
    assert_eq!(dec(&result["summary"]["discounts"]["bonuses"]), d("150"));
    // The card pays what is left (1250 − 150), up to its balance.
    assert_eq!(result["summary"]["prepaidAmount"].to_string(), "1000.00");
    assert_eq!(int(&result["bonuses"]["applied"]), 150);
    assert_eq!(int(&result["bonuses"]["collected"]), 42);
    assert_eq!(int(&result["bonuses"]["maxToApply"]), 500);
    assert!(result["bonuses"].get("error").is_none());
    let card = &result["giftCards"][0];
    assert_eq!(card["code"], json!("123456"));
    assert_eq!(card["status"], json!("ACTIVE"));
    assert_eq!(dec(&card["usedAmount"]), d("1000"));
    assert!(card.get("error").is_none());
    // A calculation changes nothing.
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(500));
    assert_eq!(sandbox.gift_card_balance("123456"), Some(d("1000.00")));
    srv.stop().await;
}

#[tokio::test]
async fn applied_bonuses_are_spread_to_the_kopeck() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    let srv = start(&sandbox).await;
    let three = json!([
        row("a", "A", 100.0, 1),
        row("b", "B", 100.0, 1),
        row("c", "C", 100.0, 1)
    ]);

    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(ivanov(), three.clone(), json!({"applyBonuses": 100})),
        )
        .await;
    let rows = answer["calculationResult"]["rows"]
        .as_array()
        .unwrap()
        .clone();
    let discounts: Vec<Decimal> = rows.iter().map(|r| dec(&r["totalDiscount"])).collect();
    assert_eq!(discounts, [d("33.34"), d("33.33"), d("33.33")]);
    let applied: Vec<i64> = rows.iter().map(|r| int(&r["bonuses"]["applied"])).collect();
    assert_eq!(applied, [34, 33, 33]);
    // collected = floor(5% × (100 − discount)) per row.
    let collected: Vec<i64> = rows
        .iter()
        .map(|r| int(&r["bonuses"]["collected"]))
        .collect();
    assert_eq!(collected, [3, 3, 3]);

    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(ivanov(), three, json!({"applyBonuses": "auto"})),
        )
        .await;
    let result = &answer["calculationResult"];
    assert_eq!(int(&result["bonuses"]["maxToApply"]), 150);
    assert_eq!(int(&result["bonuses"]["applied"]), 150);
    assert_eq!(dec(&result["rows"][2]["totalDiscount"]), d("50"));

    // redPrice wins over blackPrice; fractional qty is rounded to the kopeck.
    let rows = json!([
        {"id": "r", "product": {"sku": "R", "blackPrice": 200, "redPrice": 150.5}, "qty": 1},
        {"id": "w", "product": {"sku": "W", "blackPrice": 99.99}, "qty": 0.333}
    ]);
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(ivanov(), rows, json!({"applyBonuses": "auto"})),
        )
        .await;
    let result = &answer["calculationResult"];
    // 50% of 150.50 + 33.30 = 91.90 → 91 bonuses.
    assert_eq!(int(&result["bonuses"]["maxToApply"]), 91);
    let total: Decimal = result["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| dec(&r["totalDiscount"]))
        .sum();
    assert_eq!(total, d("91"));
    srv.stop().await;
}

#[tokio::test]
async fn bonus_problems_and_anonymous_receipts() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    let srv = start(&sandbox).await;
    let rows = json!([row("1", "A", 1000.0, 1)]);

    for bad in [json!(501), json!(-1), json!(10.5), json!(1e30)] {
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(ivanov(), rows.clone(), json!({"applyBonuses": bad})),
            )
            .await;
        let bonuses = &answer["calculationResult"]["bonuses"];
        assert_eq!(int(&bonuses["error"]["code"]), 6, "{bad}: {bonuses}");
        assert!(bonuses["error"]["description"].is_string());
        assert_eq!(int(&bonuses["applied"]), 0);
        assert_eq!(int(&bonuses["maxToApply"]), 500);
    }
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(ivanov(), rows.clone(), json!({"collectBonuses": 0})),
        )
        .await;
    assert_eq!(int(&answer["calculationResult"]["bonuses"]["collected"]), 0);
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(ivanov(), rows.clone(), json!({"collectBonuses": 7})),
        )
        .await;
    assert_eq!(int(&answer["calculationResult"]["bonuses"]["collected"]), 7);
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(ivanov(), rows.clone(), json!({})),
        )
        .await;
    let bonuses = &answer["calculationResult"]["bonuses"];
    assert_eq!(int(&bonuses["applied"]), 0); // absent applyBonuses = 0
    assert_eq!(int(&bonuses["collected"]), 50);

    // No client: nothing applied or collected.
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(Value::Null, rows.clone(), json!({"applyBonuses": "auto"})),
        )
        .await;
    let bonuses = &answer["calculationResult"]["bonuses"];
    assert_eq!(
        (int(&bonuses["applied"]), int(&bonuses["collected"])),
        (0, 0)
    );
    assert_eq!(int(&bonuses["maxToApply"]), 0);
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(Value::Null, rows.clone(), json!({"applyBonuses": 10})),
        )
        .await;
    assert_eq!(
        int(&answer["calculationResult"]["bonuses"]["error"]["code"]),
        6
    );

    let path = "/v2/calculate-purchase";
    assert_eq!(
        srv.error(path, calc(ivanov(), json!([]), json!({}))).await,
        18
    );
    assert_eq!(
        srv.error(path, calc(ivanov(), Value::Null, json!({})))
            .await,
        18
    );
    assert_eq!(
        srv.error(path, calc(json!({"card": "nope"}), rows.clone(), json!({})))
            .await,
        3
    );
    assert_eq!(
        srv.error(
            path,
            calc(json!({"phoneNumber": "1"}), rows.clone(), json!({}))
        )
        .await,
        20
    );
    assert_eq!(
        srv.error(
            path,
            calc(ivanov(), rows.clone(), json!({"applyBonuses": "many"}))
        )
        .await,
        2
    );
    assert_eq!(
        srv.error(
            path,
            calc(ivanov(), rows.clone(), json!({"collectBonuses": -1}))
        )
        .await,
        2
    );
    assert_eq!(srv.error(path, json!({})).await, 2);
    let bad_rows = [
        json!([{"product": {"sku": "A", "blackPrice": 10}, "qty": 0}]),
        json!([{"product": {"sku": "A", "blackPrice": 10}}]),
        json!([{"product": {"sku": "A"}, "qty": 1}]),
        json!([{"product": {"sku": "A", "blackPrice": "10"}, "qty": 1}]),
        json!([{"product": {"sku": "A", "blackPrice": -1}, "qty": 1}]),
        json!([{"product": {"sku": "A", "blackPrice": 1e300}, "qty": 1}]),
        json!([{"product": {"blackPrice": 10}, "qty": 1}]),
        json!([{"sku": "A", "blackPrice": 10, "qty": 1}]),
        json!(["A"]),
        json!({"0": {}}),
    ];
    for rows in bad_rows {
        assert_eq!(
            srv.error(path, calc(ivanov(), rows.clone(), json!({})))
                .await,
            2,
            "{rows}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn gift_cards_pay_in_order_or_say_why_not() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    sandbox.add_gift_card(
        "ZERO",
        GiftCardStatus::Active,
        Decimal::ZERO,
        d("100"),
        None,
    );
    sandbox.add_gift_card(
        "OLD",
        GiftCardStatus::Active,
        d("100"),
        d("100"),
        Some("2020-01-01"),
    );
    sandbox.add_gift_card(
        "GONE",
        GiftCardStatus::Redeemed,
        Decimal::ZERO,
        d("100"),
        None,
    );
    let srv = start(&sandbox).await;
    let codes = [
        "NOPE",
        "INACTIVE1",
        "EXPIRED1",
        "BLOCKED1",
        "ZERO",
        "OLD",
        "GONE",
        "1234567",
        "123456",
    ];
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(
                Value::Null,
                json!([row("1", "A", 1200.0, 1)]),
                json!({"giftCards": codes}),
            ),
        )
        .await;
    let result = &answer["calculationResult"];
    let cards = result["giftCards"].as_array().unwrap();
    let errors: Vec<Option<i64>> = cards
        .iter()
        .map(|c| c.get("error").map(|e| int(&e["code"])))
        .collect();
    assert_eq!(
        errors,
        [
            Some(40),
            Some(42),
            Some(43),
            Some(44),
            Some(45),
            Some(43),
            Some(45),
            None,
            None
        ]
    );
    assert!(cards[0].get("status").is_none());
    assert_eq!(cards[1]["status"], json!("INACTIVE"));
    assert_eq!(cards[5]["status"], json!("EXPIRED"));
    let used: Vec<Decimal> = cards.iter().map(|c| dec(&c["usedAmount"])).collect();
    assert_eq!(&used[..7], &[Decimal::ZERO; 7]);
    assert_eq!(used[7], d("500"));
    assert_eq!(used[8], d("700"));
    assert_eq!(dec(&result["summary"]["prepaidAmount"]), d("1200"));
    // Without giftCards the field is absent.
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(Value::Null, json!([row("1", "A", 1.0, 1)]), json!({})),
        )
        .await;
    assert!(answer["calculationResult"].get("giftCards").is_none());
    srv.stop().await;
}

proptest! {
    #[test]
    fn calculations_never_panic(body in any::<String>(), n in any::<f64>(), q in any::<i64>()) {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let mut state = sandbox.shared.lock();
        let now = Now::current();
        let bodies = [
            json!({"calculationQuery": {"client": {"card": body.clone()}, "rows": [
                {"product": {"sku": body.clone(), "blackPrice": n}, "qty": q}], "applyBonuses": n}}),
            json!({"calculationQuery": {"client": {"phoneNumber": IVANOV}, "rows": [
                {"product": {"sku": "A", "blackPrice": q, "redPrice": n}, "qty": n}],
                "applyBonuses": q, "collectBonuses": q, "giftCards": [body.clone()]}}),
        ];
        for body in bodies {
            if let Value::Object(request) = body {
                let _ = state.apply(Op::CalculatePurchase, &request, &now);
                let _ = state.apply(Op::ApplyReturn, &request, &now);
            }
        }
    }
}
