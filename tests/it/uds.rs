//! Whole checkouts through the UDS mapping against the UDS sandbox, both on 127.0.0.1:0.

use crate::common;

use common::{UDS_COMPANY, UDS_KEY, UdsWorld, d, dec, the_error};
use emulators::uds::UdsSandbox;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PHONE: &str = "+7 999 000-00-01";

fn store() -> Value {
    json!({"meta": {"id": "s1"}, "name": "Магазин №1"})
}

fn agent() -> Value {
    json!({"meta": {"id": "c-uds-1"}, "name": "Иван Петров", "phone": PHONE})
}

fn cart() -> Value {
    json!([
        {"assortment": {"meta": {"id": "coffee"}}, "quantity": 2, "price": 500.00},
        {"assortment": {"meta": {"id": "tobacco"}}, "quantity": 1, "price": 250.00}
    ])
}

fn recalc(kind: &str, preferred: Option<&str>) -> Value {
    let mut body = json!({"retailStore": store(), "agent": agent(), "positions": cart(), "bonusProgram": {"transactionType": kind}});
    if let Some(p) = preferred {
        body["preferredBonusToSpend"] = serde_json::from_str(p).unwrap();
    }
    body
}

#[tokio::test]
async fn a_whole_checkout_through_uds() {
    let w = UdsWorld::start(UdsSandbox::with_demo_data(UDS_COMPANY, UDS_KEY)).await;

    // UDS registers customers in its app only.
    let (status, body) = w
        .post("/counterparty", &json!({"retailStore": store(), "meta": {"id": "x"}, "phone": PHONE, "statusCheck": "CHECKED"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["code"], 2001);

    // Search by phone: the UDS uid is the row id.
    let (status, body) = w
        .get("/counterparty?search=%2B7%20999%20000-00-01&retailStoreId=s1")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        uuid::Uuid::parse_str(body["rows"][0]["id"].as_str().unwrap()).is_ok(),
        "{body}"
    );
    assert_eq!(body["rows"][0]["name"], "Иван Петров");

    // Balance.
    let detail = json!({"retailStore": store(), "meta": {"id": "c-uds-1"}, "phone": PHONE});
    let (status, body) = w.post("/counterparty/detail", &detail).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(dec(&body["bonusProgram"]["agentBonusBalance"]), d("350"));

    // Earning: 5 % of the part in the program (tobacco is not).
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("EARNING", None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(dec(&body["bonusProgram"]["bonusValueToEarn"]), d("50"));
    assert_eq!(
        dec(&body["bonusProgram"]["agentBonusBalanceAfter"]),
        d("400")
    );
    assert_eq!(dec(&body["positions"][0]["discountedPrice"]), d("500"));

    // Spending the most: 30 % of 1000 = 300 points, all on the coffee.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bp = &body["bonusProgram"];
    assert_eq!(dec(&bp["bonusValueToSpend"]), d("300"));
    assert_eq!(dec(&bp["bonusValueToEarn"]), d("35"));
    assert_eq!(dec(&bp["agentBonusBalanceAfter"]), d("85"));
    assert_eq!(dec(&body["positions"][0]["discountedPrice"]), d("350"));
    assert_eq!(
        dec(&body["positions"][1]["discountedPrice"]),
        d("250"),
        "tobacco is outside the program"
    );

    // Spending what the buyer asked: 100.50 → the coffee costs 899.50, 2 × 449.75.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", Some("100.50")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(dec(&body["bonusProgram"]["bonusValueToSpend"]), d("100.50"));
    assert_eq!(dec(&body["bonusProgram"]["bonusValueToEarn"]), d("44.97"));
    assert_eq!(dec(&body["positions"][0]["discountedPrice"]), d("449.75"));
    let positions = body["positions"].clone();

    // The sale, and its repeat.
    let sale_id = "e1f2a3b4-5b6d-11ef-0a80-000000000101";
    let sale = json!({"retailStore": store(), "name": "00077", "meta": {"id": sale_id}, "agent": agent(), "positions": positions,
        "bonusProgram": {"bonusValueToSpend": 100.50, "bonusValueToEarn": 44.97}});
    let (status, body) = w.post("/retaildemand", &sale).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(w.sandbox.points(PHONE), Some(d("294.47")));
    let (status, _) = w.post("/retaildemand", &sale).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        w.sandbox.points(PHONE),
        Some(d("294.47")),
        "a repeated sale is the same UDS operation"
    );
    let (_, body) = w.post("/counterparty/detail", &detail).await;
    assert_eq!(dec(&body["bonusProgram"]["agentBonusBalance"]), d("294.47"));

    // A partial return: one coffee, 500 of the 1250 total.
    let ret = json!({"retailStore": store(), "meta": {"id": "r-uds-1"}, "demand": {"meta": {"id": sale_id}}, "agent": {},
        "positions": [{"assortment": {"meta": {"id": "coffee"}}, "quantity": 1, "price": 500.00, "discountedPrice": 449.75}]});
    let (status, body) = w.post("/retailsalesreturn", &ret).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let after_return = w.sandbox.points(PHONE).unwrap();
    assert_eq!(
        after_return,
        d("316.69"),
        "40.20 points back, 17.98 cashback taken back"
    );
    let (status, _) = w.post("/retailsalesreturn", &ret).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        w.sandbox.points(PHONE),
        Some(after_return),
        "a repeated return refunds nothing more"
    );
    let refund = w
        .sandbox
        .requests()
        .into_iter()
        .find(|(_, path, _)| path.contains("/refund"))
        .unwrap();
    assert_eq!(dec(&refund.2["partialAmount"]), d("500"));
}

