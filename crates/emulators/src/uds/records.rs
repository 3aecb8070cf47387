//! What the emulator stores: customers, issued codes, operations.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{FIRST_PARTICIPANT_ID, TIER_NAME, TIER_UID, UdsSettings, timestamp};
use crate::money::money;

#[derive(Debug, Clone)]
pub(super) struct Customer {
    pub(super) participant_id: i64,
    pub(super) uid: String,
    /// Normalised, E.164 for any sensible seed.
    pub(super) phone: String,
    pub(super) display_name: String,
    pub(super) birth_date: Option<String>,
    pub(super) gender: Option<String>,
    pub(super) email: Option<String>,
    pub(super) points: Decimal,
    pub(super) cashback_rate: Decimal,
    pub(super) discount_rate: Decimal,
    pub(super) max_scores_discount: Decimal,
    pub(super) blocked: bool,
    pub(super) date_created: DateTime<Utc>,
    pub(super) last_transaction: Option<DateTime<Utc>>,
}

/// The rates that apply to one customer under the current settings, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rates {
    pub(super) discount: Decimal,
    pub(super) cashback: Decimal,
    pub(super) max_scores: Decimal,
    /// The tier's `rate`: the discount or the cashback rate, whichever the policy uses.
    pub(super) tier: Decimal,
}

impl Customer {
    pub(super) fn rates(&self, settings: &UdsSettings) -> Rates {
        let discount_policy = settings.applies_discount();
        let discount = if discount_policy {
            percent(self.discount_rate)
        } else {
            Decimal::ZERO
        };
        let cashback = if discount_policy {
            Decimal::ZERO
        } else {
            percent(self.cashback_rate)
        };
        Rates {
            discount,
            cashback,
            max_scores: percent(self.max_scores_discount)
                .min(percent(settings.max_scores_discount)),
            tier: if discount_policy { discount } else { cashback },
        }
    }

    fn tier_json(&self, settings: &UdsSettings) -> Value {
        let rates = self.rates(settings);
        json!({
            "uid": TIER_UID,
            "name": TIER_NAME,
            "rate": money(rates.tier),
            "maxScoresDiscount": money(rates.max_scores),
        })
    }

    /// `CustomerDetail`.
    pub(super) fn detail_json(&self, settings: &UdsSettings) -> Value {
        let rates = self.rates(settings);
        json!({
            "uid": self.uid,
            "avatar": null,
            "displayName": self.display_name,
            "gender": self.gender,
            "phone": self.phone,
            "birthDate": self.birth_date,
            "email": self.email,
            "channelName": null,
            "participant": {
                "id": self.participant_id,
                "inviterId": null,
                "points": money(self.points),
                "discountRate": money(rates.discount),
                "cashbackRate": money(rates.cashback),
                "membershipTier": self.tier_json(settings),
                "dateCreated": timestamp(self.date_created),
                "lastTransactionTime": self.last_transaction.map(timestamp),
                "pointsExpireIn": null,
            },
            "tags": [],
        })
    }

    /// `Operation.customer`.
    pub(super) fn short_json(&self, settings: &UdsSettings) -> Value {
        json!({
            "id": self.participant_id,
            "uid": self.uid,
            "displayName": self.display_name,
            "membershipTier": self.tier_json(settings),
        })
    }
}

#[derive(Debug, Clone)]
pub(super) struct IssuedCode {
    pub(super) customer: usize,
    pub(super) expires: Instant,
    pub(super) long: bool,
}

/// What a purchase committed, and how much of it refunds have given back so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PurchaseRecord {
    pub(super) customer: Option<usize>,
    pub(super) total: Decimal,
    pub(super) points: Decimal,
    pub(super) discount: Decimal,
    pub(super) cashback: Decimal,
    pub(super) refunded: Decimal,
    pub(super) points_back: Decimal,
    pub(super) discount_back: Decimal,
    pub(super) cashback_back: Decimal,
}

#[derive(Debug, Clone)]
pub(super) struct StoredOperation {
    pub(super) json: Value,
    /// `None` for a refund.
    pub(super) purchase: Option<PurchaseRecord>,
}

/// Participant ids count up from 2⁴⁰ in seeding order.
pub(super) fn participant_id(index: usize) -> i64 {
    FIRST_PARTICIPANT_ID.saturating_add(i64::try_from(index).unwrap_or(i64::MAX))
}

/// A stable UUID for a phone, so a demo customer has the same uid in every run.
pub(super) fn customer_uid(phone: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("urn:uds-sandbox:customer:{phone}").as_bytes(),
    )
    .to_string()
}

/// Seeds and test hooks accept any spelling of a phone: separators are dropped, a national
/// `8XXXXXXXXXX` becomes `+7XXXXXXXXXX`, and a `+` is added. Anything with other characters is
/// kept as given (trimmed), so it can only be found by uid or code.
pub(super) fn normalize_phone(raw: &str) -> String {
    let raw = raw.trim();
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let plain = raw
        .chars()
        .all(|c| c.is_ascii_digit() || "+-(). ".contains(c));
    if !plain || digits.is_empty() || raw.chars().skip(1).any(|c| c == '+') {
        return raw.to_owned();
    }
    if !raw.starts_with('+') && digits.len() == 11 && digits.starts_with('8') {
        return format!("+7{}", digits.get(1..).unwrap_or_default());
    }
    format!("+{digits}")
}

/// A rate clamped to 0–100 %.
pub(super) fn percent(rate: Decimal) -> Decimal {
    rate.clamp(Decimal::ZERO, Decimal::ONE_HUNDRED)
}
