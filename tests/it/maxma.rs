//! Whole checkouts through the MAXMA mapping against the MAXMA sandbox, both on 127.0.0.1:0,
//! driven the way MoySklad drives the bridge.

use crate::common;

use std::time::{Duration, Instant};

use common::{API_KEY_A, MaxmaWorld, TestBridge, client, dec, fixture, the_error};
use emulators::maxma::{Fault, GiftCardStatus, MaxmaSandbox, SandboxClient, SandboxSettings};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const STORE: &str = r#"{"meta":{"href":"https://api.moysklad.ru/api/remap/1.2/entity/retailstore/s1","id":"2b5eb22f-139e-11e6-9464-e4de00000073"},"name":"Магазин №1"}"#;

/// A sandbox that knows the tests' customer (phone, MoySklad id) with `bonuses` to spend.
fn sandbox_with_customer(bonuses: i64) -> MaxmaSandbox {
    let sandbox = MaxmaSandbox::new(API_KEY_A);
    sandbox.add_client(SandboxClient {
        phone: Some(PHONE.into()),
        external_id: Some(CUSTOMER.into()),
        bonuses,
        ..Default::default()
    });
    sandbox
}

/// The customer's balance as MoySklad asks for it (`/counterparty/detail`).
async fn balance(bridge: &TestBridge, meta_id: &str, phone: &str) -> Value {
    let (status, body) = bridge
        .post(
            "/counterparty/detail",
            &json!({"retailStore": store(), "meta": {"id": meta_id}, "phone": phone}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["bonusProgram"]["agentBonusBalance"].clone()
}

fn store() -> Value {
    serde_json::from_str(STORE).unwrap()
}

fn num(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

const PHONE: &str = "+7 916 123-45-67";
const CUSTOMER: &str = "7d0f4c2e-1b3a-4e5f-9a8b-0c1d2e3f4a5b";

fn agent() -> Value {
    json!({"meta": {"href": format!("https://api.moysklad.ru/api/remap/1.2/entity/counterparty/{CUSTOMER}"), "id": CUSTOMER},
           "name": "Смирнова Анна", "phone": PHONE})
}

fn cart() -> Value {
    json!([
        {"assortment": {"meta": {"id": "sku-coffee", "href": "https://x/product/sku-coffee"}}, "quantity": 2, "price": 500.00},
        {"assortment": {"meta": {"id": "sku-tea", "href": "https://x/product/sku-tea"}}, "quantity": 1, "price": 250.00}
    ])
}

fn recalc(kind: &str, preferred: Option<i64>) -> Value {
    let mut body = json!({"retailStore": store(), "agent": agent(), "positions": cart(), "bonusProgram": {"transactionType": kind}});
    if let Some(p) = preferred {
        body["preferredBonusToSpend"] = json!(p);
    }
    body
}

fn sale(id: &str, positions: Value, spend: i64, earn: i64) -> Value {
    json!({"retailStore": store(), "name": "00042", "moment": "2026-11-29 10:15:00",
           "meta": {"href": format!("https://api.moysklad.ru/api/remap/1.2/entity/retaildemand/{id}"), "id": id},
           "agent": agent(), "positions": positions,
           "bonusProgram": {"bonusValueToSpend": spend, "bonusValueToEarn": earn}, "cashSum": 1150.00, "noCashSum": 0})
}

#[tokio::test]
async fn a_whole_checkout_as_moysklad_plays_it() {
    let sandbox = MaxmaSandbox::new(API_KEY_A);
    sandbox.set_settings(SandboxSettings {
        welcome_bonus: 300,
        ..SandboxSettings::default()
    });
    let w = MaxmaWorld::start(sandbox).await;

    // 1. Register the customer.
    let create = json!({"retailStore": store(), "meta": {"id": CUSTOMER}, "name": "Смирнова Анна Петровна",
        "legalFirstName": "Анна", "legalLastName": "Смирнова", "phone": PHONE, "email": "anna@example.com",
        "birthDate": "1990-05-17 00:00:00", "sex": "FEMALE", "statusCheck": "CHECKED"});
    let (status, body) = w.post("/counterparty", &create).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, Value::Null);
    // MoySklad may re-send the same create: still fine, still one customer.
    let (status, _) = w.post("/counterparty", &create).await;
    assert_eq!(status, StatusCode::CREATED);

    // 2. Search by phone (as typed at the till) finds her, with a GUID id and her MoySklad id.
    let (status, body) = w
        .get("/counterparty?search=%2B7%20916%20123-45-67&retailStoreId=s1")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let row = &body["rows"][0];
    assert!(
        uuid::Uuid::parse_str(row["id"].as_str().unwrap()).is_ok(),
        "{row}"
    );
    assert_eq!(row["msId"], CUSTOMER);
    assert_eq!(row["name"], "Смирнова Анна Петровна");
    assert_eq!(row["phone"], "+79161234567");
    assert_eq!(row["sex"], "FEMALE");
    assert_eq!(row["birthDate"], "1990-05-17 00:00:00");
    let (status, body) = w.get("/counterparty?search=Nobody&retailStoreId=s1").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"rows": []})));

    // 3. Balance: the welcome bonus.
    assert_eq!(balance(&w, CUSTOMER, PHONE).await, json!(300));

    // 4. Earning: 5 % of each row, rounded down; no discount.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("EARNING", None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bp = &body["bonusProgram"];
    assert_eq!(
        (dec(&bp["bonusValueToEarn"]), dec(&bp["bonusValueToSpend"])),
        (Decimal::from(62), Decimal::ZERO)
    );
    assert_eq!(dec(&bp["agentBonusBalanceAfter"]), Decimal::from(362));
    assert_eq!(body["positions"][0]["discountedPrice"], num("500"));
    assert_eq!(body["positions"][0]["discountPercent"], num("0"));
    assert_eq!(body["agent"]["meta"]["id"], CUSTOMER);
    assert_eq!(body["needVerification"], false);

    // 5. Spending the maximum (no preferredBonusToSpend): all 300, spread by row amount.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bp = &body["bonusProgram"];
    assert_eq!(dec(&bp["bonusValueToSpend"]), Decimal::from(300));
    assert_eq!(dec(&bp["paidByBonusPoints"]), Decimal::from(300));
    assert_eq!(dec(&bp["bonusValueToEarn"]), Decimal::from(47));
    assert_eq!(dec(&bp["agentBonusBalanceAfter"]), Decimal::from(47));
    assert_eq!(
        dec(&body["positions"][0]["discountedPrice"]),
        "380.00".parse().unwrap()
    );
    assert_eq!(
        dec(&body["positions"][0]["discountPercent"]),
        Decimal::from(24)
    );
    assert_eq!(
        dec(&body["positions"][1]["discountedPrice"]),
        "190.00".parse().unwrap()
    );

    // 6. Spending what the buyer asked for.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", Some(100)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bp = &body["bonusProgram"];
    assert_eq!(dec(&bp["bonusValueToSpend"]), Decimal::from(100));
    assert_eq!(dec(&bp["bonusValueToEarn"]), Decimal::from(57));
    assert_eq!(
        dec(&body["positions"][0]["discountedPrice"]),
        Decimal::from(460)
    );
    assert_eq!(
        dec(&body["positions"][1]["discountedPrice"]),
        Decimal::from(230)
    );
    let priced_positions = body["positions"].clone();
    // Asking for more than the cart allows is refused with the field named.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", Some(5000)))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["parameter"], "preferredBonusToSpend");

    // 7. A spending code goes to the customer; the bridge answers it to MoySklad.
    let (status, body) = w
        .post(
            "/retaildemand/verify",
            &json!({"retailStore": store(), "counterpartyId": CUSTOMER, "phone": PHONE}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        Some(body["verificationCode"].as_str().unwrap().to_string()),
        w.sandbox.last_code(PHONE)
    );

    // 8. The sale, once — a repeat changes nothing.
    let sale_id = "a3c1e2f0-5b6d-11ef-0a80-000000000042";
    let sale_body = sale(sale_id, priced_positions, 100, 57);
    let (status, body) = w.post("/retaildemand", &sale_body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(w.sandbox.balance_by_phone(PHONE), Some(257));
    let confirms = w.sandbox.calls("confirm-ticket");
    let (status, _) = w.post("/retaildemand", &sale_body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        w.sandbox.balance_by_phone(PHONE),
        Some(257),
        "a repeated sale must not earn twice"
    );
    assert_eq!(w.sandbox.calls("confirm-ticket"), confirms);

    // 9. The balance MoySklad sees.
    assert_eq!(balance(&w, CUSTOMER, PHONE).await, json!(257));

    // 10. A partial return (the tea): 20 % of the paid amount → 20 spent bonuses back, 11 earned taken.
    let ret = json!({"retailStore": store(), "name": "R-1", "moment": "2026-11-29 11:00:00",
        "meta": {"href": "", "id": "b7e8f9a0-5b6d-11ef-0a80-000000000043"},
        "demand": {"meta": {"href": "", "id": sale_id}}, "agent": {"id": CUSTOMER},
        "positions": [{"assortment": {"meta": {"id": "sku-tea"}}, "quantity": 1, "price": 250.00, "discountPercent": 8, "discountedPrice": 230.00}],
        "cashSum": 230.00, "noCashSum": 0});
    let (status, body) = w.post("/retailsalesreturn", &ret).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(balance(&w, CUSTOMER, PHONE).await, json!(266));
    let (status, _) = w.post("/retailsalesreturn", &ret).await;
    assert_eq!(status, StatusCode::CREATED, "a repeated return is accepted");
    assert_eq!(
        balance(&w, CUSTOMER, PHONE).await,
        json!(266),
        "and changes nothing"
    );

    // What reached MAXMA: the txid the return referred to is the sale's.
    let requests = w.sandbox.requests();
    let apply = requests.iter().find(|(p, _)| p == "/apply-return").unwrap();
    assert_eq!(
        apply.1["transaction"]["purchaseId"],
        format!("ms-retaildemand-{sale_id}")
    );
    assert_eq!(apply.1["transaction"]["refundAmount"], num("230"));
}

#[tokio::test]
async fn kopecks_are_exact_when_a_row_cannot_be_discounted_evenly() {
    let sandbox = sandbox_with_customer(100);
    let w = MaxmaWorld::start(sandbox).await;
    // 3 × 33.33 with 10 bonuses: MAXMA discounts the row by 10.00, 99.99 − 10.00 = 89.99 is not
    // 3 × any kopeck price, so the row comes back as 1 × 30.01 + 2 × 29.99, serials divided.
    let sn = json!([{"name": "SN1"}, {"name": "SN2"}, {"name": "SN3"}]);
    let body = json!({"retailStore": store(), "agent": agent(), "bonusProgram": {"transactionType": "SPENDING"},
        "preferredBonusToSpend": 10,
        "positions": [{"assortment": {"meta": {"id": "sku-kettle"}}, "quantity": 3, "price": 33.33, "sn": sn}]});
    let (status, body) = w.post("/retaildemand/recalc", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lines = body["positions"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{body}");
    let mut total = Decimal::ZERO;
    let mut serials = Vec::new();
    for line in lines {
        let q = dec(&line["quantity"]);
        total += q * dec(&line["discountedPrice"]);
        assert_eq!(
            Decimal::from(line["sn"].as_array().unwrap().len() as i64),
            q,
            "{line}"
        );
        serials.extend(
            line["sn"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].clone()),
        );
        assert_eq!(line["assortment"]["meta"]["id"], "sku-kettle");
    }
    assert_eq!(total, "89.99".parse().unwrap());
    assert_eq!(serials, vec![json!("SN1"), json!("SN2"), json!("SN3")]);
    assert_eq!(
        dec(&body["bonusProgram"]["bonusValueToSpend"]),
        Decimal::from(10)
    );
}

#[tokio::test]
async fn a_long_priced_cart_is_gzipped_for_a_caller_that_accepts_it_and_a_short_one_is_not() {
    let sandbox = sandbox_with_customer(100);
    let w = MaxmaWorld::start(sandbox).await;
    let positions: Vec<Value> = (0..60)
        .map(|i| {
            json!({"assortment": {"meta": {"id": format!("sku-{i}"),
            "href": format!("https://api.moysklad.ru/api/remap/1.2/entity/product/sku-{i}")}},
            "quantity": 1, "price": 10.00})
        })
        .collect();
    let long = json!({"retailStore": store(), "agent": agent(), "positions": positions,
        "bonusProgram": {"transactionType": "EARNING"}});
    let raw = |body: &Value| {
        client()
            .post(w.url_of("/retaildemand/recalc"))
            .header("Lognex-Discount-API-Auth-Token", w.token())
            .header("accept-encoding", "gzip")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let resp = raw(&long).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let compressed = resp.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut text,
    )
    .unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["positions"].as_array().unwrap().len(), 60);
    assert!(
        text.len() >= 8 * 1024,
        "a long cart's answer: {} bytes",
        text.len()
    );

    // Two positions answer in a few hundred bytes: plain, whatever the caller accepts.
    let resp = raw(&recalc("EARNING", None)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("content-encoding").is_none());
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["positions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn every_reference_example_goes_through_the_maxma_mapping() {
    let sandbox = MaxmaSandbox::new(API_KEY_A);
    // The customer of the reference examples (phone +7 555 123 4567, MoySklad id 276a…).
    sandbox.add_client(SandboxClient {
        phone: Some("+7 555 123 4567".into()),
        card: Some("0001".into()),
        external_id: Some("276a6f50-7ffd-11e6-8a84-bae50000005".into()),
        surname: Some("Иванов".into()),
        name: Some("Иван".into()),
        bonuses: 500,
        ..Default::default()
    });
    for code in ["123456", "1234567"] {
        sandbox.add_gift_card(
            code,
            GiftCardStatus::Active,
            Decimal::from(1000),
            Decimal::from(1000),
            None,
        );
    }
    let w = MaxmaWorld::start(sandbox).await;
    // The two GETs, with the parameters MoySklad sends.
    let (status, answer) = w
        .get("/counterparty?search=%2B7%20555%20123%204567&retailStoreId=s")
        .await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_value::<loyalty_bridge::loyalty::models::CounterpartySearchResponse>(
        answer.clone(),
    )
    .unwrap();
    assert_eq!(
        answer["rows"][0]["msId"],
        "276a6f50-7ffd-11e6-8a84-bae50000005"
    );
    let (status, answer) = w.get("/giftcard?name=123456&retailStoreId=s").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    serde_json::from_value::<loyalty_bridge::loyalty::models::GiftCardResponse>(answer.clone())
        .unwrap();
    assert_eq!(answer["status"], "CAN_BE_USED");
    assert_eq!(answer["currentBalance"], json!(100000));
    let sale_id = "c0ffee00-5b6d-11ef-0a80-000000000001";
    for (path, file) in [
        ("/counterparty", "counterparty.create.request.json"),
        ("/counterparty/detail", "counterparty.detail.request.json"),
        ("/counterparty/verify", "counterparty.verify.request.json"),
        ("/retaildemand/recalc", "retaildemand.recalc.request.json"),
        ("/retaildemand/verify", "retaildemand.verify.request.json"),
        ("/retaildemand", "retaildemand.create.request.json"),
        (
            "/retailsalesreturn",
            "retailsalesreturn.create.request.json",
        ),
    ] {
        let mut body: Value = serde_json::from_str(&fixture(file)).unwrap();
        if path == "/retaildemand" {
            body["meta"]["id"] = json!(sale_id);
        }
        if path == "/retailsalesreturn" {
            body["meta"]["id"] = json!("c0ffee00-5b6d-11ef-0a80-000000000002");
            body["demand"]["meta"]["id"] = json!(sale_id);
        }
        let (status, answer) = w.post(path, &body).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
        match path {
            "/counterparty/detail" => {
                assert_eq!(answer["bonusProgram"]["agentBonusBalance"], json!(500))
            }
            "/counterparty/verify" | "/retaildemand/verify" => {
                assert!(
                    answer["verificationCode"]
                        .as_str()
                        .is_some_and(|c| c.len() == 3),
                    "{answer}"
                )
            }
            "/retaildemand/recalc" => {
                serde_json::from_value::<loyalty_bridge::loyalty::models::RecalcResponse>(
                    answer.clone(),
                )
                .unwrap();
                // 123.456 × 123.45, no discount when earning: the position is priced unchanged.
                assert_eq!(
                    dec(&answer["positions"][0]["discountedPrice"]),
                    "123.45".parse().unwrap()
                );
                assert_eq!(answer["positions"][0]["pack"]["barcode"], "2000000051420");
            }
            _ => assert_eq!(status, StatusCode::CREATED, "{path}"),
        }
    }
    // The sale above paid with both gift cards (MAXMA uses a card up to the receipt's amount).
    let (status, answer) = w.get("/giftcard?name=123456&retailStoreId=s").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "REDEEMED");
}

#[tokio::test]
async fn gift_cards_map_to_the_loyaltyapi_statuses() {
    let w = MaxmaWorld::start(MaxmaSandbox::with_demo_data(API_KEY_A)).await;
    let (status, body) = w.get("/giftcard?name=123456&retailStoreId=s").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "CAN_BE_USED");
    assert_eq!(
        body["currentBalance"],
        json!(100000),
        "1000.00 ₽ in kopecks"
    );
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
    for (code, expected) in [
        ("EXPIRED1", "EXPIRED"),
        ("BLOCKED1", "INVALID"),
        ("INACTIVE1", "INVALID"),
    ] {
        let (status, body) = w
            .get(&format!("/giftcard?name={code}&retailStoreId=s"))
            .await;
        assert_eq!(status, StatusCode::OK, "{code}: {body}");
        assert_eq!(body["status"], expected, "{code}");
        assert!(body.get("currentBalance").is_none());
    }
    let (status, body) = w.get("/giftcard?name=NOPE&retailStoreId=s").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(the_error(&body)["code"], 1040);
    assert_eq!(the_error(&body)["parameter"], "name");
}

