//! A stateful emulator of the Premium Bonus (PB) API, following the repository's
//! `docs/vendors/premiumbonus.md` (premiumbonus.md below).
//!
//! Every method is `POST /<method>` with a JSON body and the header `Authorization: <token>`
//! (the bare token, no `Bearer`). Every answer is a JSON object with `"success": true|false`
//! and `"logger"` (a fresh 8-character request id); a refusal is HTTP 400
//! `{"success": false, "error_description": "…", "logger": "…"}`.
//!
//! Emulated methods: `/buyer-info`, `/buyer-register`, `/buyer-edit`, `/send-register-code`,
//! `/send-write-off-confirmation-code`, `/verify-confirmation-code`, `/purchase-request`,
//! `/purchase-dry-run`, `/purchase`, `/purchase-info`, `/change-purchase-status`, `/cancel-purchase`,
//! `/edit-purchase`. Anything else (another path, or a method other than POST) is HTTP 404
//! `{"success": false, "error_description": "Unknown method …"}`.
//!
//! # Model
//!
//! * Money and bonuses are `rust_decimal`, read from the exact text of JSON numbers and written
//!   as JSON numbers with two decimals (`500.00`); 1 bonus = 1 ruble.
//! * A buyer has one active `balance` (spendable, may go negative after a cancel or an edit
//!   takes back bonuses that were already spent) and `bonus_inactive`: the bonuses a
//!   `not_approved` purchase will credit once it is approved.
//! * One buyer group ("Базовая"), no promotions, no promo codes, no bonus expiry.
//!
//! # Calculation (`/purchase-dry-run`, `/purchase`)
//!
//! * `purchase_amount` = Σ item `amount` (the line amount; it is taken as already net of any
//!   external discount).
//! * The maximum write-off is min(balance, `max_write_off_percent` % of `purchase_amount`),
//!   rounded down to 0.01 and never below 0. A `write_off_bonus` above it is refused, naming the
//!   maximum and what made it. No answer reports the maximum: premiumbonus.md says
//!   `/purchase-request` tells "the maximum benefit" but names no field for it, and this
//!   emulator answers only documented fields. So `/purchase-request` (the dry run's body; no
//!   `write_off_bonus`) checks the buyer and the items like a dry run and answers only
//!   `success` and `logger`; a mapping must find a spend PB accepts without the maximum.
//! * The write-off is spread over the items in proportion to their `amount`, to the kopeck, by
//!   largest remainder (ties to the earlier item): the parts add up to exactly the write-off.
//! * Each item earns floor₀.₀₁(`earn_percent` % × (amount − its write-off));
//!   `total_write_on_bonus` is the sum of the items' figures.
//! * `payment_amount` = `purchase_amount` − write-off, per item and in total.
//! * Answer items echo the documented item fields and add `write_off_bonus`, `write_on_bonus`
//!   and `payment_amount` per item [inferred: premiumbonus.md documents these only as receipt
//!   totals, and `include: ["items_write_on_bonus"]` as a dry-run option; the mapping spreads
//!   the total itself when items lack `write_off_bonus`].
//!
//! # Where premiumbonus.md is silent, this emulator decides
//!
//! Transport
//! * Statuses: 200 for `success: true`; 400 for every `success: false`, authorization failures
//!   included (the documented statuses are 200/400/429/500, there is no 401); 429 when rate
//!   limited or under [`Fault::Throttle`], with `Retry-After: 1`; 404 for an unknown method.
//!   A body over 1 MiB is 400 too (no 413 in the documented set).
//! * Order of checks: the request is recorded; faults act; the rate limit
//!   ([`PbSettings::requests_per_second`], a sliding one-second window over the requests it
//!   let through, so a refused request does not count); routing (404); authorization; the
//!   body. So even a 404 or an unauthorized request uses up the rate limit, as at a front proxy.
//! * Authorization: a missing header, an `Authorization: Bearer …` header (refused with a hint
//!   to drop the prefix) and a wrong token are refused alike with 400. The token is compared in
//!   constant time and never logged.
//! * An empty body counts as `{}`; a body that is not a JSON object is refused.
//! * Faults ([`Fault`]) act after the request is recorded and before anything else, so a
//!   faulted request never changes state ([`Fault::Delay`] waits, then processes normally).
//!   [`Fault::Http500`] is HTTP 500 with the usual JSON error body; [`Fault::Garbage`] is HTTP
//!   200 with an HTML body; [`Fault::Throttle`] is HTTP 429 with the usual JSON error body.
//! * [`PremiumBonusSandbox::requests`] keeps the last 10,000 requests;
//!   [`PremiumBonusSandbox::calls`] counts every request. A body that is not JSON is recorded as
//!   a JSON string of its text; an empty or oversized body as `null`.
//!
//! Request fields
//! * Phone fields must be JSON strings matching `^7\d{10}$` exactly; anything else (a number, a
//!   `+`, spaces, a leading 8) is refused, naming the value. An empty string counts as absent.
//! * Money fields (`amount`, `discount`, `write_off_bonus`, `purchase_amount`) must be JSON
//!   numbers from 0 to 10¹² with at most 2 decimals (a third decimal is a mapping bug, so it is
//!   refused rather than rounded). `quantity` must be above 0 and at most 10⁹.
//! * Items need `name` (non-empty string), `amount` and `quantity`; `external_item_id` is a
//!   string or a number, echoed as given; `discount` defaults to 0. `type`, `groups`, `tags` and
//!   the other documented fields (`sale_point_id`, `cashier_name`, `promocode`, …) are accepted
//!   and ignored, except that in dry runs and purchases `sale_point_id` must be a UUID when
//!   given, and in `/purchase` `cashier_name` must be a string.
//! * `total_discount_external` is the receipt-level `discount` when given, else the sum of the
//!   items' `discount`; discounts are echoed, never subtracted. `total_discount_premiumbonus` is
//!   always 0 (no promotions). `print_on_check` is always "Спасибо за покупку!".
//!
//! Buyers
//! * `identificator` is read as a phone when it matches `^7\d{10}$`, as an email when it holds
//!   `@` (compared case-insensitively), and as a card number otherwise. An identificator that is
//!   plainly a badly written phone (it starts with `+`, or is 10–11 digits with spaces, dashes
//!   or brackets) is refused like a bad phone. `/buyer-info` also accepts `phone` instead of
//!   `identificator`, and `external_id` alone (then `identificator_type` is `"external_id"`);
//!   with both, `identificator` wins.
//! * `/buyer-info` for an unknown buyer: HTTP 200 `{success: true, is_registered: false,
//!   identificator_type, registration_confirmation_required, write_off_confirmation_required}`.
//!   A blocked buyer is found normally, with `blocked: true`.
//! * Profiles: `client_id` is a UUID v5 of the phone (stable across runs; random for a seeded
//!   buyer without a phone), `group_id` a fixed
//!   UUID, `balance_bonus_accumulated` equals `balance`, `balance_bonus_present` and
//!   `balance_bonus_action` are 0 (one undivided balance; the welcome bonus is part of it),
//!   `bonus_inactive` as above, `is_allowed_change_card` is true. Absent text fields are `null`.
//! * `/buyer-register` checks, in order: field shapes (`birth_date` a real `YYYY-MM-DD` date,
//!   `gender` `male`|`female`, `email` with an `@`), phone already registered, card taken, email
//!   taken, `external_id` taken, then confirmation. It answers the profile with the welcome
//!   bonus as balance. Without `card_number` the buyer has no card.
//! * `/buyer-edit` finds the buyer by `phone`; a field that is absent or `null` is kept, `""`
//!   clears it, a value replaces it (with the same checks and uniqueness as registration).
//!   `phone_checked` is stored. It answers the profile. Blocked buyers can be edited.
//!
//! Confirmation codes
//! * A code is 4 digits, valid 5 minutes; a new code for a phone replaces the previous one.
//!   Both sending methods share one limit: 3 codes per phone in any 60 s (refusals do not
//!   count). `/send-register-code` also works for a registered phone (to confirm it);
//!   `/send-write-off-confirmation-code` needs a registered, unblocked buyer, and its
//!   `purchase_amount` and `write_off_bonus` are checked for shape only.
//! * `/verify-confirmation-code` takes the code as a string (or a number, compared by its
//!   text). A right code is consumed and marks the phone verified for 10 minutes, for
//!   registration and for write-offs alike; the verification is not consumed by using it. A
//!   wrong code says "wrong code" and how many attempts are left; the 5th wrong attempt burns
//!   the code. No code, an expired code and a burnt code are refused with their own reason.
//!
//! Purchases
//! * A purchase names its buyer by `phone`, else `identificator` (one is required). An unknown
//!   buyer makes an anonymous purchase: success, no bonuses, `balance: 0.00`, maximum write-off
//!   0 (so a `write_off_bonus` above 0 is refused). A blocked buyer is refused. Dry runs follow
//!   the same rules and never need a confirmation.
//! * `/purchase`: `external_purchase_id` and at least one item are required; `purchase_status`
//!   defaults to `approved`. A repeated `external_purchase_id` returns the first answer
//!   verbatim (the new body is not compared; only `logger` is new), even after the purchase was
//!   edited or cancelled; `/purchase-info` shows the current state. With
//!   `write_off_confirmation_required`, a `write_off_bonus` above 0 needs the buyer's phone
//!   verified in the last 10 minutes.
//! * `approved`: the write-off is debited and the write-on credited at once. `not_approved`:
//!   the write-off is debited at once (so it cannot be spent twice), the write-on waits in
//!   `bonus_inactive`; `/change-purchase-status {purchase_id|external_purchase_id, status:
//!   "approved"}` credits it. Setting the status a purchase already has is a success with no
//!   effect; `approved` → `not_approved` is refused, and so is any status request for a
//!   cancelled purchase.
//! * Purchases are found by `purchase_id` (a UUID) or `external_purchase_id`; when both are
//!   given they must name the same purchase. `/purchase-info` answers like `/purchase` with the
//!   current figures, the buyer's current balance, and `purchase_status` `"cancelled"` once
//!   cancelled.
//! * `/cancel-purchase` puts the write-off back, takes the write-on back (from the balance, or
//!   from `bonus_inactive` if not approved; the balance may go negative) and answers the purchase
//!   with `purchase_status: "cancelled"`. A repeated cancel succeeds and returns the first cancel
//!   answer verbatim, with no second effect.
//! * `/edit-purchase` takes the items that remain (an empty list returns everything). Items are
//!   matched by `external_item_id`, or by `name` for items without one; per item, the remaining
//!   quantity and amount may not exceed what the purchase holds now (edits only shrink). The
//!   new write-off is the original write-off × remaining amount / original amount, rounded to
//!   the write-off is what `write_off_bonus` says, else the current write-off stays whole on
//!   the remaining items (the behaviour issue #24 reports of PB; premiumbonus.md is silent).
//!   It may not rise above the current write-off, nor above the cap a purchase of the
//!   remaining items has (`max_write_off_percent` % of their amount, rounded down to 0.01):
//!   so returning most of a purchase that spent bonuses, without naming the smaller
//!   write-off, is refused. Write-on is recomputed on the new
//!   paid amounts with the purchase's own earn percent (the settings at purchase time), never
//!   above the current write-on. The difference is given back / taken back at once (from
//!   `bonus_inactive` if not approved). A `discount` replaces the receipt discount. An empty
//!   list with `write_off_bonus: 0` gives back exactly the write-off and takes back exactly
//!   the write-on. Edits of a cancelled purchase are refused.

