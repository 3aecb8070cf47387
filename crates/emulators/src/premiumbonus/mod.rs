//! A stateful emulator of the Premium Bonus (PB) API, following `docs/vendors/premiumbonus.md`.
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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chrono::NaiveDate;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;
use uuid::Uuid;

pub use crate::harness::Fault;
use crate::harness::auth::secret_matches;
use crate::harness::http::{DroppedConnection, MAX_BODY_BYTES, json_response, read_body};
use crate::harness::{self, FaultAnswers, Locked, Traffic, inject};

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

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

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
            normalize_phone(raw).or_else(|| {
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
        let phone = normalize_phone(phone)?;
        let state = self.shared.lock();
        state
            .find_buyer(|b| b.phone.as_deref() == Some(phone.as_str()))
            .and_then(|id| state.buyer(id))
            .map(|b| b.balance)
    }

    /// Whether the buyer with this phone (any format) is stored with `phone_checked` (given at
    /// registration or edit, or set by a verification before registering), for test assertions.
    pub fn phone_checked(&self, phone: &str) -> Option<bool> {
        let phone = normalize_phone(phone)?;
        let state = self.shared.lock();
        state
            .find_buyer(|b| b.phone.as_deref() == Some(phone.as_str()))
            .and_then(|id| state.buyer(id))
            .map(|b| b.phone_checked)
    }

    /// The last code sent to this phone (any format) by `/send-register-code` or
    /// `/send-write-off-confirmation-code`, even if it was used since.
    pub fn last_code(&self, phone: &str) -> Option<String> {
        let phone = normalize_phone(phone)?;
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

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

struct Shared {
    token: String,
    state: Locked<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// `Authorization: <token>`, compared in constant time.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), PbError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(PbError::new(
                "Authorization header is required: Authorization: <API token>",
            ));
        };
        let bytes = value.as_bytes();
        if bytes.len() >= 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ") {
            return Err(PbError::new(
                "Invalid authorization: send the API token without the \"Bearer\" prefix \
                 (Authorization: <API token>)",
            ));
        }
        if secret_matches(bytes, self.token.as_bytes()) {
            Ok(())
        } else {
            Err(PbError::new("Invalid API token"))
        }
    }

    /// Everything after the faults, synchronously: the state lock is never held across an
    /// `.await`.
    fn dispatch(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Body,
        logger: &str,
        now: Instant,
    ) -> Response<Full<Bytes>> {
        let mut state = self.lock();
        if let Some(limit) = state.settings.requests_per_second {
            if !state.admit(limit, now) {
                tracing::debug!(path, "premiumbonus sandbox: rate limited");
                return too_many_requests(
                    &format!("Too many requests: at most {limit} per second"),
                    logger,
                );
            }
        }
        let Some(op) = Op::route(method, path) else {
            tracing::debug!(%method, path, "premiumbonus sandbox: unknown method");
            return failure(
                StatusCode::NOT_FOUND,
                &format!("Unknown method {method} {}", shorten(path)),
                logger,
            );
        };
        if let Err(err) = self.authorize(headers) {
            tracing::debug!(path, "premiumbonus sandbox: authorization refused");
            return failure(StatusCode::BAD_REQUEST, &err.description, logger);
        }
        let result = match body {
            Body::Object(request) => state.apply(op, &request, now),
            Body::NotObject => Err(PbError::new("The body must be a JSON object")),
            Body::NotJson => Err(PbError::new("The body is not valid JSON")),
            Body::TooLarge => Err(PbError::new(format!(
                "The body is over {MAX_BODY_BYTES} bytes"
            ))),
        };
        match result {
            Ok(mut answer) => {
                answer.insert("success".into(), Value::Bool(true));
                answer.insert("logger".into(), Value::String(logger.to_owned()));
                json_response(StatusCode::OK, &Value::Object(answer))
            }
            Err(err) => {
                tracing::debug!(path, error = %err, "premiumbonus sandbox: refused");
                failure(StatusCode::BAD_REQUEST, &err.description, logger)
            }
        }
    }
}

/// The methods the sandbox emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    BuyerInfo,
    BuyerRegister,
    BuyerEdit,
    SendRegisterCode,
    SendWriteOffConfirmationCode,
    VerifyConfirmationCode,
    PurchaseRequest,
    PurchaseDryRun,
    Purchase,
    PurchaseInfo,
    ChangePurchaseStatus,
    CancelPurchase,
    EditPurchase,
}

impl Op {
    const ALL: [Op; 13] = [
        Op::BuyerInfo,
        Op::BuyerRegister,
        Op::BuyerEdit,
        Op::SendRegisterCode,
        Op::SendWriteOffConfirmationCode,
        Op::VerifyConfirmationCode,
        Op::PurchaseRequest,
        Op::PurchaseDryRun,
        Op::Purchase,
        Op::PurchaseInfo,
        Op::ChangePurchaseStatus,
        Op::CancelPurchase,
        Op::EditPurchase,
    ];

    fn path(self) -> &'static str {
        match self {
            Op::BuyerInfo => "/buyer-info",
            Op::BuyerRegister => "/buyer-register",
            Op::BuyerEdit => "/buyer-edit",
            Op::SendRegisterCode => "/send-register-code",
            Op::SendWriteOffConfirmationCode => "/send-write-off-confirmation-code",
            Op::VerifyConfirmationCode => "/verify-confirmation-code",
            Op::PurchaseRequest => "/purchase-request",
            Op::PurchaseDryRun => "/purchase-dry-run",
            Op::Purchase => "/purchase",
            Op::PurchaseInfo => "/purchase-info",
            Op::ChangePurchaseStatus => "/change-purchase-status",
            Op::CancelPurchase => "/cancel-purchase",
            Op::EditPurchase => "/edit-purchase",
        }
    }

    fn route(method: &Method, path: &str) -> Option<Op> {
        if method != Method::POST {
            return None;
        }
        Op::ALL.into_iter().find(|op| op.path() == path)
    }
}

/// A request body as the methods see it.
enum Body {
    Object(Map<String, Value>),
    NotObject,
    NotJson,
    TooLarge,
}

/// Reads a collected body (`None`: over the limit) as the methods see it, and as it is recorded.
fn parse_body(bytes: Option<&[u8]>) -> (Body, Value) {
    let Some(bytes) = bytes else {
        return (Body::TooLarge, Value::Null);
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        let recorded = if bytes.is_empty() {
            Value::Null
        } else {
            Value::Object(Map::new())
        };
        return (Body::Object(Map::new()), recorded);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => {
            let recorded = Value::Object(map.clone());
            (Body::Object(map), recorded)
        }
        Ok(other) => (Body::NotObject, other),
        Err(_) => (
            Body::NotJson,
            Value::String(String::from_utf8_lossy(bytes).into_owned()),
        ),
    }
}

async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DroppedConnection> {
    let (parts, incoming) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let collected = read_body(incoming).await?;
    let (body, recorded) = parse_body(collected.as_deref());
    let logger = new_logger();
    let fault = shared
        .lock()
        .traffic
        .record(&path, (path.clone(), recorded));
    let faults = PbFaults { logger: &logger };
    if let Some(answer) = inject(fault, &faults).await? {
        return Ok(answer);
    }
    Ok(shared.dispatch(
        &parts.method,
        &path,
        &parts.headers,
        body,
        &logger,
        Instant::now(),
    ))
}

/// `{"success": false, "error_description", "logger"}` with `status`.
fn failure(status: StatusCode, description: &str, logger: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"success": false, "error_description": description, "logger": logger}),
    )
}

fn too_many_requests(description: &str, logger: &str) -> Response<Full<Bytes>> {
    let mut response = failure(StatusCode::TOO_MANY_REQUESTS, description, logger);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Premium Bonus's own answers to the faults: its failure body, with the request's logger.
struct PbFaults<'a> {
    logger: &'a str,
}

impl FaultAnswers for PbFaults<'_> {
    fn server_error(&self) -> Response<Full<Bytes>> {
        failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error",
            self.logger,
        )
    }

    fn throttled(&self) -> Response<Full<Bytes>> {
        too_many_requests("Too many requests, try again later", self.logger)
    }

    fn too_many_requests(&self, retry_after: Option<HeaderValue>) -> Response<Full<Bytes>> {
        let mut response = self.throttled();
        let headers = response.headers_mut();
        match retry_after {
            Some(value) => headers.insert(header::RETRY_AFTER, value),
            None => headers.remove(header::RETRY_AFTER),
        };
        response
    }
}

/// A request id: 8 characters `[A-Za-z0-9]` from the OS random source behind uuid v4.
fn new_logger() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let base = ALPHABET.len() as u128;
    // The low 48 bits of a v4 UUID are all random; 62⁸ < 2⁴⁸.
    let mut n = Uuid::new_v4().as_u128();
    let mut id = String::with_capacity(8);
    for _ in 0..8 {
        let digit = usize::try_from(n % base).unwrap_or(0);
        id.push(char::from(ALPHABET.get(digit).copied().unwrap_or(b'0')));
        n /= base;
    }
    id
}

