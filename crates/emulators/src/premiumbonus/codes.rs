//! Confirmation codes: `/send-register-code`, `/send-write-off-confirmation-code`,
//! `/verify-confirmation-code`.

use serde_json::{Map, Value};
use tokio::time::Instant;
use uuid::Uuid;

use super::errors::PbError;
use super::parse::{money_field, required_phone};
use super::{CODE_LIFETIME, CODE_WINDOW, CODES_PER_WINDOW, MAX_WRONG_ATTEMPTS, State};
use crate::harness::auth::secret_matches;

/// A confirmation code waiting to be verified.
#[derive(Debug, Clone)]
pub(super) struct PendingCode {
    pub(super) code: String,
    pub(super) sent: Instant,
    pub(super) wrong: u32,
}

impl State {
    pub(super) fn send_code(
        &mut self,
        phone: String,
        now: Instant,
    ) -> Result<Map<String, Value>, PbError> {
        let window = self.codes_sent.entry(phone.clone()).or_default();
        while window
            .front()
            .is_some_and(|sent| now.saturating_duration_since(*sent) >= CODE_WINDOW)
        {
            window.pop_front();
        }
        if window.len() >= CODES_PER_WINDOW {
            let wait = window
                .front()
                .map_or(CODE_WINDOW, |first| {
                    CODE_WINDOW.saturating_sub(now.saturating_duration_since(*first))
                })
                .as_secs()
                .max(1);
            return Err(PbError::new(format!(
                "Too many codes for phone {phone}: at most {CODES_PER_WINDOW} per minute, \
                 try again in {wait} s"
            )));
        }
        window.push_back(now);
        let code = random_code();
        self.codes.insert(
            phone.clone(),
            PendingCode {
                code: code.clone(),
                sent: now,
                wrong: 0,
            },
        );
        self.last_codes.insert(phone, code);
        Ok(Map::new())
    }

    pub(super) fn send_write_off_code(
        &mut self,
        request: &Map<String, Value>,
        now: Instant,
    ) -> Result<Map<String, Value>, PbError> {
        let phone = required_phone(request, "phone")?;
        money_field(request, "purchase_amount")?;
        money_field(request, "write_off_bonus")?;
        let id = self
            .find_by_phone(&phone)
            .ok_or_else(|| PbError::buyer_not_found(&phone))?;
        if self.buyer(id).is_some_and(|b| b.blocked) {
            return Err(PbError::blocked());
        }
        self.send_code(phone, now)
    }

    pub(super) fn verify_code(
        &mut self,
        request: &Map<String, Value>,
        now: Instant,
    ) -> Result<Map<String, Value>, PbError> {
        let phone = required_phone(request, "phone")?;
        let code = match request.get("code") {
            None | Some(Value::Null) => return Err(PbError::required("code")),
            Some(Value::String(s)) if s.is_empty() => return Err(PbError::required("code")),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.as_str().to_owned(),
            Some(_) => return Err(PbError::new("code must be a string")),
        };
        let Some(pending) = self.codes.get_mut(&phone) else {
            return Err(PbError::new(format!(
                "No active code for phone {phone}: request one with /send-register-code or \
                 /send-write-off-confirmation-code"
            )));
        };
        if now.saturating_duration_since(pending.sent) >= CODE_LIFETIME {
            self.codes.remove(&phone);
            return Err(PbError::new("The code has expired: request a new one"));
        }
        if secret_matches(pending.code.as_bytes(), code.as_bytes()) {
            self.codes.remove(&phone);
            self.verified.insert(phone, now);
            return Ok(Map::new());
        }
        pending.wrong += 1;
        let left = MAX_WRONG_ATTEMPTS.saturating_sub(pending.wrong);
        if left == 0 {
            self.codes.remove(&phone);
            return Err(PbError::new(format!(
                "Wrong code; {MAX_WRONG_ATTEMPTS} wrong attempts, the code is no longer valid: \
                 request a new one"
            )));
        }
        Err(PbError::new(format!("Wrong code; {left} attempts left")))
    }
}

/// Four random digits, zero-padded ("0427").
fn random_code() -> String {
    let bytes = Uuid::new_v4().into_bytes();
    let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % 10_000;
    format!("{n:04}")
}