mod buyers;
mod codes;
mod errors;
mod parse;
mod purchases;
mod receipt;
mod routes;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;
use uuid::Uuid;

use self::buyers::{Buyer, BuyerId, client_id};
use self::codes::PendingCode;
use self::errors::PbError;
use self::parse::{non_empty, required_phone};
use self::purchases::Purchase;
use self::receipt::receipt_json;
use self::routes::{Op, handle};
pub use crate::harness::Fault;
use crate::harness::{self, Locked, Traffic};
use crate::phone::russian_mobile;

/// The window of [`PbSettings::requests_per_second`].
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// A confirmation code is valid this long after it is sent.
const CODE_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// A verified phone counts as verified this long.
const VERIFIED_FOR: Duration = Duration::from_secs(10 * 60);
/// At most [`CODES_PER_WINDOW`] codes per phone within this window.
const CODE_WINDOW: Duration = Duration::from_secs(60);
const CODES_PER_WINDOW: usize = 3;
/// The wrong attempt that burns a code.
const MAX_WRONG_ATTEMPTS: u32 = 5;
const PRINT_ON_CHECK: &str = "Спасибо за покупку!";
const GROUP_NAME: &str = "Базовая";

/// A buyer to seed with [`PremiumBonusSandbox::add_buyer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PbBuyer {
    /// Any format (`+7 999 000-00-01`, `89990000001`, …); stored as `7XXXXXXXXXX`.
    pub phone: Option<String>,
    /// Unique.
    pub card_number: Option<String>,
    pub surname: Option<String>,
    pub name: Option<String>,
    pub middle_name: Option<String>,
    /// `YYYY-MM-DD`, stored as given.
    pub birth_date: Option<String>,
    /// `"male"` or `"female"`, stored as given.
    pub gender: Option<String>,
    pub email: Option<String>,
    pub external_id: Option<String>,
    /// Active bonuses.
    pub balance: Decimal,
    pub blocked: bool,
    pub phone_checked: bool,
}

