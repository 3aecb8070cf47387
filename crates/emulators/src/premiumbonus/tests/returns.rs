//! Partial returns by `/edit-purchase`, and what an answer never shows.

use super::*;

#[tokio::test]
async fn partial_returns_by_edit_add_up_exactly() {
    let sandbox = PremiumBonusSandbox::new(TOKEN);
    sandbox.set_settings(PbSettings {
        earn_percent: d("10"),
        ..PbSettings::default()
    });
    let phone = "79995550002";
    sandbox.add_buyer(PbBuyer {
        phone: Some(phone.into()),
        balance: d("1000"),
        ..PbBuyer::default()
    });
    let srv = start(&sandbox).await;
    let a = |q: &str, amount: &str| item(Some("A"), "Кофе", amount, q);
    let b = item(Some("B"), "Чай", "100", "1");
    let c = item(None, "Пакет", "0.99", "1");

    // 101.00 over 30000 : 10000 : 99 kopecks (sum 40099): floors 7556, 2518, 24 (= 10098),
    // remainders 11956, 30718, 37524 → C and B get the last two: 75.56, 25.19, 0.25.
    // Paid 224.44, 74.81, 0.74; earned 10 %: 22.44 + 7.48 + 0.07 = 29.99.
    let bought = srv
        .ok(
            "/purchase",
            purchase_body(
                "e-1",
                phone,
                "101",
                json!([a("3", "300"), b.clone(), c.clone()]),
            ),
        )
        .await;
    let per_item = |answer: &Value, field: &str| -> Vec<String> {
        answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[field].to_string())
            .collect()
    };
    assert_eq!(
        per_item(&bought, "write_off_bonus"),
        ["75.56", "25.19", "0.25"]
    );
    assert_eq!(
        per_item(&bought, "write_on_bonus"),
        ["22.44", "7.48", "0.07"]
    );
    assert_eq!(bought["total_write_on_bonus"].to_string(), "29.99");
    assert_eq!(bought["balance"].to_string(), "928.99");
    let id = bought["purchase_id"].as_str().unwrap().to_owned();

    // Refusals change nothing.
    let edit = |items: Value| json!({"purchase_id": id, "items": items});
    for (items, expected) in [
        (
            json!([item(Some("Z"), "Кофе", "1", "1")]),
            "not in the purchase",
        ),
        (
            json!([item(Some("Пакет"), "Пакет", "0.99", "1")]),
            "not in the purchase",
        ),
        (
            json!([item(None, "Кофе", "100", "1")]),
            "not in the purchase",
        ),
        (json!([a("4", "300")]), "holds 3"),
        (json!([a("3", "300.01")]), "amount 300.01"),
        (json!([a("2", "200"), a("2", "200")]), "holds 3"),
    ] {
        let description = srv.refused("/edit-purchase", edit(items)).await;
        assert!(description.contains(expected), "{description}");
    }
    let description = srv
        .refused(
            "/edit-purchase",
            json!({"purchase_id": id, "items": [a("2", "200"), b.clone(), c.clone()],
                   "write_off_bonus": 101.01}),
        )
        .await;
    assert!(
        description.contains("above the purchase's write-off 101.00"),
        "{description}"
    );
    // Without a write_off_bonus the whole 101.00 stays on the tea and the bag: above the
    // 50 % of their 100.99 that bonuses may pay.
    let description = srv
        .refused("/edit-purchase", edit(json!([b.clone(), c.clone()])))
        .await;
    assert!(description.contains("maximum 50.49"), "{description}");
    srv.refused("/edit-purchase", json!({"purchase_id": id}))
        .await;
    assert_eq!(sandbox.balance(phone), Some(d("928.99")));

    // One coffee back, its share asked: 101 × 300.99 / 400.99 = 75.8123… → 75.81 (25.19 back), spread
    // 50.37, 25.19, 0.25; earned 14.96 + 7.48 + 0.07 = 22.51 (7.48 taken back).
    let first = srv
        .ok(
            "/edit-purchase",
            json!({"purchase_id": id, "items": [a("2", "200"), b.clone(), c.clone()],
                   "write_off_bonus": 75.81}),
        )
        .await;
    assert_eq!(first["purchase_amount"].to_string(), "300.99");
    assert_eq!(first["total_write_off_bonus"].to_string(), "75.81");
    assert_eq!(
        per_item(&first, "write_off_bonus"),
        ["50.37", "25.19", "0.25"]
    );
    assert_eq!(first["total_write_on_bonus"].to_string(), "22.51");
    assert_eq!(first["payment_amount"].to_string(), "225.18");
    assert_eq!(first["balance"].to_string(), "946.70");
    assert_eq!(first["purchase_status"], json!("approved"));

    // The rest of the coffee, its share asked: 101 × 100.99 / 400.99 → 25.44 (50.37 back);
    // earned 7.48 + 0.07 = 7.55 (14.96 taken back).
    let second = srv
        .ok(
            "/edit-purchase",
            json!({"external_purchase_id": "e-1", "items": [b.clone(), c.clone()],
                   "write_off_bonus": 25.44}),
        )
        .await;
    assert_eq!(second["total_write_off_bonus"].to_string(), "25.44");
    assert_eq!(per_item(&second, "write_off_bonus"), ["25.19", "0.25"]);
    assert_eq!(second["total_write_on_bonus"].to_string(), "7.55");
    assert_eq!(second["balance"].to_string(), "982.11");
    // Edits only shrink.
    let description = srv
        .refused("/edit-purchase", edit(json!([a("1", "100")])))
        .await;
    assert!(description.contains("not in the purchase"), "{description}");

    // Everything back: 25.44 + 50.37 + 25.19 = 101.00 given back, 7.55 + 14.96 + 7.48 =
    // 29.99 taken back; the balance is exactly where it started.
    let last = srv
        .ok(
            "/edit-purchase",
            json!({"purchase_id": id, "items": [], "write_off_bonus": 0}),
        )
        .await;
    assert_eq!(last["purchase_amount"].to_string(), "0.00");
    assert_eq!(last["total_write_off_bonus"].to_string(), "0.00");
    assert_eq!(last["total_write_on_bonus"].to_string(), "0.00");
    assert_eq!(last["items"], json!([]));
    assert_eq!(sandbox.balance(phone), Some(d("1000")));
    let info = srv.ok("/purchase-info", json!({"purchase_id": id})).await;
    assert_eq!(info["purchase_amount"].to_string(), "0.00");
    // Cancelling what is left moves nothing.
    srv.ok("/cancel-purchase", json!({"purchase_id": id})).await;
    assert_eq!(sandbox.balance(phone), Some(d("1000")));
    srv.stop().await;
}

