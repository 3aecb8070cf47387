//! The UDS emulator against uds.md and the vendor's OpenAPI document: over HTTP, and on its
//! state directly where a test needs to move the clock or try many inputs.

mod calc;
mod customers;
mod operations;
mod refunds;
mod transport;

use std::str::FromStr;
use std::time::Duration;

use http::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::customers::random_digits;
use super::figures::percent_of;
use super::routes::Payload;
use super::validation::{Query, is_e164, is_plain_decimal};
use super::*;
use crate::money::floor_money;
use crate::test_support::{self, Running, http_client};

const COMPANY: &str = "549755813888";
const KEY: &str = "uds-test-key";
const IVAN: &str = "+79990000001";
const MARIA: &str = "+79990000002";
const BLOCKED: &str = "+79990000009";
const STRANGER: &str = "+79995550000";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// An exact JSON number (no trip through f64).
fn n(s: &str) -> Value {
    Value::Number(serde_json::Number::from_str(s).unwrap())
}

/// Money from an answer, read from the number's exact text.
fn dec(v: &Value) -> Decimal {
    let num = v.as_number().unwrap_or_else(|| panic!("not a number: {v}"));
    Decimal::from_str_exact(num.as_str()).unwrap()
}

fn id_of(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn enc(phone: &str) -> String {
    phone.replace('+', "%2b")
}

async fn start(sandbox: &UdsSandbox) -> Running {
    test_support::start(http_client().no_gzip(), |listener, stop| {
        sandbox.clone().serve(listener, stop)
    })
    .await
}

/// UDS's calls, with the test company's credentials, on a running emulator.
trait Calls {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder;
    async fn get(&self, path: &str) -> (u16, Value);
    async fn post(&self, path: &str, body: &Value) -> (u16, Value);
    async fn ok_get(&self, path: &str) -> Value;
    async fn ok_post(&self, path: &str, body: Value) -> Value;
    async fn get_error(&self, path: &str) -> (u16, String, Value);
    async fn post_error(&self, path: &str, body: Value) -> (u16, String, Value);
}

impl Calls for Running {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(COMPANY, Some(KEY))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.request(reqwest::Method::GET, path).send().await;
        read(resp.unwrap()).await
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        read(resp.unwrap()).await
    }

    async fn ok_get(&self, path: &str) -> Value {
        let (status, answer) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {answer}");
        answer
    }

    async fn ok_post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post(path, &body).await;
        assert_eq!(status, 200, "POST {path} {body}: {answer}");
        answer
    }

    async fn get_error(&self, path: &str) -> (u16, String, Value) {
        let (status, answer) = self.get(path).await;
        error_shape(status, answer)
    }

    async fn post_error(&self, path: &str, body: Value) -> (u16, String, Value) {
        let (status, answer) = self.post(path, &body).await;
        error_shape(status, answer)
    }
}

async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// An error answer: checks its shape and returns (status, errorCode, body).
fn error_shape(status: u16, answer: Value) -> (u16, String, Value) {
    assert!(status >= 400, "{status}: {answer}");
    assert!(answer["message"].is_string(), "{answer}");
    let code = answer["errorCode"]
        .as_str()
        .unwrap_or_else(|| panic!("no errorCode: {answer}"))
        .to_owned();
    (status, code, answer)
}

/// The fields of a validation error, in order.
fn fields(answer: &Value) -> Vec<(String, String)> {
    assert_eq!(answer["errorCode"], json!("badRequest"), "{answer}");
    answer["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors[]: {answer}"))
        .iter()
        .map(|e| {
            assert!(e["message"].is_string(), "{e}");
            (
                e["field"].as_str().unwrap_or_default().to_owned(),
                e["errorCode"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pair(field: &str, code: &str) -> (String, String) {
    (field.to_owned(), code.to_owned())
}

fn by_phone(phone: &str, receipt: Value) -> Value {
    json!({"code": null, "participant": {"uid": null, "phone": phone}, "receipt": receipt})
}

fn by_code(code: &str, receipt: Value) -> Value {
    json!({"code": code, "receipt": receipt})
}

fn by_uid(uid: &str, receipt: Value) -> Value {
    json!({"participant": {"uid": uid}, "receipt": receipt})
}

fn purchase(phone: &str, nonce: Option<&str>, receipt: Value) -> Value {
    json!({
        "participant": {"phone": phone},
        "nonce": nonce,
        "cashier": {"externalId": "store1_kassa2", "name": "Кассир 2"},
        "receipt": receipt,
        "tags": null,
    })
}

/// Asserts the figures of a `PurchaseCalc`, by name.
fn assert_figures(purchase: &Value, expected: &[(&str, &str)]) {
    for (field, want) in expected {
        assert_eq!(dec(&purchase[*field]), d(want), "{field} in {purchase}");
    }
}

async fn documented_purchase(srv: &Running) -> i64 {
    let op = srv
        .ok_post(
            "/operations",
            purchase(
                IVAN,
                None,
                json!({"total": n("1000"), "cash": n("800"), "points": n("200"),
                       "skipLoyaltyTotal": n("100"), "number": "00042"}),
            ),
        )
        .await;
    id_of(&op["id"])
}

/// A state with Ivan (index 0) holding `balance` points, and a purchase by him.
fn purchase_state(
    balance: Decimal,
    total: Decimal,
    points: Decimal,
    skip: Decimal,
) -> (UdsSandbox, i64) {
    let sandbox = UdsSandbox::new(COMPANY, KEY);
    sandbox.add_customer(UdsCustomer {
        phone: IVAN.into(),
        display_name: "Иван".into(),
        points: balance,
        max_scores_discount: d("100"),
        ..UdsCustomer::default()
    });
    sandbox.set_settings(UdsSettings {
        max_scores_discount: d("100"),
        ..UdsSettings::default()
    });
    let mut state = sandbox.shared.lock();
    let now = Now::current();
    let receipt = json!({"total": money(total), "points": money(points),
                         "skipLoyaltyTotal": money(skip)});
    let calc = state
        .apply(
            Route::Calc,
            "",
            by_phone(IVAN, receipt.clone()).as_object().unwrap(),
            &now,
        )
        .unwrap();
    let mut body = by_phone(IVAN, receipt);
    body["receipt"]["cash"] = calc["purchase"]["cash"].clone();
    let op = state
        .apply(Route::CreateOperation, "", body.as_object().unwrap(), &now)
        .unwrap();
    drop(state);
    (sandbox, id_of(&op["id"]))
}