#[tokio::test]
async fn maxma_refusals_become_envelopes() {
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let w = MaxmaWorld::start(sandbox.clone()).await;
    // Unknown customer.
    let (status, body) = w
        .post(
            "/counterparty/detail",
            &json!({"retailStore": store(), "meta": {"id": "nobody"}, "phone": "+7 900 000 00 99"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(the_error(&body)["code"], 1003);
    assert_eq!(the_error(&body)["error"], "Покупатель не найден");
    // Registration needs confirmation when the program says so.
    sandbox.set_settings(SandboxSettings {
        phone_verification: true,
        ..SandboxSettings::default()
    });
    let mut create: Value =
        serde_json::from_str(&fixture("counterparty.create.request.json")).unwrap();
    create["statusCheck"] = json!("UNCHECKED");
    let (status, body) = w.post("/counterparty", &create).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(
        body,
        serde_json::from_str::<Value>(&fixture(
            "counterparty.create.verification-required.error.json"
        ))
        .unwrap()
    );
    // A phone already taken by someone else.
    sandbox.set_settings(SandboxSettings::default());
    create["statusCheck"] = json!("CHECKED");
    create["phone"] = json!("+7 999 000-00-01");
    create["discountCardNumber"] = json!("NEW-CARD");
    create["meta"]["id"] = json!("another-customer");
    let (status, body) = w.post("/counterparty", &create).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["parameter"], "phone");
    // Code requests are throttled by MAXMA.
    let verify = json!({"retailStore": store(), "meta": {"href": "https://x/syncid/1"}, "phone": "+79011231122"});
    let mut last = (StatusCode::OK, Value::Null);
    for _ in 0..4 {
        last = w.post("/counterparty/verify", &verify).await;
    }
    assert_eq!(last.0, StatusCode::TOO_MANY_REQUESTS, "{}", last.1);
    assert_eq!(the_error(&last.1)["code"], 1028);
    // No phone to send a code to.
    let (status, body) = w
        .post(
            "/counterparty/verify",
            &json!({"retailStore": store(), "meta": {"href": "https://x/syncid/1"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(the_error(&body)["parameter"], "phone");
    // A return without its sale.
    let ret: Value =
        serde_json::from_str(&fixture("retailsalesreturn.create.request.json")).unwrap();
    let mut ret = ret;
    ret["meta"]["id"] = json!("r-1");
    let (status, body) = w.post("/retailsalesreturn", &ret).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["parameter"], "demand.meta.id");
    // A return of a sale MAXMA never saw.
    ret["demand"]["meta"]["id"] = json!("never-sold");
    let (status, body) = w.post("/retailsalesreturn", &ret).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(the_error(&body)["code"], 1013);
}

#[tokio::test]
async fn vendor_failures_become_envelopes_within_the_deadline() {
    let _alone = common::alone().lock().await;
    // MAXMA's "temporarily unavailable" pauses the tenant (5 s in the mapping); capped here so
    // that the next fault's call only waits a moment.
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let w = MaxmaWorld::start_with(sandbox.clone(), |bridge, shop| {
        bridge
            .server("request_timeout_ms = 1500")
            .tenant(shop.keys("limits = { max_pause_ms = 200 }"))
    })
    .await;
    let detail = json!({"retailStore": store(), "meta": {"id": "demo-1"}, "phone": "+79990000001"});
    for (fault, status, code) in [
        (Fault::Http500, StatusCode::BAD_GATEWAY, 9502),
        (Fault::Garbage, StatusCode::BAD_GATEWAY, 9502),
        (Fault::Throttle, StatusCode::SERVICE_UNAVAILABLE, 1049),
        (Fault::DropConnection, StatusCode::BAD_GATEWAY, 9502),
        (
            Fault::Delay(Duration::from_secs(3)),
            StatusCode::GATEWAY_TIMEOUT,
            9504,
        ),
    ] {
        sandbox.set_fault(Some(fault.clone()));
        let started = Instant::now();
        let (got, body) = w.post("/counterparty/detail", &detail).await;
        assert_eq!(got, status, "{fault:?}: {body}");
        assert_eq!(the_error(&body)["code"], code, "{fault:?}");
        assert!(
            !body.to_string().contains("<html"),
            "the vendor's body is never echoed: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{fault:?} took {:?}",
            started.elapsed()
        );
    }
    sandbox.set_fault(None);
    assert_eq!(balance(&w, "demo-1", "+79990000001").await, json!(500));

    // A wrong processing key is reported as a configuration problem, not the cashier's.
    let bridge = TestBridge::builder()
        .tenant(w.tenant().key("wrong-key"))
        .start()
        .await;
    let (status, body) = bridge.post("/counterparty/detail", &detail).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(the_error(&body)["code"], 1401);

    // Nobody listening at the vendor's address.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let bridge = TestBridge::builder()
        .tenant(w.tenant().base_url(&dead_url))
        .start()
        .await;
    let (status, body) = bridge.post("/counterparty/detail", &detail).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(the_error(&body)["error"], "Поставщик лояльности недоступен");
}

#[tokio::test]
async fn codes_the_bridge_sent_are_required_where_maxma_asks_for_confirmation() {
    let sandbox = MaxmaSandbox::new(API_KEY_A);
    sandbox.set_settings(SandboxSettings {
        phone_verification: true,
        bonus_applying_confirmation: true,
        welcome_bonus: 200,
        ..SandboxSettings::default()
    });
    let w = MaxmaWorld::start(sandbox).await;

    // Registration: UNCHECKED → 412/28001; a CHECKED create before any code → 412 too.
    let mut create = json!({"retailStore": store(), "meta": {"id": CUSTOMER}, "name": "Смирнова Анна", "phone": PHONE,
        "statusCheck": "UNCHECKED"});
    let (status, body) = w.post("/counterparty", &create).await;
    assert_eq!(
        (status, the_error(&body)["code"].clone()),
        (StatusCode::PRECONDITION_FAILED, json!(28001))
    );
    create["statusCheck"] = json!("CHECKED");
    let (status, _) = w.post("/counterparty", &create).await;
    assert_eq!(
        status,
        StatusCode::PRECONDITION_FAILED,
        "no code was sent to this phone yet"
    );
    // MoySklad asks for a code, the cashier enters it, MoySklad re-sends the create as CHECKED.
    let (status, body) = w
        .post("/counterparty/verify", &json!({"retailStore": store(), "meta": {"href": "https://x/syncid/1"}, "phone": PHONE}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = w.post("/counterparty", &create).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Spending: recalc says a code is needed; a sale without one is refused; after verify it passes.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", Some(100)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["needVerification"], true);
    let positions = body["positions"].clone();
    let sale_body = sale("d4e5f6a7-5b6d-11ef-0a80-000000000077", positions, 100, 57);
    let (status, body) = w.post("/retaildemand", &sale_body).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(the_error(&body)["code"], 1050);
    assert_eq!(
        w.sandbox.balance_by_phone(PHONE),
        Some(200),
        "nothing spent"
    );
    let (status, _) = w
        .post(
            "/retaildemand/verify",
            &json!({"retailStore": store(), "counterpartyId": CUSTOMER, "phone": PHONE}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = w.post("/retaildemand", &sale_body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(w.sandbox.balance_by_phone(PHONE), Some(200 - 100 + 57));
}

#[tokio::test]
async fn concurrent_recalcs_look_the_customer_up_once() {
    let sandbox = sandbox_with_customer(100);
    let w = std::sync::Arc::new(MaxmaWorld::start(sandbox.clone()).await);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            w.post("/retaildemand/recalc", &recalc("EARNING", None))
                .await
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            dec(&body["bonusProgram"]["agentBonusBalance"]),
            Decimal::from(100)
        );
    }
    assert_eq!(
        sandbox.calls("get-balance"),
        1,
        "one lookup for twenty recalcs"
    );
    assert_eq!(
        sandbox.calls("v2/calculate-purchase"),
        20,
        "pricing is never cached"
    );
    // A sale changes the balance: the cached lookup is dropped.
    let (status, body) = w
        .post(
            "/retaildemand",
            &sale("f0e1d2c3-5b6d-11ef-0a80-000000000099", cart(), 0, 62),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(balance(&w, CUSTOMER, PHONE).await, json!(162));
    assert_eq!(sandbox.calls("get-balance"), 2);
}

#[tokio::test]
async fn the_tenant_rate_limit_holds_vendor_calls_back() {
    // It counts the permits refilled while the calls ran.
    let _alone = common::alone().lock().await;
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let detail = |i: usize| json!({"retailStore": store(), "meta": {"id": format!("c-{i}")}, "phone": "+79990000001"});

    // No waiting allowed: past the burst, calls are refused with a 429 and a retry hint.
    let w = MaxmaWorld::start_with(sandbox.clone(), |bridge, shop| {
        bridge.tenant(shop.keys("limits = { requests_per_second = 1, burst = 3, max_wait_ms = 0 }"))
    })
    .await;
    // All at once, so that a slow machine does not refill the bucket between them.
    let started = Instant::now();
    let calls: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(
                client()
                    .post(w.url_of("/counterparty/detail"))
                    .header("Lognex-Discount-API-Auth-Token", w.token())
                    .body(detail(i).to_string())
                    .send(),
            )
        })
        .collect();
    let mut refused = 0;
    for call in calls {
        let resp = call.await.unwrap().unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(resp.headers().contains_key("retry-after"));
            let body: Value = resp.json().await.unwrap();
            assert_eq!(the_error(&body)["code"], 9429);
            refused += 1;
        } else {
            assert_eq!(resp.status(), StatusCode::OK);
        }
    }
    // The burst of 3, plus one permit a second for as long as the calls took (a loaded test
    // machine may take longer than the moment they should need).
    let allowed = 3 + started.elapsed().as_secs_f64().ceil() as usize;
    assert!(refused >= 8 - allowed.min(8), "only {refused} of 8 refused");
    assert!(
        sandbox.calls("get-balance") <= allowed,
        "{} calls reached MAXMA, {allowed} allowed",
        sandbox.calls("get-balance")
    );

    // Waiting allowed: every call goes through, spaced at the configured rate.
    let before = sandbox.calls("get-balance");
    let bridge = TestBridge::builder()
        .tenant(
            w.tenant()
                .keys("limits = { requests_per_second = 5, burst = 1, max_wait_ms = 2000 }"),
        )
        .start()
        .await;
    let started = Instant::now();
    for i in 0..6 {
        let (status, body) = bridge.post("/counterparty/detail", &detail(100 + i)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "6 calls at 5/s took {:?}",
        started.elapsed()
    );
    assert_eq!(sandbox.calls("get-balance") - before, 6);
}

#[tokio::test]
async fn the_reference_examples_work_against_the_shipped_demo_sandbox() {
    // What `cargo run` with the shipped config.toml serves: a new user replaying the reference
    // examples must get 2xx answers (their customer +7 555 123 4567 is a demo customer).
    let w = MaxmaWorld::start(MaxmaSandbox::with_demo_data(API_KEY_A)).await;
    let sale_id = "d3m0d3m0-5b6d-11ef-0a80-000000000001";
    for (path, file) in [
        ("/counterparty", "counterparty.create.request.json"),
        ("/counterparty/detail", "counterparty.detail.request.json"),
        ("/counterparty/verify", "counterparty.verify.request.json"),
        ("/retaildemand/recalc", "retaildemand.recalc.request.json"),
        ("/retaildemand/verify", "retaildemand.verify.request.json"),
        ("/retaildemand", "retaildemand.create.request.json"),
        (
            "/retailsalesreturn",
            "retailsalesreturn.create.request.json",
        ),
    ] {
        let mut body: Value = serde_json::from_str(&fixture(file)).unwrap();
        if path == "/retaildemand" {
            body["meta"]["id"] = json!(sale_id);
        }
        if path == "/retailsalesreturn" {
            body["meta"]["id"] = json!("d3m0d3m0-5b6d-11ef-0a80-000000000002");
            body["demand"]["meta"]["id"] = json!(sale_id);
        }
        let (status, answer) = w.post(path, &body).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
    }
    let (status, answer) = w
        .get("/counterparty?search=%2B7%20555%20123%204567&retailStoreId=s")
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["rows"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_failing_vendor_trips_the_breaker_and_calls_fail_fast() {
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let w = MaxmaWorld::start_with(sandbox.clone(), |bridge, shop| {
        bridge.tenant(shop.keys("limits = { breaker_failures = 3, breaker_open_ms = 800 }"))
    })
    .await;
    let detail = |i: usize| json!({"retailStore": store(), "meta": {"id": format!("b-{i}")}, "phone": "+79990000001"});
    sandbox.set_fault(Some(Fault::Http500));
    // Three failing attempts (one request and its two retries) open the breaker.
    let (status, _) = w.post("/counterparty/detail", &detail(0)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let reached = sandbox.calls("get-balance");
    assert_eq!(reached, 3);
    // Now calls fail fast, without reaching MAXMA, with a retry hint.
    let resp = client()
        .post(w.url_of("/counterparty/detail"))
        .header("Lognex-Discount-API-Auth-Token", w.token())
        .body(detail(1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(the_error(&body)["error"], "Поставщик лояльности недоступен");
    assert_eq!(
        sandbox.calls("get-balance"),
        reached,
        "an open breaker sends nothing"
    );
    // MAXMA recovers; after the open period one trial goes through and closes the breaker.
    sandbox.set_fault(None);
    tokio::time::sleep(Duration::from_millis(900)).await;
    for i in 2..4 {
        let (status, body) = w.post("/counterparty/detail", &detail(i)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// Issue #24 (7): a return carries only the customer's id, or nothing (`"agent": {}`); the
/// balance MoySklad asks for next must come from MAXMA, not from the lookup cached before it.
#[tokio::test]
async fn the_balance_after_a_return_is_not_the_cached_one() {
    let w = MaxmaWorld::start(sandbox_with_customer(200)).await;
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("EARNING", None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sale_id = "a3c1e2f0-5b6d-11ef-0a80-000000000142";
    let (status, body) = w
        .post(
            "/retaildemand",
            &sale(sale_id, body["positions"].clone(), 0, 0),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let after_sale = w.sandbox.balance_by_phone(PHONE).unwrap();
    assert_ne!(after_sale, 200, "the sale earned bonuses");
    // MoySklad shows the balance: it is looked up and cached.
    assert_eq!(balance(&w, CUSTOMER, PHONE).await, json!(after_sale));

    let ret = json!({"retailStore": store(), "name": "R-2", "moment": "2026-11-29 11:00:00",
        "meta": {"href": "", "id": "b7e8f9a0-5b6d-11ef-0a80-000000000143"},
        "demand": {"meta": {"href": "", "id": sale_id}}, "agent": {},
        "positions": [{"assortment": {"meta": {"id": "sku-tea"}}, "quantity": 1, "price": 250.00, "discountedPrice": 250.00}],
        "cashSum": 250.00, "noCashSum": 0});
    let lookups = w.sandbox.calls("get-balance");
    let (status, body) = w.post("/retailsalesreturn", &ret).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let after_return = w.sandbox.balance_by_phone(PHONE).unwrap();
    assert!(after_return < after_sale, "the return took bonuses back");
    assert_eq!(balance(&w, CUSTOMER, PHONE).await, json!(after_return));
    assert_eq!(
        w.sandbox.calls("get-balance"),
        lookups + 1,
        "the lookup after the return reached MAXMA"
    );
}
