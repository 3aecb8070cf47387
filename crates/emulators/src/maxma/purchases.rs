//! Purchases: `/set-purchase` reserves, `/confirm-ticket` commits, `/discard-ticket` gives back.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::calculation::Calculation;
use super::clients::client_mut;
use super::errors::{ProcessingError, code};
use super::parse::{required_object, required_string};
use super::{GiftCardStatus, Now, State, secret_matches};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PurchaseStatus {
    Pending,
    Confirmed,
    Discarded,
}

#[derive(Debug)]
pub(super) struct Purchase {
    pub(super) ticket: String,
    pub(super) status: PurchaseStatus,
    pub(super) calc: Calculation,
    /// The `calculationResult` as first answered, repeated verbatim for a repeated txid.
    pub(super) result: Value,
    /// Quantity already returned, by sku.
    pub(super) returned: HashMap<String, Decimal>,
    pub(super) refunded: Decimal,
    pub(super) recovered: i64,
    pub(super) cancelled: i64,
}

impl State {
    pub(super) fn set_purchase(
        &mut self,
        request: &Map<String, Value>,
        now: &Now,
    ) -> Result<Value, ProcessingError> {
        let txid = required_string(request, "txid")?;
        if let Some(purchase) = self.purchases.get(&txid) {
            return match purchase.status {
                PurchaseStatus::Pending => Ok(self.purchase_answer(purchase)),
                PurchaseStatus::Confirmed => Err(ProcessingError::already_processed("Purchase")),
                PurchaseStatus::Discarded => Err(ProcessingError::purchase_discarded()),
            };
        }
        let query = required_object(request, "calculationQuery")?;
        let calc = self.calculate(query, now.wall.date_naive())?;
        if let Some(err) = &calc.bonus_error {
            return Err(err.clone());
        }
        if let Some(err) = calc
            .gift_cards
            .iter()
            .flatten()
            .find_map(|use_| use_.error.clone())
        {
            return Err(err);
        }

        if let Some(client) = client_mut(&mut self.clients, calc.client) {
            client.available = client.available.saturating_sub(calc.applied);
            client.reserved = client.reserved.saturating_add(calc.applied);
            client.pending = client.pending.saturating_add(calc.collected);
        }
        for use_ in calc.gift_cards.iter().flatten() {
            if let Some(card) = self.gift_cards.get_mut(&use_.code) {
                card.held += use_.used;
            }
        }
        let purchase = Purchase {
            ticket: uuid::Uuid::new_v4().simple().to_string(),
            status: PurchaseStatus::Pending,
            result: calc.to_json(),
            calc,
            returned: HashMap::new(),
            refunded: Decimal::ZERO,
            recovered: 0,
            cancelled: 0,
        };
        let answer = self.purchase_answer(&purchase);
        self.purchases.insert(txid, purchase);
        Ok(answer)
    }

    fn purchase_answer(&self, purchase: &Purchase) -> Value {
        let mut answer = Map::new();
        answer.insert("ticket".into(), Value::String(purchase.ticket.clone()));
        answer.insert("calculationResult".into(), purchase.result.clone());
        if let Some(client) = purchase.calc.client.and_then(|id| self.client(id)) {
            answer.insert("clientBonuses".into(), client.bonuses_json());
        }
        answer.insert("receiptInfo".into(), json!([]));
        Value::Object(answer)
    }

    /// Finds a purchase by txid and ticket, for confirm and discard.
    fn ticketed<'a>(
        purchases: &'a mut HashMap<String, Purchase>,
        request: &Map<String, Value>,
    ) -> Result<&'a mut Purchase, ProcessingError> {
        let txid = required_string(request, "txid")?;
        let ticket = required_string(request, "ticket")?;
        let purchase = purchases
            .get_mut(&txid)
            .ok_or_else(|| ProcessingError::purchase_not_found(&txid))?;
        if !secret_matches(purchase.ticket.as_bytes(), ticket.as_bytes()) {
            return Err(ProcessingError::malformed(
                "the ticket does not match the purchase",
            ));
        }
        Ok(purchase)
    }

    pub(super) fn confirm_ticket(
        &mut self,
        request: &Map<String, Value>,
    ) -> Result<Value, ProcessingError> {
        let purchase = Self::ticketed(&mut self.purchases, request)?;
        match purchase.status {
            PurchaseStatus::Pending => {}
            PurchaseStatus::Confirmed => {
                return Err(ProcessingError::already_processed("Purchase"));
            }
            PurchaseStatus::Discarded => return Err(ProcessingError::purchase_discarded()),
        }
        purchase.status = PurchaseStatus::Confirmed;
        let calc = &purchase.calc;
        if let Some(client) = client_mut(&mut self.clients, calc.client) {
            client.reserved = client.reserved.saturating_sub(calc.applied);
            client.pending = client.pending.saturating_sub(calc.collected);
            client.available = client.available.saturating_add(calc.collected);
            let paid = calc.paid_total().unwrap_or_default();
            client.spent = client.spent.checked_add(paid).unwrap_or(client.spent);
        }
        for use_ in calc.gift_cards.iter().flatten() {
            if let Some(card) = self.gift_cards.get_mut(&use_.code) {
                card.held = (card.held - use_.used).max(Decimal::ZERO);
                card.balance = (card.balance - use_.used).max(Decimal::ZERO);
                if use_.used > Decimal::ZERO && card.balance.is_zero() {
                    card.status = GiftCardStatus::Redeemed;
                }
            }
        }
        Ok(json!({}))
    }

    pub(super) fn discard_ticket(
        &mut self,
        request: &Map<String, Value>,
    ) -> Result<Value, ProcessingError> {
        let purchase = Self::ticketed(&mut self.purchases, request)?;
        match purchase.status {
            PurchaseStatus::Pending => {}
            PurchaseStatus::Confirmed => {
                return Err(ProcessingError::new(
                    code::ALREADY_PROCESSED,
                    "Purchase already processed: a confirmed purchase cannot be discarded",
                    "Use apply-return to take back a confirmed purchase",
                ));
            }
            PurchaseStatus::Discarded => return Err(ProcessingError::purchase_discarded()),
        }
        purchase.status = PurchaseStatus::Discarded;
        let calc = &purchase.calc;
        if let Some(client) = client_mut(&mut self.clients, calc.client) {
            client.reserved = client.reserved.saturating_sub(calc.applied);
            client.pending = client.pending.saturating_sub(calc.collected);
            client.available = client.available.saturating_add(calc.applied);
        }
        for use_ in calc.gift_cards.iter().flatten() {
            if let Some(card) = self.gift_cards.get_mut(&use_.code) {
                card.held = (card.held - use_.used).max(Decimal::ZERO);
            }
        }
        Ok(json!({}))
    }
}
