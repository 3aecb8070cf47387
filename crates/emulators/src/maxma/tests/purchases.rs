//! `/set-purchase`, `/confirm-ticket`, `/discard-ticket`.

use super::*;

#[tokio::test]
async fn set_purchase_reserves_and_confirm_commits_once() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    let srv = start(&sandbox).await;
    let body = purchase(
        "tx-1",
        ivanov(),
        json!([row("1", "A", 500.0, 2)]),
        json!({"applyBonuses": 150, "giftCards": ["1234567"]}),
    );
    let first = srv.ok("/set-purchase", body.clone()).await;
    let ticket = first["ticket"].as_str().unwrap().to_owned();
    assert_eq!(
        first["clientBonuses"],
        json!({"available": 350, "pending": 42, "reserved": 150})
    );
    assert_eq!(first["receiptInfo"], json!([]));
    assert_eq!(int(&first["calculationResult"]["bonuses"]["applied"]), 150);
    assert_eq!(
        dec(&first["calculationResult"]["summary"]["prepaidAmount"]),
        d("500")
    );
    // The pending purchase holds the card's money.
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(
                Value::Null,
                json!([row("1", "A", 10.0, 1)]),
                json!({"giftCards": ["1234567"]}),
            ),
        )
        .await;
    assert_eq!(
        int(&answer["calculationResult"]["giftCards"][0]["error"]["code"]),
        45
    );

    // A repeat of a pending txid: same ticket and result, no second reservation.
    let again = srv.ok("/set-purchase", body.clone()).await;
    assert_eq!(again["ticket"], first["ticket"]);
    assert_eq!(again["calculationResult"], first["calculationResult"]);
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(350));
    let balance = srv.ok("/get-balance", ivanov()).await;
    assert_eq!(int(&balance["client"]["pendingBonuses"]), 42);

    let confirm = |ticket: &str| json!({"txid": "tx-1", "ticket": ticket, "sessionNum": "17", "receiptNum": "00042"});
    assert_eq!(srv.error("/confirm-ticket", confirm("wrong")).await, 2);
    assert_eq!(srv.ok("/confirm-ticket", confirm(&ticket)).await, json!({}));
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(392));
    let balance = srv.ok("/get-balance", ivanov()).await;
    assert_eq!(int(&balance["client"]["pendingBonuses"]), 0);
    assert_eq!(dec(&balance["level"]["levelSpent"]), d("850"));
    assert_eq!(sandbox.gift_card_balance("1234567"), Some(Decimal::ZERO));
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(
                Value::Null,
                json!([row("1", "A", 10.0, 1)]),
                json!({"giftCards": ["1234567"]}),
            ),
        )
        .await;
    let card = &answer["calculationResult"]["giftCards"][0];
    assert_eq!(card["status"], json!("REDEEMED"));
    assert_eq!(int(&card["error"]["code"]), 45);

    // Repeats after confirmation.
    assert_eq!(srv.error("/confirm-ticket", confirm(&ticket)).await, 17);
    assert_eq!(srv.error("/set-purchase", body).await, 17);
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(392));
    assert_eq!(
        srv.error(
            "/confirm-ticket",
            json!({"txid": "tx-unknown", "ticket": ticket})
        )
        .await,
        21
    );
    assert_eq!(
        srv.error("/confirm-ticket", json!({"txid": "tx-1"})).await,
        2
    );
    srv.stop().await;
}

#[tokio::test]
async fn gift_cards_are_debited_partially_on_confirm() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    let srv = start(&sandbox).await;
    let set = srv
        .ok(
            "/set-purchase",
            purchase(
                "tx-gc",
                Value::Null,
                json!([row("1", "A", 250.5, 1)]),
                json!({"giftCards": ["123456"]}),
            ),
        )
        .await;
    assert!(set.get("clientBonuses").is_none()); // anonymous
    assert_eq!(sandbox.gift_card_balance("123456"), Some(d("1000")));
    srv.ok(
        "/confirm-ticket",
        json!({"txid": "tx-gc", "ticket": set["ticket"]}),
    )
    .await;
    assert_eq!(sandbox.gift_card_balance("123456"), Some(d("749.50")));
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(
                Value::Null,
                json!([row("1", "A", 1000.0, 1)]),
                json!({"giftCards": ["123456"]}),
            ),
        )
        .await;
    let card = &answer["calculationResult"]["giftCards"][0];
    assert_eq!(card["status"], json!("ACTIVE"));
    assert_eq!(dec(&card["usedAmount"]), d("749.5"));
    srv.stop().await;
}

