//! The reference input of the mapping benches (`mapping.rs` here, the bridge's
//! `benches/recalc.rs`): MAXMA's `retaildemand.recalc` on a 10-position spending cart, the
//! root object its expressions see, and hand-written `serde_json` transforms producing the same
//! JSON as the mapping's `calc` body and `response` (what a Rust integration for MAXMA alone
//! would write).

// Each bench uses a part of it.
#![allow(dead_code)]

use std::str::FromStr;

use engine::builtins::{self, AllocInput};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// A 10-position SPENDING cart shaped like `loyaltyapi/examples/retaildemand.recalc.request.json`
/// (fractional and whole quantities, kopecks, serial numbers, a pack).
pub fn cart() -> Value {
    let text = r#"{
  "retailStore": {"meta": {"href": "https://api.moysklad.ru/api/remap/1.2/entity/retailstore/2b5eb22f-139e-11e6-9464-e4de00000073",
                           "id": "2b5eb22f-139e-11e6-9464-e4de00000073"}, "name": "Магазин №1"},
  "agent": {"meta": {"href": "https://api.moysklad.ru/api/remap/1.2/entity/counterparty/276a6f50-7ffd-11e6-8a84-bae50000005",
                     "id": "276a6f50-7ffd-11e6-8a84-bae50000005"},
            "name": "Иванов Иван Иванович", "discountCardNumber": "DEMO-0001", "phone": "+7 999 000 00 01",
            "email": "ivanov@example.com", "legalFirstName": "Иван", "legalMiddleName": "Иванович",
            "legalLastName": "Иванов", "sex": "MALE", "birthDate": "1985-03-14 00:00:00"},
  "positions": [
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b0"}}, "quantity": 1.5, "price": 123.45,
     "pack": {"id": "98f87a95-c0b6-11ee-0a80-06e1000360e2", "name": "Бутылка 1,5 л", "quantity": 1.5, "barcode": "2000000051420"}},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b1"}}, "quantity": 3, "price": 33.33,
     "sn": [{"meta": {"id": "2b5eb22f-139e-11e6-9464-e4de00000001"}, "name": "7895541"},
            {"meta": {"id": "2b5eb22f-139e-11e6-9464-e4de00000002"}, "name": "7895542"},
            {"meta": {"id": "2b5eb22f-139e-11e6-9464-e4de00000003"}, "name": "7895543"}]},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b2"}}, "quantity": 1, "price": 250.00},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b3"}}, "quantity": 2, "price": 89.90},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b4"}}, "quantity": 0.75, "price": 640.00},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b5"}}, "quantity": 6, "price": 19.99},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b6"}}, "quantity": 1, "price": 1299.00},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b7"}}, "quantity": 4, "price": 54.50},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b8"}}, "quantity": 2.345, "price": 399.90},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b9"}}, "quantity": 10, "price": 7.50}
  ],
  "bonusProgram": {"transactionType": "SPENDING"},
  "preferredBonusToSpend": 300
}"#;
    serde_json::from_str(text).expect("cart JSON")
}

/// What MAXMA answers to the cart (per-row discounts adding up to 300 bonuses).
pub fn calc_answer() -> Value {
    let text = r#"{"calculationResult": {
  "rows": [
    {"id": "0", "totalDiscount": 15.55, "bonuses": {"applied": 16, "collected": 9}},
    {"id": "1", "totalDiscount": 8.41, "bonuses": {"applied": 8, "collected": 5}},
    {"id": "2", "totalDiscount": 21.02, "bonuses": {"applied": 21, "collected": 12}},
    {"id": "3", "totalDiscount": 15.12, "bonuses": {"applied": 15, "collected": 9}},
    {"id": "4", "totalDiscount": 40.36, "bonuses": {"applied": 40, "collected": 24}},
    {"id": "5", "totalDiscount": 10.08, "bonuses": {"applied": 10, "collected": 6}},
    {"id": "6", "totalDiscount": 109.23, "bonuses": {"applied": 109, "collected": 65}},
    {"id": "7", "totalDiscount": 18.33, "bonuses": {"applied": 18, "collected": 11}},
    {"id": "8", "totalDiscount": 55.6, "bonuses": {"applied": 56, "collected": 33}},
    {"id": "9", "totalDiscount": 6.3, "bonuses": {"applied": 7, "collected": 4}}
  ],
  "summary": {"discounts": {"auto": 0.00, "bonuses": 300.00, "manual": 0.00, "offer": 0.00, "promocode": 0.00,
                            "rounding": 0.00}, "prepaidAmount": 0.00, "totalDiscount": 300.00},
  "bonuses": {"applied": 300, "collected": 178, "maxToApply": 1784}}}"#;
    let mut answer: Value = serde_json::from_str(text).expect("calc JSON");
    // Every row also carries its discount by kind, as MAXMA (and the sandbox) answer: nothing
    // reads it, but the bridge parses it.
    for row in answer["calculationResult"]["rows"]
        .as_array_mut()
        .expect("rows")
    {
        let bonuses = row["totalDiscount"].clone();
        let zero = Value::Number(serde_json::Number::from_str("0.00").expect("a number"));
        row["discounts"] = json!({"auto": zero, "bonuses": bonuses, "manual": zero, "offer": zero,
                                  "promocode": zero, "rounding": zero});
    }
    answer
}

pub fn step(body: Value) -> Value {
    json!({"status": 200, "body": body, "error": null})
}

/// The root object the plan's expressions see, as the bridge's `src/mapping/run/root.rs` builds it, after the given steps.
pub fn root(steps: Map<String, Value>) -> Value {
    json!({
        "req": cart(),
        "op": "retaildemand.recalc",
        "tenant": {"name": "bench", "vendor": "maxma"},
        "credentials": {"api_key": "sandbox-key"},
        "settings": null,
        "request_id": "bench-1",
        "sale": null,
        "now": "2026-01-01T00:00:00.000Z",
        "steps": steps,
        "recalled": {},
    })
}

