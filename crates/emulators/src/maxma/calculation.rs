//! `/v2/calculate-purchase`: bonuses applied and collected per row, gift cards paying in order.

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value, json};

use super::clients::ClientId;
use super::errors::{ProcessingError, code};
use super::parse::{
    Requested, client_key, opt_object, parse_apply, parse_collect, parse_gift_codes, parse_rows,
};
use super::{GiftCardStatus, State};
use crate::money::{allocate, checked_sum, from_kopecks, money, to_kopecks};

#[derive(Debug, Clone)]
pub(super) struct GiftCard {
    pub(super) status: GiftCardStatus,
    pub(super) balance: Decimal,
    /// Not exposed by the emulated methods; kept for completeness of the seed data.
    #[allow(dead_code)]
    pub(super) init: Decimal,
    pub(super) valid_until: Option<NaiveDate>,
    /// Promised to pending purchases, debited from `balance` on confirm.
    pub(super) held: Decimal,
}

impl GiftCard {
    fn effective_status(&self, today: NaiveDate) -> GiftCardStatus {
        match (self.status, self.valid_until) {
            (GiftCardStatus::Active, Some(until)) if until < today => GiftCardStatus::Expired,
            (status, _) => status,
        }
    }
}

impl State {
    pub(super) fn calculate(
        &self,
        query: &Map<String, Value>,
        today: NaiveDate,
    ) -> Result<Calculation, ProcessingError> {
        let client = match opt_object(query, "client")? {
            Some(fields) => match client_key(fields)? {
                Some(key) => Some(self.resolve(&key)?),
                None => None,
            },
            None => None,
        };
        let rows = parse_rows(query)?;
        let apply = parse_apply(query)?;
        let collect = parse_collect(query)?;
        let gift_codes = parse_gift_codes(query)?;

        let hundred = Decimal::ONE_HUNDRED;
        // maxToApply = floor(min(available, max_spend_percent% of the eligible rows)).
        let eligible: Vec<i128> = rows
            .iter()
            .map(|r| {
                if r.no_apply {
                    Some(0)
                } else {
                    to_kopecks(r.amount)
                }
            })
            .collect::<Option<_>>()
            .ok_or_else(ProcessingError::too_large)?;
        let eligible_sum =
            checked_sum(eligible.iter().copied()).ok_or_else(ProcessingError::too_large)?;
        let max_to_apply = match client.and_then(|id| self.client(id)) {
            None => 0,
            Some(c) => {
                let percent = self
                    .settings
                    .max_spend_percent
                    .clamp(Decimal::ZERO, hundred);
                let cap = from_kopecks(eligible_sum)
                    .and_then(|sum| sum.checked_mul(percent))
                    .and_then(|x| x.checked_div(hundred))
                    .ok_or_else(ProcessingError::too_large)?
                    .floor()
                    .to_i64()
                    .unwrap_or(i64::MAX);
                cap.min(c.available).max(0)
            }
        };

        let (applied, bonus_error) = match apply {
            Requested::Auto => (max_to_apply, None),
            Requested::Amount(n) => {
                let valid = n.fract().is_zero() && n >= Decimal::ZERO;
                match n.to_i64().filter(|n| valid && *n <= max_to_apply) {
                    Some(n) => (n, None),
                    None => (
                        0,
                        Some(ProcessingError::incorrect_bonus_amount(max_to_apply)),
                    ),
                }
            }
        };
        let discounts = allocate(i128::from(applied) * 100, &eligible)
            .ok_or_else(ProcessingError::too_large)?;
        let applied_by_row =
            allocate(i128::from(applied), &discounts).ok_or_else(ProcessingError::too_large)?;

        let earn = self.settings.earn_percent.max(Decimal::ZERO);
        let mut auto_collect = Vec::with_capacity(rows.len());
        for (row, discount) in rows.iter().zip(&discounts) {
            if client.is_none() || row.no_collect {
                auto_collect.push(0);
                continue;
            }
            let paid = from_kopecks(to_kopecks(row.amount).unwrap_or(0) - discount)
                .ok_or_else(ProcessingError::too_large)?;
            let collected = paid
                .checked_mul(earn)
                .and_then(|x| x.checked_div(hundred))
                .ok_or_else(ProcessingError::too_large)?
                .floor()
                .to_i128()
                .unwrap_or(i128::from(i64::MAX));
            auto_collect.push(collected.clamp(0, i128::from(i64::MAX)));
        }
        let collected_by_row = match collect {
            Requested::Auto => auto_collect,
            Requested::Amount(cap) => {
                let cap = cap.to_i128().unwrap_or(i128::MAX);
                let total = checked_sum(auto_collect.iter().copied())
                    .ok_or_else(ProcessingError::too_large)?;
                if total <= cap {
                    auto_collect
                } else {
                    allocate(cap, &auto_collect).ok_or_else(ProcessingError::too_large)?
                }
            }
        };

        let mut calc_rows = Vec::with_capacity(rows.len());
        for (((row, discount), applied), collected) in rows
            .into_iter()
            .zip(discounts)
            .zip(applied_by_row)
            .zip(collected_by_row)
        {
            calc_rows.push(CalcRow {
                id: row.id,
                sku: row.sku,
                qty: row.qty,
                amount: row.amount,
                discount: from_kopecks(discount).ok_or_else(ProcessingError::too_large)?,
                applied: clamp_i64(applied),
                collected: clamp_i64(collected),
            });
        }
        let collected = calc_rows
            .iter()
            .fold(0i64, |sum, r| sum.saturating_add(r.collected));

        let mut calc = Calculation {
            client,
            rows: calc_rows,
            applied,
            collected,
            max_to_apply,
            bonus_error,
            gift_cards: None,
        };
        if let Some(codes) = gift_codes {
            let mut remaining = calc.paid_total().ok_or_else(ProcessingError::too_large)?;
            let mut used_here: HashMap<&str, Decimal> = HashMap::new();
            let mut uses = Vec::with_capacity(codes.len());
            for gift_code in &codes {
                let card = self.gift_cards.get(gift_code);
                let status = card.map(|c| c.effective_status(today));
                let used_before = used_here
                    .get(gift_code.as_str())
                    .copied()
                    .unwrap_or_default();
                let spendable = card
                    .and_then(|c| c.balance.checked_sub(c.held)?.checked_sub(used_before))
                    .unwrap_or(Decimal::ZERO);
                let error = match status {
                    None => Some((code::GIFT_CARD_NOT_FOUND, "Gift card not found")),
                    Some(GiftCardStatus::Inactive) => {
                        Some((code::GIFT_CARD_NOT_ACTIVATED, "Gift card not activated"))
                    }
                    Some(GiftCardStatus::Expired) => {
                        Some((code::GIFT_CARD_EXPIRED, "Gift card expired"))
                    }
                    Some(GiftCardStatus::Blocked) => {
                        Some((code::GIFT_CARD_BLOCKED, "Gift card blocked"))
                    }
                    Some(GiftCardStatus::Redeemed) => {
                        Some((code::GIFT_CARD_NO_FUNDS, "Gift card has no funds"))
                    }
                    Some(GiftCardStatus::Active) if spendable <= Decimal::ZERO => {
                        Some((code::GIFT_CARD_NO_FUNDS, "Gift card has no funds"))
                    }
                    Some(GiftCardStatus::Active) => None,
                };
                let used = if error.is_none() {
                    spendable.min(remaining).max(Decimal::ZERO)
                } else {
                    Decimal::ZERO
                };
                remaining -= used;
                *used_here.entry(gift_code.as_str()).or_default() += used;
                uses.push(GiftCardUse {
                    code: gift_code.clone(),
                    status,
                    used,
                    error: error.map(|(error_code, description)| {
                        ProcessingError::new(error_code, description, "Pay another way")
                    }),
                });
            }
            calc.gift_cards = Some(uses);
        }
        Ok(calc)
    }
}

