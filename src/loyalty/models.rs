//! Typed LoyaltyAPI 1.0 bodies (see `SPEC.md`), parsed once at the edge.
//!
//! Incoming structs tolerate unknown fields (MoySklad adds fields over time) and declare as
//! required only what SPEC.md requires; value rules beyond types live in [`super::validate`].
//! Money is [`Rubles`]/[`Kopecks`], quantities, percents and points are exact decimals.

use std::fmt;

use chrono::NaiveDateTime;
use chrono::format::{Item, Parsed, StrftimeItems};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::amount::{Kopecks, Percent, Points, Quantity, Rubles};

// ---------------------------------------------------------------------------------------------
// Shared pieces

/// A MoySklad date-time, `"YYYY-MM-DD HH:MM:SS"` (no `T`, no zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsDateTime(pub NaiveDateTime);

/// [`MsDateTime::FORMAT`] read once: parsing the format string is most of the work of
/// `parse_from_str` and `format` on a string this short, and dates are in every sale.
static FORMAT_ITEMS: std::sync::LazyLock<Vec<Item<'static>>> = std::sync::LazyLock::new(|| {
    StrftimeItems::new(MsDateTime::FORMAT)
        .parse_to_owned()
        .expect("a valid format")
});

impl MsDateTime {
    pub const FORMAT: &'static str = "%Y-%m-%d %H:%M:%S";

    pub fn parse(text: &str) -> Option<Self> {
        // chrono accepts one-digit fields; MoySklad's format is fixed-width, so check the length too.
        if text.len() != 19 {
            return None;
        }
        // `NaiveDateTime::parse_from_str`, with the format's items ready.
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, text, FORMAT_ITEMS.iter()).ok()?;
        parsed.to_naive_datetime_with_offset(0).ok().map(MsDateTime)
    }
}

impl fmt::Display for MsDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format_with_items(FORMAT_ITEMS.iter()))
    }
}

impl Serialize for MsDateTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MsDateTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        MsDateTime::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid date `{text}`, expected \"YYYY-MM-DD HH:MM:SS\""
            ))
        })
    }
}

/// `{href, id}` of a MoySklad entity; `id` is what identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    pub id: String,
}

/// `meta` of `/counterparty/verify`: only `href` (a sync-id URL) is sent there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HrefMeta {
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A link that may be empty (`{"href":"","id":""}` or `{}`), e.g. a return's `demand.meta`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionalMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl OptionalMeta {
    /// The id, unless absent or blank.
    pub fn id(&self) -> Option<&str> {
        self.id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
    }
}

/// The point of sale, carried by every body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetailStore {
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Sex {
    Male,
    Female,
}

/// Whether the customer confirmed registration by code (`POST /counterparty` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusCheck {
    Unchecked,
    Checked,
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TransactionType {
    #[default]
    Earning,
    Spending,
}

/// Declares a struct carrying the customer fields of SPEC.md ("Customer object") plus `$extra`
/// fields. A macro rather than `#[serde(flatten)]`: flatten buffers the input, which loses the
/// JSON path of a bad field and breaks exact decimal parsing.
macro_rules! customer_struct {
    ($(#[$attr:meta])* pub struct $name:ident { $($(#[$fattr:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $($(#[$fattr])* pub $field: $ty,)*
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub discount_card_number: Option<String>,
            /// Free format, e.g. `"+7 555 123 4567"`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub phone: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub email: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub legal_first_name: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub legal_middle_name: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub legal_last_name: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub birth_date: Option<MsDateTime>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub sex: Option<Sex>,
        }
    };
}

