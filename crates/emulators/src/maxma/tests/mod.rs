//! The MAXMA emulator against maxma.md: over HTTP, and on its state directly where a test
//! needs to move the clock.

mod calculations;
mod clients;
mod purchases;
mod returns;
mod transport;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::errors::code;
use super::*;
use crate::test_support::{self, Running, http_client};

const KEY: &str = "sandbox-test-key";
const IVANOV: &str = "+79990000001";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// Money from an answer, read from the number's exact text.
fn dec(v: &Value) -> Decimal {
    let n = v.as_number().unwrap_or_else(|| panic!("not a number: {v}"));
    Decimal::from_str_exact(n.as_str()).unwrap()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

async fn start(sandbox: &MaxmaSandbox) -> Running {
    test_support::start(http_client(), |listener, stop| {
        sandbox.clone().serve(listener, stop)
    })
    .await
}

/// MAXMA's calls, on a running emulator.
trait Calls {
    async fn send(&self, path: &str, key: Option<&str>, body: &str) -> reqwest::Response;
    async fn post(&self, path: &str, body: &Value) -> (u16, Value);
    async fn ok(&self, path: &str, body: Value) -> Value;
    async fn error(&self, path: &str, body: Value) -> i64;
}

impl Calls for Running {
    async fn send(&self, path: &str, key: Option<&str>, body: &str) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            req = req.header("X-Processing-Key", key);
        }
        req.send().await.unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self.send(path, Some(KEY), &body.to_string()).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        (status, value)
    }

    /// A successful call: HTTP 200 without errorCode.
    async fn ok(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post(path, &body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert!(answer.get("errorCode").is_none(), "{path}: {answer}");
        answer
    }

    /// A processing error: HTTP 200 with errorCode, description and hint.
    async fn error(&self, path: &str, body: Value) -> i64 {
        let (status, answer) = self.post(path, &body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert!(answer["description"].is_string(), "{answer}");
        assert!(answer["hint"].is_string(), "{answer}");
        int(&answer["errorCode"])
    }
}

fn calc(client: Value, rows: Value, extra: Value) -> Value {
    let mut query = json!({
        "shop": {"code": "store-1", "name": "Магазин"},
        "cashier": {"code": "42", "name": "Кассир"},
        "rows": rows,
    });
    if !client.is_null() {
        query["client"] = client;
    }
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            query[k] = v;
        }
    }
    json!({ "calculationQuery": query })
}

fn row(id: &str, sku: &str, price: f64, qty: u32) -> Value {
    json!({"id": id, "product": {"sku": sku, "title": sku, "blackPrice": price}, "qty": qty})
}

fn ivanov() -> Value {
    json!({"phoneNumber": IVANOV})
}

fn purchase(txid: &str, client: Value, rows: Value, extra: Value) -> Value {
    json!({"txid": txid, "calculationQuery": calc(client, rows, extra)["calculationQuery"]})
}

/// A confirmed purchase for a client with 1000 bonuses: 3 × A at 100.00 and 1 × B at 50.00,
/// 101 bonuses applied (A 86.57, B 14.43 → paid 249.00), 10 + 1 = 11 collected.
async fn returnable(sandbox: &MaxmaSandbox, srv: &Running, txid: &str) {
    sandbox.add_client(SandboxClient {
        phone: Some("+79995550000".into()),
        bonuses: 1000,
        ..SandboxClient::default()
    });
    let client = json!({"phoneNumber": "+79995550000"});
    let rows = json!([row("1", "A", 100.0, 3), row("2", "B", 50.0, 1)]);
    let set = srv
        .ok(
            "/set-purchase",
            purchase(txid, client, rows, json!({"applyBonuses": 101})),
        )
        .await;
    let result = &set["calculationResult"];
    assert_eq!(dec(&result["rows"][0]["totalDiscount"]), d("86.57"));
    assert_eq!(dec(&result["rows"][1]["totalDiscount"]), d("14.43"));
    assert_eq!(int(&result["bonuses"]["collected"]), 11);
    srv.ok(
        "/confirm-ticket",
        json!({"txid": txid, "ticket": set["ticket"]}),
    )
    .await;
    assert_eq!(
        sandbox.balance_by_phone("+79995550000"),
        Some(1000 - 101 + 11)
    );
}

fn ret(id: &str, purchase_id: &str, refund: Option<f64>, items: Value) -> Value {
    let mut t = json!({
        "id": id, "executedAt": "2025-01-01T12:00:00Z", "purchaseId": purchase_id,
        "items": items, "shopCode": "store-1", "shopName": "Магазин", "cashier": "Кассир",
    });
    if let Some(refund) = refund {
        t["refundAmount"] = json!(refund);
    }
    json!({ "transaction": t })
}