/// Before the `calc` step: balance and settings answered.
pub fn root_before_calc() -> Value {
    let mut steps = Map::new();
    steps.insert(
        "balance".into(),
        step(json!({"client": {"phoneNumber": "+79990000001", "bonuses": 500}})),
    );
    steps.insert(
        "settings".into(),
        step(json!({"phoneVerification": false, "bonusApplyingConfirmation": false})),
    );
    root(steps)
}

pub fn root_after_calc() -> Value {
    let mut root = root_before_calc();
    root["steps"]["calc"] = step(calc_answer());
    root
}

// ---------------------------------------------------------------------------------------------
// Hand-written equivalents: what a Rust integration for MAXMA alone would write.

pub fn dec(v: &Value) -> Decimal {
    builtins::decimal_of(v).expect("a number")
}

pub fn num(d: Decimal) -> Value {
    Value::Number(serde_json::Number::from_str(&d.normalize().to_string()).expect("a number"))
}

pub fn text<'a>(v: &'a Value, default: &'a str) -> &'a str {
    v.as_str().unwrap_or(default)
}

/// `client_query(.req.agent)`: by phone, else card, else externalId.
pub fn client_query(agent: &Value) -> Value {
    let phone = agent["phone"]
        .as_str()
        .filter(|p| !p.is_empty())
        .and_then(|p| builtins::phone_e164(p).ok());
    if let Some(phone) = phone {
        json!({"phoneNumber": phone})
    } else if let Some(card) = agent["discountCardNumber"]
        .as_str()
        .filter(|c| !c.is_empty())
    {
        json!({"card": card})
    } else {
        json!({"externalId": agent["meta"]["id"]})
    }
}

pub fn hand_request(root: &Value) -> Value {
    let req = &root["req"];
    let store = &req["retailStore"];
    let rows: Vec<Value> = req["positions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .enumerate()
                .map(|(i, p)| {
                    let sku = &p["assortment"]["meta"]["id"];
                    json!({"id": i.to_string(),
                           "product": {"sku": sku, "title": sku, "blackPrice": p["price"]},
                           "qty": p["quantity"]})
                })
                .collect()
        })
        .unwrap_or_default();
    let apply = if req["bonusProgram"]["transactionType"] == "SPENDING" {
        match &req["preferredBonusToSpend"] {
            Value::Null => json!("auto"),
            v => num(dec(v).floor()),
        }
    } else {
        json!(0)
    };
    json!({"calculationQuery": {
        "client": client_query(&req["agent"]),
        "shop": {"code": store["meta"]["id"], "name": text(&store["name"], "")},
        "cashier": {"code": store["meta"]["id"], "name": text(&store["name"], "Касса")},
        "rows": rows,
        "applyBonuses": apply,
        "collectBonuses": "auto",
    }})
}

/// One position with its own discount, as `allocate_lines` writes it (the lines of
/// `allocate_discount` on that position alone).
pub fn allocate_one(position: &Value, discount: Decimal, out: &mut Vec<Value>) {
    let input = AllocInput {
        quantity: dec(&position["quantity"]),
        price: dec(&position["price"]),
        serials: position["sn"].as_array().map_or(0, Vec::len),
    };
    for line in builtins::allocate_discount(&[input], discount).expect("allocatable") {
        let mut p = position.clone();
        if let Value::Object(map) = &mut p {
            map.insert("quantity".into(), num(line.quantity));
            map.insert("discountedPrice".into(), num(line.discounted_price));
            map.insert("discountPercent".into(), num(line.discount_percent));
            // The clone kept every serial: only a split (or a non-array `sn`) rewrites them.
            let all = position["sn"].as_array().map_or(&[][..], Vec::as_slice);
            if map.contains_key("sn") && !(position["sn"].is_array() && line.sn == (0..all.len())) {
                map.insert("sn".into(), Value::Array(all[line.sn].to_vec()));
            }
        }
        out.push(p);
    }
}

pub fn hand_response(root: &Value) -> Value {
    let req = &root["req"];
    let steps = &root["steps"];
    let r = &steps["calc"]["body"]["calculationResult"];
    let rows = r["rows"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut positions = Vec::new();
    for (i, p) in req["positions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let key = i.to_string();
        let row = rows
            .iter()
            .find(|row| row["id"].as_str() == Some(key.as_str()))
            .or_else(|| rows.get(i));
        let discount = row
            .map(|row| &row["totalDiscount"])
            .filter(|d| !d.is_null())
            .map_or(Decimal::ZERO, dec);
        allocate_one(p, discount, &mut positions);
    }
    let balance = &steps["balance"]["body"]["client"]["bonuses"];
    let applied = &r["bonuses"]["applied"];
    let collected = &r["bonuses"]["collected"];
    let spending = req["bonusProgram"]["transactionType"] == "SPENDING";
    let confirm = steps["settings"]["body"]["bonusApplyingConfirmation"]
        .as_bool()
        .unwrap_or(false);
    json!({
        "agent": req["agent"],
        "positions": positions,
        "bonusProgram": {
            "transactionType": req["bonusProgram"]["transactionType"],
            "agentBonusBalance": balance,
            "bonusValueToSpend": applied,
            "bonusValueToEarn": collected,
            "agentBonusBalanceAfter": num(dec(balance) - dec(applied) + dec(collected)),
            "paidByBonusPoints": applied,
            "receiptExtraInfo": format!("Будет начислено бонусов: {collected}"),
        },
        "needVerification": spending && dec(applied) > Decimal::ZERO && confirm,
    })
}
