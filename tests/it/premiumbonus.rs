//! Whole checkouts through the Premium Bonus mapping against the PB sandbox, both on 127.0.0.1:0.

use crate::common;

use common::{PB_TOKEN, PbWorld, d, dec, the_error};
use emulators::premiumbonus::{PbBuyer, PbSettings, PremiumBonusSandbox};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const BUYER: &str = "+7 999 000-00-01";

/// The buyer's balance at Premium Bonus.
fn balance(w: &PbWorld) -> Decimal {
    w.sandbox.balance(BUYER).unwrap()
}

fn store() -> Value {
    json!({"meta": {"id": "s1"}, "name": "Касса 1"})
}

fn agent() -> Value {
    json!({"meta": {"id": "demo-1"}, "name": "Иванов Иван", "phone": BUYER})
}

fn cart() -> Value {
    json!([
        {"assortment": {"meta": {"id": "coffee"}}, "quantity": 2, "price": 500.00},
        {"assortment": {"meta": {"id": "tea"}}, "quantity": 1, "price": 250.00}
    ])
}

fn recalc(kind: &str, preferred: Option<i64>) -> Value {
    let mut body = json!({"retailStore": store(), "agent": agent(), "positions": cart(), "bonusProgram": {"transactionType": kind}});
    if let Some(p) = preferred {
        body["preferredBonusToSpend"] = json!(p);
    }
    body
}