/// Programme settings; [`Default`] is what [`PremiumBonusSandbox::new`] starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbSettings {
    /// Registration needs a verified phone or `phone_checked: true` (default false).
    pub registration_confirmation_required: bool,
    /// A purchase that writes off bonuses needs a verified phone (default false).
    pub write_off_confirmation_required: bool,
    /// Percent of the paid item amount earned as bonuses (default 5).
    pub earn_percent: Decimal,
    /// At most this percent of the purchase amount may be paid with bonuses (default 50;
    /// clamped to 0–100).
    pub max_write_off_percent: Decimal,
    /// Bonuses credited by `/buyer-register` (default 0).
    pub welcome_bonus: Decimal,
    /// When set, requests beyond this many in any one second get HTTP 429 (default none).
    pub requests_per_second: Option<u32>,
}

impl Default for PbSettings {
    fn default() -> Self {
        PbSettings {
            registration_confirmation_required: false,
            write_off_confirmation_required: false,
            earn_percent: Decimal::from(5),
            max_write_off_percent: Decimal::from(50),
            welcome_bonus: Decimal::ZERO,
            requests_per_second: None,
        }
    }
}

/// The Premium Bonus emulator. Cheap to clone: clones share one state, so a test keeps a clone
/// to seed data and inspect effects while another clone serves.
#[derive(Clone)]
pub struct PremiumBonusSandbox {
    shared: Arc<Shared>,
}