#[tokio::test]
async fn spending_codes_are_uds_payment_codes() {
    let sandbox = UdsSandbox::with_demo_data(UDS_COMPANY, UDS_KEY);
    let w = UdsWorld::start(sandbox.clone()).await;
    let verify = json!({"retailStore": store(), "counterpartyId": "c-uds-1", "phone": PHONE});
    // Before the customer was found by payment code there is nothing to confirm with.
    let (status, body) = w.post("/retaildemand/verify", &verify).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["code"], 2010);
    // The cashier types the code from the customer's UDS app into the customer search.
    let code = sandbox.payment_code(PHONE).unwrap();
    let (status, body) = w
        .get(&format!("/counterparty?search={code}&retailStoreId=s1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["phone"], "+79990000001");
    // Now the verify call answers that code, for the cashier to confirm against the app.
    let (status, body) = w.post("/retaildemand/verify", &verify).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["verificationCode"], code);
}

/// A refusal at validation: 400, the field named, and nothing sent to UDS.
async fn refused_before_uds(w: &UdsWorld, path: &str, body: &Value, parameter: &str) {
    let before = w.sandbox.requests().len();
    let (status, answer) = w.post(path, body).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{path} {parameter}: {answer}"
    );
    assert_eq!(
        the_error(&answer)["parameter"],
        parameter,
        "{path}: {answer}"
    );
    assert_eq!(the_error(&answer)["code"], 999, "{path}: {answer}");
    assert_eq!(
        w.sandbox.requests().len(),
        before,
        "{path} {parameter}: no vendor call"
    );
}