#[tokio::test]
async fn a_whole_checkout_through_premium_bonus() {
    let w = PbWorld::start(PremiumBonusSandbox::with_demo_data(PB_TOKEN)).await;

    // Registration, and MoySklad re-sending it.
    let create = json!({"retailStore": store(), "meta": {"id": "ms-new-1"}, "name": "Смирнова Анна", "legalFirstName": "Анна",
        "legalLastName": "Смирнова", "phone": "+7 916 555-00-11", "sex": "FEMALE", "statusCheck": "CHECKED"});
    let (status, body) = w.post("/counterparty", &create).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = w.post("/counterparty", &create).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a repeat is recognised: {body}"
    );
    let (status, body) = w
        .call(
            reqwest::Method::GET,
            "/counterparty?search=%2B79165550011&retailStoreId=s1",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["msId"], "ms-new-1");
    assert_eq!(body["rows"][0]["name"], "Смирнова Анна");
    assert!(uuid::Uuid::parse_str(body["rows"][0]["id"].as_str().unwrap()).is_ok());

    // The demo buyer's balance.
    let (status, body) = w
        .post(
            "/counterparty/detail",
            &json!({"retailStore": store(), "meta": {"id": "demo-1"}, "phone": BUYER}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(dec(&body["bonusProgram"]["agentBonusBalance"]), d("500"));

    // Earning: 5 % of each item.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("EARNING", None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(dec(&body["bonusProgram"]["bonusValueToEarn"]), d("62.50"));
    assert_eq!(dec(&body["positions"][0]["discountedPrice"]), d("500"));

    // Spending the most PB allows (all 500, half the cart), spread item by item.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(dec(&body["bonusProgram"]["bonusValueToSpend"]), d("500"));
    assert_eq!(dec(&body["bonusProgram"]["bonusValueToEarn"]), d("37.50"));
    assert_eq!(
        dec(&body["bonusProgram"]["agentBonusBalanceAfter"]),
        d("37.50")
    );
    assert_eq!(dec(&body["positions"][0]["discountedPrice"]), d("300"));
    assert_eq!(dec(&body["positions"][1]["discountedPrice"]), d("150"));

    // Spending 100.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", Some(100)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(dec(&body["bonusProgram"]["bonusValueToEarn"]), d("57.50"));
    assert_eq!(dec(&body["positions"][0]["discountedPrice"]), d("460"));
    assert_eq!(dec(&body["positions"][1]["discountedPrice"]), d("230"));
    let positions = body["positions"].clone();

    // The sale, once.
    let sale_id = "a0b1c2d3-5b6d-11ef-0a80-000000000201";
    let sale = json!({"retailStore": store(), "name": "00099", "meta": {"id": sale_id}, "agent": agent(), "positions": positions,
        "bonusProgram": {"bonusValueToSpend": 100, "bonusValueToEarn": 57.50}});
    let (status, body) = w.post("/retaildemand", &sale).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(balance(&w), d("457.50"));
    let (status, _) = w.post("/retaildemand", &sale).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        balance(&w),
        d("457.50"),
        "a repeated sale is the same PB purchase"
    );

    // Returning the tea: the purchase is edited down to the coffee.
    let ret = |id: &str, positions: Value| json!({"retailStore": store(), "meta": {"id": id}, "demand": {"meta": {"id": sale_id}}, "agent": {}, "positions": positions});
    let tea = json!([{"assortment": {"meta": {"id": "tea"}}, "quantity": 1, "price": 250.00, "discountedPrice": 230.00}]);
    let (status, body) = w
        .post("/retailsalesreturn", &ret("r-pb-1", tea.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        balance(&w),
        d("466.00"),
        "20 written-off bonuses back, 11.50 earned taken back"
    );
    let (status, _) = w.post("/retailsalesreturn", &ret("r-pb-1", tea)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        balance(&w),
        d("466.00"),
        "a repeated return changes nothing"
    );

    // Returning the rest: the purchase is cancelled and the balance is what it was.
    let coffee = json!([{"assortment": {"meta": {"id": "coffee"}}, "quantity": 2, "price": 500.00, "discountedPrice": 460.00}]);
    let (status, body) = w.post("/retailsalesreturn", &ret("r-pb-2", coffee)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(balance(&w), d("500.00"));
    assert_eq!(w.sandbox.calls("cancel-purchase"), 1);
}

#[tokio::test]
async fn registration_confirmation_and_refusals() {
    let sandbox = PremiumBonusSandbox::with_demo_data(PB_TOKEN);
    sandbox.set_settings(PbSettings {
        registration_confirmation_required: true,
        ..PbSettings::default()
    });
    let w = PbWorld::start(sandbox.clone()).await;
    let create = json!({"retailStore": store(), "meta": {"id": "ms-new-2"}, "phone": "+7 916 555-00-22", "statusCheck": "UNCHECKED"});
    let (status, body) = w.post("/counterparty", &create).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(the_error(&body)["code"], 28001);
    // PB sends the code itself and does not return it: the verify call says so plainly.
    let verify = json!({"retailStore": store(), "meta": {"href": "https://x/syncid/2"}, "phone": "+7 916 555-00-22"});
    let (status, body) = w.post("/counterparty/verify", &verify).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["code"], 3010);
    assert!(
        sandbox.last_code("79165550022").is_some(),
        "PB did send the customer a code"
    );
    // A blocked buyer.
    let blocked = json!({"retailStore": store(), "agent": {"meta": {"id": "demo-9"}, "phone": "+79990000009"}, "positions": cart(),
        "bonusProgram": {"transactionType": "EARNING"}});
    let (status, body) = w.post("/retaildemand/recalc", &blocked).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Spending more than PB allows.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", Some(700)))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["parameter"], "preferredBonusToSpend");
    // A gift card lookup PB cannot do.
    let (status, body) = w
        .call(
            reqwest::Method::GET,
            "/giftcard?name=1&retailStoreId=s1",
            None,
        )
        .await;
    assert_eq!(
        (status, the_error(&body)["code"].clone()),
        (StatusCode::CONFLICT, json!(3003))
    );
}

#[tokio::test]
async fn pb_rate_limits_become_retryable_envelopes() {
    // It counts what a rate of 2/s lets through: a busy CPU spreads the calls out.
    let _alone = common::alone().lock().await;
    let sandbox = PremiumBonusSandbox::with_demo_data(PB_TOKEN);
    sandbox.set_settings(PbSettings {
        requests_per_second: Some(2),
        ..PbSettings::default()
    });
    let w = std::sync::Arc::new(PbWorld::start(sandbox.clone()).await);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let w = w.clone();
        // A different MoySklad id each time, so the balance cache does not answer instead of PB.
        let detail =
            json!({"retailStore": store(), "meta": {"id": format!("demo-1-{i}")}, "phone": BUYER});
        tasks.push(tokio::spawn(async move {
            w.post("/counterparty/detail", &detail).await
        }));
    }
    // Answered, PB's 429 after three tries (503), refused before reaching PB (429).
    let (mut answered, mut unavailable, mut refused) = (0, 0, 0);
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(the_error(&body)["code"], 3429);
            unavailable += 1;
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            // PB's pause outlasted what the retry could wait: refused before reaching PB.
            assert_eq!(the_error(&body)["code"], 9429);
            refused += 1;
        } else {
            assert_eq!(status, StatusCode::OK, "{body}");
            answered += 1;
        }
    }
    // What the counts are depends on when each lookup reached the bridge (one arriving while
    // PB's Retry-After: 1 pauses the tenant waits without spending a try, so gets a later
    // round), and so on the CPU; what follows holds however they fell. PB's first second
    // lets two through. At 2/s all ten would need five of PB's seconds, but each lookup is
    // tried at most three times, a PB second apart: only lookups reaching the bridge a second
    // late could span that.
    let calls = sandbox.calls("buyer-info");
    let counts =
        format!("{answered} answered, {unavailable} unavailable, {refused} refused; {calls} calls");
    assert!(answered >= 2, "{counts}");
    assert!(unavailable + refused >= 1, "none was throttled: {counts}");
    // Throttled lookups were retried: a 503 is PB's third refusal of that lookup, and an
    // answered one took at least one call.
    assert!(calls > 10, "throttled lookups were retried: {counts}");
    assert!(calls >= answered + 3 * unavailable, "{counts}");
}