#[tokio::test]
async fn the_maximum_write_off_is_in_no_answer() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    let srv = start(&sandbox).await;
    let items = json!([item(Some("X"), "X", "500", "1")]);
    // premiumbonus.md names no field for the maximum benefit /purchase-request tells.
    let answer = srv
        .ok(
            "/purchase-request",
            json!({"phone": IVANOV, "items": items}),
        )
        .await;
    let mut fields: Vec<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["logger", "success"]);
    srv.refused(
        "/purchase-request",
        json!({"phone": BLOCKED, "items": items}),
    )
    .await;
    srv.refused("/purchase-request", json!({"phone": IVANOV}))
        .await;
    // Nor does a dry run report it: it refuses a write-off above it (500 × 50 % = 250).
    let answer = srv
        .ok(
            "/purchase-dry-run",
            json!({"phone": IVANOV, "items": items, "write_off_bonus": 250}),
        )
        .await;
    assert!(answer.get("max_write_off_bonus").is_none(), "{answer}");
    let description = srv
        .refused(
            "/purchase-dry-run",
            json!({"phone": IVANOV, "items": items, "write_off_bonus": 250.01}),
        )
        .await;
    assert!(description.contains("maximum 250.00"), "{description}");
    assert_eq!(sandbox.calls("/purchase-request"), 3);
    srv.stop().await;
}

#[tokio::test]
async fn an_edit_may_give_back_more_but_never_earn_more() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    let srv = start(&sandbox).await;
    // 200.00 with 100.00 written off: earned 5.00; balance 500 − 100 + 5 = 405.
    srv.ok(
        "/purchase",
        purchase_body(
            "g-1",
            IVANOV,
            "100",
            json!([item(Some("X"), "X", "200", "2")]),
        ),
    )
    .await;
    assert_eq!(sandbox.balance(IVANOV), Some(d("405")));
    // Nothing returned, but 40.00 of the write-off given back: the paid 140.00 would earn
    // 7.00, capped at the 5.00 already earned.
    let answer = srv
        .ok(
            "/edit-purchase",
            json!({"external_purchase_id": "g-1", "items": [item(Some("X"), "X", "200", "2")],
                   "write_off_bonus": 60, "discount": 3}),
        )
        .await;
    assert_eq!(answer["total_write_off_bonus"].to_string(), "60.00");
    assert_eq!(answer["total_write_on_bonus"].to_string(), "5.00");
    assert_eq!(answer["total_discount_external"].to_string(), "3.00");
    assert_eq!(answer["payment_amount"].to_string(), "140.00");
    assert_eq!(sandbox.balance(IVANOV), Some(d("445")));

    // A not_approved purchase: edits move the pending bonuses.
    let mut body = purchase_body("g-2", PETROVA, "0", json!([item(None, "Y", "100", "2")]));
    body["purchase_status"] = json!("not_approved");
    srv.ok("/purchase", body).await;
    let info = srv
        .ok("/buyer-info", json!({"identificator": PETROVA}))
        .await;
    assert_eq!(info["bonus_inactive"].to_string(), "5.00");
    srv.ok(
        "/edit-purchase",
        json!({"external_purchase_id": "g-2", "items": [item(None, "Y", "50", "1")]}),
    )
    .await;
    let info = srv
        .ok("/buyer-info", json!({"identificator": PETROVA}))
        .await;
    assert_eq!(info["bonus_inactive"].to_string(), "2.50");
    assert_eq!(info["balance"].to_string(), "0.00");
    srv.stop().await;
}
