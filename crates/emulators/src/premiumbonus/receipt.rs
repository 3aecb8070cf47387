//! A priced receipt: items with their share of the bonuses, totals, and how answers show them.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::PRINT_ON_CHECK;
use super::errors::PbError;
use super::parse::ItemInput;
use crate::money::{allocate, floor_money, from_kopecks, money, to_kopecks};

/// An item with its share of the bonuses.
#[derive(Debug, Clone)]
pub(super) struct CalcItem {
    pub(super) input: ItemInput,
    pub(super) write_off: Decimal,
    pub(super) write_on: Decimal,
}

impl CalcItem {
    fn to_json(&self) -> Value {
        json!({
            "external_item_id": self.input.external_item_id,
            "name": self.input.name,
            "quantity": number(self.input.quantity),
            "amount": money(self.input.amount),
            "write_off_bonus": money(self.write_off),
            "write_on_bonus": money(self.write_on),
            "payment_amount": money(self.input.amount - self.write_off),
        })
    }
}

/// Receipt totals.
#[derive(Debug, Clone, Copy)]
pub(super) struct Totals {
    pub(super) purchase_amount: Decimal,
    pub(super) write_off: Decimal,
    pub(super) write_on: Decimal,
    discount_external: Decimal,
}

pub(super) fn totals(items: &[CalcItem], receipt_discount: Option<Decimal>) -> Totals {
    let sum = |pick: fn(&CalcItem) -> Decimal| {
        items
            .iter()
            .fold(Decimal::ZERO, |s, i| s.saturating_add(pick(i)))
    };
    Totals {
        purchase_amount: sum(|i| i.input.amount),
        write_off: sum(|i| i.write_off),
        write_on: sum(|i| i.write_on),
        discount_external: receipt_discount.unwrap_or_else(|| sum(|i| i.input.discount)),
    }
}

/// The receipt part of dry-run and purchase answers.
pub(super) fn receipt_json(
    items: &[CalcItem],
    receipt_discount: Option<Decimal>,
    balance: Decimal,
) -> Map<String, Value> {
    let t = totals(items, receipt_discount);
    let mut out = Map::new();
    out.insert("purchase_amount".into(), money(t.purchase_amount));
    out.insert(
        "payment_amount".into(),
        money(t.purchase_amount - t.write_off),
    );
    out.insert("total_write_off_bonus".into(), money(t.write_off));
    out.insert("total_write_on_bonus".into(), money(t.write_on));
    out.insert("total_discount_external".into(), money(t.discount_external));
    out.insert("total_discount_premiumbonus".into(), money(Decimal::ZERO));
    out.insert("balance".into(), money(balance));
    out.insert(
        "items".into(),
        Value::Array(items.iter().map(CalcItem::to_json).collect()),
    );
    out.insert(
        "print_on_check".into(),
        Value::String(PRINT_ON_CHECK.into()),
    );
    out
}

/// Spreads `write_off` over the items in proportion to their amounts (to the kopeck, exact
/// sum) and computes each item's write-on.
pub(super) fn price_items(
    items: Vec<ItemInput>,
    write_off: Decimal,
    earn_percent: Decimal,
    registered: bool,
) -> Result<Vec<CalcItem>, PbError> {
    let weights: Vec<i128> = items
        .iter()
        .map(|i| to_kopecks(i.amount))
        .collect::<Option<_>>()
        .ok_or_else(PbError::too_large)?;
    let total = to_kopecks(write_off).ok_or_else(PbError::too_large)?;
    let parts = allocate(total, &weights).ok_or_else(PbError::too_large)?;
    items
        .into_iter()
        .zip(parts)
        .map(|(input, part)| {
            let write_off = from_kopecks(part).ok_or_else(PbError::too_large)?;
            let write_on = if registered {
                let paid = input.amount - write_off;
                paid.checked_mul(earn_percent)
                    .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED))
                    .map(floor_money)
                    .ok_or_else(PbError::too_large)?
                    .max(Decimal::ZERO)
            } else {
                Decimal::ZERO
            };
            Ok(CalcItem {
                input,
                write_off,
                write_on,
            })
        })
        .collect()
}

/// Keeps the items' write-on at most `cap` in total, splitting the cap in proportion to what
/// each item would earn (an edit never raises the write-on, whatever the kopeck roundings do).
pub(super) fn cap_write_on(items: &mut [CalcItem], cap: Decimal) -> Result<(), PbError> {
    let total = totals(items, None).write_on;
    if total <= cap {
        return Ok(());
    }
    let weights: Vec<i128> = items
        .iter()
        .map(|i| to_kopecks(i.write_on))
        .collect::<Option<_>>()
        .ok_or_else(PbError::too_large)?;
    let cap = to_kopecks(cap.max(Decimal::ZERO)).ok_or_else(PbError::too_large)?;
    let parts = allocate(cap, &weights).ok_or_else(PbError::too_large)?;
    for (item, part) in items.iter_mut().zip(parts) {
        item.write_on = from_kopecks(part).ok_or_else(PbError::too_large)?;
    }
    Ok(())
}

/// A quantity as a JSON number without trailing zeros (`2`, `0.5`).
pub(super) fn number(d: Decimal) -> Value {
    serde_json::Number::from_str(&d.normalize().to_string()).map_or(Value::Null, Value::Number)
}
