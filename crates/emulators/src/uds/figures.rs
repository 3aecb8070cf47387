//! The figures of a purchase (`PurchaseCalc`): points, cash, cashback and the percentages.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::errors::UdsError;
use super::records::{Customer, Rates, percent};
use super::requests::Receipt;
use super::{Ident, UdsSettings};
use crate::money::{floor_money, money, round_money};

/// May points be spent, given how the customer was named?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spend {
    Allowed,
    ByUid,
    ByPhoneDisabled,
}

pub(super) fn spend_permission(ident: &Ident, settings: &UdsSettings) -> Spend {
    match ident {
        Ident::Code(_) => Spend::Allowed,
        Ident::Uid(_) => Spend::ByUid,
        Ident::Phone(_) if settings.use_points_by_phone => Spend::Allowed,
        Ident::Phone(_) => Spend::ByPhoneDisabled,
    }
}

/// `PurchaseCalc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Figures {
    pub(super) total: Decimal,
    pub(super) skip: Decimal,
    pub(super) unredeemable: Decimal,
    pub(super) discount: Decimal,
    pub(super) max_points: Decimal,
    pub(super) points: Decimal,
    pub(super) cash: Decimal,
    pub(super) cashback: Decimal,
    pub(super) max_scores_discount: Decimal,
}

impl Figures {
    pub(super) fn to_json(self) -> Value {
        let net = self.discount + self.points;
        json!({
            "maxPoints": money(self.max_points),
            "total": money(self.total),
            "skipLoyaltyTotal": money(self.skip),
            "unredeemableTotal": money(self.unredeemable),
            "discountAmount": money(self.discount),
            "discountPercent": money(percent_of(self.discount, self.total)),
            "points": money(self.points),
            "pointsPercent": money(percent_of(self.points, self.total)),
            "netDiscount": money(net),
            "netDiscountPercent": money(percent_of(net, self.total)),
            "certificatePoints": money(Decimal::ZERO),
            "cash": money(self.cash),
            "cashTotal": money(self.cash),
            "cashBack": money(self.cashback),
            "extras": {},
            "maxScoresDiscount": money(self.max_scores_discount),
        })
    }
}

/// The figures of one receipt (see the module documentation for the rules). `requested` is
/// already rounded down; `None` spends as much as allowed. The receipt is validated: every
/// amount is 0 … 10¹² and `total ≥ skip + unredeemable`.
pub(super) fn compute(
    receipt: &Receipt,
    customer: Option<&Customer>,
    settings: &UdsSettings,
    spend: Spend,
    requested: Option<Decimal>,
) -> Result<Figures, UdsError> {
    let rates = match customer {
        Some(customer) => customer.rates(settings),
        None => Rates {
            discount: Decimal::ZERO,
            cashback: Decimal::ZERO,
            max_scores: percent(settings.max_scores_discount),
            tier: Decimal::ZERO,
        },
    };
    let base = receipt.total - receipt.skip;
    let discount = round_money(share(base, rates.discount)?);
    let redeemable = (base - receipt.unredeemable - discount).max(Decimal::ZERO);
    let balance = customer.map_or(Decimal::ZERO, |c| c.points.max(Decimal::ZERO));
    let max_points = match (customer, spend) {
        (Some(_), Spend::Allowed) => floor_money(balance.min(share(redeemable, rates.max_scores)?)),
        _ => Decimal::ZERO,
    };
    let points = requested.unwrap_or(max_points);
    if points > Decimal::ZERO {
        match spend {
            Spend::Allowed => {}
            Spend::ByUid => {
                return Err(UdsError::withdraw_not_permitted(
                    "the customer is named by participant.uid; use the payment code",
                ));
            }
            Spend::ByPhoneDisabled => {
                return Err(UdsError::withdraw_not_permitted(
                    "spending points by phone number is disabled in the company settings",
                ));
            }
        }
        if points > balance {
            return Err(UdsError::insufficient_funds(
                customer.map_or(Decimal::ZERO, |c| c.points),
            ));
        }
        if points > max_points {
            return Err(UdsError::discount_limit_exceed(
                max_points,
                rates.max_scores,
            ));
        }
    }
    let cash = receipt.total - discount - points;
    let earning = (base - discount - points).max(Decimal::ZERO);
    let cashback = match customer {
        Some(_) => floor_money(share(earning, rates.cashback)?),
        None => Decimal::ZERO,
    };
    Ok(Figures {
        total: receipt.total,
        skip: receipt.skip,
        unredeemable: receipt.unredeemable,
        discount,
        max_points,
        points,
        cash,
        cashback,
        max_scores_discount: rates.max_scores,
    })
}

/// `amount × rate %`, unrounded.
pub(super) fn share(amount: Decimal, rate: Decimal) -> Result<Decimal, UdsError> {
    amount
        .checked_mul(rate)
        .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED))
        .ok_or_else(UdsError::out_of_range)
}

/// `part` as a percentage of `whole`, rounded half up; 0 when `whole` is 0.
pub(super) fn percent_of(part: Decimal, whole: Decimal) -> Decimal {
    if whole <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    part.checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|x| x.checked_div(whole))
        .map_or(Decimal::ZERO, round_money)
}
