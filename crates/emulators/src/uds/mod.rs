//! A stateful emulator of the UDS Partner API v2, following the repository's
//! `docs/vendors/uds.md` (uds.md below), with field names and types from the vendor's OpenAPI
//! document (the repository's `tests/fixtures/vendor-specs/uds-partner-v2.openapi.yaml`).
//!
//! Authentication is HTTP Basic, `base64("<companyId>:<apiKey>")`. Errors are an HTTP status
//! with `{"errorCode": "<code>", "message": "<text>"}`, plus `errors[]`
//! (`{errorCode, message, field, value}`) when a request fails validation.
//!
//! Emulated endpoints: `GET /settings`, `GET /customers/find`, `GET /customers/{id}`,
//! `POST /operations/calc`, `POST /operations`, `GET /operations/{id}`,
//! `POST /operations/{id}/refund`. Anything else is HTTP 404 `notFound`.
//!
//! # Model
//!
//! * Money and points are `rust_decimal` (request numbers are read from their exact JSON text,
//!   never through `f64`) and are written with exactly two decimals. 1 point = 1 currency unit.
//! * One membership tier ("Базовый", uid `base`), one branch (id 1), one company.
//! * Purchase figures (`CHARGE_SCORES`), for a receipt `total`, `skipLoyaltyTotal` (`skip`) and
//!   `unredeemableTotal` (`unredeemable`):
//!   - loyalty base = total − skip; redeemable = base − unredeemable;
//!   - `maxPoints` = min(balance, redeemable × maxScoresDiscount / 100), rounded down to 0.01;
//!   - requested `points` are rounded down to 0.01; above the balance → `insufficientFunds`,
//!     else above `maxPoints` → `discountLimitExceed`; when `points` is omitted, `maxPoints`;
//!   - `cash` = total − points; `cashBack` = (base − points) × cashbackRate / 100 rounded down;
//!   - `pointsPercent`, `discountPercent`, `netDiscountPercent` are percentages of `total`,
//!     rounded half up to 0.01; `netDiscount` = discountAmount + points; `cashTotal` = cash
//!     (no extras); `certificatePoints` is always 0 and `extras` is `{}`.
//!
//!   This reproduces the calc example in uds.md (total 1000, skip 100, points 200 → maxPoints 270,
//!   cash 800, cashBack 35).
//! * `APPLY_DISCOUNT`: the customer's `discount_rate` (0 unless seeded) gives
//!   `discountAmount` = base × discountRate / 100 rounded half up; points can still be spent on
//!   what is left (redeemable = base − unredeemable − discountAmount, never below 0),
//!   `cash` = total − discountAmount − points, and no cashback is earned. The participant then
//!   shows `discountRate` = its discount rate and `cashbackRate` 0 (under `CHARGE_SCORES` the
//!   reverse: `discountRate` 0, `cashbackRate` = its cashback rate); the tier's `rate` is the one
//!   that applies. A `base_discount_policy` other than `"APPLY_DISCOUNT"` behaves as
//!   `CHARGE_SCORES` (and is echoed by `/settings` as set).
//! * The percentage limit on points is the lower of the customer's tier `maxScoresDiscount` and
//!   the company's (`UdsSettings::max_scores_discount`); rates are clamped to 0–100.
//! * A purchase moves the balance once: −points spent, +cashBack, at once (no deferral).
//!   `Operation.points` is **−points spent** (as in uds.md's example: −200 for a 200-point
//!   spend with 35 cashback); the cashback is not shown in the operation.
//!
//! # Where uds.md is silent, this emulator decides
//!
//! Transport
//! * Paths are served at the root (like Prism does with the spec) and also under the real base
//!   path `/partner/v2`; the prefix is removed before recording and counting.
//! * Routing is checked before the credentials: an unknown path or method is 404 `notFound`
//!   even without them. Then a missing or wrong `Authorization` is 401 `unauthorized` (the
//!   scheme is case-insensitive; the base64 padding may be omitted).
//! * Every answer carries a fresh `X-Request-Id`; `X-Origin-Request-Id` is echoed when sent.
//!   `X-Timestamp` and `Accept-Language` are not required and not used: messages are English.
//! * A POST body that is empty counts as `{}`; one that is not JSON, or not a JSON object, is
//!   400 `badRequest` without `errors[]`. Bodies of GET requests are ignored. A body over 1 MiB
//!   is HTTP 413 `badRequest`.
//! * Faults ([`Fault`]) act after the request is recorded and before anything else, so a faulted
//!   request never changes state. [`Fault::Throttle`] is HTTP 429
//!   `{"errorCode": "tooManyRequests"}` with `Retry-After: 1`; [`Fault::Delay`] waits, then
//!   answers normally.
//! * `GET /settings` also carries what the spec requires (`promoCode`, `slug`,
//!   `writeInvoice: false`, `marketingSettings`) and one base tier whose `rate` is 5 (for
//!   information only; customers carry their own rates). `id` is the company id, as a number
//!   when it is one, and `loyaltyProgramSettings.maxScoresDiscount` is the company's limit.
//! * [`UdsSandbox::requests`] keeps the last 10,000 requests (a body that is not JSON is a JSON
//!   string of its text; an empty or oversized body is `null`); [`UdsSandbox::calls`] counts
//!   every request.
//!
//! Validation (HTTP 400 `badRequest`, `errors[]`)
//! * `field` is the dotted path of the property (`receipt.total`); the inner `errorCode` is
//!   `nullable` (missing or null), `typeMismatch` (wrong JSON type), `min` (negative, or a
//!   refund ≤ 0), `max` (above 10¹², or a refund above what is left), `invalidFormat` (phone,
//!   cashier id) or `invalid` (`total` below `skipLoyaltyTotal + unredeemableTotal`). All
//!   problems of a request are reported at once.
//! * Amounts with more than two decimals are rounded half up (`points`: down), as the spec
//!   requires of clients; `cash` is compared after that rounding.
//! * The customer is named by `code`, `participant.uid` or `participant.phone`; when several are
//!   given, `code` wins over `uid` over `phone` (the spec's order). None of them is a
//!   validation error (`field: "participant"`; in `/customers/find`, `field: "phone"`). Empty
//!   strings count as absent.
//! * Phones must be E.164 (`+` and 10–15 digits). In a query, `%2b` decodes to `+` and a raw
//!   `+` to a space, so `phone=+7…` is a **400 `badRequest`** (`invalidFormat` on `phone`,
//!   with a hint about `%2b`), not a 404: the emulator makes the encoding bug loud.
//! * In queries the first occurrence of a parameter wins; numbers are plain decimals
//!   (`1000`, `99.90`); `exchangeCode` is `true` or `false`.
//! * `cashier`, when given, needs `externalId` made of Latin letters, digits, `_`, `-` or `.`
//!   (the spec's advice, enforced). `tags` must be null or an array of integers, and is
//!   otherwise ignored (customer tags are always `[]`). `receipt.number` must be a string.
//!
//! Customers and codes
//! * Seeded phones are normalised (`8 999 000-00-01` → `+79990000001`); the phone is the seed's
//!   key: seeding it again replaces the customer, keeping its participant id. The `uid` is a
//!   UUID v5 of the phone, so it is stable across runs; participant ids count up from 2⁴⁰.
//! * A payment code is 6 digits, valid 45 min, and stays valid after purchases (it is not
//!   single-use). `exchangeCode=true` together with a 6-digit `code` swaps it for a 12-digit
//!   code valid 24 h, and the 6-digit code stops working; a 12-digit code is returned as it is.
//!   With `exchangeCode=true` but no `code` in the query, the answer has `"code": null`;
//!   without `exchangeCode=true` it has no `code` key. Found by code, the answer also carries
//!   `"type": "PURCHASE"`.
//! * `find` of a blocked customer is 400 `participantIsBlocked`; `GET /customers/{id}` still
//!   shows it. `find` never refuses for settings reasons (`purchaseByPhone`).
//! * `find`'s `purchase` (only with `total`) is calc's answer for `points` 0; its `maxPoints`
//!   follows the same permissions (0 when found by `uid`, or by phone when spending by phone is
//!   off).
//! * A customer unknown to the sandbox is 404 `notFound` when named by code or uid. A phone
//!   unknown to the sandbox is a purchase by an unregistered phone: calc answers
//!   `"user": null`, no points (`maxPoints` 0, so `points` > 0 is `insufficientFunds`) and no
//!   cashback; the operation's `customer` is `{id: null, uid: null, displayName: <phone>,
//!   membershipTier: null}`.
//!
//! Purchases
//! * Checked in this order: validation; `purchaseByPhoneDisabled` (named by phone while
//!   `purchaseByPhone` is off); `notFound`; `participantIsBlocked`; `withdrawNotPermitted`
//!   (`points` > 0 named by uid, or by phone while `usePointsByPhone` is off — `maxPoints` is
//!   then 0); `insufficientFunds`; `discountLimitExceed`; for `POST /operations`,
//!   `invalidChecksum` when `cash` differs from calc's `cash` for the same receipt.
//! * `POST /operations` requires `receipt.cash` and `receipt.points`. A `nonce` already used
//!   returns the operation it created (as stored now, so after a full refund its state is
//!   `CANCELED`), whatever the new body says, and changes nothing: the nonce is looked up
//!   before anything else is checked. A failed request does not use up its nonce.
//! * The operation's `cashier` is `{id, displayName}`: ids are handed out per `externalId`,
//!   `displayName` is `name` (else `externalId`); without a `cashier` it is `null`. `branch` is
//!   always `{id: 1, displayName: "Основной филиал"}`. Ids of operations count up from
//!   100000001.
//!
//! Refunds
//! * A refund is an `Operation` with `action: "REFUND"`, `state: "REVERSAL"` (the spec's `origin`
//!   is "for transactions in state REVERSAL"), `origin: {id}`, the purchase's customer, cashier,
//!   branch and receipt number, `total` = −amount, `cash` = −cash returned, and `points` =
//!   +points given back (like the purchase, it leaves the cashback out).
//! * Figures are cumulative so that refunds add up exactly: with R the amount refunded so far
//!   (this refund included) and T the purchase total, points given back so far =
//!   floor(spent × R / T), cashback taken back so far = floor(cashBack × R / T), discount
//!   returned so far = round(discount × R / T), each exact once R = T; a refund moves the
//!   difference from the previous refund, and its cash is its amount minus its points and
//!   discount. The balance may go negative when cashback already spent is taken back; a
//!   negative balance counts as 0 for `maxPoints`.
//! * An omitted or null `partialAmount` refunds what is left. A `partialAmount` ≤ 0 or above
//!   what is left, a purchase already refunded in full, and a refund of a refund are
//!   400 `badRequest`; an unknown id is 404 `notFound`. The purchase keeps `state: "NORMAL"`
//!   until it is refunded in full, then becomes `CANCELED`. Refunds need no nonce and go through
//!   for blocked customers.

