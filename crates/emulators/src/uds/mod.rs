//! A stateful emulator of the UDS Partner API v2, following `docs/vendors/uds.md` (field names
//! and types from the vendor's OpenAPI document, `tests/fixtures/vendor-specs/uds-partner-v2.openapi.yaml`).
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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

pub use crate::harness::Fault;
use crate::harness::auth::{basic_credentials, secret_matches};
use crate::harness::http::{DroppedConnection, MAX_BODY_BYTES, json_response, read_body};
use crate::harness::{self, FaultAnswers, Locked, Traffic, inject};

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

/// The `errorCode` strings of UDS (uds.md, "Errors").
mod code {
    pub const BAD_REQUEST: &str = "badRequest";
    pub const INVALID_CHECKSUM: &str = "invalidChecksum";
    pub const WITHDRAW_NOT_PERMITTED: &str = "withdrawNotPermitted";
    pub const INSUFFICIENT_FUNDS: &str = "insufficientFunds";
    pub const DISCOUNT_LIMIT_EXCEED: &str = "discountLimitExceed";
    pub const PURCHASE_BY_PHONE_DISABLED: &str = "purchaseByPhoneDisabled";
    pub const PARTICIPANT_IS_BLOCKED: &str = "participantIsBlocked";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const NOT_FOUND: &str = "notFound";
    pub const TOO_MANY_REQUESTS: &str = "tooManyRequests";
}

/// The `errorCode` strings inside `errors[]`.
mod field_code {
    pub const NULLABLE: &str = "nullable";
    pub const TYPE_MISMATCH: &str = "typeMismatch";
    pub const MIN: &str = "min";
    pub const MAX: &str = "max";
    pub const INVALID_FORMAT: &str = "invalidFormat";
    pub const INVALID: &str = "invalid";
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

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

/// The endpoints the sandbox emulates, with their path parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Settings,
    FindCustomer,
    Customer(i64),
    Calc,
    CreateOperation,
    Operation(i64),
    Refund(i64),
}

impl Route {
    /// `path` is already without the `/partner/v2` prefix.
    fn parse(method: &Method, path: &str) -> Option<Route> {
        let rest = path.strip_prefix('/')?;
        let segments: Vec<&str> = rest.split('/').collect();
        let get = *method == Method::GET;
        let post = *method == Method::POST;
        match segments.as_slice() {
            ["settings"] if get => Some(Route::Settings),
            ["customers", "find"] if get => Some(Route::FindCustomer),
            ["customers", id] if get => parse_id(id).map(Route::Customer),
            ["operations", "calc"] if post => Some(Route::Calc),
            ["operations"] if post => Some(Route::CreateOperation),
            ["operations", id] if get => parse_id(id).map(Route::Operation),
            ["operations", id, "refund"] if post => parse_id(id).map(Route::Refund),
            _ => None,
        }
    }

    fn is_post(self) -> bool {
        matches!(
            self,
            Route::Calc | Route::CreateOperation | Route::Refund(_)
        )
    }
}

/// A path id: digits only (no sign, no spaces), fitting an `i64`.
fn parse_id(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn strip_base(path: &str) -> &str {
    match path.strip_prefix(BASE_PATH) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// A request body, as received.
enum Payload {
    Empty,
    Json(Value),
    Malformed { text: String, error: String },
    TooLarge,
}

impl Payload {
    fn from_bytes(bytes: &[u8]) -> Payload {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Payload::Empty;
        }
        match serde_json::from_slice(bytes) {
            Ok(value) => Payload::Json(value),
            Err(e) => Payload::Malformed {
                text: String::from_utf8_lossy(bytes).into_owned(),
                error: e.to_string(),
            },
        }
    }

    fn recorded(&self) -> Value {
        match self {
            Payload::Empty | Payload::TooLarge => Value::Null,
            Payload::Json(value) => value.clone(),
            Payload::Malformed { text, .. } => Value::String(text.clone()),
        }
    }

    /// The body of a POST: empty is `{}`.
    fn object(self) -> Result<Map<String, Value>, UdsError> {
        match self {
            Payload::Empty => Ok(Map::new()),
            Payload::Json(Value::Object(map)) => Ok(map),
            Payload::Json(_) => Err(UdsError::bad_request("The body must be a JSON object")),
            Payload::Malformed { error, .. } => {
                Err(UdsError::bad_request(format!("Malformed JSON: {error}")))
            }
            Payload::TooLarge => Err(UdsError::too_large()),
        }
    }
}

async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DroppedConnection> {
    let origin_request_id = req.headers().get("x-origin-request-id").cloned();
    let mut response = answer(shared, req).await?;
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert(HeaderName::from_static("x-request-id"), id);
    }
    if let Some(id) = origin_request_id {
        headers.insert(HeaderName::from_static("x-origin-request-id"), id);
    }
    Ok(response)
}

async fn answer(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DroppedConnection> {
    let (parts, incoming) = req.into_parts();
    let path = strip_base(parts.uri.path()).to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let payload = match read_body(incoming).await? {
        Some(bytes) => Payload::from_bytes(&bytes),
        None => Payload::TooLarge,
    };
    let target = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let entry = (parts.method.as_str().to_owned(), target, payload.recorded());
    let fault = shared.lock().traffic.record(&path, entry);
    if let Some(answer) = inject(fault, &UdsFaults).await? {
        return Ok(answer);
    }

    let Some(route) = Route::parse(&parts.method, &path) else {
        tracing::debug!(method = %parts.method, path = %path, "uds sandbox: unknown path");
        return Ok(error_response(&UdsError::not_found(format!(
            "No such method: {} {path}",
            parts.method
        ))));
    };
    if !shared.authorized(&parts.headers) {
        tracing::debug!(path = %path, "uds sandbox: invalid credentials");
        return Ok(error_response(&UdsError::unauthorized()));
    }
    if matches!(payload, Payload::TooLarge) {
        return Ok(error_response(&UdsError::too_large()));
    }
    let body = if route.is_post() {
        payload.object()
    } else {
        Ok(Map::new())
    };
    let result = body.and_then(|body| shared.lock().apply(route, &query, &body, &Now::current()));
    match result {
        Ok(answer) => Ok(json_response(StatusCode::OK, &answer)),
        Err(err) => {
            tracing::debug!(path = %path, status = err.status.as_u16(), error_code = err.code,
                "uds sandbox: error");
            Ok(error_response(&err))
        }
    }
}

fn error_response(err: &UdsError) -> Response<Full<Bytes>> {
    json_response(err.status, &err.to_json())
}

/// UDS's own answers to [`Fault::Throttle`] and [`Fault::TooManyRequests`]: its
/// `tooManyRequests` error.
struct UdsFaults;

impl FaultAnswers for UdsFaults {
    fn throttled(&self) -> Response<Full<Bytes>> {
        self.too_many_requests(Some(HeaderValue::from_static("1")))
    }

    fn too_many_requests(&self, retry_after: Option<HeaderValue>) -> Response<Full<Bytes>> {
        let mut response = error_response(&UdsError::too_many_requests());
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One entry of `errors[]` in a validation error.
#[derive(Debug, Clone, PartialEq)]
struct FieldError {
    code: &'static str,
    field: String,
    message: String,
    value: Value,
}

impl FieldError {
    fn to_json(&self) -> Value {
        json!({
            "errorCode": self.code,
            "message": self.message,
            "field": self.field,
            "value": self.value,
        })
    }
}

/// A UDS error answer: HTTP status + `{"errorCode", "message", "errors"?}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("UDS error {status} {code}: {message}")]
struct UdsError {
    status: StatusCode,
    code: &'static str,
    message: String,
    errors: Vec<FieldError>,
}

impl UdsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        UdsError {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    fn to_json(&self) -> Value {
        let mut body = json!({"errorCode": self.code, "message": self.message});
        if !self.errors.is_empty() {
            body["errors"] = Value::Array(self.errors.iter().map(FieldError::to_json).collect());
        }
        body
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::BAD_REQUEST, message)
    }

    fn validation(errors: Vec<FieldError>) -> Self {
        UdsError {
            errors,
            ..Self::bad_request("Validation failed")
        }
    }

    fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::BAD_REQUEST,
            format!("The body is over {MAX_BODY_BYTES} bytes"),
        )
    }

    fn out_of_range() -> Self {
        Self::bad_request("An amount is out of range")
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
    }

    fn customer_not_found(ident: &Ident) -> Self {
        match ident {
            Ident::Code(_) => Self::not_found("Customer with this code not found or code expired"),
            Ident::Uid(_) | Ident::Phone(_) => Self::not_found("Customer not found"),
        }
    }

    fn operation_not_found(id: i64) -> Self {
        Self::not_found(format!("Operation {id} not found"))
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHORIZED,
            "API key or company id are incorrect",
        )
    }

    fn invalid_checksum(expected: Decimal, given: Decimal) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_CHECKSUM,
            format!(
                "Given total, cash and points do not correlate with the marketing settings: \
                 cash must be {} (calc), not {}",
                money_text(expected),
                money_text(given)
            ),
        )
    }

    fn withdraw_not_permitted(why: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::WITHDRAW_NOT_PERMITTED,
            format!("Points cannot be spent: {why}"),
        )
    }

    fn insufficient_funds(balance: Decimal) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::INSUFFICIENT_FUNDS,
            format!("Not enough points: the balance is {}", money_text(balance)),
        )
    }

    fn discount_limit_exceed(max_points: Decimal, percent: Decimal) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::DISCOUNT_LIMIT_EXCEED,
            format!(
                "At most {} points ({} % of the redeemable amount) can be spent on this receipt",
                money_text(max_points),
                money_text(percent)
            ),
        )
    }

    fn purchase_by_phone_disabled() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::PURCHASE_BY_PHONE_DISABLED,
            "Purchase by phone number is disabled in the company settings",
        )
    }

    fn participant_is_blocked() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::PARTICIPANT_IS_BLOCKED,
            "The customer is blocked",
        )
    }

    fn too_many_requests() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            code::TOO_MANY_REQUESTS,
            "Too many requests",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rounding {
    /// Money: round half up (away from zero) to kopecks.
    HalfUp,
    /// Points: only ever rounded down.
    Down,
}

impl Rounding {
    fn apply(self, d: Decimal) -> Decimal {
        match self {
            Rounding::HalfUp => round_money(d),
            Rounding::Down => floor_money(d),
        }
    }
}

/// Collects every validation problem of one request.
#[derive(Default)]
struct Checks {
    errors: Vec<FieldError>,
}

impl Checks {
    fn fail(&mut self, code: &'static str, field: &str, message: impl Into<String>, value: &Value) {
        self.errors.push(FieldError {
            code,
            field: field.to_owned(),
            message: message.into(),
            value: value.clone(),
        });
    }

    fn missing(&mut self, field: &str) {
        self.fail(
            field_code::NULLABLE,
            field,
            format!("Property [{field}] cannot be null"),
            &Value::Null,
        );
    }