impl fmt::Debug for PremiumBonusSandbox {
    /// Never shows the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PremiumBonusSandbox")
            .finish_non_exhaustive()
    }
}

impl PremiumBonusSandbox {
    /// An empty sandbox (no buyers, default settings) that accepts requests carrying
    /// `Authorization: <token>`.
    pub fn new(token: impl Into<String>) -> Self {
        PremiumBonusSandbox {
            shared: Arc::new(Shared {
                token: token.into(),
                state: Locked::new(State::default()),
            }),
        }
    }

    /// A sandbox seeded for demos and black-box tests, with default settings.
    ///
    /// | phone       | card      | external_id | name                  | balance | blocked |
    /// |-------------|-----------|-------------|-----------------------|---------|---------|
    /// | 79990000001 | `PB-0001` | `demo-1`    | Иванов Иван Иванович  | 500.00  | no      |
    /// | 79990000002 | `PB-0002` | `demo-2`    | Петрова Мария         | 0.00    | no      |
    /// | 79990000009 | `PB-0009` | `demo-9`    | Сидоров Пётр          | 100.00  | yes     |
    ///
    /// Иванов is male, born 1985-03-14, email `ivanov@example.com`, phone checked; Петрова is
    /// female, email `petrova@example.com`; Сидоров has no email or birth date.
    pub fn with_demo_data(token: impl Into<String>) -> Self {
        let sandbox = PremiumBonusSandbox::new(token);
        let some = |s: &str| Some(s.to_owned());
        sandbox.add_buyer(PbBuyer {
            phone: some("79990000001"),
            card_number: some("PB-0001"),
            surname: some("Иванов"),
            name: some("Иван"),
            middle_name: some("Иванович"),
            birth_date: some("1985-03-14"),
            gender: some("male"),
            email: some("ivanov@example.com"),
            external_id: some("demo-1"),
            balance: Decimal::new(50_000, 2),
            blocked: false,
            phone_checked: true,
        });
        sandbox.add_buyer(PbBuyer {
            phone: some("79990000002"),
            card_number: some("PB-0002"),
            surname: some("Петрова"),
            name: some("Мария"),
            gender: some("female"),
            email: some("petrova@example.com"),
            external_id: some("demo-2"),
            balance: Decimal::new(0, 2),
            ..PbBuyer::default()
        });
        sandbox.add_buyer(PbBuyer {
            phone: some("79990000009"),
            card_number: some("PB-0009"),
            surname: some("Сидоров"),
            name: some("Пётр"),
            external_id: some("demo-9"),
            balance: Decimal::new(10_000, 2),
            blocked: true,
            ..PbBuyer::default()
        });
        sandbox
    }