/// A calculated receipt: what `/v2/calculate-purchase` answers and what a purchase keeps.
#[derive(Debug, Clone)]
pub(super) struct Calculation {
    pub(super) client: Option<ClientId>,
    pub(super) rows: Vec<CalcRow>,
    pub(super) applied: i64,
    pub(super) collected: i64,
    pub(super) max_to_apply: i64,
    pub(super) bonus_error: Option<ProcessingError>,
    /// `None` when the query had no `giftCards`.
    pub(super) gift_cards: Option<Vec<GiftCardUse>>,
}

#[derive(Debug, Clone)]
pub(super) struct CalcRow {
    pub(super) id: Option<Value>,
    pub(super) sku: String,
    pub(super) qty: Decimal,
    /// Price × qty, rubles to the kopeck.
    pub(super) amount: Decimal,
    /// Bonus discount, rubles to the kopeck.
    pub(super) discount: Decimal,
    pub(super) applied: i64,
    pub(super) collected: i64,
}

#[derive(Debug, Clone)]
pub(super) struct GiftCardUse {
    pub(super) code: String,
    pub(super) status: Option<GiftCardStatus>,
    pub(super) used: Decimal,
    pub(super) error: Option<ProcessingError>,
}

/// Totals of one sku over a purchase's rows.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SkuTotals {
    pub(super) qty: Decimal,
    pub(super) amount: Decimal,
    pub(super) paid: Decimal,
}