    fn object<'a>(
        &mut self,
        fields: &'a Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
    ) -> Option<&'a Map<String, Value>> {
        match fields.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.missing(path);
                }
                None
            }
            Some(Value::Object(obj)) => Some(obj),
            Some(other) => {
                self.fail(
                    field_code::TYPE_MISMATCH,
                    path,
                    format!("Property [{path}] must be an object"),
                    other,
                );
                None
            }
        }
    }

    /// A string property; absent, `null` and `""` are all "not given".
    fn string(&mut self, fields: &Map<String, Value>, key: &str, path: &str) -> Option<String> {
        match fields.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => (!s.is_empty()).then(|| s.clone()),
            Some(other) => {
                self.fail(
                    field_code::TYPE_MISMATCH,
                    path,
                    format!("Property [{path}] must be a string"),
                    other,
                );
                None
            }
        }
    }

    /// A non-negative amount of at most 10¹², rounded to two decimals.
    fn amount(
        &mut self,
        fields: &Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
        rounding: Rounding,
    ) -> Option<Decimal> {
        match fields.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.missing(path);
                }
                None
            }
            Some(value @ Value::Number(n)) => {
                self.checked_amount(decimal_from_text(n.as_str()), path, value, rounding)
            }
            Some(other) => {
                self.fail(
                    field_code::TYPE_MISMATCH,
                    path,
                    format!("Property [{path}] must be a number"),
                    other,
                );
                None
            }
        }
    }

    fn checked_amount(
        &mut self,
        parsed: Option<Decimal>,
        path: &str,
        value: &Value,
        rounding: Rounding,
    ) -> Option<Decimal> {
        let Some(d) = parsed else {
            self.fail(
                field_code::MAX,
                path,
                format!("Property [{path}] is not a representable amount"),
                value,
            );
            return None;
        };
        if d < Decimal::ZERO {
            self.fail(
                field_code::MIN,
                path,
                format!("Property [{path}] must not be negative"),
                value,
            );
            return None;
        }
        if d > max_money() {
            self.fail(
                field_code::MAX,
                path,
                format!("Property [{path}] must be at most {}", max_money()),
                value,
            );
            return None;
        }
        Some(rounding.apply(d))
    }

    /// A query parameter holding an amount (`1000`, `99.90`).
    fn query_amount(&mut self, query: &Query, key: &str) -> Option<Decimal> {
        let text = query.get(key)?;
        let value = Value::String(text.to_owned());
        if !is_plain_decimal(text) {
            self.fail(
                field_code::TYPE_MISMATCH,
                key,
                format!("Parameter [{key}] must be a number"),
                &value,
            );
            return None;
        }
        self.checked_amount(decimal_from_text(text), key, &value, Rounding::HalfUp)
    }

    fn query_bool(&mut self, query: &Query, key: &str) -> bool {
        match query.get(key) {
            None => false,
            Some(text) if text.eq_ignore_ascii_case("true") => true,
            Some(text) if text.eq_ignore_ascii_case("false") => false,
            Some(text) => {
                self.fail(
                    field_code::TYPE_MISMATCH,
                    key,
                    format!("Parameter [{key}] must be true or false"),
                    &Value::String(text.to_owned()),
                );
                false
            }
        }
    }

    fn phone(&mut self, phone: &str, path: &str) {
        if !is_e164(phone) {
            self.fail(
                field_code::INVALID_FORMAT,
                path,
                format!("Property [{path}] is not a valid phone number: {PHONE_HINT}"),
                &Value::String(phone.to_owned()),
            );
        }
    }

    /// `total` must cover the parts it contains.
    fn receipt_parts(&mut self, total: Decimal, skip: Decimal, unredeemable: Decimal, path: &str) {
        if skip + unredeemable > total {
            self.fail(
                field_code::INVALID,
                path,
                format!(
                    "Property [{path}] must be at least skipLoyaltyTotal + unredeemableTotal ({})",
                    money_text(skip + unredeemable)
                ),
                &money(total),
            );
        }
    }

    fn finish(self) -> Result<(), UdsError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(UdsError::validation(self.errors))
        }
    }
}