mod customers;
mod errors;
mod figures;
mod operations;
mod records;
mod refunds;
mod requests;
mod routes;
#[cfg(test)]
mod tests;
mod validation;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use http::{HeaderMap, header};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

use self::errors::UdsError;
use self::records::{
    Customer, IssuedCode, StoredOperation, customer_uid, normalize_phone, participant_id, percent,
};
use self::routes::{Route, handle, strip_base};
pub use crate::harness::Fault;
use crate::harness::auth::{basic_credentials, secret_matches};
use crate::harness::{self, Locked, Traffic};
use crate::money::money;

/// A 6-digit payment code from the app.
const PAYMENT_CODE_LIFETIME: Duration = Duration::from_secs(45 * 60);
/// A long code from `exchangeCode=true`.
const LONG_CODE_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
const PAYMENT_CODE_DIGITS: u32 = 6;
const LONG_CODE_DIGITS: u32 = 12;
/// The real API's base path; also accepted in front of every emulated path.
const BASE_PATH: &str = "/partner/v2";
/// Participant ids count up from here (the size of the id in uds.md's example).
const FIRST_PARTICIPANT_ID: i64 = 1 << 40;
const FIRST_OPERATION_ID: i64 = 100_000_001;
const BRANCH_ID: i64 = 1;
const BRANCH_NAME: &str = "Основной филиал";
const TIER_UID: &str = "base";
const TIER_NAME: &str = "Базовый";
const COMPANY_NAME: &str = "UDS Sandbox";
const PHONE_HINT: &str = "E.164 is required (+79991234567); in a query string send '+' as %2b \
                          (a raw '+' decodes to a space)";

