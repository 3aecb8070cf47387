//! `/apply-return`: partial and full returns add up to the purchase.

use super::*;

#[tokio::test]
async fn partial_returns_add_up_to_the_purchase() {
    let sandbox = MaxmaSandbox::new(KEY);
    let srv = start(&sandbox).await;
    returnable(&sandbox, &srv, "sale-1").await;
    let one_a = json!([{"sku": "A", "itemCount": 1}]);

    // Errors first; none of them changes anything.
    let a = |n: i64| json!([{"sku": "A", "itemCount": n}]);
    let cases = [
        (ret("r0", "nope", None, a(1)), 13),
        // Documented order: 13 (the purchase) comes before 10 (the items).
        (ret("r0", "nope", None, json!([])), 13),
        (
            ret("r0", "sale-1", None, json!([{"sku": "Z", "itemCount": 1}])),
            10,
        ),
        (ret("r0", "sale-1", None, a(4)), 10),
        (
            ret(
                "r0",
                "sale-1",
                None,
                json!([{"sku": "A", "itemCount": 2}, {"sku": "A", "itemCount": 2}]),
            ),
            10,
        ),
        (ret("r0", "sale-1", None, a(0)), 10),
        (ret("r0", "sale-1", None, json!([])), 10),
        (ret("r0", "sale-1", Some(249.01), a(1)), 11),
        (ret("r0", "sale-1", Some(-1.0), a(1)), 11),
        (json!({"transaction": {"id": "r0"}}), 2),
        (
            json!({"transaction": {"id": "r0", "purchaseId": "sale-1", "items": "A"}}),
            2,
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            srv.error("/apply-return", body.clone()).await,
            expected,
            "{body}"
        );
    }
    assert_eq!(sandbox.balance_by_phone("+79995550000"), Some(910));

    // 1 × A: share 71.1433…/249 → floor(101 × 0.2857) = 28, floor(11 × 0.2857) = 3.
    let answer = srv
        .ok(
            "/apply-return",
            ret("r1", "sale-1", Some(71.14), one_a.clone()),
        )
        .await;
    let c = &answer["confirmation"];
    assert_eq!(
        (int(&c["recoveredBonuses"]), int(&c["cancelledBonuses"])),
        (28, 3)
    );
    assert_eq!(c["refundAmount"].to_string(), "71.14");
    assert!(c["refundId"].is_string());
    // 17 (a repeated id) comes before anything about the items.
    assert_eq!(
        srv.error("/apply-return", ret("r1", "sale-1", None, json!([])))
            .await,
        17
    );
    assert_eq!(
        srv.error(
            "/apply-return",
            ret("r1", "sale-1", Some(71.14), one_a.clone())
        )
        .await,
        17
    );

    // 1 × B, refundAmount defaults to the paid value (35.57).
    let answer = srv
        .ok(
            "/apply-return",
            ret("r2", "sale-1", None, json!([{"sku": "B", "itemCount": 1}])),
        )
        .await;
    let c = &answer["confirmation"];
    assert_eq!(dec(&c["refundAmount"]), d("35.57"));
    assert_eq!(
        (int(&c["recoveredBonuses"]), int(&c["cancelledBonuses"])),
        (14, 1)
    );

    // 249.00 − 71.14 − 35.57 = 142.29 is all that is left to refund.
    assert_eq!(
        srv.error(
            "/apply-return",
            ret(
                "r3",
                "sale-1",
                Some(142.3),
                json!([{"sku": "A", "itemCount": 2}])
            )
        )
        .await,
        11
    );
    // The last two A complete the purchase and take the rest: 101 − 42, 11 − 4.
    let answer = srv
        .ok(
            "/apply-return",
            ret(
                "r3",
                "sale-1",
                Some(142.29),
                json!([{"sku": "A", "itemCount": 1}, {"sku": "A", "itemCount": 1}]),
            ),
        )
        .await;
    let c = &answer["confirmation"];
    assert_eq!(
        (int(&c["recoveredBonuses"]), int(&c["cancelledBonuses"])),
        (59, 7)
    );
    assert_eq!(sandbox.balance_by_phone("+79995550000"), Some(1000));
    assert_eq!(
        srv.error("/apply-return", ret("r4", "sale-1", Some(0.0), one_a))
            .await,
        10
    );
    let balance = srv
        .ok("/get-balance", json!({"phoneNumber": "+79995550000"}))
        .await;
    assert_eq!(dec(&balance["level"]["levelSpent"]), Decimal::ZERO);
    srv.stop().await;
}