/// Decoded query parameters (`%2b` → `+`, a raw `+` → space); the first occurrence wins.
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(raw: &str) -> Query {
        Query {
            pairs: form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// The first value of `key`; an empty value counts as absent.
    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
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

/// `code` wins over `uid` over `phone`.
fn pick_ident(code: Option<String>, uid: Option<String>, phone: Option<String>) -> Option<Ident> {
    code.map(Ident::Code)
        .or_else(|| uid.map(Ident::Uid))
        .or_else(|| phone.map(Ident::Phone))
}

/// The customer named by `code` / `participant.{uid, phone}` of a calc or operation body.
fn body_ident(checks: &mut Checks, body: &Map<String, Value>) -> Option<Ident> {
    let code = checks.string(body, "code", "code");
    let (uid, phone) = match checks.object(body, "participant", "participant", false) {
        Some(participant) => (
            checks.string(participant, "uid", "participant.uid"),
            checks.string(participant, "phone", "participant.phone"),
        ),
        None => (None, None),
    };
    if let Some(phone) = &phone {
        checks.phone(phone, "participant.phone");
    }
    let ident = pick_ident(code, uid, phone);
    if ident.is_none() {
        checks.fail(
            field_code::NULLABLE,
            "participant",
            "One of [code], [participant.uid] or [participant.phone] is required",
            &Value::Null,
        );
    }
    ident
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Calc,
    Create,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Receipt {
    total: Decimal,
    skip: Decimal,
    unredeemable: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CashierInput {
    external_id: String,
    name: Option<String>,
}

/// A validated calc or operation body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PurchaseRequest {
    ident: Ident,
    receipt: Receipt,
    /// Rounded down; `None` (calc only) means "as many as allowed".
    points: Option<Decimal>,
    /// Operations only.
    cash: Decimal,
    number: Option<String>,
    cashier: Option<CashierInput>,
    nonce: Option<String>,
}

fn parse_purchase(body: &Map<String, Value>, kind: Kind) -> Result<PurchaseRequest, UdsError> {
    let create = kind == Kind::Create;
    let mut checks = Checks::default();
    let ident = body_ident(&mut checks, body);
    let mut total = None;
    let mut skip = None;
    let mut unredeemable = None;
    let mut points = None;
    let mut cash = None;
    let mut number = None;
    if let Some(receipt) = checks.object(body, "receipt", "receipt", true) {
        use Rounding::{Down, HalfUp};
        total = checks.amount(receipt, "total", "receipt.total", true, HalfUp);
        if create {
            cash = checks.amount(receipt, "cash", "receipt.cash", true, HalfUp);
        }
        points = checks.amount(receipt, "points", "receipt.points", create, Down);
        skip = checks.amount(
            receipt,
            "skipLoyaltyTotal",
            "receipt.skipLoyaltyTotal",
            false,
            HalfUp,
        );
        unredeemable = checks.amount(
            receipt,
            "unredeemableTotal",
            "receipt.unredeemableTotal",
            false,
            HalfUp,
        );
        if create {
            number = checks.string(receipt, "number", "receipt.number");
        }
    }
    let skip = skip.unwrap_or_default();
    let unredeemable = unredeemable.unwrap_or_default();
    if let Some(total) = total {
        checks.receipt_parts(total, skip, unredeemable, "receipt.total");
    }
    let (nonce, cashier) = if create {
        let nonce = checks.string(body, "nonce", "nonce");
        let cashier = parse_cashier(&mut checks, body);
        check_tags(&mut checks, body);
        (nonce, cashier)
    } else {
        (None, None)
    };
    checks.finish()?;
    match (ident, total) {
        (Some(ident), Some(total)) => Ok(PurchaseRequest {
            ident,
            receipt: Receipt {
                total,
                skip,
                unredeemable,
            },
            points,
            cash: cash.unwrap_or_default(),
            number,
            cashier,
            nonce,
        }),
        // Unreachable: a missing identity or total was reported above.
        _ => Err(UdsError::bad_request("Validation failed")),
    }
}

fn parse_cashier(checks: &mut Checks, body: &Map<String, Value>) -> Option<CashierInput> {
    let cashier = checks.object(body, "cashier", "cashier", false)?;
    let external_id = checks.string(cashier, "externalId", "cashier.externalId");
    let name = checks.string(cashier, "name", "cashier.name");
    match external_id {
        None => {
            if !matches!(cashier.get("externalId"), Some(v) if !v.is_string() && !v.is_null()) {
                checks.missing("cashier.externalId");
            }
            None
        }
        Some(id) if !is_external_id(&id) => {
            checks.fail(
                field_code::INVALID_FORMAT,
                "cashier.externalId",
                "Property [cashier.externalId] may hold Latin letters, digits, '_', '-' and '.'",
                &Value::String(id),
            );
            None
        }
        Some(external_id) => Some(CashierInput { external_id, name }),
    }
}

fn check_tags(checks: &mut Checks, body: &Map<String, Value>) {
    match body.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.iter().all(|t| t.as_i64().is_some()) => {}
        Some(other) => checks.fail(
            field_code::TYPE_MISMATCH,
            "tags",
            "Property [tags] must be null or an array of tag ids",
            other,
        ),
    }
}

fn is_e164(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|digits| {
        (10..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

fn is_external_id(id: &str) -> bool {
    id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `1000`, `99.90`, `-5`: what a query amount may look like (no exponent, no `+`).
fn is_plain_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// An exact decimal from a number's text (JSON keeps it with `arbitrary_precision`).
fn decimal_from_text(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Customer {
    participant_id: i64,
    uid: String,
    /// Normalised, E.164 for any sensible seed.
    phone: String,
    display_name: String,
    birth_date: Option<String>,
    gender: Option<String>,
    email: Option<String>,
    points: Decimal,
    cashback_rate: Decimal,
    discount_rate: Decimal,
    max_scores_discount: Decimal,
    blocked: bool,
    date_created: DateTime<Utc>,
    last_transaction: Option<DateTime<Utc>>,
}

/// The rates that apply to one customer under the current settings, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rates {
    discount: Decimal,
    cashback: Decimal,
    max_scores: Decimal,
    /// The tier's `rate`: the discount or the cashback rate, whichever the policy uses.
    tier: Decimal,
}

impl Customer {
    fn rates(&self, settings: &UdsSettings) -> Rates {
        let discount_policy = settings.applies_discount();
        let discount = if discount_policy {
            percent(self.discount_rate)
        } else {
            Decimal::ZERO
        };
        let cashback = if discount_policy {
            Decimal::ZERO
        } else {
            percent(self.cashback_rate)
        };
        Rates {
            discount,
            cashback,
            max_scores: percent(self.max_scores_discount)
                .min(percent(settings.max_scores_discount)),
            tier: if discount_policy { discount } else { cashback },
        }
    }

    fn tier_json(&self, settings: &UdsSettings) -> Value {
        let rates = self.rates(settings);
        json!({
            "uid": TIER_UID,
            "name": TIER_NAME,
            "rate": money(rates.tier),
            "maxScoresDiscount": money(rates.max_scores),
        })
    }

    /// `CustomerDetail`.
    fn detail_json(&self, settings: &UdsSettings) -> Value {
        let rates = self.rates(settings);
        json!({
            "uid": self.uid,
            "avatar": null,
            "displayName": self.display_name,
            "gender": self.gender,
            "phone": self.phone,
            "birthDate": self.birth_date,
            "email": self.email,
            "channelName": null,
            "participant": {
                "id": self.participant_id,
                "inviterId": null,
                "points": money(self.points),
                "discountRate": money(rates.discount),
                "cashbackRate": money(rates.cashback),
                "membershipTier": self.tier_json(settings),
                "dateCreated": timestamp(self.date_created),
                "lastTransactionTime": self.last_transaction.map(timestamp),
                "pointsExpireIn": null,
            },
            "tags": [],
        })
    }

    /// `Operation.customer`.
    fn short_json(&self, settings: &UdsSettings) -> Value {
        json!({
            "id": self.participant_id,
            "uid": self.uid,
            "displayName": self.display_name,
            "membershipTier": self.tier_json(settings),
        })
    }
}

#[derive(Debug, Clone)]
struct IssuedCode {
    customer: usize,
    expires: Instant,
    long: bool,
}

/// What a purchase committed, and how much of it refunds have given back so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PurchaseRecord {
    customer: Option<usize>,
    total: Decimal,
    points: Decimal,
    discount: Decimal,
    cashback: Decimal,
    refunded: Decimal,
    points_back: Decimal,
    discount_back: Decimal,
    cashback_back: Decimal,
}

#[derive(Debug, Clone)]
struct StoredOperation {
    json: Value,
    /// `None` for a refund.
    purchase: Option<PurchaseRecord>,
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

    // --- settings ------------------------------------------------------------------------

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

    // --- customers and codes -------------------------------------------------------------

    fn lookup(&self, ident: &Ident, now: &Now) -> Option<usize> {
        match ident {
            Ident::Code(code) => self
                .codes
                .get(code)
                .filter(|issued| issued.expires > now.mono)
                .map(|issued| issued.customer),
            Ident::Uid(uid) => self
                .customers
                .iter()
                .position(|c| c.uid.eq_ignore_ascii_case(uid)),
            Ident::Phone(phone) => self.customers.iter().position(|c| c.phone == *phone),
        }
    }

    /// Issues a code that no live code shares, dropping expired ones first.
    fn issue_code(&mut self, customer: usize, now: Instant, long: bool) -> String {
        self.codes.retain(|_, issued| issued.expires > now);
        let (digits, lifetime) = if long {
            (LONG_CODE_DIGITS, LONG_CODE_LIFETIME)
        } else {
            (PAYMENT_CODE_DIGITS, PAYMENT_CODE_LIFETIME)
        };
        let mut code = random_digits(digits);
        for _ in 0..100 {
            if !self.codes.contains_key(&code) {
                break;
            }
            code = random_digits(digits);
        }
        self.codes.insert(
            code.clone(),
            IssuedCode {
                customer,
                expires: now + lifetime,
                long,
            },
        );
        code
    }

    /// `exchangeCode=true`: a 6-digit code becomes a 24-hour one; a long code stays.
    fn exchange_code(&mut self, code: &str, customer: usize, now: &Now) -> String {
        if self.codes.get(code).is_some_and(|issued| issued.long) {
            return code.to_owned();
        }
        self.codes.remove(code);
        self.issue_code(customer, now.mono, true)
    }

    fn find_customer(&mut self, raw_query: &str, now: &Now) -> Result<Value, UdsError> {
        let query = Query::parse(raw_query);
        let mut checks = Checks::default();
        let code = query.get("code").map(str::to_owned);
        let uid = query.get("uid").map(str::to_owned);
        let phone = query.get("phone").map(str::to_owned);
        if let Some(phone) = &phone {
            checks.phone(phone, "phone");
        }
        let exchange = checks.query_bool(&query, "exchangeCode");
        let total = checks.query_amount(&query, "total");
        let skip = checks.query_amount(&query, "skipLoyaltyTotal");
        let unredeemable = checks.query_amount(&query, "unredeemableTotal");
        let ident = pick_ident(code, uid, phone);
        if ident.is_none() {
            checks.fail(
                field_code::NULLABLE,
                "phone",
                "One of [code], [phone] or [uid] is required",
                &Value::Null,
            );
        }
        let receipt = total.map(|total| Receipt {
            total,
            skip: skip.unwrap_or_default(),
            unredeemable: unredeemable.unwrap_or_default(),
        });
        if let Some(r) = &receipt {
            checks.receipt_parts(r.total, r.skip, r.unredeemable, "total");
        }
        checks.finish()?;
        let Some(ident) = ident else {
            return Err(UdsError::bad_request("Validation failed"));
        };

        let index = self
            .lookup(&ident, now)
            .ok_or_else(|| UdsError::customer_not_found(&ident))?;
        let customer = self
            .customers
            .get(index)
            .ok_or_else(|| UdsError::customer_not_found(&ident))?;
        if customer.blocked {
            return Err(UdsError::participant_is_blocked());
        }
        let mut answer = Map::new();
        answer.insert("user".into(), customer.detail_json(&self.settings));
        if matches!(ident, Ident::Code(_)) {
            answer.insert("type".into(), json!("PURCHASE"));
        }
        if let Some(receipt) = &receipt {
            let spend = spend_permission(&ident, &self.settings);
            let figures = compute(
                receipt,
                Some(customer),
                &self.settings,
                spend,
                Some(Decimal::ZERO),
            )?;
            answer.insert("purchase".into(), figures.to_json());
        }
        if exchange {
            let long = match &ident {
                Ident::Code(code) => Some(self.exchange_code(code, index, now)),
                Ident::Uid(_) | Ident::Phone(_) => None,
            };
            answer.insert("code".into(), json!(long));
        }
        Ok(Value::Object(answer))
    }

    // --- purchases -----------------------------------------------------------------------

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

    fn calc(&self, body: &Map<String, Value>, now: &Now) -> Result<Value, UdsError> {
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

    fn create_operation(
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

    // --- refunds -------------------------------------------------------------------------

    fn refund(&mut self, id: i64, body: &Map<String, Value>, now: &Now) -> Result<Value, UdsError> {
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

// ---------------------------------------------------------------------------------------------
// Purchase figures
// ---------------------------------------------------------------------------------------------

/// May points be spent, given how the customer was named?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spend {
    Allowed,
    ByUid,
    ByPhoneDisabled,
}

fn spend_permission(ident: &Ident, settings: &UdsSettings) -> Spend {
    match ident {
        Ident::Code(_) => Spend::Allowed,
        Ident::Uid(_) => Spend::ByUid,
        Ident::Phone(_) if settings.use_points_by_phone => Spend::Allowed,
        Ident::Phone(_) => Spend::ByPhoneDisabled,
    }
}

/// `PurchaseCalc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Figures {
    total: Decimal,
    skip: Decimal,
    unredeemable: Decimal,
    discount: Decimal,
    max_points: Decimal,
    points: Decimal,
    cash: Decimal,
    cashback: Decimal,
    max_scores_discount: Decimal,
}

impl Figures {
    fn to_json(self) -> Value {
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
fn compute(
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
fn share(amount: Decimal, rate: Decimal) -> Result<Decimal, UdsError> {
    amount
        .checked_mul(rate)
        .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED))
        .ok_or_else(UdsError::out_of_range)
}

/// `part` as a percentage of `whole`, rounded half up; 0 when `whole` is 0.
fn percent_of(part: Decimal, whole: Decimal) -> Decimal {
    if whole <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    part.checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|x| x.checked_div(whole))
        .map_or(Decimal::ZERO, round_money)
}

/// A rate clamped to 0–100 %.
fn percent(rate: Decimal) -> Decimal {
    rate.clamp(Decimal::ZERO, Decimal::ONE_HUNDRED)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Participant ids count up from 2⁴⁰ in seeding order.
fn participant_id(index: usize) -> i64 {
    FIRST_PARTICIPANT_ID.saturating_add(i64::try_from(index).unwrap_or(i64::MAX))
}

/// A stable UUID for a phone, so a demo customer has the same uid in every run.
fn customer_uid(phone: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("urn:uds-sandbox:customer:{phone}").as_bytes(),
    )
    .to_string()
}

/// Seeds and test hooks accept any spelling of a phone: separators are dropped, a national
/// `8XXXXXXXXXX` becomes `+7XXXXXXXXXX`, and a `+` is added. Anything with other characters is
/// kept as given (trimmed), so it can only be found by uid or code.
fn normalize_phone(raw: &str) -> String {
    let raw = raw.trim();
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let plain = raw
        .chars()
        .all(|c| c.is_ascii_digit() || "+-(). ".contains(c));
    if !plain || digits.is_empty() || raw.chars().skip(1).any(|c| c == '+') {
        return raw.to_owned();
    }
    if !raw.starts_with('+') && digits.len() == 11 && digits.starts_with('8') {
        return format!("+7{}", digits.get(1..).unwrap_or_default());
    }
    format!("+{digits}")
}

/// `digits` random decimal digits, zero-padded, from the OS random source behind uuid v4.
fn random_digits(digits: u32) -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    // Bytes 6 and 8 carry the version and variant bits: leave them out.
    let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[9], b[10]]);
    let modulus = 10u64.saturating_pow(digits);
    let width = usize::try_from(digits).unwrap_or(6);
    format!("{:0width$}", n % modulus.max(1))
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The largest amount accepted (10¹²): far above any receipt, and small enough that every
/// product in the arithmetic fits a `Decimal`.
fn max_money() -> Decimal {
    Decimal::from(1_000_000_000_000_i64)
}

/// Round half up (away from zero), as UDS rounds money.
fn round_money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Points are only ever rounded down.
fn floor_money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::ToNegativeInfinity)
}

/// Money with exactly two decimals, as text (`150.00`; never `-0.00`).
fn money_text(d: Decimal) -> String {
    let mut d = round_money(d);
    if d.is_zero() {
        d = Decimal::ZERO;
    }
    d.rescale(2);
    d.to_string()
}

/// Money as a JSON number with exactly two decimals (`150.00`).
fn money(d: Decimal) -> Value {
    serde_json::Number::from_str(&money_text(d)).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    const COMPANY: &str = "549755813888";
    const KEY: &str = "uds-test-key";
    const IVAN: &str = "+79990000001";
    const MARIA: &str = "+79990000002";
    const BLOCKED: &str = "+79990000009";
    const STRANGER: &str = "+79995550000";

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// An exact JSON number (no trip through f64).
    fn n(s: &str) -> Value {
        Value::Number(serde_json::Number::from_str(s).unwrap())
    }

    /// Money from an answer, read from the number's exact text.
    fn dec(v: &Value) -> Decimal {
        let num = v.as_number().unwrap_or_else(|| panic!("not a number: {v}"));
        Decimal::from_str_exact(num.as_str()).unwrap()
    }

    fn id_of(v: &Value) -> i64 {
        v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
    }

    fn enc(phone: &str) -> String {
        phone.replace('+', "%2b")
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

    async fn start(sandbox: &UdsSandbox) -> Running {
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
        fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
            self.http
                .request(method, format!("{}{path}", self.base))
                .basic_auth(COMPANY, Some(KEY))
        }

        async fn read(resp: reqwest::Response) -> (u16, Value) {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
            (status, value)
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            let resp = self.request(reqwest::Method::GET, path).send().await;
            Self::read(resp.unwrap()).await
        }

        async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
            let resp = self
                .request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            Self::read(resp.unwrap()).await
        }

        async fn ok_get(&self, path: &str) -> Value {
            let (status, answer) = self.get(path).await;
            assert_eq!(status, 200, "GET {path}: {answer}");
            answer
        }

        async fn ok_post(&self, path: &str, body: Value) -> Value {
            let (status, answer) = self.post(path, &body).await;
            assert_eq!(status, 200, "POST {path} {body}: {answer}");
            answer
        }

        /// An error answer: checks its shape and returns (status, errorCode, body).
        fn error_shape(status: u16, answer: Value) -> (u16, String, Value) {
            assert!(status >= 400, "{status}: {answer}");
            assert!(answer["message"].is_string(), "{answer}");
            let code = answer["errorCode"]
                .as_str()
                .unwrap_or_else(|| panic!("no errorCode: {answer}"))
                .to_owned();
            (status, code, answer)
        }

        async fn get_error(&self, path: &str) -> (u16, String, Value) {
            let (status, answer) = self.get(path).await;
            Self::error_shape(status, answer)
        }

        async fn post_error(&self, path: &str, body: Value) -> (u16, String, Value) {
            let (status, answer) = self.post(path, &body).await;
            Self::error_shape(status, answer)
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

    /// The fields of a validation error, in order.
    fn fields(answer: &Value) -> Vec<(String, String)> {
        assert_eq!(answer["errorCode"], json!("badRequest"), "{answer}");
        answer["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors[]: {answer}"))
            .iter()
            .map(|e| {
                assert!(e["message"].is_string(), "{e}");
                (
                    e["field"].as_str().unwrap_or_default().to_owned(),
                    e["errorCode"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn pair(field: &str, code: &str) -> (String, String) {
        (field.to_owned(), code.to_owned())
    }

    fn by_phone(phone: &str, receipt: Value) -> Value {
        json!({"code": null, "participant": {"uid": null, "phone": phone}, "receipt": receipt})
    }

    fn by_code(code: &str, receipt: Value) -> Value {
        json!({"code": code, "receipt": receipt})
    }

    fn by_uid(uid: &str, receipt: Value) -> Value {
        json!({"participant": {"uid": uid}, "receipt": receipt})
    }

    fn purchase(phone: &str, nonce: Option<&str>, receipt: Value) -> Value {
        json!({
            "participant": {"phone": phone},
            "nonce": nonce,
            "cashier": {"externalId": "store1_kassa2", "name": "Кассир 2"},
            "receipt": receipt,
            "tags": null,
        })
    }

    /// Asserts the figures of a `PurchaseCalc`, by name.
    fn assert_figures(purchase: &Value, expected: &[(&str, &str)]) {
        for (field, want) in expected {
            assert_eq!(dec(&purchase[*field]), d(want), "{field} in {purchase}");
        }
    }

    // --- transport -----------------------------------------------------------------------

    #[tokio::test]
    async fn auth_routing_and_recording() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let url = format!("{}/settings", srv.base);

        // Missing, wrong key, wrong company, wrong scheme, garbage: all 401 unauthorized.
        let attempts = [
            srv.http.get(&url),
            srv.http.get(&url).basic_auth(COMPANY, Some("wrong")),
            srv.http.get(&url).basic_auth("1", Some(KEY)),
            srv.http.get(&url).basic_auth(COMPANY, None::<&str>),
            srv.http.get(&url).bearer_auth(KEY),
            srv.http.get(&url).header("Authorization", "Basic !!!"),
            srv.http.get(&url).header("Authorization", "Basic"),
        ];
        for attempt in attempts {
            let (status, answer) = Running::read(attempt.send().await.unwrap()).await;
            assert_eq!(status, 401, "{answer}");
            assert_eq!(answer["errorCode"], json!("unauthorized"));
            assert!(answer["message"].is_string());
        }
        // The scheme is case-insensitive and padding optional: "549755813888:uds-test-key".
        let token = "NTQ5NzU1ODEzODg4OnVkcy10ZXN0LWtleQ";
        for header in [format!("basic {token}=="), format!("BASIC  {token}")] {
            let resp = srv
                .http
                .get(&url)
                .header("Authorization", header)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
        }

        // Unknown paths and methods are 404 notFound, with or without credentials.
        for (method, path) in [
            (reqwest::Method::GET, "/nope"),
            (reqwest::Method::POST, "/settings"),
            (reqwest::Method::GET, "/operations/calc"),
            (reqwest::Method::DELETE, "/operations/1"),
            (reqwest::Method::GET, "/customers/abc"),
            (reqwest::Method::GET, "/customers/-1"),
            (reqwest::Method::GET, "/operations"),
            (reqwest::Method::GET, "/settings/"),
        ] {
            let resp = srv.request(method.clone(), path).send().await.unwrap();
            let (status, code, _) =
                Running::error_shape(resp.status().as_u16(), resp.json().await.unwrap());
            assert_eq!(
                (status, code.as_str()),
                (404, "notFound"),
                "{method} {path}"
            );
        }
        let resp = srv
            .http
            .get(format!("{}/nope", srv.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404);

        // The real base path works too; request ids come back.
        let resp = srv
            .request(reqwest::Method::GET, "/partner/v2/settings")
            .header(
                "X-Origin-Request-Id",
                "6f1c1a8e-2f4b-4b8a-9d7e-1b2c3d4e5f60",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()["x-origin-request-id"],
            "6f1c1a8e-2f4b-4b8a-9d7e-1b2c3d4e5f60"
        );
        let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "{request_id}");

        // Malformed bodies.
        for bad in ["{", "[1, 2]", "\"text\""] {
            let resp = srv
                .request(reqwest::Method::POST, "/operations/calc")
                .body(bad)
                .send()
                .await
                .unwrap();
            let (status, code, answer) =
                Running::error_shape(resp.status().as_u16(), resp.json().await.unwrap());
            assert_eq!((status, code.as_str()), (400, "badRequest"), "{bad}");
            assert!(answer.get("errors").is_none(), "{answer}");
        }

        let find = format!("/customers/find?phone={}&total=100", enc(IVAN));
        srv.ok_get(&find).await;
        assert_eq!(sandbox.calls("/settings"), 11);
        assert_eq!(sandbox.calls("settings"), 11);
        assert_eq!(sandbox.calls("/partner/v2/settings"), 11);
        assert_eq!(sandbox.calls("/operations/calc"), 4);
        assert_eq!(sandbox.calls("/customers/find?phone=x"), 1);
        let requests = sandbox.requests();
        assert_eq!(
            requests.last().unwrap(),
            &("GET".to_owned(), find.clone(), Value::Null)
        );
        assert_eq!(requests[0], ("GET".into(), "/settings".into(), Value::Null));
        let calc_bodies: Vec<&Value> = requests
            .iter()
            .filter(|(m, p, _)| m == "POST" && p == "/operations/calc")
            .map(|(_, _, b)| b)
            .collect();
        assert_eq!(calc_bodies[0], &Value::String("{".into()));
        assert_eq!(calc_bodies[1], &json!([1, 2]));
        srv.stop().await;
    }

    #[tokio::test]
    async fn serves_h2c_and_shuts_down_gracefully() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let h2 = http_client().http2_prior_knowledge().build().unwrap();
        let resp = h2
            .get(format!("{}/settings", srv.base))
            .basic_auth(COMPANY, Some(KEY))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status().as_u16(), 200);
        srv.stop().await; // serve() returned Ok
    }

    #[tokio::test]
    async fn faults_apply_to_every_request_until_cleared() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;

        sandbox.set_fault(Some(Fault::Http500));
        let resp = srv.request(reqwest::Method::GET, "/settings").send().await;
        assert_eq!(resp.unwrap().status().as_u16(), 500);

        sandbox.set_fault(Some(Fault::Garbage));
        let resp = srv.request(reqwest::Method::GET, "/settings").send().await;
        let resp = resp.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let text = resp.text().await.unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

        sandbox.set_fault(Some(Fault::Throttle));
        let resp = srv.request(reqwest::Method::GET, "/nope").send().await;
        let resp = resp.unwrap();
        assert_eq!(resp.headers()["retry-after"], "1");
        let (status, code, _) =
            Running::error_shape(resp.status().as_u16(), resp.json().await.unwrap());
        assert_eq!((status, code.as_str()), (429, "tooManyRequests"));

        sandbox.set_fault(Some(Fault::DropConnection));
        let result = srv.request(reqwest::Method::GET, "/settings").send().await;
        assert!(result.is_err(), "{result:?}");

        // A faulted purchase never changes state.
        let receipt = json!({"total": n("100"), "cash": n("90"), "points": n("10")});
        sandbox.set_fault(Some(Fault::Throttle));
        let (status, _) = srv
            .post("/operations", &purchase(IVAN, None, receipt))
            .await;
        assert_eq!(status, 429);
        assert_eq!(sandbox.points(IVAN), Some(d("350")));

        sandbox.set_fault(Some(Fault::Delay(Duration::from_millis(300))));
        let started = std::time::Instant::now();
        let answer = srv
            .ok_get(&format!("/customers/find?phone={}", enc(IVAN)))
            .await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(dec(&answer["user"]["participant"]["points"]), d("350"));

        sandbox.set_fault(None);
        srv.ok_get("/settings").await;
        assert_eq!(sandbox.calls("/settings"), 4);
        assert_eq!(sandbox.calls("/operations"), 1);
        assert_eq!(sandbox.calls("/nope"), 1);
        srv.stop().await;
    }

    // --- settings and customers ----------------------------------------------------------

    #[tokio::test]
    async fn settings_reflect_set_settings() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let answer = srv.ok_get("/settings").await;
        assert_eq!(id_of(&answer["id"]), 549_755_813_888);
        assert_eq!(answer["baseDiscountPolicy"], json!("CHARGE_SCORES"));
        assert_eq!(answer["purchaseByPhone"], json!(true));
        assert_eq!(answer["usePointsByPhone"], json!(true));
        assert_eq!(answer["currency"], json!("RUB"));
        let loyalty = &answer["loyaltyProgramSettings"];
        assert_eq!(dec(&loyalty["maxScoresDiscount"]), d("30"));
        assert_eq!(
            dec(&loyalty["baseMembershipTier"]["maxScoresDiscount"]),
            d("30")
        );
        assert_eq!(loyalty["maxScoresDiscount"].to_string(), "30.00");

        sandbox.set_settings(UdsSettings {
            base_discount_policy: "APPLY_DISCOUNT".into(),
            max_scores_discount: d("50"),
            purchase_by_phone: false,
            use_points_by_phone: false,
            currency: "KZT".into(),
        });
        let answer = srv.ok_get("/settings").await;
        assert_eq!(answer["baseDiscountPolicy"], json!("APPLY_DISCOUNT"));
        assert_eq!(answer["purchaseByPhone"], json!(false));
        assert_eq!(answer["usePointsByPhone"], json!(false));
        assert_eq!(answer["currency"], json!("KZT"));
        assert_eq!(
            dec(&answer["loyaltyProgramSettings"]["maxScoresDiscount"]),
            d("50")
        );

        let named = UdsSandbox::new("not-a-number", KEY);
        let srv2 = start(&named).await;
        let resp = srv2
            .http
            .get(format!("{}/settings", srv2.base))
            .basic_auth("not-a-number", Some(KEY))
            .send()
            .await
            .unwrap();
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["id"], json!("not-a-number"));
        srv.stop().await;
        srv2.stop().await;
    }

    #[tokio::test]
    async fn find_by_phone_uid_and_code() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;

        let answer = srv
            .ok_get(&format!("/customers/find?phone={}", enc(IVAN)))
            .await;
        let user = &answer["user"];
        assert_eq!(user["displayName"], json!("Иван Петров"));
        assert_eq!(user["phone"], json!(IVAN));
        assert_eq!(user["gender"], json!("MALE"));
        assert_eq!(user["birthDate"], json!("1990-05-06"));
        assert_eq!(user["email"], Value::Null);
        assert_eq!(user["tags"], json!([]));
        let participant = &user["participant"];
        assert_eq!(participant["points"].to_string(), "350.00");
        assert_eq!(dec(&participant["discountRate"]), d("0"));
        assert_eq!(dec(&participant["cashbackRate"]), d("5"));
        assert_eq!(participant["membershipTier"]["uid"], json!("base"));
        assert_eq!(participant["membershipTier"]["name"], json!("Базовый"));
        assert_eq!(dec(&participant["membershipTier"]["rate"]), d("5"));
        assert_eq!(
            dec(&participant["membershipTier"]["maxScoresDiscount"]),
            d("30")
        );
        assert!(participant["dateCreated"].is_string());
        assert_eq!(participant["lastTransactionTime"], Value::Null);
        assert!(answer.get("purchase").is_none(), "{answer}");
        assert!(answer.get("code").is_none(), "{answer}");
        let uid = user["uid"].as_str().unwrap().to_owned();
        let participant_id = id_of(&participant["id"]);
        assert_eq!(participant_id, 1 << 40);
        assert_eq!(sandbox.customer(IVAN).unwrap(), *user);

        // By uid (any case) and by participant id.
        let by_uid = srv.ok_get(&format!("/customers/find?uid={uid}")).await;
        assert_eq!(by_uid["user"], *user);
        let upper = srv
            .ok_get(&format!("/customers/find?uid={}", uid.to_uppercase()))
            .await;
        assert_eq!(upper["user"]["uid"], json!(uid));
        let detail = srv.ok_get(&format!("/customers/{participant_id}")).await;
        assert_eq!(detail, *user);
        let (status, code, _) = srv.get_error("/customers/42").await;
        assert_eq!((status, code.as_str()), (404, "notFound"));

        // By payment code; the code wins over a phone that names someone else.
        let code = sandbox.payment_code(IVAN).unwrap();
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
        let by_code = srv.ok_get(&format!("/customers/find?code={code}")).await;
        assert_eq!(by_code["user"]["uid"], json!(uid));
        assert_eq!(by_code["type"], json!("PURCHASE"));
        let both = srv
            .ok_get(&format!("/customers/find?code={code}&phone={}", enc(MARIA)))
            .await;
        assert_eq!(both["user"]["uid"], json!(uid));

        // Not found.
        for query in [
            format!("phone={}", enc(STRANGER)),
            "uid=23684cea-ca50-4c5c-b399-eb473e85b5ad".to_owned(),
            "uid=garbage".to_owned(),
            "code=abcdef".to_owned(),
        ] {
            let (status, code, _) = srv.get_error(&format!("/customers/find?{query}")).await;
            assert_eq!((status, code.as_str()), (404, "notFound"), "{query}");
        }
        // A raw '+' decodes to a space: a validation error that names the encoding.
        let (status, _, answer) = srv
            .get_error(&format!("/customers/find?phone={IVAN}"))
            .await;
        assert_eq!(status, 400);
        assert_eq!(fields(&answer), vec![pair("phone", "invalidFormat")]);
        assert_eq!(answer["errors"][0]["value"], json!(" 79990000001"));
        assert!(
            answer["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("%2b")
        );
        let (status, _, answer) = srv.get_error("/customers/find").await;
        assert_eq!(status, 400);
        assert_eq!(fields(&answer), vec![pair("phone", "nullable")]);
        let (_, _, answer) = srv
            .get_error(&format!(
                "/customers/find?phone={}&total=abc&exchangeCode=yes&skipLoyaltyTotal=-1",
                enc(IVAN)
            ))
            .await;
        assert_eq!(
            fields(&answer),
            vec![
                pair("exchangeCode", "typeMismatch"),
                pair("total", "typeMismatch"),
                pair("skipLoyaltyTotal", "min"),
            ]
        );

        // Blocked customers are refused.
        let (status, code, _) = srv
            .get_error(&format!("/customers/find?phone={}", enc(BLOCKED)))
            .await;
        assert_eq!((status, code.as_str()), (400, "participantIsBlocked"));
        srv.stop().await;
    }

    #[tokio::test]
    async fn find_with_total_shows_the_purchase() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        // uds.md's example: total 1000 → maxPoints 300, cash 1000, cashBack 50, points 0.
        let answer = srv
            .ok_get(&format!("/customers/find?phone={}&total=1000", enc(IVAN)))
            .await;
        assert_figures(
            &answer["purchase"],
            &[
                ("maxPoints", "300"),
                ("total", "1000"),
                ("cash", "1000"),
                ("cashBack", "50"),
                ("points", "0"),
                ("maxScoresDiscount", "30"),
            ],
        );
        assert_eq!(answer["purchase"]["maxPoints"].to_string(), "300.00");

        // skip 100 and unredeemable 300: redeemable 600 → 180; cashback on 900.
        let answer = srv
            .ok_get(&format!(
                "/customers/find?phone={}&total=1000.00&skipLoyaltyTotal=100&unredeemableTotal=300",
                enc(IVAN)
            ))
            .await;
        assert_figures(
            &answer["purchase"],
            &[
                ("maxPoints", "180"),
                ("skipLoyaltyTotal", "100"),
                ("unredeemableTotal", "300"),
                ("cashBack", "45"),
            ],
        );

        // By uid nothing can be spent.
        let uid = sandbox.customer(IVAN).unwrap()["uid"].clone();
        let answer = srv
            .ok_get(&format!(
                "/customers/find?uid={}&total=1000",
                uid.as_str().unwrap()
            ))
            .await;
        assert_figures(
            &answer["purchase"],
            &[("maxPoints", "0"), ("cashBack", "50")],
        );

        let (status, _, answer) = srv
            .get_error(&format!(
                "/customers/find?phone={}&total=100&skipLoyaltyTotal=60&unredeemableTotal=50",
                enc(IVAN)
            ))
            .await;
        assert_eq!(status, 400);
        assert_eq!(fields(&answer), vec![pair("total", "invalid")]);
        srv.stop().await;
    }

    #[tokio::test]
    async fn exchange_code_swaps_a_payment_code_for_a_long_one() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let short = sandbox.payment_code(IVAN).unwrap();
        let answer = srv
            .ok_get(&format!(
                "/customers/find?code={short}&exchangeCode=true&total=1000"
            ))
            .await;
        let long = answer["code"].as_str().unwrap().to_owned();
        assert_eq!(long.len(), 12, "{long}");
        assert!(long.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(dec(&answer["purchase"]["maxPoints"]), d("300"));

        // The short code is used up; the long one works everywhere, and stays as it is.
        let (status, code, _) = srv
            .get_error(&format!("/customers/find?code={short}"))
            .await;
        assert_eq!((status, code.as_str()), (404, "notFound"));
        let again = srv
            .ok_get(&format!("/customers/find?code={long}&exchangeCode=TRUE"))
            .await;
        assert_eq!(again["code"], json!(long));
        let calc = srv
            .ok_post(
                "/operations/calc",
                by_code(&long, json!({"total": n("1000"), "points": n("100")})),
            )
            .await;
        assert_eq!(dec(&calc["purchase"]["points"]), d("100"));

        // Without a code there is nothing to exchange.
        let by_phone = srv
            .ok_get(&format!(
                "/customers/find?phone={}&exchangeCode=true",
                enc(IVAN)
            ))
            .await;
        assert_eq!(by_phone["code"], Value::Null);
        assert!(by_phone.as_object().unwrap().contains_key("code"));
        let plain = srv
            .ok_get(&format!("/customers/find?code={long}&exchangeCode=false"))
            .await;
        assert!(plain.get("code").is_none());
        srv.stop().await;
    }

    #[test]
    fn codes_expire() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let short = sandbox.payment_code(IVAN).unwrap();
        let mut state = sandbox.shared.lock();
        let now = Now::current();
        let later = |minutes: u64| Now {
            wall: now.wall,
            mono: now.mono + Duration::from_secs(minutes * 60),
        };
        let find = |state: &mut State, code: &str, at: &Now| {
            state
                .apply(
                    Route::FindCustomer,
                    &format!("code={code}&exchangeCode=true"),
                    &Map::new(),
                    at,
                )
                .map_err(|e| e.code)
        };
        assert_eq!(
            find(&mut state, &short, &later(46)).unwrap_err(),
            "notFound"
        );
        let answer = find(&mut state, &short, &later(44)).unwrap();
        let long = answer["code"].as_str().unwrap().to_owned();
        // Issued at minute 44, valid for 24 h.
        assert!(find(&mut state, &long, &later(44 + 24 * 60 - 1)).is_ok());
        assert_eq!(
            find(&mut state, &long, &later(44 + 24 * 60 + 1)).unwrap_err(),
            "notFound"
        );
        // Expired codes are dropped when the next one is issued.
        state.issue_code(0, later(24 * 60 * 2).mono, false);
        assert_eq!(state.codes.len(), 1);
    }

    // --- calc ----------------------------------------------------------------------------

    #[tokio::test]
    async fn calc_follows_the_documented_example() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let answer = srv
            .ok_post(
                "/operations/calc",
                by_phone(
                    IVAN,
                    json!({"total": n("1000.00"), "points": n("200.00"),
                           "skipLoyaltyTotal": n("100.00"), "unredeemableTotal": n("0")}),
                ),
            )
            .await;
        assert_eq!(answer["user"]["displayName"], json!("Иван Петров"));
        assert_eq!(dec(&answer["user"]["participant"]["points"]), d("350"));
        let purchase = &answer["purchase"];
        assert_figures(
            purchase,
            &[
                ("total", "1000"),
                ("maxPoints", "270"),
                ("points", "200"),
                ("pointsPercent", "20"),
                ("discountAmount", "0"),
                ("discountPercent", "0"),
                ("netDiscount", "200"),
                ("netDiscountPercent", "20"),
                ("cash", "800"),
                ("cashTotal", "800"),
                ("cashBack", "35"),
                ("skipLoyaltyTotal", "100"),
                ("unredeemableTotal", "0"),
                ("certificatePoints", "0"),
                ("maxScoresDiscount", "30"),
            ],
        );
        assert_eq!(purchase["extras"], json!({}));
        assert_eq!(purchase["cash"].to_string(), "800.00");
        // Calc changes nothing.
        assert_eq!(sandbox.points(IVAN), Some(d("350")));
        srv.stop().await;
    }

    #[tokio::test]
    async fn calc_figures_worked_by_hand() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let calc = |receipt: Value| by_phone(IVAN, receipt);

        // Points omitted: as many as allowed. base 900, redeemable 600 → 180 (balance 350).
        let answer = srv
            .ok_post(
                "/operations/calc",
                calc(json!({"total": n("1000"), "skipLoyaltyTotal": n("100"),
                            "unredeemableTotal": n("300")})),
            )
            .await;
        assert_figures(
            &answer["purchase"],
            &[
                ("maxPoints", "180"),
                ("points", "180"),
                ("cash", "820"),
                ("cashBack", "36"), // (900 − 180) × 5 %
                ("pointsPercent", "18"),
            ],
        );

        // The balance limits: total 2000 → 30 % is 600, but only 350 points.
        let answer = srv
            .ok_post("/operations/calc", calc(json!({"total": n("2000")})))
            .await;
        assert_figures(
            &answer["purchase"],
            &[("maxPoints", "350"), ("points", "350"), ("cash", "1650")],
        );

        // Rounding: 30 % of 333.33 is 99.999 → 99.99; requested 99.999 → 99.99 too;
        // cashback (333.33 − 99.99) × 5 % = 11.667 → 11.66; 99.99 / 333.33 = 29.9973 % → 30.00.
        let answer = srv
            .ok_post(
                "/operations/calc",
                calc(json!({"total": n("333.33"), "points": n("99.999")})),
            )
            .await;
        assert_figures(
            &answer["purchase"],
            &[
                ("maxPoints", "99.99"),
                ("points", "99.99"),
                ("cash", "233.34"),
                ("cashBack", "11.66"),
                ("pointsPercent", "30.00"),
                ("netDiscountPercent", "30.00"),
            ],
        );
        // Money other than points is rounded half up: 10.005 → 10.01.
        let answer = srv
            .ok_post(
                "/operations/calc",
                calc(json!({"total": n("10.005"), "points": n("0")})),
            )
            .await;
        assert_figures(
            &answer["purchase"],
            &[("total", "10.01"), ("cash", "10.01"), ("cashBack", "0.50")],
        );

        // An unregistered phone: accepted, no user, no points, no cashback.
        let answer = srv
            .ok_post(
                "/operations/calc",
                by_phone(STRANGER, json!({"total": n("500")})),
            )
            .await;
        assert_eq!(answer["user"], Value::Null);
        assert_figures(
            &answer["purchase"],
            &[
                ("maxPoints", "0"),
                ("points", "0"),
                ("cash", "500"),
                ("cashBack", "0"),
            ],
        );

        // By uid: points default to 0.
        let uid = sandbox.customer(IVAN).unwrap()["uid"].clone();
        let answer = srv
            .ok_post(
                "/operations/calc",
                by_uid(uid.as_str().unwrap(), json!({"total": n("1000")})),
            )
            .await;
        assert_figures(
            &answer["purchase"],
            &[("maxPoints", "0"), ("points", "0"), ("cashBack", "50")],
        );

        // The company's limit applies when lower than the customer's.
        sandbox.set_settings(UdsSettings {
            max_scores_discount: d("10"),
            ..UdsSettings::default()
        });
        let answer = srv
            .ok_post("/operations/calc", calc(json!({"total": n("1000")})))
            .await;
        assert_figures(
            &answer["purchase"],
            &[("maxPoints", "100"), ("maxScoresDiscount", "10")],
        );
        srv.stop().await;
    }

    #[tokio::test]
    async fn apply_discount_policy() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        sandbox.add_customer(UdsCustomer {
            phone: "+79990000003".into(),
            display_name: "Анна Скидкина".into(),
            points: d("350"),
            discount_rate: d("10"),
            ..UdsCustomer::default()
        });
        sandbox.set_settings(UdsSettings {
            base_discount_policy: "APPLY_DISCOUNT".into(),
            ..UdsSettings::default()
        });
        let srv = start(&sandbox).await;
        // base 900 → discount 90; redeemable 810 → 30 % = 243; no cashback.
        let answer = srv
            .ok_post(
                "/operations/calc",
                by_phone(
                    "+79990000003",
                    json!({"total": n("1000"), "skipLoyaltyTotal": n("100"), "points": n("0")}),
                ),
            )
            .await;
        assert_figures(
            &answer["purchase"],
            &[
                ("discountAmount", "90"),
                ("discountPercent", "9"),
                ("maxPoints", "243"),
                ("netDiscount", "90"),
                ("cash", "910"),
                ("cashBack", "0"),
            ],
        );
        let participant = &answer["user"]["participant"];
        assert_eq!(dec(&participant["discountRate"]), d("10"));
        assert_eq!(dec(&participant["cashbackRate"]), d("0"));
        assert_eq!(dec(&participant["membershipTier"]["rate"]), d("10"));

        // Default customers have no discount under APPLY_DISCOUNT, and earn nothing.
        let answer = srv
            .ok_post(
                "/operations/calc",
                by_phone(IVAN, json!({"total": n("1000"), "points": n("100")})),
            )
            .await;
        assert_figures(
            &answer["purchase"],
            &[
                ("discountAmount", "0"),
                ("points", "100"),
                ("netDiscount", "100"),
                ("cash", "900"),
                ("cashBack", "0"),
            ],
        );

        // A purchase with discount and points, then a full refund, adds up.
        let receipt = json!({"total": n("1000"), "skipLoyaltyTotal": n("100"),
                             "points": n("200"), "cash": n("710")});
        let op = srv
            .ok_post("/operations", purchase("+79990000003", None, receipt))
            .await;
        assert_eq!(dec(&op["cash"]), d("710"));
        assert_eq!(sandbox.points("+79990000003"), Some(d("150")));
        let id = id_of(&op["id"]);
        let first = srv
            .ok_post(
                &format!("/operations/{id}/refund"),
                json!({"partialAmount": n("333.33")}),
            )
            .await;
        let rest = srv
            .ok_post(&format!("/operations/{id}/refund"), json!({}))
            .await;
        // Discount 90 × 0.33333 = 29.9997 → 30.00; points 66.666 → 66.66.
        assert_eq!(dec(&first["points"]), d("66.66"));
        assert_eq!(dec(&first["cash"]), d("-236.67"));
        assert_eq!(dec(&first["points"]) + dec(&rest["points"]), d("200"));
        assert_eq!(dec(&first["cash"]) + dec(&rest["cash"]), d("-710"));
        assert_eq!(sandbox.points("+79990000003"), Some(d("350")));
        srv.stop().await;
    }

    #[tokio::test]
    async fn calc_refusals() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let uid = sandbox.customer(IVAN).unwrap()["uid"]
            .as_str()
            .unwrap()
            .to_owned();
        let cases = [
            // 30 % of 1000 is 300.
            (
                by_phone(IVAN, json!({"total": n("1000"), "points": n("300.01")})),
                "discountLimitExceed",
            ),
            // Above the balance of 350 comes first.
            (
                by_phone(IVAN, json!({"total": n("1000"), "points": n("351")})),
                "insufficientFunds",
            ),
            (
                by_phone(IVAN, json!({"total": n("2000"), "points": n("350.01")})),
                "insufficientFunds",
            ),
            (
                by_phone(MARIA, json!({"total": n("1000"), "points": n("10")})),
                "insufficientFunds",
            ),
            (
                by_phone(STRANGER, json!({"total": n("1000"), "points": n("10")})),
                "insufficientFunds",
            ),
            (
                by_uid(&uid, json!({"total": n("1000"), "points": n("10")})),
                "withdrawNotPermitted",
            ),
            (
                by_phone(BLOCKED, json!({"total": n("1000"), "points": n("0")})),
                "participantIsBlocked",
            ),
        ];
        for (body, want) in cases {
            let (status, code, answer) = srv.post_error("/operations/calc", body.clone()).await;
            assert_eq!((status, code.as_str()), (400, want), "{body}: {answer}");
        }
        let blocked_code = sandbox.payment_code(BLOCKED).unwrap();
        let (_, code, _) = srv
            .post_error(
                "/operations/calc",
                by_code(&blocked_code, json!({"total": n("100")})),
            )
            .await;
        assert_eq!(code, "participantIsBlocked");
        for body in [
            by_code("123", json!({"total": n("100")})),
            by_uid(
                "23684cea-ca50-4c5c-b399-eb473e85b5ad",
                json!({"total": n("100")}),
            ),
        ] {
            let (status, code, _) = srv.post_error("/operations/calc", body).await;
            assert_eq!((status, code.as_str()), (404, "notFound"));
        }

        // Settings: spending by phone off → withdrawNotPermitted (and maxPoints 0), a code still
        // spends; purchases by phone off → purchaseByPhoneDisabled, even for unknown phones.
        sandbox.set_settings(UdsSettings {
            use_points_by_phone: false,
            ..UdsSettings::default()
        });
        let (_, code, _) = srv
            .post_error(
                "/operations/calc",
                by_phone(IVAN, json!({"total": n("1000"), "points": n("1")})),
            )
            .await;
        assert_eq!(code, "withdrawNotPermitted");
        let answer = srv
            .ok_post(
                "/operations/calc",
                by_phone(IVAN, json!({"total": n("1000")})),
            )
            .await;
        assert_figures(&answer["purchase"], &[("maxPoints", "0"), ("points", "0")]);
        let ivan_code = sandbox.payment_code(IVAN).unwrap();
        let answer = srv
            .ok_post(
                "/operations/calc",
                by_code(&ivan_code, json!({"total": n("1000")})),
            )
            .await;
        assert_figures(
            &answer["purchase"],
            &[("maxPoints", "300"), ("points", "300")],
        );

        sandbox.set_settings(UdsSettings {
            purchase_by_phone: false,
            ..UdsSettings::default()
        });
        for phone in [IVAN, STRANGER] {
            let (status, code, _) = srv
                .post_error(
                    "/operations/calc",
                    by_phone(phone, json!({"total": n("1000")})),
                )
                .await;
            assert_eq!((status, code.as_str()), (400, "purchaseByPhoneDisabled"));
        }
        srv.ok_post(
            "/operations/calc",
            by_code(&ivan_code, json!({"total": n("1000")})),
        )
        .await;
        srv.stop().await;
    }

    #[tokio::test]
    async fn calc_validation() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let cases = [
            (
                json!({}),
                vec![pair("participant", "nullable"), pair("receipt", "nullable")],
            ),
            (
                json!({"participant": {"phone": IVAN}, "receipt": {}}),
                vec![pair("receipt.total", "nullable")],
            ),
            (
                json!({"participant": {"phone": IVAN},
                       "receipt": {"total": n("-1"), "points": "10"}}),
                vec![
                    pair("receipt.total", "min"),
                    pair("receipt.points", "typeMismatch"),
                ],
            ),
            (
                json!({"participant": {"phone": IVAN},
                       "receipt": {"total": n("100"), "skipLoyaltyTotal": n("60"),
                                   "unredeemableTotal": n("50")}}),
                vec![pair("receipt.total", "invalid")],
            ),
            (
                json!({"participant": {"phone": "89990000001"},
                       "receipt": {"total": n("1e13")}}),
                vec![
                    pair("participant.phone", "invalidFormat"),
                    pair("receipt.total", "max"),
                ],
            ),
            (
                json!({"code": 123456, "participant": "x", "receipt": []}),
                vec![
                    pair("code", "typeMismatch"),
                    pair("participant", "typeMismatch"),
                    pair("participant", "nullable"),
                    pair("receipt", "typeMismatch"),
                ],
            ),
        ];
        for (body, want) in cases {
            let (status, _, answer) = srv.post_error("/operations/calc", body.clone()).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(fields(&answer), want, "{body}: {answer}");
        }
        // Each error names its value.
        let (_, _, answer) = srv
            .post_error(
                "/operations/calc",
                json!({"participant": {"phone": IVAN}, "receipt": {}}),
            )
            .await;
        assert_eq!(answer["message"], json!("Validation failed"));
        assert_eq!(
            answer["errors"][0],
            json!({"errorCode": "nullable", "message": "Property [receipt.total] cannot be null",
                   "field": "receipt.total", "value": null})
        );
        srv.stop().await;
    }

    // --- operations ----------------------------------------------------------------------

    #[tokio::test]
    async fn operations_commit_what_calc_computed() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let receipt = json!({"total": n("1000.00"), "points": n("200.00"),
                             "skipLoyaltyTotal": n("100.00")});
        let calc = srv
            .ok_post("/operations/calc", by_phone(IVAN, receipt.clone()))
            .await;
        let cash = calc["purchase"]["cash"].clone();

        // A wrong cash is refused and changes nothing.
        let mut wrong = receipt.clone();
        wrong["cash"] = n("900.00");
        let (status, code, answer) = srv
            .post_error("/operations", purchase(IVAN, None, wrong))
            .await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalidChecksum"),
            "{answer}"
        );
        assert!(answer["message"].as_str().unwrap().contains("800.00"));
        assert_eq!(sandbox.points(IVAN), Some(d("350")));

        let mut right = receipt.clone();
        right["cash"] = cash;
        right["number"] = json!("00042");
        let op = srv
            .ok_post("/operations", purchase(IVAN, None, right))
            .await;
        let id = id_of(&op["id"]);
        assert_eq!(id, FIRST_OPERATION_ID);
        assert_eq!(op["action"], json!("PURCHASE"));
        assert_eq!(op["state"], json!("NORMAL"));
        assert_eq!(op["points"].to_string(), "-200.00");
        assert_eq!(dec(&op["cash"]), d("800"));
        assert_eq!(dec(&op["total"]), d("1000"));
        assert_eq!(dec(&op["certificatePoints"]), d("0"));
        assert_eq!(op["receiptNumber"], json!("00042"));
        assert_eq!(op["origin"], Value::Null);
        assert_eq!(op["customer"]["displayName"], json!("Иван Петров"));
        assert_eq!(id_of(&op["customer"]["id"]), 1 << 40);
        assert_eq!(
            op["customer"]["uid"],
            sandbox.customer(IVAN).unwrap()["uid"]
        );
        assert_eq!(op["cashier"], json!({"id": 1, "displayName": "Кассир 2"}));
        assert_eq!(
            op["branch"],
            json!({"id": BRANCH_ID, "displayName": BRANCH_NAME})
        );
        assert!(op["dateCreated"].as_str().unwrap().ends_with('Z'));
        // 350 − 200 + 35.
        assert_eq!(sandbox.points(IVAN), Some(d("185")));
        assert_eq!(sandbox.operation(id), Some(op.clone()));
        assert_eq!(srv.ok_get(&format!("/operations/{id}")).await, op);
        let found = srv
            .ok_get(&format!("/customers/find?phone={}", enc(IVAN)))
            .await;
        assert!(found["user"]["participant"]["lastTransactionTime"].is_string());
        let (status, code, _) = srv.get_error("/operations/1").await;
        assert_eq!((status, code.as_str()), (404, "notFound"));

        // Required fields, and the ones checked only here.
        let (status, _, answer) = srv
            .post_error(
                "/operations",
                json!({"participant": {"phone": IVAN},
                       "cashier": {"name": "Кассир", "externalId": "касса 1"},
                       "receipt": {"total": n("100"), "number": 42}, "tags": ["vip"]}),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(
            fields(&answer),
            vec![
                pair("receipt.cash", "nullable"),
                pair("receipt.points", "nullable"),
                pair("receipt.number", "typeMismatch"),
                pair("cashier.externalId", "invalidFormat"),
                pair("tags", "typeMismatch"),
            ]
        );

        // By uid without points; by code with points; the same cashier keeps its id.
        let uid = sandbox.customer(MARIA).unwrap()["uid"].clone();
        let op = srv
            .ok_post(
                "/operations",
                json!({"participant": {"uid": uid},
                       "cashier": {"externalId": "store1_kassa2"},
                       "receipt": {"total": n("100"), "cash": n("100"), "points": n("0")},
                       "tags": [1, 2]}),
            )
            .await;
        assert_eq!(
            op["cashier"],
            json!({"id": 1, "displayName": "store1_kassa2"})
        );
        assert_eq!(sandbox.points(MARIA), Some(d("5")));
        let code = sandbox.payment_code(IVAN).unwrap();
        let op = srv
            .ok_post(
                "/operations",
                json!({"code": code, "cashier": {"externalId": "kassa-3.1"},
                       "receipt": {"total": n("100"), "cash": n("70"), "points": n("30")}}),
            )
            .await;
        assert_eq!(id_of(&op["cashier"]["id"]), 2);
        // 185 − 30 + 3.50.
        assert_eq!(sandbox.points(IVAN), Some(d("158.50")));

        // An unregistered phone buys without points or cashback; no cashier → null.
        let op = srv
            .ok_post(
                "/operations",
                json!({"participant": {"phone": STRANGER},
                       "receipt": {"total": n("500"), "cash": n("500"), "points": n("0")}}),
            )
            .await;
        assert_eq!(
            op["customer"],
            json!({"id": null, "uid": null, "displayName": STRANGER, "membershipTier": null})
        );
        assert_eq!(op["cashier"], Value::Null);
        srv.stop().await;
    }

    #[tokio::test]
    async fn operations_refuse_what_calc_refuses() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let uid = sandbox.customer(IVAN).unwrap()["uid"].clone();
        let receipt = |total: &str, cash: &str, points: &str| json!({"total": n(total), "cash": n(cash), "points": n(points)});
        let cases = [
            (
                purchase(IVAN, None, receipt("1000", "699", "301")),
                400,
                "discountLimitExceed",
            ),
            (
                purchase(IVAN, None, receipt("2000", "1649", "351")),
                400,
                "insufficientFunds",
            ),
            (
                purchase(BLOCKED, None, receipt("100", "100", "0")),
                400,
                "participantIsBlocked",
            ),
            (
                json!({"participant": {"uid": uid}, "receipt": receipt("100", "90", "10")}),
                400,
                "withdrawNotPermitted",
            ),
            (
                json!({"code": "abcdef", "receipt": receipt("100", "100", "0")}),
                404,
                "notFound",
            ),
            // Checked before the checksum: the points are wrong, not the cash.
            (
                purchase(MARIA, None, receipt("100", "1", "10")),
                400,
                "insufficientFunds",
            ),
        ];
        for (body, want_status, want) in cases {
            let (status, code, answer) = srv.post_error("/operations", body.clone()).await;
            assert_eq!(
                (status, code.as_str()),
                (want_status, want),
                "{body}: {answer}"
            );
        }
        sandbox.set_settings(UdsSettings {
            purchase_by_phone: false,
            ..UdsSettings::default()
        });
        let (status, code, _) = srv
            .post_error(
                "/operations",
                purchase(IVAN, None, receipt("100", "100", "0")),
            )
            .await;
        assert_eq!((status, code.as_str()), (400, "purchaseByPhoneDisabled"));
        assert_eq!(sandbox.points(IVAN), Some(d("350")));
        assert_eq!(sandbox.points(MARIA), Some(d("0")));
        assert_eq!(sandbox.operation(FIRST_OPERATION_ID), None);
        srv.stop().await;
    }

    #[tokio::test]
    async fn a_repeated_nonce_returns_the_first_operation() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let nonce = "6f1c1a8e-2f4b-4b8a-9d7e-1b2c3d4e5f60";
        let receipt = json!({"total": n("1000"), "cash": n("800"), "points": n("200")});

        // A failed attempt does not use the nonce up.
        let mut wrong = receipt.clone();
        wrong["cash"] = n("1000");
        let (_, code, _) = srv
            .post_error("/operations", purchase(IVAN, Some(nonce), wrong))
            .await;
        assert_eq!(code, "invalidChecksum");

        let first = srv
            .ok_post("/operations", purchase(IVAN, Some(nonce), receipt.clone()))
            .await;
        let again = srv
            .ok_post("/operations", purchase(IVAN, Some(nonce), receipt.clone()))
            .await;
        assert_eq!(again, first);
        // Even a different body gets the first operation back.
        let other = srv
            .ok_post(
                "/operations",
                purchase(MARIA, Some(nonce), json!({"total": n("1")})),
            )
            .await;
        assert_eq!(other, first);
        // 350 − 200 + 40, once.
        assert_eq!(sandbox.points(IVAN), Some(d("190")));
        assert_eq!(sandbox.points(MARIA), Some(d("0")));
        // Another nonce is another purchase.
        let second = srv
            .ok_post(
                "/operations",
                purchase(
                    IVAN,
                    Some("another"),
                    json!({"total": n("100"), "cash": n("100"),
                                                        "points": n("0")}),
                ),
            )
            .await;
        assert_ne!(second["id"], first["id"]);
        assert_eq!(sandbox.points(IVAN), Some(d("195")));
        srv.stop().await;
    }

    // --- refunds -------------------------------------------------------------------------

    /// Ivan buys for 1000 (skip 100) with 200 points: cash 800, cashback 35, balance 185.
    async fn documented_purchase(srv: &Running) -> i64 {
        let op = srv
            .ok_post(
                "/operations",
                purchase(
                    IVAN,
                    None,
                    json!({"total": n("1000"), "cash": n("800"), "points": n("200"),
                           "skipLoyaltyTotal": n("100"), "number": "00042"}),
                ),
            )
            .await;
        id_of(&op["id"])
    }

    #[tokio::test]
    async fn thirds_of_a_purchase_add_up_exactly() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let id = documented_purchase(&srv).await;
        assert_eq!(sandbox.points(IVAN), Some(d("185")));
        let path = format!("/operations/{id}/refund");

        let first = srv
            .ok_post(&path, json!({"partialAmount": n("333.33")}))
            .await;
        assert_eq!(first["action"], json!("REFUND"));
        assert_eq!(first["state"], json!("REVERSAL"));
        assert_eq!(first["origin"], json!({"id": id}));
        assert_eq!(first["receiptNumber"], json!("00042"));
        assert_eq!(first["customer"]["displayName"], json!("Иван Петров"));
        assert_eq!(first["cashier"]["displayName"], json!("Кассир 2"));
        // floor(200 × 0.33333) = 66.66 back; floor(35 × 0.33333) = 11.66 taken back.
        assert_eq!(dec(&first["total"]), d("-333.33"));
        assert_eq!(dec(&first["points"]), d("66.66"));
        assert_eq!(dec(&first["cash"]), d("-266.67"));
        assert_eq!(sandbox.points(IVAN), Some(d("240.00")));
        assert_eq!(sandbox.operation(id).unwrap()["state"], json!("NORMAL"));

        let second = srv
            .ok_post(&path, json!({"partialAmount": n("333.33")}))
            .await;
        // Cumulative: floor(200 × 0.66666) = 133.33 → 66.67; cashback 23.33 → 11.67.
        assert_eq!(dec(&second["points"]), d("66.67"));
        assert_eq!(dec(&second["cash"]), d("-266.66"));
        assert_eq!(sandbox.points(IVAN), Some(d("295.00")));

        // Too much, zero, negative, wrong type.
        for (amount, want) in [
            (n("333.35"), "max"),
            (n("0"), "min"),
            (n("0.001"), "min"),
            (n("-1"), "min"),
            (json!("100"), "typeMismatch"),
        ] {
            let (status, _, answer) = srv
                .post_error(&path, json!({"partialAmount": amount}))
                .await;
            assert_eq!(status, 400, "{amount}");
            assert_eq!(
                fields(&answer),
                vec![pair("partialAmount", want)],
                "{amount}"
            );
        }

        // The rest: 333.34, exactly what is left of everything.
        let third = srv.ok_post(&path, json!({"partialAmount": null})).await;
        assert_eq!(dec(&third["total"]), d("-333.34"));
        assert_eq!(dec(&third["points"]), d("66.67"));
        assert_eq!(dec(&third["cash"]), d("-266.67"));
        let refunds = [&first, &second, &third];
        let sum = |field: &str| refunds.iter().map(|r| dec(&r[field])).sum::<Decimal>();
        assert_eq!(sum("total"), d("-1000"));
        assert_eq!(sum("points"), d("200"));
        assert_eq!(sum("cash"), d("-800"));
        // 185 + 200 − 35: back where Ivan started.
        assert_eq!(sandbox.points(IVAN), Some(d("350")));
        assert_eq!(sandbox.operation(id).unwrap()["state"], json!("CANCELED"));
        let third_id = id_of(&third["id"]);
        assert_eq!(srv.ok_get(&format!("/operations/{third_id}")).await, third);

        // Nothing is left; a refund cannot be refunded; unknown ids are 404.
        let (status, code, _) = srv.post_error(&path, json!({})).await;
        assert_eq!((status, code.as_str()), (400, "badRequest"));
        let (status, code, _) = srv
            .post_error(&format!("/operations/{third_id}/refund"), json!({}))
            .await;
        assert_eq!((status, code.as_str()), (400, "badRequest"));
        let (status, code, _) = srv.post_error("/operations/999/refund", json!({})).await;
        assert_eq!((status, code.as_str()), (404, "notFound"));
        srv.stop().await;
    }

    #[tokio::test]
    async fn a_full_refund_takes_back_everything_at_once() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        let srv = start(&sandbox).await;
        let id = documented_purchase(&srv).await;
        // An empty body refunds in full.
        let resp = srv
            .request(reqwest::Method::POST, &format!("/operations/{id}/refund"))
            .send()
            .await
            .unwrap();
        let (status, refund) = Running::read(resp).await;
        assert_eq!(status, 200, "{refund}");
        assert_eq!(dec(&refund["total"]), d("-1000"));
        assert_eq!(dec(&refund["points"]), d("200"));
        assert_eq!(dec(&refund["cash"]), d("-800"));
        assert_eq!(sandbox.points(IVAN), Some(d("350")));
        // The repeated nonce-less purchase lookup still works, the state moved on.
        assert_eq!(
            srv.ok_get(&format!("/operations/{id}")).await["state"],
            json!("CANCELED")
        );
        srv.stop().await;
    }

    // --- seeding -------------------------------------------------------------------------

    #[test]
    fn demo_data_and_seeding_hooks() {
        let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
        assert_eq!(sandbox.points(IVAN), Some(d("350")));
        assert_eq!(sandbox.points("8 (999) 000-00-01"), Some(d("350")));
        assert_eq!(sandbox.points(MARIA), Some(d("0")));
        assert_eq!(sandbox.points(BLOCKED), Some(d("100")));
        assert_eq!(sandbox.points(STRANGER), None);
        assert_eq!(sandbox.payment_code(STRANGER), None);
        assert_eq!(sandbox.operation(FIRST_OPERATION_ID), None);
        assert_eq!(sandbox.calls("/settings"), 0);
        assert!(sandbox.requests().is_empty());
        let uid = sandbox.customer(IVAN).unwrap()["uid"].clone();
        // Stable across runs: a UUID v5 of the phone.
        assert_eq!(
            uid,
            json!(customer_uid(IVAN)),
            "{uid} is not derived from the phone"
        );
        assert_eq!(
            UdsSandbox::with_demo_data("1", "2").customer(IVAN).unwrap()["uid"],
            uid
        );
        // Re-seeding replaces, keeping the ids.
        sandbox.add_customer(UdsCustomer {
            phone: "+7 999 000-00-01".into(),
            display_name: "Иван Петров".into(),
            points: d("7"),
            ..UdsCustomer::default()
        });
        assert_eq!(sandbox.points(IVAN), Some(d("7")));
        let again = sandbox.customer(IVAN).unwrap();
        assert_eq!(again["uid"], uid);
        assert_eq!(id_of(&again["participant"]["id"]), 1 << 40);
        assert_eq!(sandbox.shared.lock().customers.len(), 3);
        let debug = format!("{sandbox:?}");
        assert!(!debug.contains(KEY), "{debug}");
        assert!(debug.contains(COMPANY), "{debug}");
        let defaults = UdsCustomer::default();
        assert_eq!(
            (
                defaults.cashback_rate,
                defaults.max_scores_discount,
                defaults.discount_rate
            ),
            (d("5"), d("30"), d("0"))
        );
    }

    // --- helpers -------------------------------------------------------------------------

    #[test]
    fn helpers() {
        assert_eq!(money(d("150")).to_string(), "150.00");
        assert_eq!(money(d("0.005")).to_string(), "0.01");
        assert_eq!(money(d("-0.001")).to_string(), "0.00");
        assert_eq!(money(d("-200")).to_string(), "-200.00");
        assert_eq!(floor_money(d("99.999")), d("99.99"));
        assert_eq!(percent_of(d("1"), d("3")), d("33.33"));
        assert_eq!(percent_of(d("2"), d("3")), d("66.67"));
        assert_eq!(percent_of(d("1"), d("0")), d("0"));

        for (raw, want) in [
            ("+79990000001", "+79990000001"),
            ("79990000001", "+79990000001"),
            ("89990000001", "+79990000001"),
            (" +7 (999) 000-00-01 ", "+79990000001"),
            ("garbage", "garbage"),
        ] {
            assert_eq!(normalize_phone(raw), want, "{raw}");
        }
        for ok in ["+79990000001", "+4915112345678", "+1234567890"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "79990000001",
            " 79990000001",
            "+7999",
            "+0999000000",
            "+7999000000a",
            "",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }

        for (path, want) in [
            ("/settings", Some(Route::Settings)),
            ("/customers/find", Some(Route::FindCustomer)),
            ("/customers/12", Some(Route::Customer(12))),
            ("/customers/99999999999999999999", None),
            ("/customers/+1", None),
            ("/customers/", None),
            ("", None),
        ] {
            assert_eq!(Route::parse(&Method::GET, path), want, "{path}");
        }
        assert_eq!(
            Route::parse(&Method::POST, "/operations/7/refund"),
            Some(Route::Refund(7))
        );
        assert_eq!(strip_base("/partner/v2/settings"), "/settings");
        assert_eq!(strip_base("/partner/v2"), "/");
        assert_eq!(strip_base("/partner/v22/settings"), "/partner/v22/settings");

        let query = Query::parse("phone=%2b79990000001&phone=x&raw=+7&empty=");
        assert_eq!(query.get("phone"), Some("+79990000001"));
        assert_eq!(query.get("raw"), Some(" 7"));
        assert_eq!(query.get("empty"), None);
        assert!(is_plain_decimal("1000") && is_plain_decimal("-5") && is_plain_decimal("99.90"));
        for bad in ["", "1e3", "+1", "1.", ".5", "NaN", "1_000"] {
            assert!(!is_plain_decimal(bad), "{bad}");
        }
        let code = random_digits(6);
        assert_eq!(code.len(), 6);
        assert_eq!(random_digits(12).len(), 12);
    }

    /// A state with Ivan (index 0) holding `balance` points, and a purchase by him.
    fn purchase_state(
        balance: Decimal,
        total: Decimal,
        points: Decimal,
        skip: Decimal,
    ) -> (UdsSandbox, i64) {
        let sandbox = UdsSandbox::new(COMPANY, KEY);
        sandbox.add_customer(UdsCustomer {
            phone: IVAN.into(),
            display_name: "Иван".into(),
            points: balance,
            max_scores_discount: d("100"),
            ..UdsCustomer::default()
        });
        sandbox.set_settings(UdsSettings {
            max_scores_discount: d("100"),
            ..UdsSettings::default()
        });
        let mut state = sandbox.shared.lock();
        let now = Now::current();
        let receipt = json!({"total": money(total), "points": money(points),
                             "skipLoyaltyTotal": money(skip)});
        let calc = state
            .apply(
                Route::Calc,
                "",
                by_phone(IVAN, receipt.clone()).as_object().unwrap(),
                &now,
            )
            .unwrap();
        let mut body = by_phone(IVAN, receipt);
        body["receipt"]["cash"] = calc["purchase"]["cash"].clone();
        let op = state
            .apply(Route::CreateOperation, "", body.as_object().unwrap(), &now)
            .unwrap();
        drop(state);
        (sandbox, id_of(&op["id"]))
    }

    proptest! {
        /// Any split of a purchase into refunds gives back exactly what it took.
        #[test]
        fn refunds_add_up_exactly(
            total_k in 1i64..10_000_000,
            points_share in 0u32..=100,
            skip_share in 0u32..=100,
            cuts in proptest::collection::vec(1u32..1000, 0..6),
        ) {
            let total = Decimal::new(total_k, 2);
            let skip = floor_money(total * Decimal::from(skip_share) / Decimal::ONE_HUNDRED);
            let points = floor_money((total - skip) * Decimal::from(points_share)
                / Decimal::ONE_HUNDRED);
            let balance = d("1000000");
            let (sandbox, id) = purchase_state(balance, total, points, skip);
            let after_purchase = sandbox.points(IVAN).unwrap();
            let op = sandbox.operation(id).unwrap();
            let (paid_points, paid_cash) = (-dec(&op["points"]), dec(&op["cash"]));
            let cashback = after_purchase - balance + paid_points;

            let mut state = sandbox.shared.lock();
            let now = Now::current();
            let (mut back_total, mut back_points, mut back_cash) =
                (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
            for cut in cuts {
                let amount = floor_money(total * Decimal::from(cut) / Decimal::from(3000));
                let body = json!({"partialAmount": money(amount)});
                match state.apply(Route::Refund(id), "", body.as_object().unwrap(), &now) {
                    Ok(refund) => {
                        prop_assert!(dec(&refund["cash"]) <= Decimal::ZERO);
                        prop_assert!(dec(&refund["points"]) >= Decimal::ZERO);
                        back_total -= dec(&refund["total"]);
                        back_points += dec(&refund["points"]);
                        back_cash -= dec(&refund["cash"]);
                    }
                    Err(e) => prop_assert_eq!(e.code, "badRequest"),
                }
            }
            if back_total < total {
                let refund = state
                    .apply(Route::Refund(id), "", &Map::new(), &now)
                    .unwrap();
                back_total -= dec(&refund["total"]);
                back_points += dec(&refund["points"]);
                back_cash -= dec(&refund["cash"]);
            }
            drop(state);
            prop_assert_eq!(back_total, total);
            prop_assert_eq!(back_points, paid_points);
            prop_assert_eq!(back_cash, paid_cash);
            prop_assert_eq!(sandbox.points(IVAN).unwrap(), balance);
            prop_assert!(cashback >= Decimal::ZERO);
        }

        #[test]
        fn no_input_panics(
            text in any::<String>(),
            query in "[a-zA-Z0-9=&%+._-]{0,60}",
            f in any::<f64>(),
            i in any::<i64>(),
        ) {
            let sandbox = UdsSandbox::with_demo_data(COMPANY, KEY);
            let code = sandbox.payment_code(IVAN).unwrap_or_default();
            let number = |s: &str| serde_json::Number::from_str(s).map_or(Value::Null, Value::Number);
            let big = number(&format!("{i}e{}", i.rem_euclid(60)));
            let bodies = [
                json!({"code": text.clone(), "receipt": {"total": f, "points": i}}),
                json!({"code": code, "participant": {"uid": text.clone(), "phone": text.clone()},
                       "nonce": text.clone(), "cashier": {"externalId": text.clone()},
                       "receipt": {"total": big.clone(), "cash": f, "points": big.clone(),
                                   "skipLoyaltyTotal": i, "unredeemableTotal": f},
                       "tags": [i], "partialAmount": big.clone()}),
                json!({"participant": {"phone": IVAN},
                       "receipt": {"total": i, "cash": i, "points": f, "number": text.clone()},
                       "partialAmount": f}),
                json!({"participant": {"phone": IVAN},
                       "receipt": {"total": number("1e12"), "cash": number("7e11"),
                                   "points": number("3e11")}, "partialAmount": i}),
                json!({"participant": [text.clone()], "receipt": text.clone(), "partialAmount": text.clone()}),
            ];
            let mut state = sandbox.shared.lock();
            let now = Now::current();
            let ids = [i, FIRST_OPERATION_ID, FIRST_OPERATION_ID + 1, FIRST_PARTICIPANT_ID];
            for body in &bodies {
                let Value::Object(body) = body else { continue };
                for id in ids {
                    for route in [
                        Route::Settings, Route::FindCustomer, Route::Customer(id), Route::Calc,
                        Route::CreateOperation, Route::Operation(id), Route::Refund(id),
                    ] {
                        let _ = state.apply(route, &query, body, &now);
                        let _ = state.apply(route, &text, body, &now);
                    }
                }
            }
            drop(state);
            let _ = Route::parse(&Method::GET, &text);
            let _ = Route::parse(&Method::POST, &format!("/operations/{text}/refund"));
            let _ = normalize_phone(&text);
            let _ = sandbox.points(&text);
            let _ = sandbox.calls(&text);
            let _ = strip_base(&text);
            let payload = Payload::from_bytes(text.as_bytes());
            let _ = payload.recorded();
            let _ = payload.object();
        }
    }
}