/// A customer to seed with [`UdsSandbox::add_customer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdsCustomer {
    /// E.164 (`+79990000001`); other spellings of a Russian number are normalised. The key of
    /// the customer: seeding the same phone again replaces it.
    pub phone: String,
    pub display_name: String,
    /// Returned as given (UDS uses `YYYY-MM-DD`).
    pub birth_date: Option<String>,
    /// `MALE`, `FEMALE` or `NOT_SPECIFIED`; returned as given.
    pub gender: Option<String>,
    pub email: Option<String>,
    /// Points balance.
    pub points: Decimal,
    /// Percent of the paid loyalty base earned as points under `CHARGE_SCORES` (default 5).
    pub cashback_rate: Decimal,
    /// Percent discount under `APPLY_DISCOUNT` (default 0).
    pub discount_rate: Decimal,
    /// At most this percent of the redeemable amount may be paid with points (default 30); the
    /// company's limit applies too.
    pub max_scores_discount: Decimal,
    /// A blocked customer cannot buy: `participantIsBlocked`.
    pub blocked: bool,
}

impl Default for UdsCustomer {
    fn default() -> Self {
        UdsCustomer {
            phone: String::new(),
            display_name: String::new(),
            birth_date: None,
            gender: None,
            email: None,
            points: Decimal::ZERO,
            cashback_rate: Decimal::from(5),
            discount_rate: Decimal::ZERO,
            max_scores_discount: Decimal::from(30),
            blocked: false,
        }
    }
}

