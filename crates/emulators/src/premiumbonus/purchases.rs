//! Purchases: `/purchase-request`, `/purchase-dry-run`, `/purchase`, `/purchase-info`,
//! `/change-purchase-status`, `/cancel-purchase`, `/edit-purchase`.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use tokio::time::Instant;
use uuid::Uuid;

use super::State;
use super::buyers::BuyerId;
use super::errors::{PbError, shorten};
use super::parse::{
    ItemKey, check_uuid_field, money_field, opt_string, parse_items, required_string,
};
use super::receipt::{CalcItem, cap_write_on, price_items, receipt_json, totals};
use crate::money::{floor_money, money};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PurchaseStatus {
    Approved,
    NotApproved,
}

impl PurchaseStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            PurchaseStatus::Approved => "approved",
            PurchaseStatus::NotApproved => "not_approved",
        }
    }

    /// An optional status field (`purchase_status`, `status`).
    pub(super) fn field(fields: &Map<String, Value>, key: &str) -> Result<Option<Self>, PbError> {
        match opt_string(fields, key)?.as_deref() {
            None => Ok(None),
            Some("approved") => Ok(Some(PurchaseStatus::Approved)),
            Some("not_approved") => Ok(Some(PurchaseStatus::NotApproved)),
            Some(other) => Err(PbError::new(format!(
                "{key} must be \"approved\" or \"not_approved\", got {}",
                shorten(&format!("{other:?}"))
            ))),
        }
    }
}

#[derive(Debug)]
pub(super) struct Purchase {
    pub(super) id: Uuid,
    pub(super) external_id: String,
    /// `None`: an anonymous purchase (no bonuses).
    pub(super) buyer: Option<BuyerId>,
    pub(super) status: PurchaseStatus,
    pub(super) cancelled: bool,
    /// The earn percent at purchase time; edits recompute with it.
    pub(super) earn_percent: Decimal,
    /// The items as they stand after edits.
    pub(super) items: Vec<CalcItem>,
    /// The receipt-level external discount.
    pub(super) discount: Option<Decimal>,
    /// The first `/purchase` answer, repeated for a repeated `external_purchase_id`.
    first_answer: Map<String, Value>,
    /// The first `/cancel-purchase` answer, repeated for a repeated cancel.
    cancel_answer: Option<Map<String, Value>>,
}

/// A receipt priced for a buyer, before anything changes.
pub(super) struct Quote {
    pub(super) buyer: Option<BuyerId>,
    pub(super) items: Vec<CalcItem>,
    pub(super) discount: Option<Decimal>,
    pub(super) balance: Decimal,
    pub(super) earn_percent: Decimal,
}

impl State {
    pub(super) fn max_write_off_percent(&self) -> Decimal {
        self.settings
            .max_write_off_percent
            .clamp(Decimal::ZERO, Decimal::ONE_HUNDRED)
    }