impl Calculation {
    /// What the rows cost after bonus discounts (gift cards are a way to pay it).
    pub(super) fn paid_total(&self) -> Option<Decimal> {
        self.rows.iter().try_fold(Decimal::ZERO, |sum, r| {
            sum.checked_add(r.amount.checked_sub(r.discount)?)
        })
    }

    pub(super) fn by_sku(&self) -> Option<HashMap<&str, SkuTotals>> {
        let mut totals: HashMap<&str, SkuTotals> = HashMap::new();
        for row in &self.rows {
            let t = totals.entry(row.sku.as_str()).or_default();
            t.qty = t.qty.checked_add(row.qty)?;
            t.amount = t.amount.checked_add(row.amount)?;
            t.paid = t.paid.checked_add(row.amount.checked_sub(row.discount)?)?;
        }
        Some(totals)
    }

    pub(super) fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut out = Map::new();
                if let Some(id) = &row.id {
                    out.insert("id".into(), id.clone());
                }
                out.insert("totalDiscount".into(), money(row.discount));
                out.insert("discounts".into(), discounts_json(row.discount));
                out.insert(
                    "bonuses".into(),
                    json!({"applied": row.applied, "collected": row.collected}),
                );
                Value::Object(out)
            })
            .collect();
        let total_discount = self
            .rows
            .iter()
            .fold(Decimal::ZERO, |sum, r| sum + r.discount);
        let prepaid = self
            .gift_cards
            .iter()
            .flatten()
            .fold(Decimal::ZERO, |sum, g| sum + g.used);
        let mut bonuses = Map::new();
        bonuses.insert("applied".into(), self.applied.into());
        bonuses.insert("collected".into(), self.collected.into());
        bonuses.insert("maxToApply".into(), self.max_to_apply.into());
        if let Some(err) = &self.bonus_error {
            bonuses.insert("error".into(), err.to_nested_json());
        }
        let mut result = Map::new();
        result.insert("rows".into(), Value::Array(rows));
        result.insert(
            "summary".into(),
            json!({
                "totalDiscount": money(total_discount),
                "discounts": discounts_json(total_discount),
                "prepaidAmount": money(prepaid),
            }),
        );
        result.insert("bonuses".into(), Value::Object(bonuses));
        if let Some(cards) = &self.gift_cards {
            let cards = cards
                .iter()
                .map(|g| {
                    let mut out = Map::new();
                    out.insert("code".into(), Value::String(g.code.clone()));
                    if let Some(status) = g.status {
                        out.insert("status".into(), Value::String(status.as_str().into()));
                    }
                    out.insert("usedAmount".into(), money(g.used));
                    if let Some(err) = &g.error {
                        out.insert("error".into(), err.to_nested_json());
                    }
                    Value::Object(out)
                })
                .collect();
            result.insert("giftCards".into(), Value::Array(cards));
        }
        Value::Object(result)
    }
}

/// Bonuses are the only discount the sandbox gives.
fn discounts_json(bonuses: Decimal) -> Value {
    let zero = money(Decimal::ZERO);
    json!({
        "auto": zero,
        "manual": zero,
        "bonuses": money(bonuses),
        "promocode": zero,
        "offer": zero,
        "rounding": zero,
    })
}

fn clamp_i64(n: i128) -> i64 {
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}