/// Company settings, as `GET /settings` shows them; [`Default`] is what [`UdsSandbox::new`]
/// starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdsSettings {
    /// `"CHARGE_SCORES"` (default) or `"APPLY_DISCOUNT"`.
    pub base_discount_policy: String,
    /// The company's limit on paying with points, percent (default 30).
    pub max_scores_discount: Decimal,
    /// Purchases may name the customer by phone (default true).
    pub purchase_by_phone: bool,
    /// Points may be spent when the customer is named by phone (default true).
    pub use_points_by_phone: bool,
    /// ISO 4217 (default `"RUB"`).
    pub currency: String,
}

impl Default for UdsSettings {
    fn default() -> Self {
        UdsSettings {
            base_discount_policy: "CHARGE_SCORES".to_owned(),
            max_scores_discount: Decimal::from(30),
            purchase_by_phone: true,
            use_points_by_phone: true,
            currency: "RUB".to_owned(),
        }
    }
}

impl UdsSettings {
    fn applies_discount(&self) -> bool {
        self.base_discount_policy == "APPLY_DISCOUNT"
    }
}

/// The UDS emulator. Cheap to clone: clones share one state, so a test keeps a clone to seed
/// data and inspect effects while another clone serves.
#[derive(Clone)]
pub struct UdsSandbox {
    shared: Arc<Shared>,
}

impl fmt::Debug for UdsSandbox {
    /// Never shows the API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdsSandbox")
            .field("company_id", &self.shared.company_id)
            .finish_non_exhaustive()
    }
}

impl UdsSandbox {
    /// An empty sandbox (no customers, default settings) that accepts requests carrying
    /// `Authorization: Basic base64("<company_id>:<api_key>")`.
    pub fn new(company_id: impl Into<String>, api_key: impl Into<String>) -> Self {
        let company_id = company_id.into();
        let credentials = format!("{company_id}:{}", api_key.into()).into_bytes();
        UdsSandbox {
            shared: Arc::new(Shared {
                company_id: company_id.clone(),
                credentials,
                state: Locked::new(State::new(company_id)),
            }),
        }
    }

