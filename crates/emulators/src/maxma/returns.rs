//! `/apply-return`: partial and full returns of a confirmed purchase.

use std::collections::HashMap;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value, json};

use super::State;
use super::calculation::SkuTotals;
use super::clients::client_mut;
use super::errors::ProcessingError;
use super::parse::{
    decimal_value, merge_return_items, parse_return_items, required_object, required_string,
};
use super::purchases::{Purchase, PurchaseStatus};
use crate::money::{money, round_money};

impl State {
    pub(super) fn apply_return(
        &mut self,
        request: &Map<String, Value>,
    ) -> Result<Value, ProcessingError> {
        let transaction = required_object(request, "transaction")?;
        let id = required_string(transaction, "id")?;
        let purchase_id = required_string(transaction, "purchaseId")?;
        let items = parse_return_items(transaction)?;
        let refund_amount = match transaction.get("refundAmount") {
            None | Some(Value::Null) => None,
            Some(v) => Some(decimal_value(v, "transaction.refundAmount")?),
        };
        if self.returns.contains(&id) {
            return Err(ProcessingError::already_processed("Return"));
        }
        let purchase = self
            .purchases
            .get(&purchase_id)
            .filter(|p| p.status == PurchaseStatus::Confirmed)
            .ok_or_else(|| ProcessingError::incorrect_return_purchase(&purchase_id))?;
        let plan = plan_return(purchase, &items, refund_amount)?;

        let Some(purchase) = self.purchases.get_mut(&purchase_id) else {
            return Err(ProcessingError::incorrect_return_purchase(&purchase_id));
        };
        for (sku, count) in &items {
            *purchase.returned.entry(sku.clone()).or_default() += *count;
        }
        purchase.refunded += plan.refund_amount;
        purchase.recovered = purchase.recovered.saturating_add(plan.recovered);
        purchase.cancelled = purchase.cancelled.saturating_add(plan.cancelled);
        if let Some(client) = client_mut(&mut self.clients, purchase.calc.client) {
            client.available = client
                .available
                .saturating_add(plan.recovered)
                .saturating_sub(plan.cancelled);
            client.spent = client
                .spent
                .checked_sub(plan.refund_amount)
                .unwrap_or(client.spent);
        }
        self.returns.insert(id);
        Ok(json!({
            "confirmation": {
                "refundId": uuid::Uuid::new_v4().simple().to_string(),
                "refundAmount": money(plan.refund_amount),
                "recoveredBonuses": plan.recovered,
                "cancelledBonuses": plan.cancelled,
            }
        }))
    }
}

/// The outcome of a valid return, computed before anything changes.
struct ReturnPlan {
    refund_amount: Decimal,
    pub(super) recovered: i64,
    pub(super) cancelled: i64,
}

fn plan_return(
    purchase: &Purchase,
    listed: &[(String, Decimal)],
    refund_amount: Option<Decimal>,
) -> Result<ReturnPlan, ProcessingError> {
    let items = merge_return_items(listed)?;
    let items = items.as_slice();
    let calc = &purchase.calc;
    let totals = calc.by_sku().ok_or_else(ProcessingError::too_large)?;
    let returned = |sku: &str| purchase.returned.get(sku).copied().unwrap_or_default();
    for (sku, count) in items {
        let Some(line) = totals.get(sku.as_str()) else {
            return Err(ProcessingError::incorrect_return_item(format!(
                "sku {sku:?} is not in purchase"
            )));
        };
        let left = line.qty - returned(sku);
        if *count > left {
            return Err(ProcessingError::incorrect_return_item(format!(
                "only {left} of sku {sku:?} can still be returned"
            )));
        }
    }

    // value(line, count) = basis × count / qty; multiplying first keeps a full line exact.
    let part =
        |basis: Decimal, count: Decimal, qty: Decimal| basis.checked_mul(count)?.checked_div(qty);
    let sum_over_items = |basis: fn(&SkuTotals) -> Decimal| -> Option<Decimal> {
        items.iter().try_fold(Decimal::ZERO, |sum, (sku, count)| {
            let line = totals.get(sku.as_str())?;
            sum.checked_add(part(basis(line), *count, line.qty)?)
        })
    };
    let paid_total = calc.paid_total().ok_or_else(ProcessingError::too_large)?;
    let paid_value = sum_over_items(|t| t.paid).ok_or_else(ProcessingError::too_large)?;

    let mut asked: HashMap<&str, Decimal> = HashMap::new();
    for (sku, count) in items {
        *asked.entry(sku.as_str()).or_default() += *count;
    }
    let everything_back = totals
        .iter()
        .all(|(sku, line)| returned(sku) + asked.get(sku).copied().unwrap_or_default() >= line.qty);

    let refundable = (paid_total - purchase.refunded).max(Decimal::ZERO);
    // The default is the items' paid value; the return that completes the purchase refunds
    // exactly what is left, so kopeck roundings of earlier returns never strand a kopeck.
    let refund_amount = match refund_amount {
        Some(amount) => amount,
        None if everything_back => refundable,
        None => round_money(paid_value).min(refundable),
    };
    if refund_amount < Decimal::ZERO || refund_amount > refundable {
        return Err(ProcessingError::incorrect_return_amount(refundable));
    }

    // The share of the purchase this return takes back: on paid amounts, else on gross
    // amounts, else on quantities (a purchase that cost nothing).
    let amount_total = totals.values().fold(Decimal::ZERO, |s, t| s + t.amount);
    let basis: fn(&SkuTotals) -> Decimal = if paid_total > Decimal::ZERO {
        |t| t.paid
    } else if amount_total > Decimal::ZERO {
        |t| t.amount
    } else {
        |t| t.qty
    };
    let basis_total = totals.values().fold(Decimal::ZERO, |s, t| s + basis(t));
    let share = sum_over_items(basis)
        .and_then(|v| v.checked_div(basis_total))
        .unwrap_or(Decimal::ZERO)
        .clamp(Decimal::ZERO, Decimal::ONE);
    // Each partial return takes floor(total × share); the return that completes the purchase
    // takes whatever is left, so the returns always add up to the purchase's totals.
    let portion = |total: i64, so_far: i64| -> i64 {
        let left = total.saturating_sub(so_far).max(0);
        if everything_back {
            return left;
        }
        let part = Decimal::from(total)
            .checked_mul(share)
            .map_or(0, |x| x.floor().to_i64().unwrap_or(0));
        part.clamp(0, left)
    };
    Ok(ReturnPlan {
        refund_amount,
        recovered: portion(calc.applied, purchase.recovered),
        cancelled: portion(calc.collected, purchase.cancelled),
    })
}
