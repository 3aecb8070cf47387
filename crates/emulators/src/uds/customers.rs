//! `GET /customers/find` and `GET /customers/{id}`: finding customers by phone, uid or code,
//! and the codes themselves.

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::errors::{UdsError, field_code};
use super::figures::{compute, spend_permission};
use super::records::IssuedCode;
use super::requests::{Receipt, pick_ident};
use super::validation::{Checks, Query};
use super::{
    Ident, LONG_CODE_DIGITS, LONG_CODE_LIFETIME, Now, PAYMENT_CODE_DIGITS, PAYMENT_CODE_LIFETIME,
    State,
};

impl State {
    pub(super) fn lookup(&self, ident: &Ident, now: &Now) -> Option<usize> {
        match ident {
            Ident::Code(code) => self
                .codes
                .get(code)
                .filter(|issued| issued.expires > now.mono)
                .map(|issued| issued.customer),
            Ident::Uid(uid) => self
                .customers
                .iter()
                .position(|c| c.uid.eq_ignore_ascii_case(uid)),
            Ident::Phone(phone) => self.customers.iter().position(|c| c.phone == *phone),
        }
    }

    /// Issues a code that no live code shares, dropping expired ones first.
    pub(super) fn issue_code(&mut self, customer: usize, now: Instant, long: bool) -> String {
        self.codes.retain(|_, issued| issued.expires > now);
        let (digits, lifetime) = if long {
            (LONG_CODE_DIGITS, LONG_CODE_LIFETIME)
        } else {
            (PAYMENT_CODE_DIGITS, PAYMENT_CODE_LIFETIME)
        };
        let mut code = random_digits(digits);
        for _ in 0..100 {
            if !self.codes.contains_key(&code) {
                break;
            }
            code = random_digits(digits);
        }
        self.codes.insert(
            code.clone(),
            IssuedCode {
                customer,
                expires: now + lifetime,
                long,
            },
        );
        code
    }

    /// `exchangeCode=true`: a 6-digit code becomes a 24-hour one; a long code stays.
    fn exchange_code(&mut self, code: &str, customer: usize, now: &Now) -> String {
        if self.codes.get(code).is_some_and(|issued| issued.long) {
            return code.to_owned();
        }
        self.codes.remove(code);
        self.issue_code(customer, now.mono, true)
    }

    pub(super) fn find_customer(&mut self, raw_query: &str, now: &Now) -> Result<Value, UdsError> {
        let query = Query::parse(raw_query);
        let mut checks = Checks::default();
        let code = query.get("code").map(str::to_owned);
        let uid = query.get("uid").map(str::to_owned);
        let phone = query.get("phone").map(str::to_owned);
        if let Some(phone) = &phone {
            checks.phone(phone, "phone");
        }
        let exchange = checks.query_bool(&query, "exchangeCode");
        let total = checks.query_amount(&query, "total");
        let skip = checks.query_amount(&query, "skipLoyaltyTotal");
        let unredeemable = checks.query_amount(&query, "unredeemableTotal");
        let ident = pick_ident(code, uid, phone);
        if ident.is_none() {
            checks.fail(
                field_code::NULLABLE,
                "phone",
                "One of [code], [phone] or [uid] is required",
                &Value::Null,
            );
        }
        let receipt = total.map(|total| Receipt {
            total,
            skip: skip.unwrap_or_default(),
            unredeemable: unredeemable.unwrap_or_default(),
        });
        if let Some(r) = &receipt {
            checks.receipt_parts(r.total, r.skip, r.unredeemable, "total");
        }
        checks.finish()?;
        let Some(ident) = ident else {
            return Err(UdsError::bad_request("Validation failed"));
        };

        let index = self
            .lookup(&ident, now)
            .ok_or_else(|| UdsError::customer_not_found(&ident))?;
        let customer = self
            .customers
            .get(index)
            .ok_or_else(|| UdsError::customer_not_found(&ident))?;
        if customer.blocked {
            return Err(UdsError::participant_is_blocked());
        }
        let mut answer = Map::new();
        answer.insert("user".into(), customer.detail_json(&self.settings));
        if matches!(ident, Ident::Code(_)) {
            answer.insert("type".into(), json!("PURCHASE"));
        }
        if let Some(receipt) = &receipt {
            let spend = spend_permission(&ident, &self.settings);
            let figures = compute(
                receipt,
                Some(customer),
                &self.settings,
                spend,
                Some(Decimal::ZERO),
            )?;
            answer.insert("purchase".into(), figures.to_json());
        }
        if exchange {
            let long = match &ident {
                Ident::Code(code) => Some(self.exchange_code(code, index, now)),
                Ident::Uid(_) | Ident::Phone(_) => None,
            };
            answer.insert("code".into(), json!(long));
        }
        Ok(Value::Object(answer))
    }
}

/// `digits` random decimal digits, zero-padded, from the OS random source behind uuid v4.
pub(super) fn random_digits(digits: u32) -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    // Bytes 6 and 8 carry the version and variant bits: leave them out.
    let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[9], b[10]]);
    let modulus = 10u64.saturating_pow(digits);
    let width = usize::try_from(digits).unwrap_or(6);
    format!("{:0width$}", n % modulus.max(1))
}