    /// A sandbox seeded for demos and black-box tests, with default settings
    /// (`CHARGE_SCORES`, 30 % limit, purchases and points by phone allowed, RUB).
    ///
    /// | phone        | name                 | points | cashback | notes                  |
    /// |--------------|----------------------|--------|----------|------------------------|
    /// | +79990000001 | Иван Петров          | 350.00 | 5 %      | MALE, born 1990-05-06  |
    /// | +79990000002 | Мария Сидорова       | 0.00   | 5 %      | FEMALE                 |
    /// | +79990000009 | Пётр Заблокированный | 100.00 | 5 %      | blocked                |
    ///
    /// All have the default 30 % points limit. Their `uid` is a UUID v5 of the phone (see
    /// [`UdsSandbox::customer`]); payment codes come from [`UdsSandbox::payment_code`].
    pub fn with_demo_data(company_id: impl Into<String>, api_key: impl Into<String>) -> Self {
        let sandbox = UdsSandbox::new(company_id, api_key);
        sandbox.add_customer(UdsCustomer {
            phone: "+79990000001".to_owned(),
            display_name: "Иван Петров".to_owned(),
            birth_date: Some("1990-05-06".to_owned()),
            gender: Some("MALE".to_owned()),
            points: Decimal::new(35_000, 2),
            ..UdsCustomer::default()
        });
        sandbox.add_customer(UdsCustomer {
            phone: "+79990000002".to_owned(),
            display_name: "Мария Сидорова".to_owned(),
            gender: Some("FEMALE".to_owned()),
            ..UdsCustomer::default()
        });
        sandbox.add_customer(UdsCustomer {
            phone: "+79990000009".to_owned(),
            display_name: "Пётр Заблокированный".to_owned(),
            points: Decimal::new(10_000, 2),
            blocked: true,
            ..UdsCustomer::default()
        });
        sandbox
    }

    /// Adds a customer, or replaces the one with the same (normalised) phone, keeping its
    /// participant id and uid. The new record starts with no transactions.
    pub fn add_customer(&self, customer: UdsCustomer) {
        let phone = normalize_phone(&customer.phone);
        let now = DateTime::<Utc>::from(SystemTime::now());
        let mut state = self.shared.lock();
        let existing = state.customers.iter().position(|c| c.phone == phone);
        let index = existing.unwrap_or(state.customers.len());
        let date_created = existing
            .and_then(|i| state.customers.get(i))
            .map_or(now, |old| old.date_created);
        let record = Customer {
            participant_id: participant_id(index),
            uid: customer_uid(&phone),
            phone,
            display_name: customer.display_name,
            birth_date: customer.birth_date,
            gender: customer.gender,
            email: customer.email,
            points: customer.points,
            cashback_rate: customer.cashback_rate,
            discount_rate: customer.discount_rate,
            max_scores_discount: customer.max_scores_discount,
            blocked: customer.blocked,
            date_created,
            last_transaction: None,
        };
        match existing.and_then(|i| state.customers.get_mut(i)) {
            Some(slot) => *slot = record,
            None => state.customers.push(record),
        }
    }

    /// Replaces the company settings; they apply to the next request.
    pub fn set_settings(&self, settings: UdsSettings) {
        self.shared.lock().settings = settings;
    }

    /// A fresh 6-digit payment code for the customer with this phone, as the UDS app would show
    /// it: valid for 45 minutes, usable as `code` in `find`, calc and operations. Each call
    /// issues a new code; earlier ones stay valid until they expire.
    pub fn payment_code(&self, phone: &str) -> Option<String> {
        let phone = normalize_phone(phone);
        let mut state = self.shared.lock();
        let index = state.customers.iter().position(|c| c.phone == phone)?;
        Some(state.issue_code(index, Instant::now(), false))
    }

    /// The points balance of the customer with this phone.
    pub fn points(&self, phone: &str) -> Option<Decimal> {
        let phone = normalize_phone(phone);
        let state = self.shared.lock();
        state
            .customers
            .iter()
            .find(|c| c.phone == phone)
            .map(|c| c.points)
    }

    /// The customer with this phone as the API shows it (`CustomerDetail`: `uid`,
    /// `participant.id`, …), for tests that need its identifiers.
    pub fn customer(&self, phone: &str) -> Option<Value> {
        let phone = normalize_phone(phone);
        let state = self.shared.lock();
        state
            .customers
            .iter()
            .find(|c| c.phone == phone)
            .map(|c| c.detail_json(&state.settings))
    }

    /// How many requests reached `path` (`"/operations/calc"`; the leading slash, a query and
    /// the `/partner/v2` prefix may be given or left out), any method, failed and faulted ones
    /// included.
    pub fn calls(&self, path: &str) -> usize {
        let path = path.split('?').next().unwrap_or_default();
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self.shared.lock().traffic.calls(strip_base(&path))
    }

    /// Every `(method, path?query, body)` received, oldest first (the last 10,000). The path
    /// has no `/partner/v2` prefix; the query is as sent (still URL-encoded). A body that is not
    /// JSON is a JSON string of its text; an empty or oversized body is `null`.
    pub fn requests(&self) -> Vec<(String, String, Value)> {
        self.shared.lock().traffic.requests()
    }

