//! `POST /operations/calc` and `POST /operations`: purchases.

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::errors::UdsError;
use super::figures::{compute, spend_permission};
use super::records::{PurchaseRecord, StoredOperation};
use super::requests::{Kind, parse_purchase};
use super::{BRANCH_ID, BRANCH_NAME, Ident, Now, State, timestamp};
use crate::money::money;

impl State {
    /// The customer of a calc or operation: `None` for an unregistered phone.
    fn purchase_customer(&self, ident: &Ident, now: &Now) -> Result<Option<usize>, UdsError> {
        if matches!(ident, Ident::Phone(_)) && !self.settings.purchase_by_phone {
            return Err(UdsError::purchase_by_phone_disabled());
        }
        let index = match (self.lookup(ident, now), ident) {
            (Some(index), _) => index,
            (None, Ident::Phone(_)) => return Ok(None),
            (None, Ident::Code(_) | Ident::Uid(_)) => {
                return Err(UdsError::customer_not_found(ident));
            }
        };
        if self.customers.get(index).is_some_and(|c| c.blocked) {
            return Err(UdsError::participant_is_blocked());
        }
        Ok(Some(index))
    }

    pub(super) fn calc(&self, body: &Map<String, Value>, now: &Now) -> Result<Value, UdsError> {
        let request = parse_purchase(body, Kind::Calc)?;
        let customer = self
            .purchase_customer(&request.ident, now)?
            .and_then(|i| self.customers.get(i));
        let spend = spend_permission(&request.ident, &self.settings);
        let figures = compute(
            &request.receipt,
            customer,
            &self.settings,
            spend,
            request.points,
        )?;
        Ok(json!({
            "user": customer.map(|c| c.detail_json(&self.settings)),
            "purchase": figures.to_json(),
        }))
    }

    pub(super) fn create_operation(
        &mut self,
        body: &Map<String, Value>,
        now: &Now,
    ) -> Result<Value, UdsError> {
        if let Some(Value::String(nonce)) = body.get("nonce") {
            if let Some(op) = self
                .nonces
                .get(nonce)
                .and_then(|id| self.operations.get(id))
            {
                return Ok(op.json.clone());
            }
        }
        let request = parse_purchase(body, Kind::Create)?;
        let index = self.purchase_customer(&request.ident, now)?;
        let spend = spend_permission(&request.ident, &self.settings);
        let figures = compute(
            &request.receipt,
            index.and_then(|i| self.customers.get(i)),
            &self.settings,
            spend,
            request.points,
        )?;
        if request.cash != figures.cash {
            return Err(UdsError::invalid_checksum(figures.cash, request.cash));
        }

        // Commit.
        let id = self.next_operation_id;
        self.next_operation_id = id.saturating_add(1);
        let cashier = match &request.cashier {
            Some(cashier) => {
                let next = i64::try_from(self.cashiers.len())
                    .unwrap_or(i64::MAX)
                    .saturating_add(1);
                let cashier_id = *self
                    .cashiers
                    .entry(cashier.external_id.clone())
                    .or_insert(next);
                json!({
                    "id": cashier_id,
                    "displayName": cashier.name.as_deref().unwrap_or(&cashier.external_id),
                })
            }
            None => Value::Null,
        };
        let customer_json = match index.and_then(|i| self.customers.get_mut(i)) {
            Some(customer) => {
                customer.points = customer
                    .points
                    .saturating_sub(figures.points)
                    .saturating_add(figures.cashback);
                customer.last_transaction = Some(now.wall);
                customer.short_json(&self.settings)
            }
            None => {
                let phone = match &request.ident {
                    Ident::Phone(phone) => Some(phone.clone()),
                    Ident::Code(_) | Ident::Uid(_) => None,
                };
                json!({"id": null, "uid": null, "displayName": phone, "membershipTier": null})
            }
        };
        let operation = json!({
            "id": id,
            "dateCreated": timestamp(now.wall),
            "action": "PURCHASE",
            "state": "NORMAL",
            "customer": customer_json,
            "cashier": cashier,
            "branch": {"id": BRANCH_ID, "displayName": BRANCH_NAME},
            "points": money(-figures.points),
            "cash": money(figures.cash),
            "total": money(figures.total),
            "receiptNumber": request.number,
            "origin": null,
            "certificatePoints": money(Decimal::ZERO),
        });
        self.operations.insert(
            id,
            StoredOperation {
                json: operation.clone(),
                purchase: Some(PurchaseRecord {
                    customer: index,
                    total: figures.total,
                    points: figures.points,
                    discount: figures.discount,
                    cashback: figures.cashback,
                    refunded: Decimal::ZERO,
                    points_back: Decimal::ZERO,
                    discount_back: Decimal::ZERO,
                    cashback_back: Decimal::ZERO,
                }),
            },
        );
        if let Some(nonce) = request.nonce {
            self.nonces.insert(nonce, id);
        }
        Ok(operation)
    }
}
