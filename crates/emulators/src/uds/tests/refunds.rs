//! `POST /operations/{id}/refund`: refunds add up exactly; and no input panics.

use proptest::prelude::*;

use super::*;

#[tokio::test]
async fn thirds_of_a_purchase_add_up_exactly() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let id = documented_purchase(&srv).await;
    assert_eq!(sandbox.points(IVAN), Some(d("185")));
    let path = format!("/operations/{id}/refund");

    let first = srv
        .ok_post(&path, json!({"partialAmount": n("333.33")}))
        .await;
    assert_eq!(first["action"], json!("REFUND"));
    assert_eq!(first["state"], json!("REVERSAL"));
    assert_eq!(first["origin"], json!({"id": id}));
    assert_eq!(first["receiptNumber"], json!("00042"));
    assert_eq!(first["customer"]["displayName"], json!("Иван Петров"));
    assert_eq!(first["cashier"]["displayName"], json!("Кассир 2"));
    // floor(200 × 0.33333) = 66.66 back; floor(35 × 0.33333) = 11.66 taken back.
    assert_eq!(dec(&first["total"]), d("-333.33"));
    assert_eq!(dec(&first["points"]), d("66.66"));
    assert_eq!(dec(&first["cash"]), d("-266.67"));
    assert_eq!(sandbox.points(IVAN), Some(d("240.00")));
    assert_eq!(sandbox.operation(id).unwrap()["state"], json!("NORMAL"));

    let second = srv
        .ok_post(&path, json!({"partialAmount": n("333.33")}))
        .await;
    // Cumulative: floor(200 × 0.66666) = 133.33 → 66.67; cashback 23.33 → 11.67.
    assert_eq!(dec(&second["points"]), d("66.67"));
    assert_eq!(dec(&second["cash"]), d("-266.66"));
    assert_eq!(sandbox.points(IVAN), Some(d("295.00")));

    // Too much, zero, negative, wrong type.
    for (amount, want) in [
        (n("333.35"), "max"),
        (n("0"), "min"),
        (n("0.001"), "min"),
        (n("-1"), "min"),
        (json!("100"), "typeMismatch"),
    ] {
        let (status, _, answer) = srv
            .post_error(&path, json!({"partialAmount": amount}))
            .await;
        assert_eq!(status, 400, "{amount}");
        assert_eq!(
            fields(&answer),
            vec![pair("partialAmount", want)],
            "{amount}"
        );
    }

    // The rest: 333.34, exactly what is left of everything.
    let third = srv.ok_post(&path, json!({"partialAmount": null})).await;
    assert_eq!(dec(&third["total"]), d("-333.34"));
    assert_eq!(dec(&third["points"]), d("66.67"));
    assert_eq!(dec(&third["cash"]), d("-266.67"));
    let refunds = [&first, &second, &third];
    let sum = |field: &str| refunds.iter().map(|r| dec(&r[field])).sum::<Decimal>();
    assert_eq!(sum("total"), d("-1000"));
    assert_eq!(sum("points"), d("200"));
    assert_eq!(sum("cash"), d("-800"));
    // 185 + 200 − 35: back where Ivan started.
    assert_eq!(sandbox.points(IVAN), Some(d("350")));
    assert_eq!(sandbox.operation(id).unwrap()["state"], json!("CANCELED"));
    let third_id = id_of(&third["id"]);
    assert_eq!(srv.ok_get(&format!("/operations/{third_id}")).await, third);

    // Nothing is left; a refund cannot be refunded; unknown ids are 404.
    let (status, code, _) = srv.post_error(&path, json!({})).await;
    assert_eq!((status, code.as_str()), (400, "badRequest"));
    let (status, code, _) = srv
        .post_error(&format!("/operations/{third_id}/refund"), json!({}))
        .await;
    assert_eq!((status, code.as_str()), (400, "badRequest"));
    let (status, code, _) = srv.post_error("/operations/999/refund", json!({})).await;
    assert_eq!((status, code.as_str()), (404, "notFound"));
    srv.stop().await;
}

#[tokio::test]
async fn a_full_refund_takes_back_everything_at_once() {
    let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
    let srv = start(&sandbox).await;
    let id = documented_purchase(&srv).await;
    // An empty body refunds in full.
    let resp = srv
        .request(reqwest::Method::POST, &format!("/operations/{id}/refund"))
        .send()
        .await
        .unwrap();
    let (status, refund) = read(resp).await;
    assert_eq!(status, 200, "{refund}");
    assert_eq!(dec(&refund["total"]), d("-1000"));
    assert_eq!(dec(&refund["points"]), d("200"));
    assert_eq!(dec(&refund["cash"]), d("-800"));
    assert_eq!(sandbox.points(IVAN), Some(d("350")));
    // The repeated nonce-less purchase lookup still works, the state moved on.
    assert_eq!(
        srv.ok_get(&format!("/operations/{id}")).await["state"],
        json!("CANCELED")
    );
    srv.stop().await;
}