#[tokio::test]
async fn discard_returns_the_reservation_once() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    let srv = start(&sandbox).await;
    let body = purchase(
        "tx-2",
        ivanov(),
        json!([row("1", "A", 400.0, 1)]),
        json!({"applyBonuses": 100, "giftCards": ["123456"]}),
    );
    let set = srv.ok("/set-purchase", body.clone()).await;
    let ticket = set["ticket"].as_str().unwrap().to_owned();
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(400));
    let discard = json!({"txid": "tx-2", "ticket": ticket});
    assert_eq!(
        srv.error("/discard-ticket", json!({"txid": "tx-2", "ticket": "x"}))
            .await,
        2
    );
    assert_eq!(srv.ok("/discard-ticket", discard.clone()).await, json!({}));
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(500));
    let balance = srv.ok("/get-balance", ivanov()).await;
    assert_eq!(int(&balance["client"]["pendingBonuses"]), 0);
    assert_eq!(sandbox.gift_card_balance("123456"), Some(d("1000")));
    // The hold is gone too: the whole card is spendable again.
    let answer = srv
        .ok(
            "/v2/calculate-purchase",
            calc(
                Value::Null,
                json!([row("1", "A", 5000.0, 1)]),
                json!({"giftCards": ["123456"]}),
            ),
        )
        .await;
    assert_eq!(
        dec(&answer["calculationResult"]["giftCards"][0]["usedAmount"]),
        d("1000")
    );

    assert_eq!(srv.error("/discard-ticket", discard.clone()).await, 22);
    assert_eq!(srv.error("/confirm-ticket", discard.clone()).await, 22);
    assert_eq!(srv.error("/set-purchase", body).await, 22);
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(500));
    assert_eq!(
        srv.error("/discard-ticket", json!({"txid": "nope", "ticket": "x"}))
            .await,
        21
    );

    // A confirmed purchase cannot be discarded.
    let set = srv
        .ok(
            "/set-purchase",
            purchase(
                "tx-3",
                ivanov(),
                json!([row("1", "A", 100.0, 1)]),
                json!({"applyBonuses": 10}),
            ),
        )
        .await;
    let done = json!({"txid": "tx-3", "ticket": set["ticket"]});
    srv.ok("/confirm-ticket", done.clone()).await;
    let (_, answer) = srv.post("/discard-ticket", &done).await;
    assert_eq!(int(&answer["errorCode"]), 17);
    assert!(
        answer["description"]
            .as_str()
            .unwrap()
            .contains("cannot be discarded")
    );
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(494)); // 500 − 10 + floor(5% × 90)
    srv.stop().await;
}

#[tokio::test]
async fn set_purchase_refuses_what_it_cannot_commit() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    let srv = start(&sandbox).await;
    let rows = json!([row("1", "A", 100.0, 1)]);
    let too_many = purchase("tx-4", ivanov(), rows.clone(), json!({"applyBonuses": 100}));
    assert_eq!(srv.error("/set-purchase", too_many).await, 6);
    let blocked = purchase(
        "tx-4",
        ivanov(),
        rows.clone(),
        json!({"giftCards": ["BLOCKED1"]}),
    );
    assert_eq!(srv.error("/set-purchase", blocked).await, 44);
    assert_eq!(srv.error("/set-purchase", json!({"txid": "tx-4"})).await, 2);
    assert_eq!(
        srv.error(
            "/set-purchase",
            purchase("tx-4", ivanov(), json!([]), json!({}))
        )
        .await,
        18
    );
    assert_eq!(
        srv.error(
            "/set-purchase",
            json!({"calculationQuery": calc(ivanov(), rows.clone(), json!({}))["calculationQuery"]})
        )
        .await,
        2
    );
    // Nothing was stored or reserved.
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(500));
    assert_eq!(
        srv.error("/confirm-ticket", json!({"txid": "tx-4", "ticket": "x"}))
            .await,
        21
    );
    // The txid is still free.
    srv.ok(
        "/set-purchase",
        purchase("tx-4", ivanov(), rows, json!({"applyBonuses": 50})),
    )
    .await;
    assert_eq!(sandbox.balance_by_phone(IVANOV), Some(450));
    srv.stop().await;
}
