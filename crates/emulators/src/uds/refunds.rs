//! `POST /operations/{id}/refund`: partial and full refunds that add up exactly.

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::errors::{UdsError, field_code};
use super::records::{PurchaseRecord, StoredOperation};
use super::validation::{Checks, Rounding};
use super::{Now, State, timestamp};
use crate::money::{money, money_text};

impl State {
    pub(super) fn refund(
        &mut self,
        id: i64,
        body: &Map<String, Value>,
        now: &Now,
    ) -> Result<Value, UdsError> {
        let mut checks = Checks::default();
        let partial = checks.amount(
            body,
            "partialAmount",
            "partialAmount",
            false,
            Rounding::HalfUp,
        );
        checks.finish()?;
        let stored = self
            .operations
            .get(&id)
            .ok_or_else(|| UdsError::operation_not_found(id))?;
        let Some(purchase) = stored.purchase else {
            return Err(UdsError::bad_request(format!(
                "Operation {id} is a refund and cannot be refunded"
            )));
        };
        let left = purchase.total - purchase.refunded;
        if left <= Decimal::ZERO {
            return Err(UdsError::bad_request(format!(
                "Operation {id} is already refunded in full"
            )));
        }
        let amount = partial.unwrap_or(left);
        let amount_json = body.get("partialAmount").cloned().unwrap_or(Value::Null);
        if amount <= Decimal::ZERO {
            let mut checks = Checks::default();
            checks.fail(
                field_code::MIN,
                "partialAmount",
                "Property [partialAmount] must be greater than 0",
                &amount_json,
            );
            return Err(UdsError::validation(checks.errors));
        }
        if amount > left {
            let mut checks = Checks::default();
            checks.fail(
                field_code::MAX,
                "partialAmount",
                format!(
                    "Property [partialAmount] must be at most {} (what is left to refund)",
                    money_text(left)
                ),
                &amount_json,
            );
            return Err(UdsError::validation(checks.errors));
        }

        let refunded = purchase.refunded + amount;
        let full = refunded == purchase.total;
        // Cumulative shares, exact once everything is refunded.
        let so_far = |whole: Decimal, rounding: Rounding| -> Result<Decimal, UdsError> {
            if full {
                return Ok(whole);
            }
            whole
                .checked_mul(refunded)
                .and_then(|x| x.checked_div(purchase.total))
                .map(|x| rounding.apply(x))
                .ok_or_else(UdsError::out_of_range)
        };
        let points_back = so_far(purchase.points, Rounding::Down)?;
        let cashback_back = so_far(purchase.cashback, Rounding::Down)?;
        let discount_back = so_far(purchase.discount, Rounding::HalfUp)?;
        let points = points_back - purchase.points_back;
        let cashback = cashback_back - purchase.cashback_back;
        let discount = discount_back - purchase.discount_back;
        let cash = amount - points - discount;

        let original = &stored.json;
        let refund_id = self.next_operation_id;
        self.next_operation_id = refund_id.saturating_add(1);
        let operation = json!({
            "id": refund_id,
            "dateCreated": timestamp(now.wall),
            "action": "REFUND",
            "state": "REVERSAL",
            "customer": original["customer"],
            "cashier": original["cashier"],
            "branch": original["branch"],
            "points": money(points),
            "cash": money(-cash),
            "total": money(-amount),
            "receiptNumber": original["receiptNumber"],
            "origin": {"id": id},
            "certificatePoints": money(Decimal::ZERO),
        });

        if let Some(customer) = purchase.customer.and_then(|i| self.customers.get_mut(i)) {
            customer.points = customer
                .points
                .saturating_add(points)
                .saturating_sub(cashback);
            customer.last_transaction = Some(now.wall);
        }
        if let Some(stored) = self.operations.get_mut(&id) {
            stored.purchase = Some(PurchaseRecord {
                refunded,
                points_back,
                cashback_back,
                discount_back,
                ..purchase
            });
            if full {
                stored.json["state"] = json!("CANCELED");
            }
        }
        self.operations.insert(
            refund_id,
            StoredOperation {
                json: operation.clone(),
                purchase: None,
            },
        );
        Ok(operation)
    }
}