proptest! {
    /// Any split of a purchase into refunds gives back exactly what it took.
    #[test]
    fn refunds_add_up_exactly(
        total_k in 1i64..10_000_000,
        points_share in 0u32..=100,
        skip_share in 0u32..=100,
        cuts in proptest::collection::vec(1u32..1000, 0..6),
    ) {
        let total = Decimal::new(total_k, 2);
        let skip = floor_money(total * Decimal::from(skip_share) / Decimal::ONE_HUNDRED);
        let points = floor_money((total - skip) * Decimal::from(points_share)
            / Decimal::ONE_HUNDRED);
        let balance = d("1000000");
        let (sandbox, id) = purchase_state(balance, total, points, skip);
        let after_purchase = sandbox.points(IVAN).unwrap();
        let op = sandbox.operation(id).unwrap();
        let (paid_points, paid_cash) = (-dec(&op["points"]), dec(&op["cash"]));
        let cashback = after_purchase - balance + paid_points;

        let mut state = sandbox.shared.lock();
        let now = Now::current();
        let (mut back_total, mut back_points, mut back_cash) =
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        for cut in cuts {
            let amount = floor_money(total * Decimal::from(cut) / Decimal::from(3000));
            let body = json!({"partialAmount": money(amount)});
            match state.apply(Route::Refund(id), "", body.as_object().unwrap(), &now) {
                Ok(refund) => {
                    prop_assert!(dec(&refund["cash"]) <= Decimal::ZERO);
                    prop_assert!(dec(&refund["points"]) >= Decimal::ZERO);
                    back_total -= dec(&refund["total"]);
                    back_points += dec(&refund["points"]);
                    back_cash -= dec(&refund["cash"]);
                }
                Err(e) => prop_assert_eq!(e.code, "badRequest"),
            }
        }
        if back_total < total {
            let refund = state
                .apply(Route::Refund(id), "", &Map::new(), &now)
                .unwrap();
            back_total -= dec(&refund["total"]);
            back_points += dec(&refund["points"]);
            back_cash -= dec(&refund["cash"]);
        }
        drop(state);
        prop_assert_eq!(back_total, total);
        prop_assert_eq!(back_points, paid_points);
        prop_assert_eq!(back_cash, paid_cash);
        prop_assert_eq!(sandbox.points(IVAN).unwrap(), balance);
        prop_assert!(cashback >= Decimal::ZERO);
    }

    #[test]
    fn no_input_panics(
        text in any::<String>(),
        query in "[a-zA-Z0-9=&%+._-]{0,60}",
        f in any::<f64>(),
        i in any::<i64>(),
    ) {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let code = sandbox.payment_code(IVAN).unwrap_or_default();
        let number = |s: &str| serde_json::Number::from_str(s).map_or(Value::Null, Value::Number);
        let big = number(&format!("{i}e{}", i.rem_euclid(60)));
        let bodies = [
            json!({"code": text.clone(), "receipt": {"total": f, "points": i}}),
            json!({"code": code, "participant": {"uid": text.clone(), "phone": text.clone()},
                   "nonce": text.clone(), "cashier": {"externalId": text.clone()},
                   "receipt": {"total": big.clone(), "cash": f, "points": big.clone(),
                               "skipLoyaltyTotal": i, "unredeemableTotal": f},
                   "tags": [i], "partialAmount": big.clone()}),
            json!({"participant": {"phone": IVAN},
                   "receipt": {"total": i, "cash": i, "points": f, "number": text.clone()},
                   "partialAmount": f}),
            json!({"participant": {"phone": IVAN},
                   "receipt": {"total": number("1e12"), "cash": number("7e11"),
                               "points": number("3e11")}, "partialAmount": i}),
            json!({"participant": [text.clone()], "receipt": text.clone(), "partialAmount": text.clone()}),
        ];
        let mut state = sandbox.shared.lock();
        let now = Now::current();
        let ids = [i, FIRST_OPERATION_ID, FIRST_OPERATION_ID + 1, FIRST_PARTICIPANT_ID];
        for body in &bodies {
            let Value::Object(body) = body else { continue };
            for id in ids {
                for route in [
                    Route::Settings, Route::FindCustomer, Route::Customer(id), Route::Calc,
                    Route::CreateOperation, Route::Operation(id), Route::Refund(id),
                ] {
                    let _ = state.apply(route, &query, body, &now);
                    let _ = state.apply(route, &text, body, &now);
                }
            }
        }
        drop(state);
        let _ = Route::parse(&Method::GET, &text);
        let _ = Route::parse(&Method::POST, &format!("/operations/{text}/refund"));
        let _ = normalize_phone(&text);
        let _ = sandbox.points(&text);
        let _ = sandbox.calls(&text);
        let _ = strip_base(&text);
        let payload = Payload::from_bytes(text.as_bytes());
        let _ = payload.recorded();
        let _ = payload.object();
    }
}
