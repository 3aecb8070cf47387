//! The Premium Bonus emulator against premiumbonus.md: over HTTP, and on its state directly
//! where a test needs to move the clock or try many inputs.

mod buyers;
mod properties;
mod purchases;
mod returns;
mod transport;

use std::str::FromStr;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, header};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::errors::shorten;
use super::parse::{is_pb_phone, looks_like_phone};
use super::receipt::number;
use super::routes::{Body, parse_body};
use super::*;
use crate::harness::http::MAX_BODY_BYTES;
use crate::money::{floor_money, money};
use crate::test_support::{self, Running, http_client};

const TOKEN: &str = "pb-test-token";
const IVANOV: &str = "79990000001";
const PETROVA: &str = "79990000002";
const BLOCKED: &str = "79990000009";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// A JSON number with exactly this text.
fn n(text: &str) -> Value {
    Value::Number(serde_json::Number::from_str(text).unwrap())
}

/// Money from an answer, read from the number's exact text.
fn dec(v: &Value) -> Decimal {
    let n = v.as_number().unwrap_or_else(|| panic!("not a number: {v}"));
    Decimal::from_str_exact(n.as_str()).unwrap()
}

fn item(external_item_id: Option<&str>, name: &str, amount: &str, quantity: &str) -> Value {
    let mut item = json!({"name": name, "amount": n(amount), "quantity": n(quantity)});
    if let Some(id) = external_item_id {
        item["external_item_id"] = json!(id);
    }
    item
}

async fn start(sandbox: &PremiumBonusSandbox) -> Running {
    test_support::start(http_client().no_gzip(), |listener, stop| {
        sandbox.clone().serve(listener, stop)
    })
    .await
}

/// Premium Bonus's calls, on a running emulator.
trait Calls {
    async fn send(&self, path: &str, auth: Option<&str>, body: &str) -> reqwest::Response;
    async fn post(&self, path: &str, body: &Value) -> (u16, Value);
    async fn ok(&self, path: &str, body: Value) -> Value;
    async fn refused(&self, path: &str, body: Value) -> String;
}

impl Calls for Running {
    async fn send(&self, path: &str, auth: Option<&str>, body: &str) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        req.send().await.unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self.send(path, Some(TOKEN), &body.to_string()).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        (status, value)
    }

    /// HTTP 200 with `success: true` and a logger.
    async fn ok(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post(path, &body).await;
        assert_eq!(status, 200, "{path} {body}: {answer}");
        assert_eq!(answer["success"], json!(true), "{path}: {answer}");
        assert_logger(&answer);
        answer
    }

    /// HTTP 400 with `success: false`; the error description.
    async fn refused(&self, path: &str, body: Value) -> String {
        let (status, answer) = self.post(path, &body).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_refusal(&answer)
    }
}

fn assert_logger(answer: &Value) {
    let logger = answer["logger"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(logger.len(), 8, "{answer}");
    assert!(
        logger.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{answer}"
    );
}

/// `{success: false, error_description, logger}` and nothing else; the description.
fn assert_refusal(answer: &Value) -> String {
    assert_eq!(answer["success"], json!(false), "{answer}");
    assert_logger(answer);
    assert_eq!(answer.as_object().map(Map::len), Some(3), "{answer}");
    answer["error_description"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned()
}

fn purchase_body(external_id: &str, phone: &str, write_off: &str, items: Value) -> Value {
    json!({
        "phone": phone, "external_purchase_id": external_id, "cashier_name": "Кассир 2",
        "write_off_bonus": n(write_off), "items": items, "purchase_status": "approved",
    })
}

/// 300.00 + 100.00 + 33.33 = 433.33 for Иванов (balance 500).
fn three_items() -> Value {
    json!([
        item(Some("A-1"), "Кофе", "300.00", "3"),
        item(Some("B-1"), "Чай", "100", "1"),
        item(None, "Пакет", "33.33", "1"),
    ])
}