fn message(body: &Value) -> String {
    the_error(body)["error_message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A code that is not `code` (4 digits, like PB's).
fn wrong_code(code: &str) -> &'static str {
    if code == "0000" { "1111" } else { "0000" }
}

#[tokio::test]
async fn registration_confirmed_with_the_sms_code_typed_into_the_search() {
    let sandbox = PremiumBonusSandbox::with_demo_data(PB_TOKEN);
    sandbox.set_settings(PbSettings {
        registration_confirmation_required: true,
        ..PbSettings::default()
    });
    let w = PbWorld::start(sandbox.clone()).await;
    let phone = "+7 916 555-00-33";
    let create = json!({"retailStore": store(), "meta": {"id": "ms-new-3"}, "name": "Орлова Ольга", "legalFirstName": "Ольга",
        "legalLastName": "Орлова", "phone": phone, "statusCheck": "UNCHECKED"});

    // PB wants the phone confirmed: MoySklad is told so and calls verify.
    let (status, body) = w.post("/counterparty", &create).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(the_error(&body)["code"], 28001);
    let verify =
        json!({"retailStore": store(), "meta": {"href": "https://x/syncid/3"}, "phone": phone});
    let (status, body) = w.post("/counterparty/verify", &verify).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["code"], 3010);
    assert!(
        message(&body).contains("через пробел") && message(&body).contains("79991234567 1234"),
        "the cashier is told what to type: {body}"
    );

    // The customer reads the SMS; the cashier types phone and code into the search.
    let code = sandbox.last_code(phone).expect("PB sent an SMS");
    let (status, body) = w.search(&format!("{phone} {code}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"rows": []}), "not registered yet");
    assert_eq!(sandbox.calls("verify-confirmation-code"), 1);
    // MoySklad may search again with the same text: PB is not asked again (the code is used up).
    let (status, body) = w.search(&format!("{phone} {code}")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"rows": []})));
    assert_eq!(sandbox.calls("verify-confirmation-code"), 1);

    // The create again: registered, as checked.
    let (status, body) = w.post("/counterparty", &create).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(sandbox.phone_checked(phone), Some(true));
    let register = sandbox
        .requests()
        .into_iter()
        .rfind(|(path, _)| path == "/buyer-register")
        .expect("buyer-register was called")
        .1;
    assert_eq!(register["phone_checked"], true, "{register}");
    let (status, body) = w.search(phone).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["msId"], "ms-new-3");
}

