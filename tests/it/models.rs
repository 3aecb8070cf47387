//! The typed models against the LoyaltyAPI reference examples: request examples parse to the
//! right values; response models serialize to exactly the field names and types of the
//! response examples.

use crate::common;

use std::str::FromStr;

use common::fixture;
use loyalty_bridge::amount::{Kopecks, Percent, Points, Quantity, Rubles};
use loyalty_bridge::error::{Error, FieldProblem, envelope};
use loyalty_bridge::loyalty::models::*;
use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn example(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// Parses `value` as `T` and serializes it back: the result must be the same JSON.
fn round_trips<T: DeserializeOwned + Serialize>(value: &Value) -> T {
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value}"));
    assert_eq!(&serde_json::to_value(&typed).unwrap(), value);
    typed
}

#[test]
fn response_models_match_the_response_examples() {
    let detail: CounterpartyDetailResponse =
        round_trips(&example("counterparty.detail.response.json"));
    assert_eq!(detail.bonus_program.agent_bonus_balance, Points(d("500")));

    let search: CounterpartySearchResponse =
        round_trips(&example("counterparty.search.response.json"));
    assert_eq!(
        search.rows[0].ms_id.as_deref(),
        Some("276a6f50-7ffd-11e6-8a84-bae50000005")
    );

    for name in [
        "counterparty.verify.response.json",
        "retaildemand.verify.response.json",
    ] {
        let verify: VerificationResponse = round_trips(&example(name));
        assert_eq!(verify.verification_code, "123456");
        assert_eq!(verify.time_for_repeat, Some(60));
    }

    let recalc: RecalcResponse = round_trips(&example("retaildemand.recalc.response.json"));
    assert_eq!(recalc.positions[0].discounted_price, Rubles(d("62.95")));
    assert_eq!(recalc.positions[0].discount_percent, Percent(d("49.99")));
    assert_eq!(
        recalc.bonus_program.agent_bonus_balance_after,
        Points(d("650"))
    );
    assert!(!recalc.need_verification);
}

#[test]
fn gift_card_balances_are_numbers_not_strings() {
    // The reference writes the balances as strings; SPEC.md says to produce numbers.
    let mut expected = example("giftcard.search.response.json");
    for key in ["currentBalance", "initialBalance"] {
        let text = expected[key].as_str().unwrap().to_string();
        expected[key] = Value::Number(serde_json::Number::from_str(&text).unwrap());
    }
    let card: GiftCardResponse = round_trips(&expected);
    assert_eq!(card.status, GiftCardStatus::CanBeUsed);
    assert_eq!(card.current_balance, Some(Kopecks(d("1000"))));
    let out = serde_json::to_value(&card).unwrap();
    assert!(out["currentBalance"].is_number() && out["initialBalance"].is_number());
    assert_eq!(out["expireDate"], "2025-07-14 00:00:00");
}

#[test]
fn error_envelopes_match_the_error_examples() {
    let ours: Value = serde_json::from_slice(&envelope(&Error::ConfirmationRequired)).unwrap();
    assert_eq!(
        ours,
        example("counterparty.create.verification-required.error.json")
    );

    let reference = example("error.example.json");
    let ours: Value = serde_json::from_slice(&envelope(&Error::invalid(
        "phone",
        FieldProblem::Missing,
        "требуется указать номер телефона",
    )))
    .unwrap();
    let (r, o) = (&reference["errors"][0], &ours["errors"][0]);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(r), keys(o));
    assert_eq!(r["code"], o["code"]);
    assert_eq!(r["parameter"], o["parameter"]);
    assert_eq!(r["error"], o["error"]);
}

#[test]
fn request_examples_parse_to_the_right_values() {
    let recalc: RecalcRequest =
        serde_json::from_str(&fixture("retaildemand.recalc.request.json")).unwrap();
    let p = &recalc.positions[0];
    assert_eq!(p.quantity, Quantity(d("123.456")));
    assert_eq!(p.price, Rubles(d("123.45")));
    assert_eq!(p.sn.as_ref().unwrap()[0].name, "7895545");
    assert_eq!(p.pack.as_ref().unwrap().quantity, Some(Quantity(d("1.5"))));
    assert_eq!(
        recalc.bonus_program.transaction_type,
        TransactionType::Earning
    );
    assert_eq!(recalc.preferred_bonus_to_spend, None);
    assert_eq!(recalc.agent.meta.id, "276a6f50-7ffd-11e6-8a84-bae50000005");
    assert_eq!(
        recalc.agent.birth_date.unwrap().to_string(),
        "2023-07-14 00:00:00"
    );

    let sale: SaleRequest =
        serde_json::from_str(&fixture("retaildemand.create.request.json")).unwrap();
    assert_eq!(sale.meta.id, "");
    let cards = sale.gift_cards.as_ref().unwrap();
    assert_eq!(cards[1].payment_sum, Kopecks(d("500")));
    assert_eq!(sale.no_cash_sum, Some(Rubles(d("283.1"))));
    assert_eq!(
        sale.bonus_program.as_ref().unwrap().bonus_value_to_earn,
        Some(Points(d("150")))
    );
    assert_eq!(
        sale.positions[0].assortment.sync_id.as_deref(),
        Some("f085d67e-6eae-11e6-8a84-bc520403352a")
    );

    let ret: ReturnRequest =
        serde_json::from_str(&fixture("retailsalesreturn.create.request.json")).unwrap();
    assert_eq!(ret.agent, AgentRef::default());
    assert_eq!(ret.demand.meta.id(), None);
    // Kopecks on a return, unlike the sale's rubles.
    assert_eq!(ret.no_cash_sum, Some(Kopecks(d("283100.0"))));
    assert_eq!(ret.no_cash_sum.unwrap().to_rubles(), Rubles(d("2831")));

    let verify: CounterpartyVerifyRequest =
        serde_json::from_str(&fixture("counterparty.verify.request.json")).unwrap();
    assert!(
        verify
            .meta
            .href
            .ends_with("/syncid/276a6f50-7ffd-11e6-8a84-bae50000005")
    );
    assert_eq!(verify.meta.id, None);
    assert_eq!(verify.sex, Some(Sex::Female));

    let create: CounterpartyCreateRequest =
        serde_json::from_str(&fixture("counterparty.create.request.json")).unwrap();
    assert_eq!(create.status_check, Some(StatusCheck::Checked));
    assert_eq!(
        create.sync_id.as_deref(),
        Some("6ebefb74-f6e3-4ef1-b155-5232a2ae396a")
    );

    let rd_verify: RetaildemandVerifyRequest =
        serde_json::from_str(&fixture("retaildemand.verify.request.json")).unwrap();
    assert_eq!(
        rd_verify.counterparty_id,
        "75d9ba29-2c4a-4c1c-a3a8-8db00366ac04"
    );
}

#[test]
fn unknown_fields_are_tolerated() {
    let mut recalc = example("retaildemand.recalc.request.json");
    recalc["someNewField"] = serde_json::json!({"nested": [1, 2]});
    recalc["positions"][0]["vat"] = serde_json::json!(20);
    recalc["agent"]["tags"] = serde_json::json!(["vip"]);
    serde_json::from_value::<RecalcRequest>(recalc).unwrap();
}