    /// Adds a buyer. A seeded buyer replaces every existing buyer that shares its phone, card,
    /// email or external_id, so a test can reset a demo buyer without duplicates (the API
    /// itself refuses duplicates). A phone that is not a Russian mobile number is kept as its
    /// digits, and the buyer can then be found by card, email or external_id only.
    pub fn add_buyer(&self, b: PbBuyer) {
        let phone = b.phone.as_deref().and_then(|raw| {
            russian_mobile(raw).or_else(|| {
                let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
                (!digits.is_empty()).then_some(digits)
            })
        });
        let record = Buyer {
            client_id: client_id(phone.as_deref()),
            phone,
            card_number: non_empty(b.card_number),
            surname: non_empty(b.surname),
            name: non_empty(b.name),
            middle_name: non_empty(b.middle_name),
            birth_date: non_empty(b.birth_date),
            gender: non_empty(b.gender),
            email: non_empty(b.email),
            external_id: non_empty(b.external_id),
            balance: b.balance,
            inactive: Decimal::ZERO,
            blocked: b.blocked,
            phone_checked: b.phone_checked,
        };
        let mut state = self.shared.lock();
        for slot in &mut state.buyers {
            if slot.as_ref().is_some_and(|old| old.collides_with(&record)) {
                *slot = None;
            }
        }
        state.buyers.push(Some(record));
    }

    /// Replaces the programme settings; they apply to the next request.
    pub fn set_settings(&self, s: PbSettings) {
        self.shared.lock().settings = s;
    }

    /// Active balance of the buyer with this phone (any format), for test assertions.
    pub fn balance(&self, phone: &str) -> Option<Decimal> {
        let phone = russian_mobile(phone)?;
        let state = self.shared.lock();
        state
            .find_buyer(|b| b.phone.as_deref() == Some(phone.as_str()))
            .and_then(|id| state.buyer(id))
            .map(|b| b.balance)
    }

    /// Whether the buyer with this phone (any format) is stored with `phone_checked` (given at
    /// registration or edit, or set by a verification before registering), for test assertions.
    pub fn phone_checked(&self, phone: &str) -> Option<bool> {
        let phone = russian_mobile(phone)?;
        let state = self.shared.lock();
        state
            .find_buyer(|b| b.phone.as_deref() == Some(phone.as_str()))
            .and_then(|id| state.buyer(id))
            .map(|b| b.phone_checked)
    }

    /// The last code sent to this phone (any format) by `/send-register-code` or
    /// `/send-write-off-confirmation-code`, even if it was used since.
    pub fn last_code(&self, phone: &str) -> Option<String> {
        let phone = russian_mobile(phone)?;
        self.shared.lock().last_codes.get(&phone).cloned()
    }

    /// How many requests reached `method` (`"/purchase"`; the leading slash may be left out),
    /// refused, faulted and rate-limited ones included.
    pub fn calls(&self, method: &str) -> usize {
        self.shared.lock().traffic.calls(method)
    }