customer_struct! {
    /// The customer (`agent`) inside recalc and sale bodies, echoed back by recalc.
    pub struct Customer {
        pub meta: Meta,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. POST /counterparty

customer_struct! {
    pub struct CounterpartyCreateRequest {
        pub retail_store: RetailStore,
        pub meta: Meta,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub sync_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub status_check: Option<StatusCheck>,
    }
}

// ---------------------------------------------------------------------------------------------
// 2. GET /counterparty?search=S&retailStoreId=R

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterpartySearchQuery {
    pub search: String,
    pub retail_store_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterpartySearchResponse {
    pub rows: Vec<CounterpartySearchRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterpartySearchRow {
    /// The loyalty system's customer id (a GUID).
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms_id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_card_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<MsDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<Sex>,
}

// ---------------------------------------------------------------------------------------------
// 3. POST /counterparty/detail

customer_struct! {
    pub struct CounterpartyDetailRequest {
        pub retail_store: RetailStore,
        pub meta: Meta,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterpartyDetailResponse {
    pub bonus_program: BonusBalance,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BonusBalance {
    pub agent_bonus_balance: Points,
}

// ---------------------------------------------------------------------------------------------
// 4. POST /counterparty/verify and 6. POST /retaildemand/verify

customer_struct! {
    pub struct CounterpartyVerifyRequest {
        pub retail_store: RetailStore,
        pub meta: HrefMeta,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetaildemandVerifyRequest {
    pub retail_store: RetailStore,
    /// MoySklad id of the customer.
    pub counterparty_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// Answer of both verify endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationResponse {
    pub verification_code: String,
    /// Seconds before the cashier may ask for a new code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_for_repeat: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_for_cashier: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// 5. POST /retaildemand/recalc

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdType {
    Native,
    Sync,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssortmentMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_type: Option<IdType>,
    /// `product`, `variant`, `service`, `bundle`, …
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assortment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_id: Option<String>,
    pub meta: AssortmentMeta,
}

/// A serial number of a position (`sn[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialNumber {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecalcPosition {
    pub assortment: Assortment,
    pub quantity: Quantity,
    pub price: Rubles,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sn: Option<Vec<SerialNumber>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<Pack>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecalcBonusRequest {
    #[serde(default)]
    pub transaction_type: TransactionType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecalcRequest {
    pub retail_store: RetailStore,
    pub agent: Customer,
    pub positions: Vec<RecalcPosition>,
    #[serde(default)]
    pub bonus_program: RecalcBonusRequest,
    /// Points the buyer wants to spend; top level, not inside `bonusProgram`. Absent with
    /// SPENDING means "the maximum this cart allows".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_bonus_to_spend: Option<Points>,
}

/// A recalc answer position: the request position with its discount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricedPosition {
    pub assortment: Assortment,
    pub quantity: Quantity,
    pub price: Rubles,
    /// 0–100, two decimals.
    pub discount_percent: Percent,
    pub discounted_price: Rubles,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sn: Option<Vec<SerialNumber>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<Pack>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecalcBonusResult {
    pub transaction_type: TransactionType,
    pub agent_bonus_balance: Points,
    pub bonus_value_to_spend: Points,
    pub bonus_value_to_earn: Points,
    pub agent_bonus_balance_after: Points,
    pub paid_by_bonus_points: Rubles,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_extra_info: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecalcResponse {
    pub agent: Customer,
    pub positions: Vec<PricedPosition>,
    pub bonus_program: RecalcBonusResult,
    pub need_verification: bool,
}

// ---------------------------------------------------------------------------------------------
// 7. POST /retaildemand and 8. POST /retailsalesreturn

/// A position of a recorded sale or return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SoldPosition {
    pub assortment: Assortment,
    pub quantity: Quantity,
    pub price: Rubles,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_percent: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discounted_price: Option<Rubles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sn: Option<Vec<SerialNumber>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleBonus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bonus_value_to_spend: Option<Points>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bonus_value_to_earn: Option<Points>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GiftCardPayment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The card number.
    pub name: String,
    pub payment_sum: Kopecks,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleRequest {
    pub retail_store: RetailStore,
    /// The sale's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moment: Option<MsDateTime>,
    /// The sale's id: idempotency key and the link later returns use. Must not be empty.
    pub meta: Meta,
    /// Absent for an anonymous sale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Customer>,
    pub positions: Vec<SoldPosition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bonus_program: Option<SaleBonus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cash_sum: Option<Rubles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_cash_sum: Option<Rubles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gift_cards: Option<Vec<GiftCardPayment>>,
}

/// The return's `agent`: only `{id, href}`, or `{}` (not a customer object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemandRef {
    #[serde(default)]
    pub meta: OptionalMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnRequest {
    pub retail_store: RetailStore,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moment: Option<MsDateTime>,
    /// The return's own id. Must not be empty.
    pub meta: Meta,
    /// The original sale; may be empty (a return without a linked sale).
    #[serde(default)]
    pub demand: DemandRef,
    #[serde(default)]
    pub agent: AgentRef,
    pub positions: Vec<SoldPosition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cash_sum: Option<Rubles>,
    /// Documented as kopecks, unlike the sale's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_cash_sum: Option<Kopecks>,
}

// ---------------------------------------------------------------------------------------------
// 9. GET /giftcard?name=N&retailStoreId=R

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GiftCardQuery {
    pub name: String,
    pub retail_store_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GiftCardStatus {
    CanBeUsed,
    PartiallyRedeemed,
    Expired,
    Redeemed,
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GiftCardResponse {
    /// The number asked for.
    pub name: String,
    pub id: String,
    pub status: GiftCardStatus,
    /// UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_date: Option<MsDateTime>,
    /// Required for CAN_BE_USED and PARTIALLY_REDEEMED. A number, not a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_balance: Option<Kopecks>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_balance: Option<Kopecks>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_and_write_as_moysklad_writes_them() {
        let date = MsDateTime::parse("2026-03-09 07:05:00").expect("valid");
        assert_eq!(date.to_string(), "2026-03-09 07:05:00");
        assert_eq!(
            date.0,
            NaiveDateTime::parse_from_str("2026-03-09 07:05:00", MsDateTime::FORMAT).unwrap()
        );
        for bad in [
            "2026-3-09 07:05:00",   // one-digit month
            "2026-03-09T07:05:00",  // ISO's T
            "2026-02-30 07:05:00",  // no such day
            "2026-03-09 24:00:00",  // no such hour
            "2026-03-09 07:05:00Z", // a zone
            "",
        ] {
            assert_eq!(MsDateTime::parse(bad), None, "{bad}");
        }
    }
}