#[tokio::test]
async fn a_full_return_takes_back_everything_at_once() {
    let sandbox = MaxmaSandbox::new(KEY);
    let srv = start(&sandbox).await;
    returnable(&sandbox, &srv, "sale-2").await;
    let answer = srv
        .ok(
            "/apply-return",
            ret(
                "r1",
                "sale-2",
                None,
                json!([{"sku": "A", "itemCount": 3}, {"sku": "B", "itemCount": 1}]),
            ),
        )
        .await;
    let c = &answer["confirmation"];
    assert_eq!(dec(&c["refundAmount"]), d("249"));
    assert_eq!(
        (int(&c["recoveredBonuses"]), int(&c["cancelledBonuses"])),
        (101, 11)
    );
    assert_eq!(sandbox.balance_by_phone("+79995550000"), Some(1000));

    // A pending purchase cannot be returned.
    let set = srv
        .ok(
            "/set-purchase",
            purchase(
                "sale-3",
                Value::Null,
                json!([row("1", "A", 10.0, 1)]),
                json!({}),
            ),
        )
        .await;
    assert_eq!(
        srv.error(
            "/apply-return",
            ret("r2", "sale-3", None, json!([{"sku": "A", "itemCount": 1}]))
        )
        .await,
        13
    );
    srv.ok(
        "/confirm-ticket",
        json!({"txid": "sale-3", "ticket": set["ticket"]}),
    )
    .await;
    srv.ok(
        "/apply-return",
        ret("r2", "sale-3", None, json!([{"sku": "A", "itemCount": 1}])),
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn thirds_of_a_purchase_round_down_until_the_last() {
    let sandbox = MaxmaSandbox::new(KEY);
    sandbox.set_settings(SandboxSettings {
        earn_percent: d("10"),
        ..SandboxSettings::default()
    });
    sandbox.add_client(SandboxClient {
        card: Some("T".into()),
        bonuses: 100,
        ..SandboxClient::default()
    });
    let srv = start(&sandbox).await;
    let set = srv
        .ok(
            "/set-purchase",
            purchase(
                "s",
                json!({"card": "T"}),
                json!([row("1", "X", 100.0, 3)]),
                json!({"applyBonuses": 100}),
            ),
        )
        .await;
    // Paid 200 → 20 collected.
    assert_eq!(int(&set["calculationResult"]["bonuses"]["collected"]), 20);
    srv.ok(
        "/confirm-ticket",
        json!({"txid": "s", "ticket": set["ticket"]}),
    )
    .await;
    let mut got = Vec::new();
    for id in ["a", "b", "c"] {
        let answer = srv
            .ok(
                "/apply-return",
                ret(id, "s", None, json!([{"sku": "X", "itemCount": 1}])),
            )
            .await;
        let c = &answer["confirmation"];
        got.push((
            dec(&c["refundAmount"]),
            int(&c["recoveredBonuses"]),
            int(&c["cancelledBonuses"]),
        ));
    }
    // The last return refunds what is left (66.66), not a third rounded up (66.67).
    assert_eq!(
        got,
        [
            (d("66.67"), 33, 6),
            (d("66.67"), 33, 6),
            (d("66.66"), 34, 8)
        ]
    );
    srv.stop().await;
}