#[tokio::test]
async fn a_fraction_of_a_kopeck_or_an_oversized_id_never_reaches_uds() {
    let w = UdsWorld::start(UdsSandbox::with_demo_data(UDS_COMPANY, UDS_KEY)).await;
    // A sale the return below can refer to: without it the return would stop short of UDS
    // whatever its amounts.
    let sale_id = "e1f2a3b4-5b6d-11ef-0a80-000000000201";
    let sale = json!({"retailStore": store(), "name": "00078", "meta": {"id": sale_id}, "agent": agent(), "positions": cart()});
    let (status, body) = w.post("/retaildemand", &sale).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ret = json!({"retailStore": store(), "meta": {"id": "r-uds-201"}, "demand": {"meta": {"id": sale_id}}, "agent": {},
        "positions": [{"assortment": {"meta": {"id": "coffee"}}, "quantity": 1, "price": 500.00}]});

    let long_id = "7".repeat(loyalty_bridge::loyalty::validate::MAX_ID_CHARS + 1);
    let huge_id = "7".repeat(900 * 1024);
    let price: Value = serde_json::from_str("100.005").unwrap();
    let with = |base: &Value, pointer: &str, value: Value| {
        let mut body = base.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    let new_sale = with(
        &sale,
        "/meta/id",
        json!("e1f2a3b4-5b6d-11ef-0a80-000000000202"),
    );
    let cases = [
        (
            "/retaildemand/recalc",
            with(
                &recalc("EARNING", None),
                "/positions/0/price",
                price.clone(),
            ),
            "positions[0].price",
        ),
        (
            "/retaildemand/recalc",
            with(&recalc("SPENDING", None), "/agent/meta/id", json!(long_id)),
            "agent.meta.id",
        ),
        (
            "/retaildemand/recalc",
            with(&recalc("SPENDING", None), "/agent/meta/id", json!(huge_id)),
            "agent.meta.id",
        ),
        (
            "/retaildemand",
            with(&new_sale, "/positions/0/price", price.clone()),
            "positions[0].price",
        ),
        (
            "/retaildemand",
            with(&new_sale, "/agent/meta/id", json!(long_id)),
            "agent.meta.id",
        ),
        (
            "/retaildemand",
            with(&sale, "/meta/id", json!(long_id)),
            "meta.id",
        ),
        (
            "/retailsalesreturn",
            with(&ret, "/positions/0/price", price.clone()),
            "positions[0].price",
        ),
        (
            "/retailsalesreturn",
            with(&ret, "/meta/id", json!(long_id)),
            "meta.id",
        ),
    ];
    for (path, body, parameter) in cases {
        refused_before_uds(&w, path, &body, parameter).await;
    }
    // The same return with its amount to the kopeck goes through.
    let (status, body) = w.post("/retailsalesreturn", &ret).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn what_uds_cannot_do_gets_a_clear_answer() {
    let w = UdsWorld::start(UdsSandbox::with_demo_data(UDS_COMPANY, UDS_KEY)).await;
    let (status, body) = w.get("/giftcard?name=123&retailStoreId=s1").await;
    assert_eq!(
        (status, the_error(&body)["code"].clone()),
        (StatusCode::CONFLICT, json!(2003))
    );
    let (status, body) = w
        .post("/counterparty/verify", &json!({"retailStore": store(), "meta": {"href": "https://x/syncid/1"}, "phone": PHONE}))
        .await;
    assert_eq!(
        (status, the_error(&body)["code"].clone()),
        (StatusCode::CONFLICT, json!(2002))
    );
    // An unknown customer.
    let (status, body) = w
        .post(
            "/counterparty/detail",
            &json!({"retailStore": store(), "meta": {"id": "c"}, "phone": "+7 999 111-22-33"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(the_error(&body)["code"], 2404);
    // A blocked one cannot buy with points.
    let blocked = json!({"retailStore": store(), "agent": {"meta": {"id": "b"}, "phone": "+79990000009"}, "positions": cart(),
        "bonusProgram": {"transactionType": "SPENDING"}, "preferredBonusToSpend": 10});
    let (status, body) = w.post("/retaildemand/recalc", &blocked).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["code"], 2009);
}

/// Issue #24 (7): a return carries only the customer's id (here not even that), while UDS
/// lookups are cached by phone; the balance MoySklad asks for next must come from UDS.
#[tokio::test]
async fn the_balance_after_a_return_is_not_the_cached_one() {
    let sandbox = UdsSandbox::with_demo_data(UDS_COMPANY, UDS_KEY);
    let w = UdsWorld::start(sandbox.clone()).await;
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", Some("100")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sale_id = "e1f2a3b4-5b6d-11ef-0a80-000000000201";
    let sale = json!({"retailStore": store(), "name": "00078", "meta": {"id": sale_id}, "agent": agent(),
        "positions": body["positions"].clone(), "bonusProgram": {"bonusValueToSpend": 100, "bonusValueToEarn": 45}});
    let (status, body) = w.post("/retaildemand", &sale).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let after_sale = sandbox.points(PHONE).unwrap();
    // MoySklad shows the balance: it is looked up and cached (by phone).
    let detail = json!({"retailStore": store(), "meta": {"id": "c-uds-1"}, "phone": PHONE});
    let (_, body) = w.post("/counterparty/detail", &detail).await;
    assert_eq!(dec(&body["bonusProgram"]["agentBonusBalance"]), after_sale);

    let ret = json!({"retailStore": store(), "meta": {"id": "r-uds-2"}, "demand": {"meta": {"id": sale_id}}, "agent": {},
        "positions": [{"assortment": {"meta": {"id": "coffee"}}, "quantity": 1, "price": 500.00, "discountedPrice": 450.00}]});
    let lookups = sandbox.calls("/customers/find");
    let (status, body) = w.post("/retailsalesreturn", &ret).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let after_return = sandbox.points(PHONE).unwrap();
    assert_ne!(after_return, after_sale, "the return moved points");
    let (status, body) = w.post("/counterparty/detail", &detail).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        dec(&body["bonusProgram"]["agentBonusBalance"]),
        after_return
    );
    assert_eq!(
        sandbox.calls("/customers/find"),
        lookups + 1,
        "the lookup after the return reached UDS"
    );
}