    /// The stored `Operation` with this id (a purchase or a refund), as `GET /operations/{id}`
    /// would answer.
    pub fn operation(&self, id: i64) -> Option<Value> {
        self.shared
            .lock()
            .operations
            .get(&id)
            .map(|op| op.json.clone())
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
        harness::serve(listener, "uds-sandbox", handler, shutdown).await
    }
}

struct Shared {
    company_id: String,
    /// `companyId:apiKey`, what the Basic credentials must decode to.
    credentials: Vec<u8>,
    state: Locked<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| basic_credentials(value.as_bytes()))
            .is_some_and(|given| secret_matches(&given, &self.credentials))
    }
}

/// How a request names its customer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ident {
    Code(String),
    Uid(String),
    /// E.164.
    Phone(String),
}

/// Wall-clock and monotonic "now" of one request.
#[derive(Debug, Clone, Copy)]
struct Now {
    wall: DateTime<Utc>,
    mono: Instant,
}

impl Now {
    fn current() -> Now {
        Now {
            wall: DateTime::<Utc>::from(SystemTime::now()),
            mono: Instant::now(),
        }
    }
}

struct State {
    company_id: String,
    settings: UdsSettings,
    customers: Vec<Customer>,
    codes: HashMap<String, IssuedCode>,
    operations: BTreeMap<i64, StoredOperation>,
    next_operation_id: i64,
    nonces: HashMap<String, i64>,
    cashiers: HashMap<String, i64>,
    /// `(method, path?query, body)` of every request, and the fault to inject.
    traffic: Traffic<(String, String, Value)>,
}

impl State {
    fn new(company_id: String) -> State {
        State {
            company_id,
            settings: UdsSettings::default(),
            customers: Vec::new(),
            codes: HashMap::new(),
            operations: BTreeMap::new(),
            next_operation_id: FIRST_OPERATION_ID,
            nonces: HashMap::new(),
            cashiers: HashMap::new(),
            traffic: Traffic::default(),
        }
    }

    fn apply(
        &mut self,
        route: Route,
        query: &str,
        body: &Map<String, Value>,
        now: &Now,
    ) -> Result<Value, UdsError> {
        match route {
            Route::Settings => Ok(self.settings_json()),
            Route::FindCustomer => self.find_customer(query, now),
            Route::Customer(id) => self
                .customers
                .iter()
                .find(|c| c.participant_id == id)
                .map(|c| c.detail_json(&self.settings))
                .ok_or_else(|| UdsError::not_found("Customer not found")),
            Route::Calc => self.calc(body, now),
            Route::CreateOperation => self.create_operation(body, now),
            Route::Operation(id) => self
                .operations
                .get(&id)
                .map(|op| op.json.clone())
                .ok_or_else(|| UdsError::operation_not_found(id)),
            Route::Refund(id) => self.refund(id, body, now),
        }
    }

    fn settings_json(&self) -> Value {
        let settings = &self.settings;
        let max_scores = money(percent(settings.max_scores_discount));
        let base_rate = money(Decimal::from(5));
        let tier = json!({
            "uid": TIER_UID,
            "name": TIER_NAME,
            "rate": base_rate,
            "maxScoresDiscount": max_scores,
        });
        let id = self
            .company_id
            .parse::<i64>()
            .map_or_else(|_| json!(self.company_id), |id| json!(id));
        json!({
            "id": id,
            "name": COMPANY_NAME,
            "promoCode": "sandbox",
            "slug": "uds-sandbox",
            "currency": settings.currency,
            "baseDiscountPolicy": settings.base_discount_policy,
            "purchaseByPhone": settings.purchase_by_phone,
            "usePointsByPhone": settings.use_points_by_phone,
            "writeInvoice": false,
            "marketingSettings": {
                "discountBase": base_rate,
                "maxScoresDiscount": max_scores,
            },
            "loyaltyProgramSettings": {
                "baseMembershipTier": tier,
                "membershipTiers": [tier],
                "maxScoresDiscount": max_scores,
                "referralCashbackRates": [],
                "cashierAward": null,
                "referralReward": null,
                "receiptLimit": null,
                "deferPointsForDays": null,
                "firstPurchasePoints": null,
            },
        })
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