#[tokio::test]
async fn spending_confirmed_with_the_sms_code_typed_into_the_search() {
    let sandbox = PremiumBonusSandbox::with_demo_data(PB_TOKEN);
    sandbox.set_settings(PbSettings {
        write_off_confirmation_required: true,
        ..PbSettings::default()
    });
    let w = PbWorld::start(sandbox.clone()).await;

    // Recalc asks for a spending code.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", Some(100)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["needVerification"], true, "{body}");
    let positions = body["positions"].clone();

    // A sale that spends before the phone is verified: PB refuses, nothing moves.
    let sale = json!({"retailStore": store(), "name": "00100", "meta": {"id": "a0b1c2d3-5b6d-11ef-0a80-000000000301"},
        "agent": agent(), "positions": positions, "bonusProgram": {"bonusValueToSpend": 100, "bonusValueToEarn": 57.50}});
    let (status, body) = w.post("/retaildemand", &sale).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["code"], 3001);
    assert_eq!(balance(&w), d("500.00"));

    // The spending code: PB sends it, the cashier is told how to enter it.
    let verify = json!({"retailStore": store(), "counterpartyId": "demo-1", "phone": BUYER});
    let (status, body) = w.post("/retaildemand/verify", &verify).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["code"], 3011);
    assert!(message(&body).contains("через пробел"), "{body}");
    let code = sandbox.last_code(BUYER).expect("PB sent an SMS");
    let (status, body) = w.search(&format!("79990000001 {code}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["phone"], "+79990000001", "{body}");

    // Recalc no longer asks, and the same sale now spends, to the kopeck.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", Some(100)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["needVerification"], false, "{body}");
    let (status, body) = w.post("/retaildemand", &sale).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(balance(&w), d("457.50"), "100 spent, 57.50 earned");
}

#[tokio::test]
async fn five_wrong_codes_burn_the_code_and_the_envelope_says_so() {
    let sandbox = PremiumBonusSandbox::with_demo_data(PB_TOKEN);
    sandbox.set_settings(PbSettings {
        registration_confirmation_required: true,
        ..PbSettings::default()
    });
    let w = PbWorld::start(sandbox.clone()).await;
    let phone = "89165550044";
    let verify =
        json!({"retailStore": store(), "meta": {"href": "https://x/syncid/4"}, "phone": phone});
    let (status, _) = w.post("/counterparty/verify", &verify).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let code = sandbox.last_code(phone).expect("PB sent an SMS");
    let wrong = wrong_code(&code);

    for left in (1..=4).rev() {
        let (status, body) = w.search(&format!("{phone} {wrong}")).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let e = the_error(&body);
        assert_eq!(
            (e["code"].clone(), e["parameter"].clone()),
            (json!(3015), json!("search"))
        );
        assert!(
            message(&body).contains(&format!("Осталось попыток: {left}")),
            "{body}"
        );
    }
    // The fifth wrong attempt burns the code.
    let (status, body) = w.search(&format!("{phone} {wrong}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let text = message(&body);
    assert!(
        text.contains("no longer valid") && text.contains("Запросите новый код"),
        "{body}"
    );
    assert!(!text.contains("Осталось попыток"), "{body}");
    // Even the right code is no good now, and the create still needs a confirmation.
    let (status, body) = w.search(&format!("{phone} {code}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(message(&body).contains("Запросите новый код"), "{body}");
    let create = json!({"retailStore": store(), "meta": {"id": "ms-new-4"}, "phone": phone, "statusCheck": "UNCHECKED"});
    let (status, body) = w.post("/counterparty", &create).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
}

/// Issue #24 (7): a return carries only the customer's id, or nothing (`"agent": {}`); the
/// balance MoySklad asks for next must come from PB, not from the lookup cached before it.
#[tokio::test]
async fn the_balance_after_a_return_is_not_the_cached_one() {
    let w = PbWorld::start(PremiumBonusSandbox::with_demo_data(PB_TOKEN)).await;
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", Some(100)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sale_id = "a0b1c2d3-5b6d-11ef-0a80-000000000401";
    let sale = json!({"retailStore": store(), "name": "00101", "meta": {"id": sale_id}, "agent": agent(),
        "positions": body["positions"].clone(), "bonusProgram": {"bonusValueToSpend": 100, "bonusValueToEarn": 57.50}});
    let (status, body) = w.post("/retaildemand", &sale).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // MoySklad shows the balance: it is looked up and cached.
    let detail = json!({"retailStore": store(), "meta": {"id": "demo-1"}, "phone": BUYER});
    let (_, body) = w.post("/counterparty/detail", &detail).await;
    assert_eq!(dec(&body["bonusProgram"]["agentBonusBalance"]), d("457.50"));

    let tea = json!([{"assortment": {"meta": {"id": "tea"}}, "quantity": 1, "price": 250.00, "discountedPrice": 230.00}]);
    let ret = json!({"retailStore": store(), "meta": {"id": "r-pb-4"}, "demand": {"meta": {"id": sale_id}}, "agent": {}, "positions": tea});
    let lookups = w.sandbox.calls("buyer-info");
    let (status, body) = w.post("/retailsalesreturn", &ret).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(balance(&w), d("466.00"));
    let (status, body) = w.post("/counterparty/detail", &detail).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(dec(&body["bonusProgram"]["agentBonusBalance"]), d("466.00"));
    assert_eq!(
        w.sandbox.calls("buyer-info"),
        lookups + 1,
        "the lookup after the return reached PB"
    );
}

/// Issue #24 (8): against a PB that answers only what its documentation names, spending with no
/// preferred amount offers what PB accepts — here PB caps a write-off at half the purchase — and
/// the sale with that offer goes through.
#[tokio::test]
async fn spending_with_no_preferred_amount_offers_what_pb_accepts() {
    let sandbox = PremiumBonusSandbox::new(PB_TOKEN);
    let phone = "+7 999 000-00-55";
    sandbox.add_buyer(PbBuyer {
        phone: Some(phone.into()),
        balance: d("657.83"),
        ..PbBuyer::default()
    });
    let w = PbWorld::start(sandbox.clone()).await;
    let agent = json!({"meta": {"id": "c-55"}, "phone": phone});
    let positions =
        json!([{"assortment": {"meta": {"id": "coffee"}}, "quantity": 1, "price": 500.00}]);
    let ask = json!({"retailStore": store(), "agent": agent, "positions": positions,
        "bonusProgram": {"transactionType": "SPENDING"}});
    let (status, body) = w.post("/retaildemand/recalc", &ask).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let spend = dec(&body["bonusProgram"]["bonusValueToSpend"]);
    assert_eq!(spend, d("250"), "half the cart, the most PB allows: {body}");
    assert_eq!(dec(&body["positions"][0]["discountedPrice"]), d("250"));
    assert!(
        sandbox.calls("purchase-request") >= 1,
        "PB's maximum-benefit method was asked"
    );

    let sale = json!({"retailStore": store(), "name": "00102", "meta": {"id": "a0b1c2d3-5b6d-11ef-0a80-000000000501"},
        "agent": agent, "positions": body["positions"].clone(),
        "bonusProgram": {"bonusValueToSpend": body["bonusProgram"]["bonusValueToSpend"].clone(),
                         "bonusValueToEarn": body["bonusProgram"]["bonusValueToEarn"].clone()}});
    let (status, body) = w.post("/retaildemand", &sale).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // 657.83 − 250 spent + 5 % of the 250 paid.
    assert_eq!(sandbox.balance(phone), Some(d("420.33")));
}

/// Issue #24 (8): a partial return of a sale that spent bonuses gives back the proportional
/// part of the spend, by telling PB the write-off that stays (PB keeps the whole write-off on
/// the remaining items otherwise, and refuses it above its cap).
#[tokio::test]
async fn a_partial_return_gives_back_the_proportional_part_of_the_spend() {
    let w = PbWorld::start(PremiumBonusSandbox::with_demo_data(PB_TOKEN)).await;
    // All 500 bonuses on the 1250 cart: 400 on the coffee, 100 on the tea.
    let (status, body) = w
        .post("/retaildemand/recalc", &recalc("SPENDING", Some(500)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sale_id = "a0b1c2d3-5b6d-11ef-0a80-000000000601";
    let sale = json!({"retailStore": store(), "name": "00103", "meta": {"id": sale_id}, "agent": agent(),
        "positions": body["positions"].clone(), "bonusProgram": {"bonusValueToSpend": 500, "bonusValueToEarn": 37.50}});
    let (status, body) = w.post("/retaildemand", &sale).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(balance(&w), d("37.50"));

    // The coffee comes back: 1000 of the 1250, so 400 of the 500 spent.
    let coffee = json!([{"assortment": {"meta": {"id": "coffee"}}, "quantity": 2, "price": 500.00, "discountedPrice": 300.00}]);
    let ret = json!({"retailStore": store(), "meta": {"id": "r-pb-6"}, "demand": {"meta": {"id": sale_id}}, "agent": {"id": "demo-1"}, "positions": coffee});
    let (status, body) = w.post("/retailsalesreturn", &ret).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let edit = w
        .sandbox
        .requests()
        .into_iter()
        .rfind(|(path, _)| path == "/edit-purchase")
        .expect("edit-purchase was called")
        .1;
    assert_eq!(dec(&edit["write_off_bonus"]), d("100"), "{edit}");
    // 400 back; of the 37.50 earned, the 7.50 the tea earns stays.
    assert_eq!(balance(&w), d("407.50"));
}
