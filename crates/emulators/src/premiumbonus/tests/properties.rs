//! No input panics, and any sequence of edits adds up.

use proptest::prelude::*;

use super::*;

const FIELDS: &[&str] = &[
    "phone",
    "identificator",
    "external_id",
    "items",
    "name",
    "amount",
    "quantity",
    "external_item_id",
    "discount",
    "write_off_bonus",
    "external_purchase_id",
    "purchase_id",
    "purchase_status",
    "status",
    "code",
    "card_number",
    "birth_date",
    "gender",
    "email",
    "phone_checked",
    "sale_point_id",
    "cashier_name",
    "purchase_amount",
    "surname",
];

const STRINGS: &[&str] = &[
    "79990000001",
    "79990000002",
    "79990000009",
    "79110000000",
    "PB-0001",
    "PB-0009",
    "ivanov@example.com",
    "demo-1",
    "approved",
    "not_approved",
    "p-1",
    "male",
    "1990-01-01",
    "A",
    "",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| { serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number) }),
        "-?[0-9]{1,32}(\\.[0-9]{1,32})?([eE][-+]?[0-9]{1,5})?"
            .prop_map(|s| serde_json::from_str::<Value>(&s).unwrap_or(Value::Null)),
        proptest::sample::select(STRINGS).prop_map(|s| Value::String(s.to_owned())),
        any::<String>().prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn request_object() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec((key(), json_value()), 0..8).prop_map(|kv| kv.into_iter().collect())
}

/// A sandbox with a purchase `p-1` to edit, cancel and look up.
fn seeded() -> PremiumBonusSandbox {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    let request = purchase_body(
        "p-1",
        IVANOV,
        "10",
        json!([item(Some("A"), "A", "100", "1")]),
    );
    let Value::Object(request) = request else {
        unreachable!()
    };
    sandbox
        .shared
        .lock()
        .apply(Op::Purchase, &request, Instant::now())
        .unwrap();
    sandbox
}

fn authorized() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_static(TOKEN));
    headers
}

proptest! {
    #[test]
    fn no_input_panics(
        request in request_object(),
        bytes in any::<Vec<u8>>(),
        fields in proptest::collection::vec(leaf(), 6),
    ) {
        let sandbox = seeded();
        let headers = authorized();
        let now = Instant::now();
        for op in Op::ALL {
            let response = sandbox.shared.dispatch(
                &Method::POST, op.path(), &headers, Body::Object(request.clone()), "L", now,
            );
            prop_assert!(matches!(response.status().as_u16(), 200 | 400), "{:?}", op);
            let (body, _) = parse_body(Some(&bytes));
            let response =
                sandbox.shared.dispatch(&Method::POST, op.path(), &headers, body, "L", now);
            prop_assert!(matches!(response.status().as_u16(), 200 | 400), "{:?}", op);
        }
        // Items built from arbitrary values, in every purchase method.
        let mut purchase = request.clone();
        purchase.insert("phone".into(), json!(IVANOV));
        purchase.insert("external_purchase_id".into(), json!("p-1"));
        purchase.insert("items".into(), Value::Array(vec![Value::Object(request)]));
        for op in [Op::PurchaseDryRun, Op::Purchase, Op::EditPurchase] {
            let _ = sandbox.shared.lock().apply(op, &purchase, now);
        }
        // Items whose fields are arbitrary values, so the arithmetic sees odd numbers.
        let odd = json!({
            "phone": IVANOV, "external_purchase_id": "p-1", "write_off_bonus": fields[0],
            "discount": fields[1],
            "items": [
                {"name": "A", "external_item_id": "A", "amount": fields[2], "quantity": fields[3]},
                {"name": fields[4], "amount": fields[5], "quantity": 1},
            ],
        });
        let Value::Object(odd) = odd else { unreachable!() };
        for op in [Op::PurchaseDryRun, Op::EditPurchase, Op::Purchase] {
            let _ = sandbox.shared.lock().apply(op, &odd, now);
        }
    }

    #[test]
    fn any_sequence_of_edits_adds_up(
        amounts in proptest::collection::vec(0u32..5_000_000, 1..6),
        write_off_share in 0u32..=100,
        earn in 0u32..=30,
        masks in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 6), 0..4),
    ) {
        let sandbox = PremiumBonusSandbox::new(TOKEN);
        sandbox.set_settings(PbSettings { earn_percent: Decimal::from(earn), ..PbSettings::default() });
        let start = d("1000000");
        sandbox.add_buyer(PbBuyer { phone: Some(IVANOV.into()), balance: start, ..PbBuyer::default() });
        let kopecks = |k: u32| Decimal::new(i64::from(k), 2);
        let items = |keep: &[usize]| -> Value {
            Value::Array(keep.iter().map(|i| json!({
                "external_item_id": format!("i{i}"), "name": "x",
                "amount": money(kopecks(amounts[*i])), "quantity": 1,
            })).collect())
        };
        let all: Vec<usize> = (0..amounts.len()).collect();
        let total: u32 = amounts.iter().sum();
        let write_off = floor_money(kopecks(total) * Decimal::from(write_off_share) / Decimal::from(200));
        let body = json!({"phone": IVANOV, "external_purchase_id": "x", "items": items(&all),
                          "write_off_bonus": money(write_off)});
        let mut state = sandbox.shared.lock();
        let now = Instant::now();
        let Value::Object(body) = body else { unreachable!() };
        let bought = state.apply(Op::Purchase, &body, now).unwrap();
        let check = |answer: &Map<String, Value>| -> (Decimal, Decimal) {
            let items = answer["items"].as_array().unwrap();
            let sum = |field: &str| items.iter().map(|i| dec(&i[field])).sum::<Decimal>();
            assert_eq!(sum("write_off_bonus"), dec(&answer["total_write_off_bonus"]));
            assert_eq!(sum("write_on_bonus"), dec(&answer["total_write_on_bonus"]));
            assert_eq!(
                dec(&answer["purchase_amount"]) - dec(&answer["total_write_off_bonus"]),
                dec(&answer["payment_amount"])
            );
            for i in items {
                assert!(dec(&i["write_off_bonus"]) <= dec(&i["amount"]));
                assert!(dec(&i["write_on_bonus"]) >= Decimal::ZERO);
            }
            (dec(&answer["total_write_off_bonus"]), dec(&answer["total_write_on_bonus"]))
        };
        let (mut write_off, mut write_on) = check(&bought);
        let original = write_off;
        let mut keep = all;
        for mask in masks {
            keep.retain(|i| mask[*i]);
            // What a mapping asks: the remaining items' share of the original write-off.
            let left: u32 = keep.iter().map(|i| amounts[*i]).sum();
            let share = if total == 0 { Decimal::ZERO } else {
                floor_money(original * kopecks(left) / kopecks(total)).min(write_off)
            };
            let Value::Object(edit) = json!({"external_purchase_id": "x", "items": items(&keep),
                                             "write_off_bonus": money(share)}) else { unreachable!() };
            let answer = state.apply(Op::EditPurchase, &edit, now).unwrap();
            let (off, on) = check(&answer);
            prop_assert!(off <= write_off && on <= write_on);
            write_off = off;
            write_on = on;
        }
        let Value::Object(edit) = json!({"external_purchase_id": "x", "items": [], "write_off_bonus": 0}) else { unreachable!() };
        state.apply(Op::EditPurchase, &edit, now).unwrap();
        let balance = state.find_by_phone(IVANOV).and_then(|id| state.buyer(id)).map(|b| b.balance);
        prop_assert_eq!(balance, Some(start));
    }
}