/// Four random digits, zero-padded ("0427").
fn random_code() -> String {
    let bytes = Uuid::new_v4().into_bytes();
    let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % 10_000;
    format!("{n:04}")
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A refusal: HTTP 400 `{"success": false, "error_description": …}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
struct PbError {
    description: String,
}

impl PbError {
    fn new(description: impl Into<String>) -> Self {
        PbError {
            description: description.into(),
        }
    }

    fn required(field: &str) -> Self {
        Self::new(format!("{field} is required"))
    }

    fn bad_phone(field: &str, value: &Value) -> Self {
        Self::new(format!(
            "{field} {} is not a valid phone: use 11 digits starting with 7 (7XXXXXXXXXX), \
             without a plus, spaces or other characters",
            shorten(&value.to_string())
        ))
    }

    fn too_large() -> Self {
        Self::new("An amount is too large")
    }

    fn buyer_not_found(phone: &str) -> Self {
        Self::new(format!("Buyer with phone {phone} is not registered"))
    }

    fn blocked() -> Self {
        Self::new("The buyer is blocked")
    }

    fn purchase_not_found(what: &str) -> Self {
        Self::new(format!("Purchase not found: {what}"))
    }
}

/// At most 64 characters of `text` in a message, so a huge value cannot bloat an answer.
fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// Index into `State::buyers`; stable because replaced buyers leave a `None` behind.
type BuyerId = usize;

#[derive(Debug, Clone)]
struct Buyer {
    client_id: Uuid,
    /// Digits, `7XXXXXXXXXX`.
    phone: Option<String>,
    card_number: Option<String>,
    surname: Option<String>,
    name: Option<String>,
    middle_name: Option<String>,
    birth_date: Option<String>,
    gender: Option<String>,
    email: Option<String>,
    external_id: Option<String>,
    /// Active, spendable; negative after bonuses already spent were taken back.
    balance: Decimal,
    /// To be credited when `not_approved` purchases are approved.
    inactive: Decimal,
    blocked: bool,
    /// Stored as registered or edited; it gates nothing (verification does).
    phone_checked: bool,
}

impl Buyer {
    fn collides_with(&self, other: &Buyer) -> bool {
        fn same(a: &Option<String>, b: &Option<String>) -> bool {
            a.is_some() && a == b
        }
        same(&self.phone, &other.phone)
            || same(&self.card_number, &other.card_number)
            || same(&self.external_id, &other.external_id)
            || same_email(self.email.as_deref(), other.email.as_deref())
    }

    fn credit(&mut self, amount: Decimal) {
        self.balance = self.balance.saturating_add(amount);
    }

    fn debit(&mut self, amount: Decimal) {
        self.balance = self.balance.saturating_sub(amount);
    }
}

fn same_email(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.to_lowercase() == b.to_lowercase(),
        _ => false,
    }
}

/// Namespace of the sandbox's stable UUIDs.
fn namespace() -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        b"https://premiumbonus-sandbox.invalid/",
    )
}

/// A UUID v5 of the phone (stable across runs), or a random one for a buyer without a phone.
fn client_id(phone: Option<&str>) -> Uuid {
    match phone {
        Some(phone) => Uuid::new_v5(&namespace(), format!("buyer:{phone}").as_bytes()),
        None => Uuid::new_v4(),
    }
}

fn group_id() -> Uuid {
    Uuid::new_v5(&namespace(), b"group:base")
}

/// A confirmation code waiting to be verified.
#[derive(Debug, Clone)]
struct PendingCode {
    code: String,
    sent: Instant,
    wrong: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PurchaseStatus {
    Approved,
    NotApproved,
}

impl PurchaseStatus {
    fn as_str(self) -> &'static str {
        match self {
            PurchaseStatus::Approved => "approved",
            PurchaseStatus::NotApproved => "not_approved",
        }
    }

    /// An optional status field (`purchase_status`, `status`).
    fn field(fields: &Map<String, Value>, key: &str) -> Result<Option<Self>, PbError> {
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

/// How a receipt item is recognised in `/edit-purchase`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ItemKey {
    ExternalId(String),
    Name(String),
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemKey::ExternalId(id) => write!(f, "item with external_item_id {}", shorten(id)),
            ItemKey::Name(name) => write!(f, "item named {}", shorten(name)),
        }
    }
}

/// An item as requested.
#[derive(Debug, Clone)]
struct ItemInput {
    key: ItemKey,
    external_item_id: Option<Value>,
    name: String,
    quantity: Decimal,
    amount: Decimal,
    discount: Decimal,
}

/// An item with its share of the bonuses.
#[derive(Debug, Clone)]
struct CalcItem {
    input: ItemInput,
    write_off: Decimal,
    write_on: Decimal,
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
struct Totals {
    purchase_amount: Decimal,
    write_off: Decimal,
    write_on: Decimal,
    discount_external: Decimal,
}

fn totals(items: &[CalcItem], receipt_discount: Option<Decimal>) -> Totals {
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
fn receipt_json(
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

#[derive(Debug)]
struct Purchase {
    id: Uuid,
    external_id: String,
    /// `None`: an anonymous purchase (no bonuses).
    buyer: Option<BuyerId>,
    status: PurchaseStatus,
    cancelled: bool,
    /// The earn percent at purchase time; edits recompute with it.
    earn_percent: Decimal,
    /// The items as they stand after edits.
    items: Vec<CalcItem>,
    /// The receipt-level external discount.
    discount: Option<Decimal>,
    /// The first `/purchase` answer, repeated for a repeated `external_purchase_id`.
    first_answer: Map<String, Value>,
    /// The first `/cancel-purchase` answer, repeated for a repeated cancel.
    cancel_answer: Option<Map<String, Value>>,
}

/// A receipt priced for a buyer, before anything changes.
struct Quote {
    buyer: Option<BuyerId>,
    items: Vec<CalcItem>,
    discount: Option<Decimal>,
    balance: Decimal,
    earn_percent: Decimal,
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

/// How a request names a buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdentType {
    Phone,
    Email,
    Card,
    ExternalId,
}

impl IdentType {
    fn as_str(self) -> &'static str {
        match self {
            IdentType::Phone => "phone",
            IdentType::Email => "email",
            IdentType::Card => "card",
            IdentType::ExternalId => "external_id",
        }
    }
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

    // --- buyers --------------------------------------------------------------------------

    /// The buyer a request names: `phone`, else `identificator`, else (when allowed)
    /// `external_id`. `Ok((None, _))` when nobody matches.
    fn identify(
        &self,
        request: &Map<String, Value>,
        allow_external_id: bool,
    ) -> Result<(Option<BuyerId>, IdentType), PbError> {
        if let Some(phone) = phone_field(request, "phone")? {
            return Ok((self.find_by_phone(&phone), IdentType::Phone));
        }
        if let Some(ident) = opt_string(request, "identificator")? {
            if is_pb_phone(&ident) {
                return Ok((self.find_by_phone(&ident), IdentType::Phone));
            }
            if ident.contains('@') {
                let found = self.find_buyer(|b| same_email(b.email.as_deref(), Some(&ident)));
                return Ok((found, IdentType::Email));
            }
            if looks_like_phone(&ident) {
                return Err(PbError::bad_phone("identificator", &Value::String(ident)));
            }
            let found = self.find_buyer(|b| b.card_number.as_deref() == Some(ident.as_str()));
            return Ok((found, IdentType::Card));
        }
        if allow_external_id {
            if let Some(ext) = opt_string(request, "external_id")? {
                let found = self.find_buyer(|b| b.external_id.as_deref() == Some(ext.as_str()));
                return Ok((found, IdentType::ExternalId));
            }
        }
        Err(PbError::required(if allow_external_id {
            "identificator (phone, email or card number)"
        } else {
            "phone or identificator"
        }))
    }

    fn profile(&self, buyer: &Buyer, ident: IdentType) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("is_registered".into(), Value::Bool(true));
        out.insert("blocked".into(), Value::Bool(buyer.blocked));
        out.insert(
            "client_id".into(),
            Value::String(buyer.client_id.to_string()),
        );
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        out.insert("phone".into(), text(&buyer.phone));
        out.insert("card_number".into(), text(&buyer.card_number));
        out.insert("surname".into(), text(&buyer.surname));
        out.insert("name".into(), text(&buyer.name));
        out.insert("middle_name".into(), text(&buyer.middle_name));
        out.insert("birth_date".into(), text(&buyer.birth_date));
        out.insert("gender".into(), text(&buyer.gender));
        out.insert("email".into(), text(&buyer.email));
        out.insert("external_id".into(), text(&buyer.external_id));
        out.insert("group_id".into(), Value::String(group_id().to_string()));
        out.insert("group_name".into(), Value::String(GROUP_NAME.into()));
        out.insert("balance".into(), money(buyer.balance));
        out.insert("balance_bonus_accumulated".into(), money(buyer.balance));
        out.insert("balance_bonus_present".into(), money(Decimal::ZERO));
        out.insert("balance_bonus_action".into(), money(Decimal::ZERO));
        out.insert("bonus_inactive".into(), money(buyer.inactive));
        out.insert("is_allowed_change_card".into(), Value::Bool(true));
        out.insert(
            "identificator_type".into(),
            Value::String(ident.as_str().into()),
        );
        self.insert_flags(&mut out);
        out
    }

    fn insert_flags(&self, out: &mut Map<String, Value>) {
        out.insert(
            "registration_confirmation_required".into(),
            Value::Bool(self.settings.registration_confirmation_required),
        );
        out.insert(
            "write_off_confirmation_required".into(),
            Value::Bool(self.settings.write_off_confirmation_required),
        );
    }

    fn buyer_info(&self, request: &Map<String, Value>) -> Result<Map<String, Value>, PbError> {
        let (found, ident) = self.identify(request, true)?;
        if let Some(buyer) = found.and_then(|id| self.buyer(id)) {
            return Ok(self.profile(buyer, ident));
        }
        let mut out = Map::new();
        out.insert("is_registered".into(), Value::Bool(false));
        out.insert(
            "identificator_type".into(),
            Value::String(ident.as_str().into()),
        );
        self.insert_flags(&mut out);
        Ok(out)
    }

    /// Refuses a card, email or external_id that another buyer (not `except`) has.
    fn check_unique(
        &self,
        except: Option<BuyerId>,
        card: Option<&str>,
        email: Option<&str>,
        external_id: Option<&str>,
    ) -> Result<(), PbError> {
        let others = || {
            self.buyers
                .iter()
                .enumerate()
                .filter(move |(id, _)| Some(*id) != except)
                .filter_map(|(_, slot)| slot.as_ref())
        };
        if card.is_some() && others().any(|b| b.card_number.as_deref() == card) {
            return Err(PbError::new(format!(
                "Card {} already belongs to another buyer",
                shorten(card.unwrap_or_default())
            )));
        }
        if email.is_some() && others().any(|b| same_email(b.email.as_deref(), email)) {
            return Err(PbError::new("This email already belongs to another buyer"));
        }
        if external_id.is_some() && others().any(|b| b.external_id.as_deref() == external_id) {
            return Err(PbError::new(format!(
                "external_id {} already belongs to another buyer",
                shorten(external_id.unwrap_or_default())
            )));
        }
        Ok(())
    }

    fn buyer_register(
        &mut self,
        request: &Map<String, Value>,
        now: Instant,
    ) -> Result<Map<String, Value>, PbError> {
        let phone = required_phone(request, "phone")?;
        let card_number = opt_string(request, "card_number")?;
        let surname = opt_string(request, "surname")?;
        let name = opt_string(request, "name")?;
        let middle_name = opt_string(request, "middle_name")?;
        let birth_date = opt_string(request, "birth_date")?;
        if let Some(date) = &birth_date {
            check_date(date)?;
        }
        let gender = opt_string(request, "gender")?;
        if let Some(gender) = &gender {
            check_gender(gender)?;
        }
        let email = opt_string(request, "email")?;
        if let Some(email) = &email {
            check_email(email)?;
        }
        let external_id = opt_string(request, "external_id")?;
        let phone_checked = opt_bool(request, "phone_checked")?;

        if self.find_by_phone(&phone).is_some() {
            return Err(PbError::new(format!(
                "Buyer with phone {phone} is already registered"
            )));
        }
        self.check_unique(
            None,
            card_number.as_deref(),
            email.as_deref(),
            external_id.as_deref(),
        )?;
        let verified = self.is_verified(&phone, now);
        if self.settings.registration_confirmation_required && !phone_checked && !verified {
            return Err(PbError::new(format!(
                "Registration must be confirmed: send a code with /send-register-code and check \
                 it with /verify-confirmation-code (or pass phone_checked: true) for phone {phone}"
            )));
        }
        let buyer = Buyer {
            client_id: client_id(Some(&phone)),
            phone: Some(phone),
            card_number,
            surname,
            name,
            middle_name,
            birth_date,
            gender,
            email,
            external_id,
            balance: self.settings.welcome_bonus,
            inactive: Decimal::ZERO,
            blocked: false,
            phone_checked: phone_checked || verified,
        };
        let answer = self.profile(&buyer, IdentType::Phone);
        self.buyers.push(Some(buyer));
        Ok(answer)
    }

    fn buyer_edit(&mut self, request: &Map<String, Value>) -> Result<Map<String, Value>, PbError> {
        let phone = required_phone(request, "phone")?;
        let card_number = edit_string(request, "card_number")?;
        let surname = edit_string(request, "surname")?;
        let name = edit_string(request, "name")?;
        let middle_name = edit_string(request, "middle_name")?;
        let birth_date = edit_string(request, "birth_date")?;
        if let Edit::Set(date) = &birth_date {
            check_date(date)?;
        }
        let gender = edit_string(request, "gender")?;
        if let Edit::Set(gender) = &gender {
            check_gender(gender)?;
        }
        let email = edit_string(request, "email")?;
        if let Edit::Set(email) = &email {
            check_email(email)?;
        }
        let external_id = edit_string(request, "external_id")?;
        let phone_checked = match request.get("phone_checked") {
            None | Some(Value::Null) => None,
            Some(_) => Some(opt_bool(request, "phone_checked")?),
        };

        let id = self
            .find_by_phone(&phone)
            .ok_or_else(|| PbError::buyer_not_found(&phone))?;
        self.check_unique(
            Some(id),
            card_number.new_value(),
            email.new_value(),
            external_id.new_value(),
        )?;
        let Some(buyer) = self.buyer_mut(Some(id)) else {
            return Err(PbError::buyer_not_found(&phone));
        };
        card_number.apply(&mut buyer.card_number);
        surname.apply(&mut buyer.surname);
        name.apply(&mut buyer.name);
        middle_name.apply(&mut buyer.middle_name);
        birth_date.apply(&mut buyer.birth_date);
        gender.apply(&mut buyer.gender);
        email.apply(&mut buyer.email);
        external_id.apply(&mut buyer.external_id);
        if let Some(checked) = phone_checked {
            buyer.phone_checked = checked;
        }
        let buyer = buyer.clone();
        Ok(self.profile(&buyer, IdentType::Phone))
    }

    // --- confirmation codes --------------------------------------------------------------

    fn send_code(&mut self, phone: String, now: Instant) -> Result<Map<String, Value>, PbError> {
        let window = self.codes_sent.entry(phone.clone()).or_default();
        while window
            .front()
            .is_some_and(|sent| now.saturating_duration_since(*sent) >= CODE_WINDOW)
        {
            window.pop_front();
        }
        if window.len() >= CODES_PER_WINDOW {
            let wait = window
                .front()
                .map_or(CODE_WINDOW, |first| {
                    CODE_WINDOW.saturating_sub(now.saturating_duration_since(*first))
                })
                .as_secs()
                .max(1);
            return Err(PbError::new(format!(
                "Too many codes for phone {phone}: at most {CODES_PER_WINDOW} per minute, \
                 try again in {wait} s"
            )));
        }
        window.push_back(now);
        let code = random_code();
        self.codes.insert(
            phone.clone(),
            PendingCode {
                code: code.clone(),
                sent: now,
                wrong: 0,
            },
        );
        self.last_codes.insert(phone, code);
        Ok(Map::new())
    }

    fn send_write_off_code(
        &mut self,
        request: &Map<String, Value>,
        now: Instant,
    ) -> Result<Map<String, Value>, PbError> {
        let phone = required_phone(request, "phone")?;
        money_field(request, "purchase_amount")?;
        money_field(request, "write_off_bonus")?;
        let id = self
            .find_by_phone(&phone)
            .ok_or_else(|| PbError::buyer_not_found(&phone))?;
        if self.buyer(id).is_some_and(|b| b.blocked) {
            return Err(PbError::blocked());
        }
        self.send_code(phone, now)
    }

    fn verify_code(
        &mut self,
        request: &Map<String, Value>,
        now: Instant,
    ) -> Result<Map<String, Value>, PbError> {
        let phone = required_phone(request, "phone")?;
        let code = match request.get("code") {
            None | Some(Value::Null) => return Err(PbError::required("code")),
            Some(Value::String(s)) if s.is_empty() => return Err(PbError::required("code")),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.as_str().to_owned(),
            Some(_) => return Err(PbError::new("code must be a string")),
        };
        let Some(pending) = self.codes.get_mut(&phone) else {
            return Err(PbError::new(format!(
                "No active code for phone {phone}: request one with /send-register-code or \
                 /send-write-off-confirmation-code"
            )));
        };
        if now.saturating_duration_since(pending.sent) >= CODE_LIFETIME {
            self.codes.remove(&phone);
            return Err(PbError::new("The code has expired: request a new one"));
        }
        if secret_matches(pending.code.as_bytes(), code.as_bytes()) {
            self.codes.remove(&phone);
            self.verified.insert(phone, now);
            return Ok(Map::new());
        }
        pending.wrong += 1;
        let left = MAX_WRONG_ATTEMPTS.saturating_sub(pending.wrong);
        if left == 0 {
            self.codes.remove(&phone);
            return Err(PbError::new(format!(
                "Wrong code; {MAX_WRONG_ATTEMPTS} wrong attempts, the code is no longer valid: \
                 request a new one"
            )));
        }
        Err(PbError::new(format!("Wrong code; {left} attempts left")))
    }

    // --- purchases -----------------------------------------------------------------------

    fn max_write_off_percent(&self) -> Decimal {
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
    fn quote(&self, request: &Map<String, Value>) -> Result<Quote, PbError> {
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

    fn purchase(
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
    fn purchase_answer(&self, index: usize) -> Map<String, Value> {
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
    fn find_purchase(&self, request: &Map<String, Value>) -> Result<usize, PbError> {
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

    fn change_purchase_status(
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

    fn cancel_purchase(
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

    fn edit_purchase(
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

/// Spreads `write_off` over the items in proportion to their amounts (to the kopeck, exact
/// sum) and computes each item's write-on.
fn price_items(
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
fn cap_write_on(items: &mut [CalcItem], cap: Decimal) -> Result<(), PbError> {
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

// ---------------------------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------------------------

fn parse_items(request: &Map<String, Value>, allow_empty: bool) -> Result<Vec<ItemInput>, PbError> {
    let items = match request.get("items") {
        None | Some(Value::Null) => return Err(PbError::required("items")),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(PbError::new("items must be an array")),
    };
    if items.is_empty() && !allow_empty {
        return Err(PbError::new("items must list at least one item"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |field: &str| format!("items[{i}].{field}");
            let Value::Object(item) = item else {
                return Err(PbError::new(format!("items[{i}] must be an object")));
            };
            let name = match item.get("name") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                None | Some(Value::Null) | Some(Value::String(_)) => {
                    return Err(PbError::required(&at("name")));
                }
                Some(_) => return Err(PbError::new(format!("{} must be a string", at("name")))),
            };
            let amount = match item.get("amount") {
                None | Some(Value::Null) => return Err(PbError::required(&at("amount"))),
                Some(v) => money_value(v, &at("amount"))?,
            };
            let quantity = match item.get("quantity") {
                None | Some(Value::Null) => return Err(PbError::required(&at("quantity"))),
                Some(v) => decimal_value(v, &at("quantity"))?,
            };
            if quantity <= Decimal::ZERO || quantity > max_quantity() {
                return Err(PbError::new(format!(
                    "{} must be above 0 and at most {}",
                    at("quantity"),
                    max_quantity()
                )));
            }
            let discount = match item.get("discount") {
                None | Some(Value::Null) => Decimal::ZERO,
                Some(v) => money_value(v, &at("discount"))?,
            };
            let (external_item_id, key) = match item.get("external_item_id") {
                None | Some(Value::Null) => (None, ItemKey::Name(name.clone())),
                Some(Value::String(s)) if s.is_empty() => (None, ItemKey::Name(name.clone())),
                Some(v @ Value::String(s)) => (Some(v.clone()), ItemKey::ExternalId(s.clone())),
                Some(v @ Value::Number(n)) => {
                    (Some(v.clone()), ItemKey::ExternalId(n.as_str().to_owned()))
                }
                Some(_) => {
                    return Err(PbError::new(format!(
                        "{} must be a string or a number",
                        at("external_item_id")
                    )));
                }
            };
            Ok(ItemInput {
                key,
                external_item_id,
                name,
                quantity,
                amount,
                discount,
            })
        })
        .collect()
}

/// A phone field: a string `^7\d{10}$`; absent, `null` and `""` are "not given".
fn phone_field(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, PbError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if is_pb_phone(s) => Ok(Some(s.clone())),
        Some(other) => Err(PbError::bad_phone(key, other)),
    }
}

fn required_phone(fields: &Map<String, Value>, key: &str) -> Result<String, PbError> {
    phone_field(fields, key)?.ok_or_else(|| PbError::required(key))
}

/// Premium Bonus's phone format, exactly: `^7\d{10}$`.
fn is_pb_phone(s: &str) -> bool {
    s.len() == 11 && s.starts_with('7') && s.bytes().all(|b| b.is_ascii_digit())
}

/// An identificator that is plainly a phone written the wrong way (`+7…`, `8 (999) …`), not a
/// card number.
fn looks_like_phone(s: &str) -> bool {
    if s.starts_with('+') {
        return true;
    }
    let separators = |c: char| " -()".contains(c);
    let digits = s.chars().filter(char::is_ascii_digit).count();
    s.chars().all(|c| c.is_ascii_digit() || separators(c))
        && s.chars().any(separators)
        && (10..=11).contains(&digits)
}

fn required_string(fields: &Map<String, Value>, key: &str) -> Result<String, PbError> {
    opt_string(fields, key)?.ok_or_else(|| PbError::required(key))
}

/// A string field; absent, `null` and `""` are all "not given".
fn opt_string(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, PbError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(non_empty(Some(s.clone()))),
        Some(_) => Err(PbError::new(format!("{key} must be a string"))),
    }
}

fn opt_bool(fields: &Map<String, Value>, key: &str) -> Result<bool, PbError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(PbError::new(format!("{key} must be true or false"))),
    }
}

/// A `/buyer-edit` field: absent or `null` keeps, `""` clears, a string replaces.
enum Edit {
    Keep,
    Clear,
    Set(String),
}

impl Edit {
    fn new_value(&self) -> Option<&str> {
        match self {
            Edit::Set(s) => Some(s),
            Edit::Keep | Edit::Clear => None,
        }
    }

    fn apply(self, slot: &mut Option<String>) {
        match self {
            Edit::Keep => {}
            Edit::Clear => *slot = None,
            Edit::Set(s) => *slot = Some(s),
        }
    }
}

fn edit_string(fields: &Map<String, Value>, key: &str) -> Result<Edit, PbError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(Edit::Keep),
        Some(Value::String(s)) if s.is_empty() => Ok(Edit::Clear),
        Some(Value::String(s)) => Ok(Edit::Set(s.clone())),
        Some(_) => Err(PbError::new(format!("{key} must be a string"))),
    }
}

fn check_uuid_field(fields: &Map<String, Value>, key: &str) -> Result<(), PbError> {
    match opt_string(fields, key)? {
        Some(text) if Uuid::parse_str(&text).is_err() => Err(PbError::new(format!(
            "{key} must be a UUID, got {}",
            shorten(&format!("{text:?}"))
        ))),
        _ => Ok(()),
    }
}

fn check_date(text: &str) -> Result<(), PbError> {
    let valid = text.len() == 10 && NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok();
    if valid {
        Ok(())
    } else {
        Err(PbError::new(format!(
            "birth_date must be a date YYYY-MM-DD, got {}",
            shorten(&format!("{text:?}"))
        )))
    }
}

fn check_gender(text: &str) -> Result<(), PbError> {
    if text == "male" || text == "female" {
        Ok(())
    } else {
        Err(PbError::new(format!(
            "gender must be \"male\" or \"female\", got {}",
            shorten(&format!("{text:?}"))
        )))
    }
}

fn check_email(text: &str) -> Result<(), PbError> {
    let valid = text
        .split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && !domain.is_empty())
        && !text.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(PbError::new(format!(
            "email {} is not an email address",
            shorten(&format!("{text:?}"))
        )))
    }
}

fn money_field(fields: &Map<String, Value>, key: &str) -> Result<Option<Decimal>, PbError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => money_value(v, key).map(Some),
    }
}

/// Rubles or bonuses: 0 … 10¹² with at most 2 decimals.
fn money_value(value: &Value, path: &str) -> Result<Decimal, PbError> {
    let d = decimal_value(value, path)?;
    if d < Decimal::ZERO || d > max_money() {
        return Err(PbError::new(format!(
            "{path} must be between 0 and {}",
            max_money()
        )));
    }
    if d.normalize().scale() > 2 {
        return Err(PbError::new(format!(
            "{path} must have at most 2 decimals, got {}",
            shorten(&d.to_string())
        )));
    }
    Ok(d)
}

/// An exact decimal from a JSON number's text (`arbitrary_precision` keeps it); never via f64.
fn decimal_value(value: &Value, path: &str) -> Result<Decimal, PbError> {
    let Value::Number(number) = value else {
        return Err(PbError::new(format!("{path} must be a number")));
    };
    let text = number.as_str();
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| PbError::new(format!("{path} is out of range")))
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// For seeding: a Russian mobile number as the digits `7XXXXXXXXXX`; separators are dropped
/// and a leading `8` becomes `7`. `None` for anything else.
fn normalize_phone(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw
        .chars()
        .any(|c| !(c.is_ascii_digit() || "+-(). ".contains(c)))
        || raw.chars().skip(1).any(|c| c == '+')
    {
        return None;
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 11 {
        return None;
    }
    match digits.as_bytes().first() {
        Some(b'7') => Some(digits),
        Some(b'8') if !raw.starts_with('+') => Some(format!("7{}", &digits[1..])),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Money
// ---------------------------------------------------------------------------------------------

/// The largest amount accepted, in rubles (10¹²): far above any receipt, and low enough that
/// every product in the kopeck arithmetic fits an `i128`.
fn max_money() -> Decimal {
    Decimal::from(1_000_000_000_000_i64)
}

/// The largest item quantity accepted (10⁹).
fn max_quantity() -> Decimal {
    Decimal::from(1_000_000_000_i64)
}

fn round_money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn floor_money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::ToNegativeInfinity)
}

/// Money as a JSON number with exactly two decimals (`150.00`).
fn money(d: Decimal) -> Value {
    let mut d = round_money(d);
    if d.is_zero() {
        d = Decimal::ZERO; // no "-0.00"
    }
    d.rescale(2);
    serde_json::Number::from_str(&d.to_string()).map_or(Value::Null, Value::Number)
}

/// A quantity as a JSON number without trailing zeros (`2`, `0.5`).
fn number(d: Decimal) -> Value {
    serde_json::Number::from_str(&d.normalize().to_string()).map_or(Value::Null, Value::Number)
}

fn to_kopecks(d: Decimal) -> Option<i128> {
    d.checked_mul(Decimal::ONE_HUNDRED)?.trunc().to_i128()
}

fn from_kopecks(k: i128) -> Option<Decimal> {
    Decimal::try_from_i128_with_scale(k, 2).ok()
}

fn checked_sum(mut values: impl Iterator<Item = i128>) -> Option<i128> {
    values.try_fold(0i128, i128::checked_add)
}

/// Splits `total` whole units over `weights` (all ≥ 0) in proportion, by largest remainder
/// with ties going to the earlier weight: the parts add up to exactly `total`, each is the
/// floor or the ceiling of its exact share, and a zero weight gets nothing. `None` on overflow.
fn allocate(total: i128, weights: &[i128]) -> Option<Vec<i128>> {
    let sum = checked_sum(weights.iter().map(|w| (*w).max(0)))?;
    if total <= 0 || sum == 0 {
        return Some(vec![0; weights.len()]);
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (i, weight) in weights.iter().enumerate() {
        let exact = total.checked_mul((*weight).max(0))?;
        parts.push(exact / sum);
        remainders.push((exact % sum, i));
    }
    let mut left = total - checked_sum(parts.iter().copied())?;
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if left <= 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    const TOKEN: &str = "pb-test-token";
    const IVANOV: &str = "79990000001";
    const PETROVA: &str = "79990000002";
    const BLOCKED: &str = "79990000009";

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// A JSON number with exactly this text.
    fn n(text: &str) -> Value {
        Value::Number(serde_json::Number::from_str(text).unwrap())
    }

    /// Money from an answer, read from the number's exact text.
    fn dec(v: &Value) -> Decimal {
        let n = v.as_number().unwrap_or_else(|| panic!("not a number: {v}"));
        Decimal::from_str_exact(n.as_str()).unwrap()
    }

    fn item(external_item_id: Option<&str>, name: &str, amount: &str, quantity: &str) -> Value {
        let mut item = json!({"name": name, "amount": n(amount), "quantity": n(quantity)});
        if let Some(id) = external_item_id {
            item["external_item_id"] = json!(id);
        }
        item
    }

    struct Running {
        base: String,
        http: reqwest::Client,
        shutdown: Option<oneshot::Sender<()>>,
        task: Option<JoinHandle<std::io::Result<()>>>,
    }

    fn http_client() -> reqwest::ClientBuilder {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().no_gzip()
    }

    async fn start(sandbox: &PremiumBonusSandbox) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sandbox.clone().serve(listener, async {
            let _ = rx.await;
        }));
        Running {
            base: format!("http://{addr}"),
            http: http_client().build().unwrap(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    impl Running {
        async fn send(&self, path: &str, auth: Option<&str>, body: &str) -> reqwest::Response {
            let mut req = self
                .http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_owned());
            if let Some(auth) = auth {
                req = req.header("Authorization", auth);
            }
            req.send().await.unwrap()
        }

        async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
            let resp = self.send(path, Some(TOKEN), &body.to_string()).await;
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
            (status, value)
        }

        /// HTTP 200 with `success: true` and a logger.
        async fn ok(&self, path: &str, body: Value) -> Value {
            let (status, answer) = self.post(path, &body).await;
            assert_eq!(status, 200, "{path} {body}: {answer}");
            assert_eq!(answer["success"], json!(true), "{path}: {answer}");
            assert_logger(&answer);
            answer
        }

        /// HTTP 400 with `success: false`; the error description.
        async fn refused(&self, path: &str, body: Value) -> String {
            let (status, answer) = self.post(path, &body).await;
            assert_eq!(status, 400, "{path} {body}: {answer}");
            assert_refusal(&answer)
        }

        async fn stop(mut self) {
            if let Some(tx) = self.shutdown.take() {
                let _ = tx.send(());
            }
            if let Some(task) = self.task.take() {
                task.await.unwrap().unwrap();
            }
        }
    }

    fn assert_logger(answer: &Value) {
        let logger = answer["logger"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"));
        assert_eq!(logger.len(), 8, "{answer}");
        assert!(
            logger.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{answer}"
        );
    }

    /// `{success: false, error_description, logger}` and nothing else; the description.
    fn assert_refusal(answer: &Value) -> String {
        assert_eq!(answer["success"], json!(false), "{answer}");
        assert_logger(answer);
        assert_eq!(answer.as_object().map(Map::len), Some(3), "{answer}");
        answer["error_description"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"))
            .to_owned()
    }

    fn purchase_body(external_id: &str, phone: &str, write_off: &str, items: Value) -> Value {
        json!({
            "phone": phone, "external_purchase_id": external_id, "cashier_name": "Кассир 2",
            "write_off_bonus": n(write_off), "items": items, "purchase_status": "approved",
        })
    }

    // --- transport -----------------------------------------------------------------------

    #[tokio::test]
    async fn auth_routing_and_bodies_are_answered_as_documented() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        let srv = start(&sandbox).await;
        let body = json!({"identificator": IVANOV}).to_string();
        let bearer = format!("Bearer {TOKEN}");
        for (auth, expected) in [
            (None, "Authorization header is required"),
            (Some(bearer.as_str()), "without the \"Bearer\" prefix"),
            (Some("bearer x"), "without the \"Bearer\" prefix"),
            (Some("wrong-token"), "Invalid API token"),
            (Some(""), "Invalid API token"),
        ] {
            let resp = srv.send("/buyer-info", auth, &body).await;
            assert_eq!(resp.status().as_u16(), 400, "{auth:?}");
            let answer: Value = resp.json().await.unwrap();
            let description = assert_refusal(&answer);
            assert!(description.contains(expected), "{auth:?}: {description}");
            assert!(!description.contains(TOKEN), "{description}");
        }
        let resp = srv.send("/buyer-info", Some(TOKEN), &body).await;
        assert_eq!(resp.status().as_u16(), 200);

        let (status, answer) = srv.post("/no-such-method", &json!({})).await;
        assert_eq!(status, 404);
        assert!(assert_refusal(&answer).contains("Unknown method"));
        let resp = srv
            .http
            .get(format!("{}/buyer-info", srv.base))
            .header("Authorization", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404);

        for (bad, expected) in [
            ("{", "not valid JSON"),
            ("[1, 2]", "JSON object"),
            ("\"text\"", "JSON object"),
            ("{\"identificator\": }", "not valid JSON"),
            (
                "",
                "identificator (phone, email or card number) is required",
            ),
        ] {
            let resp = srv.send("/buyer-info", Some(TOKEN), bad).await;
            assert_eq!(resp.status().as_u16(), 400, "{bad}");
            let answer: Value = resp.json().await.unwrap();
            let description = assert_refusal(&answer);
            assert!(description.contains(expected), "{bad}: {description}");
        }
        let big = format!("{{\"x\": \"{}\"}}", "a".repeat(MAX_BODY_BYTES));
        let resp = srv.send("/buyer-info", Some(TOKEN), &big).await;
        assert_eq!(resp.status().as_u16(), 400);

        // Every answer gets its own logger.
        let a = srv
            .ok("/buyer-info", json!({"identificator": IVANOV}))
            .await;
        let b = srv
            .ok("/buyer-info", json!({"identificator": IVANOV}))
            .await;
        assert_ne!(a["logger"], b["logger"]);

        assert_eq!(sandbox.calls("/buyer-info"), 15);
        assert_eq!(sandbox.calls("buyer-info"), 15);
        assert_eq!(sandbox.calls("/no-such-method"), 1);
        let requests = sandbox.requests();
        assert_eq!(requests.len(), 16);
        assert_eq!(
            requests[0],
            ("/buyer-info".into(), json!({"identificator": IVANOV}))
        );
        assert_eq!(requests[7], ("/buyer-info".into(), Value::Null)); // the GET
        assert_eq!(requests[8].1, Value::String("{".into()));
        assert_eq!(requests[12], ("/buyer-info".into(), Value::Null)); // empty
        assert_eq!(requests[13], ("/buyer-info".into(), Value::Null)); // oversized
        srv.stop().await;
    }

    #[tokio::test]
    async fn serves_h2c_and_shuts_down_gracefully() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        let srv = start(&sandbox).await;
        let h2 = http_client().http2_prior_knowledge().build().unwrap();
        let resp = h2
            .post(format!("{}/buyer-info", srv.base))
            .header("Authorization", TOKEN)
            .body(json!({"identificator": IVANOV}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status().as_u16(), 200);
        srv.stop().await; // serve() returned Ok
    }

    #[tokio::test]
    async fn requests_beyond_the_rate_limit_get_429() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        sandbox.set_settings(PbSettings {
            requests_per_second: Some(2),
            ..PbSettings::default()
        });
        let srv = start(&sandbox).await;
        let body = json!({"identificator": IVANOV}).to_string();
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let resp = srv.send("/buyer-info", Some(TOKEN), &body).await;
            statuses.push(resp.status().as_u16());
            if resp.status().as_u16() == 429 {
                assert_eq!(
                    resp.headers().get("retry-after").map(HeaderValue::as_bytes),
                    Some(&b"1"[..])
                );
                let answer: Value = resp.json().await.unwrap();
                assert!(assert_refusal(&answer).contains("at most 2 per second"));
            }
        }
        assert_eq!(statuses, [200, 200, 429]);
        tokio::time::sleep(Duration::from_millis(1050)).await;
        srv.ok("/buyer-info", json!({"identificator": IVANOV}))
            .await;
        assert_eq!(sandbox.calls("/buyer-info"), 4);
        sandbox.set_settings(PbSettings::default());
        for _ in 0..5 {
            srv.ok("/buyer-info", json!({"identificator": IVANOV}))
                .await;
        }
        srv.stop().await;
    }

    #[test]
    fn the_rate_window_slides() {
        let mut state = State::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(state.admit(2, at(0)));
        assert!(state.admit(2, at(500)));
        assert!(!state.admit(2, at(999)));
        // The first request left the window; the refusal did not count.
        assert!(state.admit(2, at(1000)));
        assert!(!state.admit(2, at(1499)));
        assert!(state.admit(2, at(1500)));
        assert!(!state.admit(0, at(5000)));
    }

    #[tokio::test]
    async fn faults_apply_to_every_request_until_cleared() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        let srv = start(&sandbox).await;
        let query = json!({"identificator": IVANOV});

        sandbox.set_fault(Some(Fault::Http500));
        let (status, answer) = srv.post("/buyer-info", &query).await;
        assert_eq!(status, 500);
        assert_refusal(&answer);

        sandbox.set_fault(Some(Fault::Garbage));
        let resp = srv
            .send("/buyer-info", Some(TOKEN), &query.to_string())
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        let text = resp.text().await.unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

        sandbox.set_fault(Some(Fault::Throttle));
        let resp = srv
            .send("/buyer-info", Some(TOKEN), &query.to_string())
            .await;
        assert_eq!(resp.status().as_u16(), 429);
        let answer: Value = resp.json().await.unwrap();
        assert_refusal(&answer);
        // Faults act before routing and authorization.
        let resp = srv.send("/no-such-method", None, "{}").await;
        assert_eq!(resp.status().as_u16(), 429);

        sandbox.set_fault(Some(Fault::DropConnection));
        let result = srv
            .http
            .post(format!("{}/buyer-info", srv.base))
            .header("Authorization", TOKEN)
            .body(query.to_string())
            .send()
            .await;
        assert!(result.is_err(), "{result:?}");

        // A faulted purchase never changes state.
        let purchase = purchase_body(
            "faulted",
            IVANOV,
            "10",
            json!([item(None, "A", "100", "1")]),
        );
        sandbox.set_fault(Some(Fault::Throttle));
        let (status, _) = srv.post("/purchase", &purchase).await;
        assert_eq!(status, 429);
        assert_eq!(sandbox.balance(IVANOV), Some(d("500")));

        sandbox.set_fault(Some(Fault::Delay(Duration::from_millis(300))));
        let started = std::time::Instant::now();
        let answer = srv.ok("/buyer-info", query.clone()).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(dec(&answer["balance"]), d("500"));

        sandbox.set_fault(None);
        srv.ok("/buyer-info", query).await;
        srv.refused("/purchase-info", json!({"external_purchase_id": "faulted"}))
            .await;
        assert_eq!(sandbox.calls("/buyer-info"), 6);
        assert_eq!(sandbox.calls("/purchase"), 1);
        assert_eq!(sandbox.calls("/no-such-method"), 1);
        srv.stop().await;
    }

    // --- buyers --------------------------------------------------------------------------

    #[tokio::test]
    async fn phones_must_be_eleven_digits_starting_with_7() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        let srv = start(&sandbox).await;
        let items = json!([item(None, "A", "100", "1")]);
        for bad in [
            "+79990000001",
            "89990000001",
            "7 999 000 00 01",
            "7(999)0000001",
            "7999000000",
            "799900000011",
            "7999000000a",
            "６9990000001",
        ] {
            let bodies = [
                ("/buyer-info", json!({"phone": bad})),
                ("/buyer-register", json!({"phone": bad})),
                ("/buyer-edit", json!({"phone": bad, "name": "X"})),
                ("/send-register-code", json!({"phone": bad})),
                (
                    "/verify-confirmation-code",
                    json!({"phone": bad, "code": "1234"}),
                ),
                ("/purchase-dry-run", json!({"phone": bad, "items": items})),
                ("/purchase", purchase_body("p", bad, "0", items.clone())),
            ];
            for (path, body) in bodies {
                let description = srv.refused(path, body).await;
                assert!(description.contains(bad), "{path}: {description}");
                assert!(description.contains("7XXXXXXXXXX"), "{description}");
            }
        }
        let description = srv
            .refused("/buyer-info", json!({"phone": 79990000001_u64}))
            .await;
        assert!(description.contains("79990000001"), "{description}");
        // An identificator that is a badly written phone is refused too…
        for bad in ["+79990000001", "8 (999) 000-00-01", "999 000-00-01"] {
            let description = srv
                .refused("/buyer-info", json!({"identificator": bad}))
                .await;
            assert!(description.contains(bad), "{description}");
        }
        // …but a string of digits may be a card number.
        let answer = srv
            .ok("/buyer-info", json!({"identificator": "89990000001"}))
            .await;
        assert_eq!(answer["is_registered"], json!(false));
        assert_eq!(answer["identificator_type"], json!("card"));
        assert_eq!(sandbox.calls("/purchase"), 8);
        srv.stop().await;
    }

    #[tokio::test]
    async fn buyer_info_finds_buyers_by_any_identificator() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        let srv = start(&sandbox).await;
        let queries = [
            (json!({"identificator": IVANOV}), "phone"),
            (json!({"phone": IVANOV}), "phone"),
            (json!({"identificator": "IVANOV@Example.com"}), "email"),
            (json!({"identificator": "PB-0001"}), "card"),
            (json!({"external_id": "demo-1"}), "external_id"),
            (
                json!({"identificator": "PB-0001", "external_id": "demo-2"}),
                "card",
            ),
        ];
        let expected_id = client_id(Some(IVANOV)).to_string();
        for (query, kind) in queries {
            let answer = srv.ok("/buyer-info", query.clone()).await;
            assert_eq!(answer["is_registered"], json!(true), "{query}");
            assert_eq!(answer["identificator_type"], json!(kind), "{query}");
            assert_eq!(answer["blocked"], json!(false));
            assert_eq!(answer["client_id"], json!(expected_id));
            assert_eq!(answer["phone"], json!(IVANOV));
            assert_eq!(answer["card_number"], json!("PB-0001"));
            assert_eq!(answer["surname"], json!("Иванов"));
            assert_eq!(answer["name"], json!("Иван"));
            assert_eq!(answer["middle_name"], json!("Иванович"));
            assert_eq!(answer["birth_date"], json!("1985-03-14"));
            assert_eq!(answer["gender"], json!("male"));
            assert_eq!(answer["email"], json!("ivanov@example.com"));
            assert_eq!(answer["external_id"], json!("demo-1"));
            assert_eq!(answer["group_name"], json!("Базовая"));
            assert!(Uuid::parse_str(answer["group_id"].as_str().unwrap()).is_ok());
            assert_eq!(answer["balance"].to_string(), "500.00");
            assert_eq!(answer["balance_bonus_accumulated"].to_string(), "500.00");
            assert_eq!(answer["balance_bonus_present"].to_string(), "0.00");
            assert_eq!(answer["balance_bonus_action"].to_string(), "0.00");
            assert_eq!(answer["bonus_inactive"].to_string(), "0.00");
            assert_eq!(answer["registration_confirmation_required"], json!(false));
            assert_eq!(answer["write_off_confirmation_required"], json!(false));
        }

        let petrova = srv
            .ok("/buyer-info", json!({"identificator": PETROVA}))
            .await;
        assert_eq!(petrova["balance"].to_string(), "0.00");
        assert_eq!(petrova["middle_name"], Value::Null);
        let blocked = srv
            .ok("/buyer-info", json!({"identificator": "PB-0009"}))
            .await;
        assert_eq!(blocked["blocked"], json!(true));
        assert_eq!(blocked["phone"], json!(BLOCKED));

        sandbox.set_settings(PbSettings {
            registration_confirmation_required: true,
            write_off_confirmation_required: true,
            ..PbSettings::default()
        });
        for (query, kind) in [
            (json!({"identificator": "79110000000"}), "phone"),
            (json!({"identificator": "nobody@example.com"}), "email"),
            (json!({"identificator": "PB-9999"}), "card"),
            (json!({"external_id": "nope"}), "external_id"),
        ] {
            let answer = srv.ok("/buyer-info", query).await;
            let mut answer = answer.as_object().cloned().unwrap();
            answer.remove("logger");
            assert_eq!(
                Value::Object(answer),
                json!({
                    "success": true, "is_registered": false, "identificator_type": kind,
                    "registration_confirmation_required": true,
                    "write_off_confirmation_required": true,
                })
            );
        }
        srv.refused("/buyer-info", json!({"identificator": 5}))
            .await;
        srv.refused("/buyer-info", json!({"identificator": ""}))
            .await;
        srv.stop().await;
    }

    #[tokio::test]
    async fn registration_without_confirmation_and_edits() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        sandbox.set_settings(PbSettings {
            welcome_bonus: d("100"),
            ..PbSettings::default()
        });
        let srv = start(&sandbox).await;
        let answer = srv
            .ok(
                "/buyer-register",
                json!({
                    "phone": "79123456789", "card_number": "C-1", "surname": "Новикова",
                    "name": "Анна", "middle_name": "Петровна", "birth_date": "1990-05-01",
                    "gender": "female", "email": "anna@example.com", "external_id": "ms-1",
                    "phone_checked": false, "registration_channel": "pos", "cashier_name": "К",
                }),
            )
            .await;
        assert_eq!(answer["is_registered"], json!(true));
        assert_eq!(answer["phone"], json!("79123456789"));
        assert_eq!(answer["card_number"], json!("C-1"));
        assert_eq!(answer["middle_name"], json!("Петровна"));
        assert_eq!(answer["gender"], json!("female"));
        assert_eq!(answer["balance"].to_string(), "100.00");
        assert_eq!(answer["write_off_confirmation_required"], json!(false));
        assert_eq!(
            answer["client_id"],
            json!(client_id(Some("79123456789")).to_string())
        );
        assert_eq!(sandbox.balance("+7 912 345-67-89"), Some(d("100")));
        let found = srv.ok("/buyer-info", json!({"identificator": "C-1"})).await;
        assert_eq!(found["email"], json!("anna@example.com"));
        // Only the phone is required.
        let bare = srv
            .ok("/buyer-register", json!({"phone": "79123456780"}))
            .await;
        assert_eq!(bare["card_number"], Value::Null);
        assert_eq!(bare["name"], Value::Null);

        let cases = [
            (json!({}), "phone is required"),
            (json!({"phone": ""}), "phone is required"),
            (json!({"phone": IVANOV}), "already registered"),
            (
                json!({"phone": "79120000001", "card_number": "PB-0001"}),
                "Card",
            ),
            (
                json!({"phone": "79120000002", "email": "IVANOV@example.com"}),
                "email",
            ),
            (
                json!({"phone": "79120000003", "external_id": "demo-1"}),
                "external_id",
            ),
            (
                json!({"phone": "79120000004", "birth_date": "1990-13-01"}),
                "birth_date",
            ),
            (
                json!({"phone": "79120000004", "birth_date": "01.05.1990"}),
                "birth_date",
            ),
            (
                json!({"phone": "79120000004", "birth_date": "1990-5-1"}),
                "birth_date",
            ),
            (json!({"phone": "79120000004", "gender": "m"}), "gender"),
            (json!({"phone": "79120000004", "email": "anna"}), "email"),
            (json!({"phone": "79120000004", "name": 5}), "name"),
            (
                json!({"phone": "79120000004", "phone_checked": "yes"}),
                "phone_checked",
            ),
        ];
        for (body, expected) in cases {
            let description = srv.refused("/buyer-register", body.clone()).await;
            assert!(description.contains(expected), "{body}: {description}");
        }
        for phone in ["79120000001", "79120000002", "79120000003", "79120000004"] {
            assert_eq!(sandbox.balance(phone), None);
        }

        // buyer-edit: values replace, "" clears, absent keeps; uniqueness excludes the buyer.
        let edited = srv
            .ok(
                "/buyer-edit",
                json!({"phone": "79123456789", "name": "Анастасия", "email": "",
                       "card_number": "C-1", "phone_checked": true}),
            )
            .await;
        assert_eq!(edited["name"], json!("Анастасия"));
        assert_eq!(edited["surname"], json!("Новикова"));
        assert_eq!(edited["email"], Value::Null);
        assert_eq!(edited["card_number"], json!("C-1"));
        assert_eq!(edited["balance"].to_string(), "100.00");
        let found = srv.ok("/buyer-info", json!({"identificator": "C-1"})).await;
        assert_eq!(found["name"], json!("Анастасия"));
        for (body, expected) in [
            (
                json!({"phone": "79123456789", "card_number": "PB-0001"}),
                "Card",
            ),
            (
                json!({"phone": "79123456789", "email": "petrova@EXAMPLE.com"}),
                "email",
            ),
            (json!({"phone": "79123456789", "gender": "x"}), "gender"),
            (
                json!({"phone": "79110000000", "name": "X"}),
                "not registered",
            ),
            (json!({"name": "X"}), "phone is required"),
        ] {
            let description = srv.refused("/buyer-edit", body.clone()).await;
            assert!(description.contains(expected), "{body}: {description}");
        }
        // A blocked buyer can be edited.
        srv.ok(
            "/buyer-edit",
            json!({"phone": BLOCKED, "email": "s@example.com"}),
        )
        .await;
        srv.stop().await;
    }

    #[tokio::test]
    async fn registration_with_confirmation_needs_a_verified_phone() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        sandbox.set_settings(PbSettings {
            registration_confirmation_required: true,
            ..PbSettings::default()
        });
        let srv = start(&sandbox).await;
        let phone = "79160000001";
        let description = srv
            .refused("/buyer-register", json!({"phone": phone}))
            .await;
        assert!(description.contains("must be confirmed"), "{description}");
        assert!(description.contains(phone), "{description}");

        let description = srv
            .refused(
                "/verify-confirmation-code",
                json!({"phone": phone, "code": "1234"}),
            )
            .await;
        assert!(description.contains("No active code"), "{description}");

        let answer = srv.ok("/send-register-code", json!({"phone": phone})).await;
        assert_eq!(answer.as_object().map(Map::len), Some(2), "{answer}");
        let code = sandbox.last_code(phone).unwrap();
        assert_eq!(code.len(), 4);
        assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
        let wrong = if code == "0000" { "1111" } else { "0000" };

        let description = srv
            .refused(
                "/verify-confirmation-code",
                json!({"phone": phone, "code": wrong}),
            )
            .await;
        assert!(description.contains("Wrong code"), "{description}");
        assert!(description.contains("4 attempts left"), "{description}");
        // Still refused: a wrong code verifies nothing.
        srv.refused("/buyer-register", json!({"phone": phone}))
            .await;

        srv.ok(
            "/verify-confirmation-code",
            json!({"phone": phone, "code": code}),
        )
        .await;
        // The code is used up.
        let description = srv
            .refused(
                "/verify-confirmation-code",
                json!({"phone": phone, "code": code}),
            )
            .await;
        assert!(description.contains("No active code"), "{description}");
        let answer = srv
            .ok("/buyer-register", json!({"phone": phone, "name": "Олег"}))
            .await;
        assert_eq!(answer["registration_confirmation_required"], json!(true));

        // phone_checked: true is the caller vouching for the phone.
        srv.ok(
            "/buyer-register",
            json!({"phone": "79160000002", "phone_checked": true}),
        )
        .await;
        assert_eq!(sandbox.balance("79160000002"), Some(Decimal::ZERO));
        srv.stop().await;
    }

    #[tokio::test]
    async fn codes_are_limited_per_phone_and_burnt_by_wrong_attempts() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        let srv = start(&sandbox).await;

        // Three codes per phone per minute, both methods together.
        srv.ok("/send-register-code", json!({"phone": IVANOV}))
            .await;
        srv.ok(
            "/send-write-off-confirmation-code",
            json!({"phone": IVANOV, "purchase_amount": n("1000.00"), "write_off_bonus": 100}),
        )
        .await;
        srv.ok("/send-register-code", json!({"phone": IVANOV}))
            .await;
        let description = srv
            .refused("/send-register-code", json!({"phone": IVANOV}))
            .await;
        assert!(
            description.contains("at most 3 per minute"),
            "{description}"
        );
        srv.refused(
            "/send-write-off-confirmation-code",
            json!({"phone": IVANOV}),
        )
        .await;
        srv.ok("/send-register-code", json!({"phone": PETROVA}))
            .await;

        // Only the last code counts; five wrong attempts burn it.
        let code = sandbox.last_code(PETROVA).unwrap();
        let wrong = if code == "0000" { "1111" } else { "0000" };
        for left in (1..=4).rev() {
            let description = srv
                .refused(
                    "/verify-confirmation-code",
                    json!({"phone": PETROVA, "code": wrong}),
                )
                .await;
            assert!(
                description.contains(&format!("{left} attempts left")),
                "{description}"
            );
        }
        let description = srv
            .refused(
                "/verify-confirmation-code",
                json!({"phone": PETROVA, "code": wrong}),
            )
            .await;
        assert!(description.contains("no longer valid"), "{description}");
        let description = srv
            .refused(
                "/verify-confirmation-code",
                json!({"phone": PETROVA, "code": code}),
            )
            .await;
        assert!(description.contains("No active code"), "{description}");

        // Write-off codes go to registered, unblocked buyers only.
        for (phone, expected) in [("79110000000", "not registered"), (BLOCKED, "blocked")] {
            let description = srv
                .refused("/send-write-off-confirmation-code", json!({"phone": phone}))
                .await;
            assert!(description.contains(expected), "{description}");
        }
        let description = srv
            .refused(
                "/send-write-off-confirmation-code",
                json!({"phone": PETROVA, "write_off_bonus": "100"}),
            )
            .await;
        assert!(description.contains("write_off_bonus"), "{description}");
        srv.refused("/verify-confirmation-code", json!({"phone": PETROVA}))
            .await;
        assert_eq!(sandbox.last_code("+7 999 000-00-02"), Some(code));
        srv.stop().await;
    }

    #[test]
    fn codes_expire_and_verification_lasts_ten_minutes() {
        let mut state = State::default();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let send = |state: &mut State, now| state.send_code(IVANOV.to_owned(), now);
        let verify = |state: &mut State, now| {
            let code = state.last_codes.get(IVANOV).cloned().unwrap();
            let request: Map<String, Value> =
                serde_json::from_value(json!({"phone": IVANOV, "code": code})).unwrap();
            state.apply(Op::VerifyConfirmationCode, &request, now)
        };

        send(&mut state, at(0)).unwrap();
        let expired = verify(&mut state, at(300)).unwrap_err();
        assert!(expired.description.contains("expired"), "{expired}");
        assert!(!state.is_verified(IVANOV, at(300)));

        send(&mut state, at(301)).unwrap();
        verify(&mut state, at(600)).unwrap(); // 4 min 59 s after sending
        assert!(state.is_verified(IVANOV, at(600 + 599)));
        assert!(!state.is_verified(IVANOV, at(600 + 600)));

        // Three codes in any 60 s; a refusal does not count.
        let mut state = State::default();
        for secs in [0, 1, 2] {
            send(&mut state, at(secs)).unwrap();
        }
        let refused = send(&mut state, at(59)).unwrap_err();
        assert!(
            refused.description.contains("try again in 1 s"),
            "{refused}"
        );
        send(&mut state, at(60)).unwrap(); // the code sent at 0 s left the window
        send(&mut state, at(61)).unwrap(); // and the one sent at 1 s
        assert!(send(&mut state, at(61)).is_err());
    }

    // --- purchases -----------------------------------------------------------------------

    /// 300.00 + 100.00 + 33.33 = 433.33 for Иванов (balance 500).
    fn three_items() -> Value {
        json!([
            item(Some("A-1"), "Кофе", "300.00", "3"),
            item(Some("B-1"), "Чай", "100", "1"),
            item(None, "Пакет", "33.33", "1"),
        ])
    }

    #[tokio::test]
    async fn dry_run_figures_worked_by_hand() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        let srv = start(&sandbox).await;
        let dry = |write_off: &str| {
            json!({"phone": IVANOV, "sale_point_id": "3f04c71b-fbd7-4310-a84b-6fd34f0bd8ff",
                   "items": three_items(), "write_off_bonus": n(write_off)})
        };
        // 100.00 = 10000 kopecks over 30000 : 10000 : 3333 (sum 43333):
        //   floors 6923, 2307, 769 = 9999; remainders 5641, 30769, 6923 → B gets the last one.
        //   Paid 230.77, 76.92, 25.64; earned 5 %: 11.5385 → 11.53, 3.846 → 3.84, 1.282 → 1.28.
        let answer = srv.ok("/purchase-dry-run", dry("100")).await;
        assert_eq!(answer["purchase_amount"].to_string(), "433.33");
        assert_eq!(answer["payment_amount"].to_string(), "333.33");
        assert_eq!(answer["total_write_off_bonus"].to_string(), "100.00");
        assert_eq!(answer["total_write_on_bonus"].to_string(), "16.65");
        assert_eq!(answer["total_discount_external"].to_string(), "0.00");
        assert_eq!(answer["total_discount_premiumbonus"].to_string(), "0.00");
        assert_eq!(answer["balance"].to_string(), "500.00");
        assert_eq!(answer["print_on_check"], json!("Спасибо за покупку!"));
        let items = answer["items"].as_array().unwrap();
        let figures: Vec<(Value, String, String, String, String, String)> = items
            .iter()
            .map(|i| {
                (
                    i["external_item_id"].clone(),
                    i["quantity"].to_string(),
                    i["amount"].to_string(),
                    i["write_off_bonus"].to_string(),
                    i["write_on_bonus"].to_string(),
                    i["payment_amount"].to_string(),
                )
            })
            .collect();
        let row = |id: Value, q: &str, a: &str, off: &str, on: &str, pay: &str| {
            (id, q.into(), a.into(), off.into(), on.into(), pay.into())
        };
        assert_eq!(
            figures,
            [
                row(json!("A-1"), "3", "300.00", "69.23", "11.53", "230.77"),
                row(json!("B-1"), "1", "100.00", "23.08", "3.84", "76.92"),
                row(Value::Null, "1", "33.33", "7.69", "1.28", "25.64"),
            ]
        );
        assert_eq!(items[2]["name"], json!("Пакет"));

        // The maximum is 50 % of 433.33 = 216.665, rounded down.
        let description = srv.refused("/purchase-dry-run", dry("216.67")).await;
        assert!(description.contains("maximum 216.66"), "{description}");
        assert!(description.contains("balance 500.00"), "{description}");
        let answer = srv.ok("/purchase-dry-run", dry("216.66")).await;
        assert_eq!(answer["payment_amount"].to_string(), "216.67");
        // Without a write-off, everything earns: 15.00 + 5.00 + 1.6665 → 1.66.
        let answer = srv.ok("/purchase-dry-run", dry("0")).await;
        assert_eq!(answer["total_write_on_bonus"].to_string(), "21.66");

        // The balance caps the write-off too.
        sandbox.add_buyer(PbBuyer {
            phone: Some("79995550000".into()),
            balance: d("12.345"),
            ..PbBuyer::default()
        });
        let mut body = dry("12.35");
        body["phone"] = json!("79995550000");
        let description = srv.refused("/purchase-dry-run", body.clone()).await;
        assert!(description.contains("maximum 12.34"), "{description}");

        // Unregistered: no bonuses at all; blocked: refused.
        let answer = srv
            .ok(
                "/purchase-dry-run",
                json!({"phone": "79110000000", "items": three_items()}),
            )
            .await;
        assert_eq!(answer["total_write_on_bonus"].to_string(), "0.00");
        assert_eq!(answer["balance"].to_string(), "0.00");
        assert_eq!(answer["payment_amount"].to_string(), "433.33");
        let mut body = dry("0.01");
        body["phone"] = json!("79110000000");
        let description = srv.refused("/purchase-dry-run", body).await;
        assert!(description.contains("not registered"), "{description}");
        let description = srv
            .refused(
                "/purchase-dry-run",
                json!({"identificator": "PB-0009", "items": three_items()}),
            )
            .await;
        assert!(description.contains("blocked"), "{description}");

        // Discounts are echoed: the receipt's, else the items' sum.
        let mut items = three_items();
        items[0]["discount"] = n("10");
        items[1]["discount"] = n("5.5");
        let answer = srv
            .ok(
                "/purchase-dry-run",
                json!({"identificator": "PB-0001", "items": items.clone()}),
            )
            .await;
        assert_eq!(answer["total_discount_external"].to_string(), "15.50");
        assert_eq!(answer["purchase_amount"].to_string(), "433.33");
        let answer = srv
            .ok(
                "/purchase-dry-run",
                json!({"identificator": "PB-0001", "items": items, "discount": 7}),
            )
            .await;
        assert_eq!(answer["total_discount_external"].to_string(), "7.00");

        let bad_items = [
            (json!([]), "at least one item"),
            (json!("A"), "items must be an array"),
            (json!([item(None, "A", "1.005", "1")]), "at most 2 decimals"),
            (json!([item(None, "A", "-1", "1")]), "between 0 and"),
            (json!([item(None, "A", "1e13", "1")]), "between 0 and"),
            (
                json!([item(None, "A", "1", "0")]),
                "quantity must be above 0",
            ),
            (
                json!([{"name": "A", "amount": "1", "quantity": 1}]),
                "amount must be a number",
            ),
            (
                json!([{"amount": 1, "quantity": 1}]),
                "items[0].name is required",
            ),
            (
                json!([{"name": "A", "quantity": 1}]),
                "items[0].amount is required",
            ),
            (
                json!([{"name": "A", "amount": 1}]),
                "items[0].quantity is required",
            ),
            (
                json!([{"name": "A", "amount": 1, "quantity": 1, "external_item_id": []}]),
                "external_item_id",
            ),
            (json!([1]), "items[0] must be an object"),
        ];
        for (items, expected) in bad_items {
            let description = srv
                .refused(
                    "/purchase-dry-run",
                    json!({"phone": IVANOV, "items": items}),
                )
                .await;
            assert!(description.contains(expected), "{description}");
        }
        let description = srv
            .refused(
                "/purchase-dry-run",
                json!({"phone": IVANOV, "items": three_items(), "sale_point_id": "x"}),
            )
            .await;
        assert!(description.contains("sale_point_id"), "{description}");
        let description = srv
            .refused("/purchase-dry-run", json!({"items": three_items()}))
            .await;
        assert!(
            description.contains("phone or identificator"),
            "{description}"
        );

        // Dry runs change nothing.
        assert_eq!(sandbox.balance(IVANOV), Some(d("500")));
        srv.stop().await;
    }

    #[tokio::test]
    async fn purchase_follows_the_documented_example_and_is_idempotent() {
        let sandbox = PremiumBonusSandbox::new(TOKEN);
        sandbox.add_buyer(PbBuyer {
            phone: Some("79991234567".into()),
            balance: d("400"),
            ..PbBuyer::default()
        });
        let srv = start(&sandbox).await;
        let body: Value = serde_json::from_str(
            r#"{"phone": "79991234567", "sale_point_id": "3f04c71b-fbd7-4310-a84b-6fd34f0bd8ff",
                "external_purchase_id": "ms-6b1e0c2a", "cashier_name": "Кассир 2", "write_off_bonus": 100,
                "items": [{"external_item_id": "A-100", "name": "Кофе 250г", "quantity": 2, "amount": 1000.00}],
                "purchase_status": "approved"}"#,
        )
        .unwrap();
        let first = srv.ok("/purchase", body.clone()).await;
        assert_eq!(first["external_purchase_id"], json!("ms-6b1e0c2a"));
        assert!(Uuid::parse_str(first["purchase_id"].as_str().unwrap()).is_ok());
        assert_eq!(first["purchase_amount"].to_string(), "1000.00");
        assert_eq!(first["payment_amount"].to_string(), "900.00");
        assert_eq!(first["total_write_off_bonus"].to_string(), "100.00");
        assert_eq!(first["total_write_on_bonus"].to_string(), "45.00");
        assert_eq!(first["total_discount_external"].to_string(), "0.00");
        assert_eq!(first["total_discount_premiumbonus"].to_string(), "0.00");
        assert_eq!(first["balance"].to_string(), "345.00");
        assert_eq!(first["print_on_check"], json!("Спасибо за покупку!"));
        assert_eq!(first["purchase_status"], json!("approved"));
        assert_eq!(
            first["items"],
            json!([{"external_item_id": "A-100", "name": "Кофе 250г", "quantity": 2,
                    "amount": n("1000.00"), "write_off_bonus": n("100.00"),
                    "write_on_bonus": n("45.00"), "payment_amount": n("900.00")}])
        );
        assert_eq!(sandbox.balance("79991234567"), Some(d("345")));

        // A repeat, even with another body, answers the first purchase and changes nothing.
        let mut other = body.clone();
        other["write_off_bonus"] = json!(5);
        for repeat in [body.clone(), other] {
            let again = srv.ok("/purchase", repeat).await;
            let strip = |v: &Value| {
                let mut v = v.as_object().cloned().unwrap();
                v.remove("logger");
                v
            };
            assert_eq!(strip(&again), strip(&first));
            assert_ne!(again["logger"], first["logger"]);
        }
        assert_eq!(sandbox.balance("79991234567"), Some(d("345")));
        assert_eq!(sandbox.calls("/purchase"), 3);

        // purchase-info by either id.
        let id = first["purchase_id"].as_str().unwrap().to_owned();
        for query in [
            json!({"purchase_id": id}),
            json!({"purchase_id": id.to_uppercase()}),
            json!({"external_purchase_id": "ms-6b1e0c2a"}),
            json!({"purchase_id": id, "external_purchase_id": "ms-6b1e0c2a"}),
        ] {
            let info = srv.ok("/purchase-info", query).await;
            assert_eq!(info["purchase_id"], json!(id));
            assert_eq!(info["total_write_on_bonus"].to_string(), "45.00");
            assert_eq!(info["purchase_status"], json!("approved"));
            assert_eq!(info["balance"].to_string(), "345.00");
        }
        for (query, expected) in [
            (
                json!({"purchase_id": id, "external_purchase_id": "other"}),
                "different purchases",
            ),
            (json!({"external_purchase_id": "nope"}), "not found"),
            (
                json!({"purchase_id": Uuid::new_v4().to_string()}),
                "not found",
            ),
            (json!({"purchase_id": "nope"}), "must be a UUID"),
            (json!({}), "purchase_id or external_purchase_id is required"),
        ] {
            let description = srv.refused("/purchase-info", query).await;
            assert!(description.contains(expected), "{description}");
        }

        let mut without_id = body.clone();
        without_id
            .as_object_mut()
            .unwrap()
            .remove("external_purchase_id");
        let description = srv.refused("/purchase", without_id).await;
        assert!(description.contains("external_purchase_id is required"));
        let mut bad_status = body.clone();
        bad_status["external_purchase_id"] = json!("ms-2");
        bad_status["purchase_status"] = json!("done");
        let description = srv.refused("/purchase", bad_status).await;
        assert!(description.contains("purchase_status"), "{description}");
        // A refused purchase leaves its external_purchase_id free.
        let mut too_much = body.clone();
        too_much["external_purchase_id"] = json!("ms-2");
        too_much["write_off_bonus"] = json!(346);
        let description = srv.refused("/purchase", too_much.clone()).await;
        assert!(description.contains("maximum 345.00"), "{description}");
        too_much["write_off_bonus"] = json!(0);
        let answer = srv.ok("/purchase", too_much).await;
        assert_eq!(answer["balance"].to_string(), "395.00");

        // Anonymous purchases succeed without bonuses.
        let answer = srv
            .ok(
                "/purchase",
                purchase_body("anon", "79110000000", "0", three_items()),
            )
            .await;
        assert_eq!(answer["total_write_on_bonus"].to_string(), "0.00");
        assert_eq!(answer["balance"].to_string(), "0.00");
        srv.stop().await;
    }

    #[tokio::test]
    async fn not_approved_purchases_credit_on_approval() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        let srv = start(&sandbox).await;
        let mut body = purchase_body(
            "na-1",
            IVANOV,
            "100",
            json!([item(Some("A"), "A", "1000", "1")]),
        );
        body["purchase_status"] = json!("not_approved");
        let answer = srv.ok("/purchase", body).await;
        assert_eq!(answer["purchase_status"], json!("not_approved"));
        assert_eq!(answer["total_write_on_bonus"].to_string(), "45.00");
        assert_eq!(answer["balance"].to_string(), "400.00");
        let info = srv
            .ok("/buyer-info", json!({"identificator": IVANOV}))
            .await;
        assert_eq!(info["bonus_inactive"].to_string(), "45.00");

        let change = |status: &str| json!({"external_purchase_id": "na-1", "status": status});
        // Setting the status it already has does nothing.
        srv.ok("/change-purchase-status", change("not_approved"))
            .await;
        assert_eq!(sandbox.balance(IVANOV), Some(d("400")));
        let answer = srv.ok("/change-purchase-status", change("approved")).await;
        assert_eq!(answer["purchase_status"], json!("approved"));
        assert_eq!(answer["balance"].to_string(), "445.00");
        srv.ok("/change-purchase-status", change("approved")).await;
        assert_eq!(sandbox.balance(IVANOV), Some(d("445")));
        let info = srv
            .ok("/buyer-info", json!({"identificator": IVANOV}))
            .await;
        assert_eq!(info["bonus_inactive"].to_string(), "0.00");
        let description = srv
            .refused("/change-purchase-status", change("not_approved"))
            .await;
        assert!(description.contains("cannot go back"), "{description}");
        srv.refused("/change-purchase-status", change("done")).await;
        srv.refused(
            "/change-purchase-status",
            json!({"external_purchase_id": "na-1"}),
        )
        .await;

        // A cancelled not_approved purchase drops its pending bonuses.
        let mut body = purchase_body("na-2", IVANOV, "45", json!([item(None, "B", "200", "1")]));
        body["purchase_status"] = json!("not_approved");
        srv.ok("/purchase", body).await;
        assert_eq!(sandbox.balance(IVANOV), Some(d("400")));
        let answer = srv
            .ok("/cancel-purchase", json!({"external_purchase_id": "na-2"}))
            .await;
        assert_eq!(answer["purchase_status"], json!("cancelled"));
        assert_eq!(answer["balance"].to_string(), "445.00");
        let info = srv
            .ok("/buyer-info", json!({"identificator": IVANOV}))
            .await;
        assert_eq!(info["bonus_inactive"].to_string(), "0.00");
        let description = srv
            .refused(
                "/change-purchase-status",
                json!({"external_purchase_id": "na-2", "status": "approved"}),
            )
            .await;
        assert!(description.contains("cancelled"), "{description}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn write_offs_need_a_verified_phone_when_required() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        sandbox.set_settings(PbSettings {
            write_off_confirmation_required: true,
            ..PbSettings::default()
        });
        let srv = start(&sandbox).await;
        let items = json!([item(None, "A", "100", "1")]);
        let info = srv
            .ok("/buyer-info", json!({"identificator": IVANOV}))
            .await;
        assert_eq!(info["write_off_confirmation_required"], json!(true));

        // Dry runs and purchases without a write-off need no code.
        srv.ok(
            "/purchase-dry-run",
            json!({"phone": IVANOV, "items": items, "write_off_bonus": 50}),
        )
        .await;
        srv.ok(
            "/purchase",
            purchase_body("w-0", IVANOV, "0", items.clone()),
        )
        .await;
        let description = srv
            .refused(
                "/purchase",
                purchase_body("w-1", IVANOV, "50", items.clone()),
            )
            .await;
        assert!(description.contains("must be confirmed"), "{description}");
        assert_eq!(sandbox.balance(IVANOV), Some(d("505")));

        srv.ok(
            "/send-write-off-confirmation-code",
            json!({"phone": IVANOV, "purchase_amount": 100, "write_off_bonus": 50}),
        )
        .await;
        // A code that was sent but not verified is not enough.
        srv.refused(
            "/purchase",
            purchase_body("w-1", IVANOV, "50", items.clone()),
        )
        .await;
        let code = sandbox.last_code(IVANOV).unwrap();
        srv.ok(
            "/verify-confirmation-code",
            json!({"phone": IVANOV, "code": code}),
        )
        .await;
        // By card: the verification belongs to the buyer's phone.
        let mut by_card = purchase_body("w-1", IVANOV, "50", items.clone());
        by_card.as_object_mut().unwrap().remove("phone");
        by_card["identificator"] = json!("PB-0001");
        let answer = srv.ok("/purchase", by_card).await;
        assert_eq!(answer["total_write_off_bonus"].to_string(), "50.00");
        // 505 − 50 + 2.50
        assert_eq!(sandbox.balance(IVANOV), Some(d("457.5")));
        srv.stop().await;
    }

    #[tokio::test]
    async fn cancel_reverses_everything_once() {
        let sandbox = PremiumBonusSandbox::new(TOKEN);
        let phone = "79995550001";
        sandbox.add_buyer(PbBuyer {
            phone: Some(phone.into()),
            ..PbBuyer::default()
        });
        let srv = start(&sandbox).await;
        // Earn 50.00, then spend it all on another purchase (+2.50).
        let first = srv
            .ok(
                "/purchase",
                purchase_body("c-1", phone, "0", json!([item(None, "A", "1000", "1")])),
            )
            .await;
        srv.ok(
            "/purchase",
            purchase_body("c-2", phone, "50", json!([item(None, "B", "100", "1")])),
        )
        .await;
        assert_eq!(sandbox.balance(phone), Some(d("2.5")));

        // Cancelling the first takes its 50.00 back: the balance goes negative.
        let id = first["purchase_id"].as_str().unwrap().to_owned();
        let cancelled = srv.ok("/cancel-purchase", json!({"purchase_id": id})).await;
        assert_eq!(cancelled["purchase_status"], json!("cancelled"));
        assert_eq!(cancelled["total_write_on_bonus"].to_string(), "50.00");
        assert_eq!(cancelled["balance"].to_string(), "-47.50");
        assert_eq!(sandbox.balance(phone), Some(d("-47.5")));
        let info = srv.ok("/buyer-info", json!({"phone": phone})).await;
        assert_eq!(info["balance"].to_string(), "-47.50");
        // Nothing can be written off from a negative balance.
        let description = srv
            .refused(
                "/purchase-dry-run",
                json!({"phone": phone, "items": [item(None, "A", "10", "1")], "write_off_bonus": 0.01}),
            )
            .await;
        assert!(description.contains("maximum 0.00"), "{description}");

        // A repeated cancel answers the same and changes nothing.
        let again = srv
            .ok("/cancel-purchase", json!({"external_purchase_id": "c-1"}))
            .await;
        assert_eq!(again["balance"], cancelled["balance"]);
        assert_eq!(again["purchase_id"], cancelled["purchase_id"]);
        assert_eq!(sandbox.balance(phone), Some(d("-47.5")));

        // The second purchase: its 50.00 written off comes back, its 2.50 goes.
        let answer = srv
            .ok("/cancel-purchase", json!({"external_purchase_id": "c-2"}))
            .await;
        assert_eq!(answer["balance"].to_string(), "0.00");

        let info = srv
            .ok("/purchase-info", json!({"external_purchase_id": "c-1"}))
            .await;
        assert_eq!(info["purchase_status"], json!("cancelled"));
        // A repeated /purchase still answers the first answer.
        let repeat = srv
            .ok(
                "/purchase",
                purchase_body("c-1", phone, "0", json!([item(None, "A", "1000", "1")])),
            )
            .await;
        assert_eq!(repeat["purchase_status"], json!("approved"));
        assert_eq!(sandbox.balance(phone), Some(Decimal::ZERO));

        let description = srv
            .refused("/cancel-purchase", json!({"external_purchase_id": "nope"}))
            .await;
        assert!(description.contains("not found"), "{description}");
        let description = srv
            .refused(
                "/edit-purchase",
                json!({"external_purchase_id": "c-1", "items": []}),
            )
            .await;
        assert!(description.contains("cancelled"), "{description}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn partial_returns_by_edit_add_up_exactly() {
        let sandbox = PremiumBonusSandbox::new(TOKEN);
        sandbox.set_settings(PbSettings {
            earn_percent: d("10"),
            ..PbSettings::default()
        });
        let phone = "79995550002";
        sandbox.add_buyer(PbBuyer {
            phone: Some(phone.into()),
            balance: d("1000"),
            ..PbBuyer::default()
        });
        let srv = start(&sandbox).await;
        let a = |q: &str, amount: &str| item(Some("A"), "Кофе", amount, q);
        let b = item(Some("B"), "Чай", "100", "1");
        let c = item(None, "Пакет", "0.99", "1");

        // 101.00 over 30000 : 10000 : 99 kopecks (sum 40099): floors 7556, 2518, 24 (= 10098),
        // remainders 11956, 30718, 37524 → C and B get the last two: 75.56, 25.19, 0.25.
        // Paid 224.44, 74.81, 0.74; earned 10 %: 22.44 + 7.48 + 0.07 = 29.99.
        let bought = srv
            .ok(
                "/purchase",
                purchase_body(
                    "e-1",
                    phone,
                    "101",
                    json!([a("3", "300"), b.clone(), c.clone()]),
                ),
            )
            .await;
        let per_item = |answer: &Value, field: &str| -> Vec<String> {
            answer["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i[field].to_string())
                .collect()
        };
        assert_eq!(
            per_item(&bought, "write_off_bonus"),
            ["75.56", "25.19", "0.25"]
        );
        assert_eq!(
            per_item(&bought, "write_on_bonus"),
            ["22.44", "7.48", "0.07"]
        );
        assert_eq!(bought["total_write_on_bonus"].to_string(), "29.99");
        assert_eq!(bought["balance"].to_string(), "928.99");
        let id = bought["purchase_id"].as_str().unwrap().to_owned();

        // Refusals change nothing.
        let edit = |items: Value| json!({"purchase_id": id, "items": items});
        for (items, expected) in [
            (
                json!([item(Some("Z"), "Кофе", "1", "1")]),
                "not in the purchase",
            ),
            (
                json!([item(Some("Пакет"), "Пакет", "0.99", "1")]),
                "not in the purchase",
            ),
            (
                json!([item(None, "Кофе", "100", "1")]),
                "not in the purchase",
            ),
            (json!([a("4", "300")]), "holds 3"),
            (json!([a("3", "300.01")]), "amount 300.01"),
            (json!([a("2", "200"), a("2", "200")]), "holds 3"),
        ] {
            let description = srv.refused("/edit-purchase", edit(items)).await;
            assert!(description.contains(expected), "{description}");
        }
        let description = srv
            .refused(
                "/edit-purchase",
                json!({"purchase_id": id, "items": [a("2", "200"), b.clone(), c.clone()],
                       "write_off_bonus": 101.01}),
            )
            .await;
        assert!(
            description.contains("above the purchase's write-off 101.00"),
            "{description}"
        );
        // Without a write_off_bonus the whole 101.00 stays on the tea and the bag: above the
        // 50 % of their 100.99 that bonuses may pay.
        let description = srv
            .refused("/edit-purchase", edit(json!([b.clone(), c.clone()])))
            .await;
        assert!(description.contains("maximum 50.49"), "{description}");
        srv.refused("/edit-purchase", json!({"purchase_id": id}))
            .await;
        assert_eq!(sandbox.balance(phone), Some(d("928.99")));

        // One coffee back, its share asked: 101 × 300.99 / 400.99 = 75.8123… → 75.81 (25.19 back), spread
        // 50.37, 25.19, 0.25; earned 14.96 + 7.48 + 0.07 = 22.51 (7.48 taken back).
        let first = srv
            .ok(
                "/edit-purchase",
                json!({"purchase_id": id, "items": [a("2", "200"), b.clone(), c.clone()],
                       "write_off_bonus": 75.81}),
            )
            .await;
        assert_eq!(first["purchase_amount"].to_string(), "300.99");
        assert_eq!(first["total_write_off_bonus"].to_string(), "75.81");
        assert_eq!(
            per_item(&first, "write_off_bonus"),
            ["50.37", "25.19", "0.25"]
        );
        assert_eq!(first["total_write_on_bonus"].to_string(), "22.51");
        assert_eq!(first["payment_amount"].to_string(), "225.18");
        assert_eq!(first["balance"].to_string(), "946.70");
        assert_eq!(first["purchase_status"], json!("approved"));

        // The rest of the coffee, its share asked: 101 × 100.99 / 400.99 → 25.44 (50.37 back);
        // earned 7.48 + 0.07 = 7.55 (14.96 taken back).
        let second = srv
            .ok(
                "/edit-purchase",
                json!({"external_purchase_id": "e-1", "items": [b.clone(), c.clone()],
                       "write_off_bonus": 25.44}),
            )
            .await;
        assert_eq!(second["total_write_off_bonus"].to_string(), "25.44");
        assert_eq!(per_item(&second, "write_off_bonus"), ["25.19", "0.25"]);
        assert_eq!(second["total_write_on_bonus"].to_string(), "7.55");
        assert_eq!(second["balance"].to_string(), "982.11");
        // Edits only shrink.
        let description = srv
            .refused("/edit-purchase", edit(json!([a("1", "100")])))
            .await;
        assert!(description.contains("not in the purchase"), "{description}");

        // Everything back: 25.44 + 50.37 + 25.19 = 101.00 given back, 7.55 + 14.96 + 7.48 =
        // 29.99 taken back; the balance is exactly where it started.
        let last = srv
            .ok(
                "/edit-purchase",
                json!({"purchase_id": id, "items": [], "write_off_bonus": 0}),
            )
            .await;
        assert_eq!(last["purchase_amount"].to_string(), "0.00");
        assert_eq!(last["total_write_off_bonus"].to_string(), "0.00");
        assert_eq!(last["total_write_on_bonus"].to_string(), "0.00");
        assert_eq!(last["items"], json!([]));
        assert_eq!(sandbox.balance(phone), Some(d("1000")));
        let info = srv.ok("/purchase-info", json!({"purchase_id": id})).await;
        assert_eq!(info["purchase_amount"].to_string(), "0.00");
        // Cancelling what is left moves nothing.
        srv.ok("/cancel-purchase", json!({"purchase_id": id})).await;
        assert_eq!(sandbox.balance(phone), Some(d("1000")));
        srv.stop().await;
    }

    #[tokio::test]
    async fn the_maximum_write_off_is_in_no_answer() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        let srv = start(&sandbox).await;
        let items = json!([item(Some("X"), "X", "500", "1")]);
        // premiumbonus.md names no field for the maximum benefit /purchase-request tells.
        let answer = srv
            .ok(
                "/purchase-request",
                json!({"phone": IVANOV, "items": items}),
            )
            .await;
        let mut fields: Vec<&str> = answer
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["logger", "success"]);
        srv.refused(
            "/purchase-request",
            json!({"phone": BLOCKED, "items": items}),
        )
        .await;
        srv.refused("/purchase-request", json!({"phone": IVANOV}))
            .await;
        // Nor does a dry run report it: it refuses a write-off above it (500 × 50 % = 250).
        let answer = srv
            .ok(
                "/purchase-dry-run",
                json!({"phone": IVANOV, "items": items, "write_off_bonus": 250}),
            )
            .await;
        assert!(answer.get("max_write_off_bonus").is_none(), "{answer}");
        let description = srv
            .refused(
                "/purchase-dry-run",
                json!({"phone": IVANOV, "items": items, "write_off_bonus": 250.01}),
            )
            .await;
        assert!(description.contains("maximum 250.00"), "{description}");
        assert_eq!(sandbox.calls("/purchase-request"), 3);
        srv.stop().await;
    }

    #[tokio::test]
    async fn an_edit_may_give_back_more_but_never_earn_more() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        let srv = start(&sandbox).await;
        // 200.00 with 100.00 written off: earned 5.00; balance 500 − 100 + 5 = 405.
        srv.ok(
            "/purchase",
            purchase_body(
                "g-1",
                IVANOV,
                "100",
                json!([item(Some("X"), "X", "200", "2")]),
            ),
        )
        .await;
        assert_eq!(sandbox.balance(IVANOV), Some(d("405")));
        // Nothing returned, but 40.00 of the write-off given back: the paid 140.00 would earn
        // 7.00, capped at the 5.00 already earned.
        let answer = srv
            .ok(
                "/edit-purchase",
                json!({"external_purchase_id": "g-1", "items": [item(Some("X"), "X", "200", "2")],
                       "write_off_bonus": 60, "discount": 3}),
            )
            .await;
        assert_eq!(answer["total_write_off_bonus"].to_string(), "60.00");
        assert_eq!(answer["total_write_on_bonus"].to_string(), "5.00");
        assert_eq!(answer["total_discount_external"].to_string(), "3.00");
        assert_eq!(answer["payment_amount"].to_string(), "140.00");
        assert_eq!(sandbox.balance(IVANOV), Some(d("445")));

        // A not_approved purchase: edits move the pending bonuses.
        let mut body = purchase_body("g-2", PETROVA, "0", json!([item(None, "Y", "100", "2")]));
        body["purchase_status"] = json!("not_approved");
        srv.ok("/purchase", body).await;
        let info = srv
            .ok("/buyer-info", json!({"identificator": PETROVA}))
            .await;
        assert_eq!(info["bonus_inactive"].to_string(), "5.00");
        srv.ok(
            "/edit-purchase",
            json!({"external_purchase_id": "g-2", "items": [item(None, "Y", "50", "1")]}),
        )
        .await;
        let info = srv
            .ok("/buyer-info", json!({"identificator": PETROVA}))
            .await;
        assert_eq!(info["bonus_inactive"].to_string(), "2.50");
        assert_eq!(info["balance"].to_string(), "0.00");
        srv.stop().await;
    }

    // --- seeding -------------------------------------------------------------------------

    #[test]
    fn demo_data_and_seeding_hooks() {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        assert_eq!(sandbox.balance("+7 999 000 00 01"), Some(d("500.00")));
        assert_eq!(sandbox.balance("89990000002"), Some(Decimal::ZERO));
        assert_eq!(sandbox.balance(BLOCKED), Some(d("100")));
        assert_eq!(sandbox.balance("70000000000"), None);
        assert_eq!(sandbox.balance("garbage"), None);
        assert_eq!(sandbox.last_code(IVANOV), None);
        assert_eq!(sandbox.calls("/buyer-info"), 0);
        assert!(sandbox.requests().is_empty());
        // Re-seeding a buyer replaces it instead of creating a duplicate.
        sandbox.add_buyer(PbBuyer {
            phone: Some("8 (999) 000-00-01".into()),
            balance: d("7"),
            ..PbBuyer::default()
        });
        assert_eq!(sandbox.balance(IVANOV), Some(d("7")));
        {
            let state = sandbox.shared.lock();
            let live = state.buyers.iter().flatten().count();
            assert_eq!(live, 3);
        }
        assert!(!format!("{sandbox:?}").contains(TOKEN));
        assert_eq!(PbSettings::default().earn_percent, d("5"));
        assert_eq!(PbSettings::default().max_write_off_percent, d("50"));
    }

    // --- helpers -------------------------------------------------------------------------

    #[test]
    fn phone_formats() {
        assert!(is_pb_phone("79990000001"));
        for bad in [
            "",
            "7999000000",
            "+79990000001",
            "89990000001",
            "7999000000٣",
        ] {
            assert!(!is_pb_phone(bad), "{bad}");
        }
        for ok in [
            "+79990000001",
            "79990000001",
            "89990000001",
            "+7 (999) 000-00-01",
        ] {
            assert_eq!(normalize_phone(ok).as_deref(), Some("79990000001"), "{ok}");
        }
        for bad in [
            "",
            "+89990000001",
            "7999000000a",
            "+7+9990000001",
            "69990000001",
        ] {
            assert_eq!(normalize_phone(bad), None, "{bad}");
        }
        assert!(looks_like_phone("+7999"));
        assert!(looks_like_phone("8 (999) 000-00-01"));
        assert!(!looks_like_phone("89990000001"));
        assert!(!looks_like_phone("PB-0001"));
        assert!(!looks_like_phone("12-34"));
    }

    #[test]
    fn money_is_written_with_two_decimals() {
        assert_eq!(money(d("150")).to_string(), "150.00");
        assert_eq!(money(d("0.005")).to_string(), "0.01");
        assert_eq!(money(d("-0")).to_string(), "0.00");
        assert_eq!(money(d("-47.5")).to_string(), "-47.50");
        assert_eq!(number(d("2.500")).to_string(), "2.5");
        assert_eq!(floor_money(d("216.665")), d("216.66"));
        assert_eq!(shorten(&"я".repeat(100)).chars().count(), 65);
    }

    #[test]
    fn allocation_examples() {
        assert_eq!(allocate(100, &[1, 1, 1]), Some(vec![34, 33, 33]));
        assert_eq!(allocate(10, &[0, 5, 0]), Some(vec![0, 10, 0]));
        assert_eq!(allocate(0, &[1, 2]), Some(vec![0, 0]));
        assert_eq!(allocate(5, &[0, 0]), Some(vec![0, 0]));
        assert_eq!(allocate(2, &[1, 1, 1]), Some(vec![1, 1, 0]));
        assert_eq!(allocate(i128::MAX, &[2, 1]), None);
    }

    // --- properties ----------------------------------------------------------------------

    const FIELDS: &[&str] = &[
        "phone",
        "identificator",
        "external_id",
        "items",
        "name",
        "amount",
        "quantity",
        "external_item_id",
        "discount",
        "write_off_bonus",
        "external_purchase_id",
        "purchase_id",
        "purchase_status",
        "status",
        "code",
        "card_number",
        "birth_date",
        "gender",
        "email",
        "phone_checked",
        "sale_point_id",
        "cashier_name",
        "purchase_amount",
        "surname",
    ];

    const STRINGS: &[&str] = &[
        "79990000001",
        "79990000002",
        "79990000009",
        "79110000000",
        "PB-0001",
        "PB-0009",
        "ivanov@example.com",
        "demo-1",
        "approved",
        "not_approved",
        "p-1",
        "male",
        "1990-01-01",
        "A",
        "",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| {
                serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
            }),
            "-?[0-9]{1,32}(\\.[0-9]{1,32})?([eE][-+]?[0-9]{1,5})?"
                .prop_map(|s| serde_json::from_str::<Value>(&s).unwrap_or(Value::Null)),
            proptest::sample::select(STRINGS).prop_map(|s| Value::String(s.to_owned())),
            any::<String>().prop_map(Value::String),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
            1 => any::<String>(),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn request_object() -> impl Strategy<Value = Map<String, Value>> {
        proptest::collection::vec((key(), json_value()), 0..8)
            .prop_map(|kv| kv.into_iter().collect())
    }

    /// A sandbox with a purchase `p-1` to edit, cancel and look up.
    fn seeded() -> PremiumBonusSandbox {
        let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
        let request = purchase_body(
            "p-1",
            IVANOV,
            "10",
            json!([item(Some("A"), "A", "100", "1")]),
        );
        let Value::Object(request) = request else {
            unreachable!()
        };
        sandbox
            .shared
            .lock()
            .apply(Op::Purchase, &request, Instant::now())
            .unwrap();
        sandbox
    }

    fn authorized() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static(TOKEN));
        headers
    }

    proptest! {
        #[test]
        fn allocation_is_exact_and_fair(
            total in 0i128..10_000_000,
            weights in proptest::collection::vec(0i128..1_000_000, 1..20),
        ) {
            let parts = allocate(total, &weights).unwrap();
            let sum: i128 = weights.iter().sum();
            prop_assert_eq!(parts.len(), weights.len());
            if sum == 0 {
                prop_assert!(parts.iter().all(|p| *p == 0));
            } else {
                prop_assert_eq!(parts.iter().sum::<i128>(), total);
                for (part, weight) in parts.iter().zip(&weights) {
                    let floor = total * weight / sum;
                    prop_assert!(*part == floor || *part == floor + 1);
                }
            }
        }

        #[test]
        fn no_input_panics(
            request in request_object(),
            bytes in any::<Vec<u8>>(),
            fields in proptest::collection::vec(leaf(), 6),
        ) {
            let sandbox = seeded();
            let headers = authorized();
            let now = Instant::now();
            for op in Op::ALL {
                let response = sandbox.shared.dispatch(
                    &Method::POST, op.path(), &headers, Body::Object(request.clone()), "L", now,
                );
                prop_assert!(matches!(response.status().as_u16(), 200 | 400), "{:?}", op);
                let (body, _) = parse_body(Some(&bytes));
                let response =
                    sandbox.shared.dispatch(&Method::POST, op.path(), &headers, body, "L", now);
                prop_assert!(matches!(response.status().as_u16(), 200 | 400), "{:?}", op);
            }
            // Items built from arbitrary values, in every purchase method.
            let mut purchase = request.clone();
            purchase.insert("phone".into(), json!(IVANOV));
            purchase.insert("external_purchase_id".into(), json!("p-1"));
            purchase.insert("items".into(), Value::Array(vec![Value::Object(request)]));
            for op in [Op::PurchaseDryRun, Op::Purchase, Op::EditPurchase] {
                let _ = sandbox.shared.lock().apply(op, &purchase, now);
            }
            // Items whose fields are arbitrary values, so the arithmetic sees odd numbers.
            let odd = json!({
                "phone": IVANOV, "external_purchase_id": "p-1", "write_off_bonus": fields[0],
                "discount": fields[1],
                "items": [
                    {"name": "A", "external_item_id": "A", "amount": fields[2], "quantity": fields[3]},
                    {"name": fields[4], "amount": fields[5], "quantity": 1},
                ],
            });
            let Value::Object(odd) = odd else { unreachable!() };
            for op in [Op::PurchaseDryRun, Op::EditPurchase, Op::Purchase] {
                let _ = sandbox.shared.lock().apply(op, &odd, now);
            }
        }

        #[test]
        fn any_sequence_of_edits_adds_up(
            amounts in proptest::collection::vec(0u32..5_000_000, 1..6),
            write_off_share in 0u32..=100,
            earn in 0u32..=30,
            masks in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 6), 0..4),
        ) {
            let sandbox = PremiumBonusSandbox::new(TOKEN);
            sandbox.set_settings(PbSettings { earn_percent: Decimal::from(earn), ..PbSettings::default() });
            let start = d("1000000");
            sandbox.add_buyer(PbBuyer { phone: Some(IVANOV.into()), balance: start, ..PbBuyer::default() });
            let kopecks = |k: u32| Decimal::new(i64::from(k), 2);
            let items = |keep: &[usize]| -> Value {
                Value::Array(keep.iter().map(|i| json!({
                    "external_item_id": format!("i{i}"), "name": "x",
                    "amount": money(kopecks(amounts[*i])), "quantity": 1,
                })).collect())
            };
            let all: Vec<usize> = (0..amounts.len()).collect();
            let total: u32 = amounts.iter().sum();
            let write_off = floor_money(kopecks(total) * Decimal::from(write_off_share) / Decimal::from(200));
            let body = json!({"phone": IVANOV, "external_purchase_id": "x", "items": items(&all),
                              "write_off_bonus": money(write_off)});
            let mut state = sandbox.shared.lock();
            let now = Instant::now();
            let Value::Object(body) = body else { unreachable!() };
            let bought = state.apply(Op::Purchase, &body, now).unwrap();
            let check = |answer: &Map<String, Value>| -> (Decimal, Decimal) {
                let items = answer["items"].as_array().unwrap();
                let sum = |field: &str| items.iter().map(|i| dec(&i[field])).sum::<Decimal>();
                assert_eq!(sum("write_off_bonus"), dec(&answer["total_write_off_bonus"]));
                assert_eq!(sum("write_on_bonus"), dec(&answer["total_write_on_bonus"]));
                assert_eq!(
                    dec(&answer["purchase_amount"]) - dec(&answer["total_write_off_bonus"]),
                    dec(&answer["payment_amount"])
                );
                for i in items {
                    assert!(dec(&i["write_off_bonus"]) <= dec(&i["amount"]));
                    assert!(dec(&i["write_on_bonus"]) >= Decimal::ZERO);
                }
                (dec(&answer["total_write_off_bonus"]), dec(&answer["total_write_on_bonus"]))
            };
            let (mut write_off, mut write_on) = check(&bought);
            let original = write_off;
            let mut keep = all;
            for mask in masks {
                keep.retain(|i| mask[*i]);
                // What a mapping asks: the remaining items' share of the original write-off.
                let left: u32 = keep.iter().map(|i| amounts[*i]).sum();
                let share = if total == 0 { Decimal::ZERO } else {
                    floor_money(original * kopecks(left) / kopecks(total)).min(write_off)
                };
                let Value::Object(edit) = json!({"external_purchase_id": "x", "items": items(&keep),
                                                 "write_off_bonus": money(share)}) else { unreachable!() };
                let answer = state.apply(Op::EditPurchase, &edit, now).unwrap();
                let (off, on) = check(&answer);
                prop_assert!(off <= write_off && on <= write_on);
                write_off = off;
                write_on = on;
            }
            let Value::Object(edit) = json!({"external_purchase_id": "x", "items": [], "write_off_bonus": 0}) else { unreachable!() };
            state.apply(Op::EditPurchase, &edit, now).unwrap();
            let balance = state.find_by_phone(IVANOV).and_then(|id| state.buyer(id)).map(|b| b.balance);
            prop_assert_eq!(balance, Some(start));
        }
    }
}