    /// The most bonuses may pay of `amount`, balance aside, rounded down to the kopeck.
    fn write_off_cap(&self, amount: Decimal) -> Result<Decimal, PbError> {
        amount
            .checked_mul(self.max_write_off_percent())
            .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED))
            .map(floor_money)
            .ok_or_else(PbError::too_large)
    }

    /// Prices a dry run or a purchase for its buyer, changing nothing.
    pub(super) fn quote(&self, request: &Map<String, Value>) -> Result<Quote, PbError> {
        let (found, _) = self.identify(request, false)?;
        check_uuid_field(request, "sale_point_id")?;
        let items = parse_items(request, false)?;
        let write_off = money_field(request, "write_off_bonus")?.unwrap_or(Decimal::ZERO);
        let discount = money_field(request, "discount")?;
        let buyer = found.and_then(|id| self.buyer(id).map(|b| (id, b)));
        if buyer.is_some_and(|(_, b)| b.blocked) {
            return Err(PbError::blocked());
        }

        let purchase_amount = items
            .iter()
            .try_fold(Decimal::ZERO, |s, i| s.checked_add(i.amount))
            .ok_or_else(PbError::too_large)?;
        let percent = self.max_write_off_percent();
        let max = match buyer {
            None => Decimal::ZERO,
            Some((_, b)) => b.balance.min(self.write_off_cap(purchase_amount)?),
        };
        let max = floor_money(max).max(Decimal::ZERO);
        if write_off > max {
            let why = match buyer {
                None => "the buyer is not registered".to_owned(),
                Some((_, b)) => format!(
                    "the smaller of the balance {} and {}% of the purchase amount {}",
                    money(b.balance),
                    percent.normalize(),
                    money(purchase_amount)
                ),
            };
            return Err(PbError::new(format!(
                "write_off_bonus {} is above the maximum {}: {why}",
                money(write_off),
                money(max)
            )));
        }
        let earn_percent = self.settings.earn_percent.max(Decimal::ZERO);
        let items = price_items(items, write_off, earn_percent, buyer.is_some())?;
        Ok(Quote {
            buyer: buyer.map(|(id, _)| id),
            items,
            discount,
            balance: buyer.map_or(Decimal::ZERO, |(_, b)| b.balance),
            earn_percent,
        })
    }

    pub(super) fn purchase(
        &mut self,
        request: &Map<String, Value>,
        now: Instant,
    ) -> Result<Map<String, Value>, PbError> {
        let external_id = required_string(request, "external_purchase_id")?;
        let repeated = self
            .by_external_id
            .get(&external_id)
            .and_then(|index| self.purchases.get(*index));
        if let Some(purchase) = repeated {
            return Ok(purchase.first_answer.clone());
        }
        let status =
            PurchaseStatus::field(request, "purchase_status")?.unwrap_or(PurchaseStatus::Approved);
        opt_string(request, "cashier_name")?;
        let quote = self.quote(request)?;
        let t = totals(&quote.items, quote.discount);
        if self.settings.write_off_confirmation_required && t.write_off > Decimal::ZERO {
            let phone = quote
                .buyer
                .and_then(|id| self.buyer(id))
                .and_then(|b| b.phone.clone());
            if !phone.is_some_and(|p| self.is_verified(&p, now)) {
                return Err(PbError::new(
                    "Writing off bonuses must be confirmed: send a code with \
                     /send-write-off-confirmation-code and check it with \
                     /verify-confirmation-code first",
                ));
            }
        }

        if let Some(buyer) = self.buyer_mut(quote.buyer) {
            buyer.debit(t.write_off);
            match status {
                PurchaseStatus::Approved => buyer.credit(t.write_on),
                PurchaseStatus::NotApproved => {
                    buyer.inactive = buyer.inactive.saturating_add(t.write_on);
                }
            }
        }
        let index = self.purchases.len();
        let id = Uuid::new_v4();
        self.purchases.push(Purchase {
            id,
            external_id: external_id.clone(),
            buyer: quote.buyer,
            status,
            cancelled: false,
            earn_percent: quote.earn_percent,
            items: quote.items,
            discount: quote.discount,
            first_answer: Map::new(),
            cancel_answer: None,
        });
        self.by_external_id.insert(external_id, index);
        self.by_purchase_id.insert(id, index);
        let answer = self.purchase_answer(index);
        if let Some(purchase) = self.purchases.get_mut(index) {
            purchase.first_answer = answer.clone();
        }
        Ok(answer)
    }

    /// The purchase as it stands, with its buyer's current balance.
    pub(super) fn purchase_answer(&self, index: usize) -> Map<String, Value> {
        let Some(purchase) = self.purchases.get(index) else {
            return Map::new();
        };
        let balance = purchase
            .buyer
            .and_then(|id| self.buyer(id))
            .map_or(Decimal::ZERO, |b| b.balance);
        let mut out = receipt_json(&purchase.items, purchase.discount, balance);
        out.insert("purchase_id".into(), Value::String(purchase.id.to_string()));
        out.insert(
            "external_purchase_id".into(),
            Value::String(purchase.external_id.clone()),
        );
        let status = if purchase.cancelled {
            "cancelled"
        } else {
            purchase.status.as_str()
        };
        out.insert("purchase_status".into(), Value::String(status.into()));
        out
    }

    /// The purchase named by `purchase_id` and/or `external_purchase_id`.
    pub(super) fn find_purchase(&self, request: &Map<String, Value>) -> Result<usize, PbError> {
        let by_id = match opt_string(request, "purchase_id")? {
            None => None,
            Some(text) => Some(Uuid::parse_str(&text).map_err(|_| {
                PbError::new(format!(
                    "purchase_id must be a UUID, got {}",
                    shorten(&format!("{text:?}"))
                ))
            })?),
        };
        let by_external = opt_string(request, "external_purchase_id")?;
        match (by_id, by_external) {
            (None, None) => Err(PbError::required("purchase_id or external_purchase_id")),
            (Some(id), external) => {
                let index = *self
                    .by_purchase_id
                    .get(&id)
                    .ok_or_else(|| PbError::purchase_not_found(&format!("purchase_id {id}")))?;
                let named = self.purchases.get(index).map(|p| p.external_id.as_str());
                if external.is_some() && named != external.as_deref() {
                    return Err(PbError::new(
                        "purchase_id and external_purchase_id name different purchases",
                    ));
                }
                Ok(index)
            }
            (None, Some(external)) => {
                self.by_external_id.get(&external).copied().ok_or_else(|| {
                    PbError::purchase_not_found(&format!(
                        "external_purchase_id {}",
                        shorten(&format!("{external:?}"))
                    ))
                })
            }
        }
    }

    pub(super) fn change_purchase_status(
        &mut self,
        request: &Map<String, Value>,
    ) -> Result<Map<String, Value>, PbError> {
        let index = self.find_purchase(request)?;
        let status =
            PurchaseStatus::field(request, "status")?.ok_or_else(|| PbError::required("status"))?;
        let Some(purchase) = self.purchases.get_mut(index) else {
            return Err(PbError::purchase_not_found("index"));
        };
        if purchase.cancelled {
            return Err(PbError::new("The purchase is cancelled"));
        }
        match (purchase.status, status) {
            (PurchaseStatus::NotApproved, PurchaseStatus::Approved) => {
                purchase.status = PurchaseStatus::Approved;
                let write_on = totals(&purchase.items, None).write_on;
                let buyer = purchase.buyer;
                if let Some(buyer) = self.buyer_mut(buyer) {
                    buyer.inactive = buyer.inactive.saturating_sub(write_on);
                    buyer.credit(write_on);
                }
            }
            (PurchaseStatus::Approved, PurchaseStatus::NotApproved) => {
                return Err(PbError::new(
                    "An approved purchase cannot go back to not_approved: cancel or edit it",
                ));
            }
            // The status it already has: nothing to do.
            (PurchaseStatus::Approved, PurchaseStatus::Approved)
            | (PurchaseStatus::NotApproved, PurchaseStatus::NotApproved) => {}
        }
        Ok(self.purchase_answer(index))
    }

    pub(super) fn cancel_purchase(
        &mut self,
        request: &Map<String, Value>,
    ) -> Result<Map<String, Value>, PbError> {
        let index = self.find_purchase(request)?;
        let Some(purchase) = self.purchases.get_mut(index) else {
            return Err(PbError::purchase_not_found("index"));
        };
        if let Some(answer) = &purchase.cancel_answer {
            return Ok(answer.clone());
        }
        purchase.cancelled = true;
        let t = totals(&purchase.items, None);
        let (buyer, status) = (purchase.buyer, purchase.status);
        if let Some(buyer) = self.buyer_mut(buyer) {
            buyer.credit(t.write_off);
            match status {
                PurchaseStatus::Approved => buyer.debit(t.write_on),
                PurchaseStatus::NotApproved => {
                    buyer.inactive = buyer.inactive.saturating_sub(t.write_on);
                }
            }
        }
        let answer = self.purchase_answer(index);
        if let Some(purchase) = self.purchases.get_mut(index) {
            purchase.cancel_answer = Some(answer.clone());
        }
        Ok(answer)
    }

    pub(super) fn edit_purchase(
        &mut self,
        request: &Map<String, Value>,
    ) -> Result<Map<String, Value>, PbError> {
        let index = self.find_purchase(request)?;
        let remaining = parse_items(request, true)?;
        let asked_write_off = money_field(request, "write_off_bonus")?;
        let discount = money_field(request, "discount")?;
        let Some(purchase) = self.purchases.get(index) else {
            return Err(PbError::purchase_not_found("index"));
        };
        if purchase.cancelled {
            return Err(PbError::new(
                "The purchase is cancelled: it cannot be edited",
            ));
        }

        // Edits only shrink: per item, no more quantity or amount than the purchase holds now.
        let mut held: HashMap<&ItemKey, (Decimal, Decimal)> = HashMap::new();
        for item in &purchase.items {
            let entry = held.entry(&item.input.key).or_default();
            entry.0 = entry.0.saturating_add(item.input.quantity);
            entry.1 = entry.1.saturating_add(item.input.amount);
        }
        let mut asked: Vec<(&ItemKey, Decimal, Decimal)> = Vec::new();
        for item in &remaining {
            match asked.iter_mut().find(|(key, _, _)| **key == item.key) {
                Some((_, quantity, amount)) => {
                    *quantity = quantity.saturating_add(item.quantity);
                    *amount = amount.saturating_add(item.amount);
                }
                None => asked.push((&item.key, item.quantity, item.amount)),
            }
        }
        for (key, quantity, amount) in &asked {
            let Some((held_quantity, held_amount)) = held.get(key) else {
                return Err(PbError::new(format!("The {key} is not in the purchase")));
            };
            if quantity > held_quantity {
                return Err(PbError::new(format!(
                    "The purchase holds {} of the {key}, {} asked",
                    held_quantity.normalize(),
                    quantity.normalize()
                )));
            }
            if amount > held_amount {
                return Err(PbError::new(format!(
                    "The purchase holds {} of the {key}, amount {} asked",
                    money(*held_amount),
                    money(*amount)
                )));
            }
        }

        let current = totals(&purchase.items, None);
        let remaining_amount = remaining
            .iter()
            .fold(Decimal::ZERO, |s, i| s.saturating_add(i.amount));
        // Without a write_off_bonus the write-off stays whole (see the module's notes).
        let write_off = asked_write_off.unwrap_or(current.write_off);
        if write_off > current.write_off {
            return Err(PbError::new(format!(
                "write_off_bonus {} is above the purchase's write-off {}: an edit cannot raise it",
                money(write_off),
                money(current.write_off)
            )));
        }
        let cap = self.write_off_cap(remaining_amount)?;
        if write_off > cap {
            return Err(PbError::new(format!(
                "write-off {} is above the maximum {} for the remaining items ({}% of {})",
                money(write_off),
                money(cap),
                self.max_write_off_percent().normalize(),
                money(remaining_amount)
            )));
        }
        let registered = purchase.buyer.is_some();
        let mut items = price_items(remaining, write_off, purchase.earn_percent, registered)?;
        cap_write_on(&mut items, current.write_on)?;
        let new = totals(&items, None);
        let given_back = current.write_off - new.write_off;
        let taken_back = current.write_on - new.write_on;
        let (buyer, status) = (purchase.buyer, purchase.status);

        if let Some(buyer) = self.buyer_mut(buyer) {
            buyer.credit(given_back);
            match status {
                PurchaseStatus::Approved => buyer.debit(taken_back),
                PurchaseStatus::NotApproved => {
                    buyer.inactive = buyer.inactive.saturating_sub(taken_back);
                }
            }
        }
        if let Some(purchase) = self.purchases.get_mut(index) {
            purchase.items = items;
            if discount.is_some() {
                purchase.discount = discount;
            }
        }
        Ok(self.purchase_answer(index))
    }
}