    /// Every `(path, body)` received, oldest first (the last 10,000). A body that is not JSON is
    /// a JSON string of its text; an empty or oversized body is `null`.
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.shared.lock().traffic.requests()
    }

    /// Injects `fault` into every following request, or stops injecting with `None`.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared.lock().traffic.set_fault(fault);
    }

    /// Serves the API on `listener` (HTTP/1.1 and h2c) until `shutdown` resolves, then stops
    /// accepting and gives in-flight requests up to 5 s to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let shared = self.shared;
        let handler = move |req| {
            let shared = shared.clone();
            async move { handle(&shared, req).await }
        };
        harness::serve(listener, "premiumbonus-sandbox", handler, shutdown).await
    }
}

struct Shared {
    token: String,
    state: Locked<State>,
}

#[derive(Default)]
struct State {
    settings: PbSettings,
    buyers: Vec<Option<Buyer>>,
    purchases: Vec<Purchase>,
    by_external_id: HashMap<String, usize>,
    by_purchase_id: HashMap<Uuid, usize>,
    /// The code each phone may verify now.
    codes: HashMap<String, PendingCode>,
    /// When codes were sent, by phone, within the last minute.
    codes_sent: HashMap<String, VecDeque<Instant>>,
    last_codes: HashMap<String, String>,
    /// When each phone was last verified.
    verified: HashMap<String, Instant>,
    /// Requests let through within the last second (only when rate limited).
    admitted: VecDeque<Instant>,
    /// `(path, body)` of every request, and the fault to inject.
    traffic: Traffic<(String, Value)>,
}

impl State {
    /// Sliding-window rate limit: true when this request may go through.
    fn admit(&mut self, limit: u32, now: Instant) -> bool {
        while self
            .admitted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= RATE_WINDOW)
        {
            self.admitted.pop_front();
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if self.admitted.len() >= limit {
            return false;
        }
        self.admitted.push_back(now);
        true
    }

    fn buyer(&self, id: BuyerId) -> Option<&Buyer> {
        self.buyers.get(id).and_then(Option::as_ref)
    }

    fn buyer_mut(&mut self, id: Option<BuyerId>) -> Option<&mut Buyer> {
        self.buyers.get_mut(id?).and_then(Option::as_mut)
    }

    fn find_buyer(&self, pred: impl Fn(&Buyer) -> bool) -> Option<BuyerId> {
        self.buyers
            .iter()
            .position(|slot| slot.as_ref().is_some_and(&pred))
    }

    fn find_by_phone(&self, phone: &str) -> Option<BuyerId> {
        self.find_buyer(|b| b.phone.as_deref() == Some(phone))
    }

    fn is_verified(&self, phone: &str, now: Instant) -> bool {
        self.verified
            .get(phone)
            .is_some_and(|at| now.saturating_duration_since(*at) < VERIFIED_FOR)
    }

    fn apply(
        &mut self,
        op: Op,
        request: &Map<String, Value>,
        now: Instant,
    ) -> Result<Map<String, Value>, PbError> {
        match op {
            Op::BuyerInfo => self.buyer_info(request),
            Op::BuyerRegister => self.buyer_register(request, now),
            Op::BuyerEdit => self.buyer_edit(request),
            Op::SendRegisterCode => {
                let phone = required_phone(request, "phone")?;
                self.send_code(phone, now)
            }
            Op::SendWriteOffConfirmationCode => self.send_write_off_code(request, now),
            Op::VerifyConfirmationCode => self.verify_code(request, now),
            // The documented fields only: the maximum it tells has no documented name.
            Op::PurchaseRequest => {
                let mut asked = request.clone();
                asked.remove("write_off_bonus");
                self.quote(&asked)?;
                Ok(Map::new())
            }
            Op::PurchaseDryRun => {
                let quote = self.quote(request)?;
                Ok(receipt_json(&quote.items, quote.discount, quote.balance))
            }
            Op::Purchase => self.purchase(request, now),
            Op::PurchaseInfo => {
                let index = self.find_purchase(request)?;
                Ok(self.purchase_answer(index))
            }
            Op::ChangePurchaseStatus => self.change_purchase_status(request),
            Op::CancelPurchase => self.cancel_purchase(request),
            Op::EditPurchase => self.edit_purchase(request),
        }
    }
}
