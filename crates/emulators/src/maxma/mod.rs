//! A stateful emulator of the MAXMA (formerly CloudLoyalty) Processing API, following
//! `docs/vendors/maxma.md`.
//!
//! Every method is `POST /<method>` with a JSON body and the `X-Processing-Key` header.
//! Processing errors come back with HTTP 200 and `{"errorCode", "description", "hint"}`, as the
//! official clients expect; errors inside a calculation (too many bonuses, an unusable gift card)
//! come inside `calculationResult` and the call itself succeeds.
//!
//! Emulated methods: `/get-balance`, `/new-client`, `/get-settings`, `/send-confirmation-code`,
//! `/v2/calculate-purchase`, `/set-purchase`, `/confirm-ticket`, `/discard-ticket`,
//! `/apply-return`. Anything else is HTTP 404 `{"errorCode":1,"description":"Unknown method"}`.
//!
//! # Model
//!
//! * Money is `rust_decimal` (request numbers are read from their exact JSON text); bonuses are
//!   whole numbers, 1 bonus = 1 ruble of discount.
//! * A client has `available`, `pending` and `reserved` bonuses. `set-purchase` moves the applied
//!   bonuses from available to reserved and counts the bonuses it will collect as pending;
//!   `confirm-ticket` consumes the reservation and credits the collected bonuses to available at
//!   once; `discard-ticket` gives the reservation back. This reproduces the example in maxma.md
//!   (`clientBonuses {available: 200, pending: 43, reserved: 150}` after a `set-purchase`).
//! * One loyalty level ("Базовый"), one shop (shop and cashier are accepted, never checked).
//!
//! # Where maxma.md is silent, this emulator decides
//!
//! Transport
//! * Routing is checked before the key: an unknown path is 404 even without a key.
//! * An empty body counts as `{}`; a body that is not a JSON object is errorCode 2. A body over
//!   1 MiB is HTTP 413 with errorCode 2.
//! * Faults ([`Fault`]) act after the request is recorded and before anything else, so a
//!   faulted request never changes state ([`Fault::Delay`] waits, then processes normally).
//! * [`MaxmaSandbox::requests`] keeps the last 10,000 requests so a long `cargo run` does not
//!   grow without bound; [`MaxmaSandbox::calls`] counts every request. A body that is not JSON is
//!   recorded as a JSON string of its text.
//!
//! Clients
//! * When a query names several identifiers, `phoneNumber` wins over `card` over `externalId`;
//!   empty strings count as absent. A query with none of them is errorCode 2 (in a calculation,
//!   a `client` with none of them is an anonymous purchase).
//! * Phones: separators `+ - ( ) . space` are allowed; a leading `8` of an 11-digit number
//!   becomes `7`; anything else that is not `7XXXXXXXXXX` is errorCode 20. Phones must be JSON
//!   strings.
//! * `gender` is 0 unknown / 1 male / 2 female (client-go's constants); anything else is 2.
//!   `birthdate` is stored as given. `fullName`, when not given, is "surname name patronymic".
//! * `get-balance` lists the available bonuses as one lot that never expires
//!   (`expireAt: null`), or no lot at all when there is none. `levelSpent` is the money paid
//!   (after bonuses) by confirmed purchases minus refunds; there is no next level, so
//!   `remaining` and `progressPercent` are 0. `walletsLink` points to an `.invalid` host.
//! * `new-client` checks in this order: 29, 20, 24, 25, 30, 48 (emails compare
//!   case-insensitively).
//!
//! Confirmation codes
//! * A code requested by card or externalId goes to the client's phone; a client without a
//!   phone is errorCode 29. The `to` field is accepted and ignored; the channel is always "sms".
//! * Only codes actually sent count towards the per-phone limit, so a caller that is refused can
//!   try again once the oldest code leaves the 60 s window.
//!
//! Calculations
//! * Row amounts are rounded to kopecks (half away from zero) when `qty` is fractional. Prices
//!   and row amounts must be 0 … 10¹², `qty` above 0 and at most 10⁹, else errorCode 2. A row's
//!   `id` is echoed as given and omitted when absent (client-go's `id,omitempty`). `shop`,
//!   `cashier`, `executedAt` and the other documented query fields are accepted and ignored.
//! * `max_spend_percent` is clamped to 0–100. A client whose available balance is negative
//!   (after a return cancelled collected bonuses) can apply nothing.
//! * Rows carry two exact splits of the applied bonuses: `discounts.bonuses` to the kopeck, and
//!   the integer `bonuses.applied`, which is the kopeck split rounded by largest remainder (so each
//!   row's integer is the floor or the ceiling of its ruble discount and they add up exactly).
//! * `collectBonuses: N` (N ≥ 0 integer) caps the collected bonuses at N, split over rows in
//!   proportion to what each would collect on "auto". A non-integer or negative value, or an
//!   `applyBonuses` that is neither a number nor "auto", is errorCode 2.
//! * Gift cards are codes (strings; `{"code": …}` objects are accepted too). An ACTIVE card whose
//!   `valid_until` date is before today (UTC) counts as EXPIRED; a REDEEMED card, or an ACTIVE card
//!   with nothing left, is 45. Money held by pending purchases is not spendable, so two open
//!   purchases cannot spend the same balance. For an unknown card `status` is omitted. A card
//!   that is usable but finds nothing left to pay gets `usedAmount 0` and no error.
//!
//! Purchases
//! * A repeated `set-purchase` of a pending txid returns the first ticket and calculation
//!   (the new body is not compared) with the client's current balances; no second reservation.
//! * `set-purchase` refuses with top-level errorCode 6 on a bonus error, and with the card's
//!   code (40–45) when a listed gift card is unusable: committing would leave the receipt unpaid.
//! * Anonymous purchases have no `clientBonuses` in the answer (client-go: `omitempty`).
//! * The ticket is checked before the state: a wrong ticket is errorCode 2 even for a finished
//!   purchase. A repeated `discard-ticket` is 22 PurchaseDiscarded (nothing is returned twice).
//!
//! Returns
//! * Checked in this order: 2 (shape), 17 (repeated `transaction.id`), 13 (purchase unknown or
//!   not confirmed), 10 (no items, unknown sku, or more than is still returnable), 11.
//! * A missing `refundAmount` defaults to the paid value of the returned items (to the kopeck;
//!   the return that completes the purchase defaults to exactly what is left). Gift-card money
//!   is not put back on the card (the return does not say how it is refunded). The client named
//!   in the transaction is ignored: bonuses move on the purchase's client.
//! * The share of a return is measured on paid amounts; if the purchase paid nothing (all
//!   bonuses or zero prices) on gross amounts, and if those are zero too on quantities.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

pub use crate::harness::Fault;
use crate::harness::auth::secret_matches;
use crate::harness::http::{DroppedConnection, MAX_BODY_BYTES, json_response, read_body, respond};
use crate::harness::{self, FaultAnswers, Locked, Traffic, inject};

/// The window of `code_requests_per_minute`.
const CODE_WINDOW: Duration = Duration::from_secs(60);
/// A confirmation code's `expiresAt` is this far in the future.
const CODE_LIFETIME_MINUTES: i64 = 5;

/// MAXMA's numeric error codes (client-go `errors.go`), the ones the emulator produces.
mod code {
    pub const GENERAL: u16 = 1;
    pub const MALFORMED_REQUEST: u16 = 2;
    pub const CLIENT_NOT_FOUND: u16 = 3;
    pub const INCORRECT_BONUS_AMOUNT: u16 = 6;
    pub const INCORRECT_RETURN_ITEM: u16 = 10;
    pub const INCORRECT_RETURN_AMOUNT: u16 = 11;
    pub const INCORRECT_RETURN_PURCHASE: u16 = 13;
    pub const ALREADY_PROCESSED: u16 = 17;
    pub const EMPTY_ROWS_ARRAY: u16 = 18;
    pub const INCORRECT_PHONE: u16 = 20;
    pub const PURCHASE_NOT_FOUND: u16 = 21;
    pub const PURCHASE_DISCARDED: u16 = 22;
    pub const DUPLICATING_PHONE: u16 = 24;
    pub const DUPLICATING_CARD: u16 = 25;
    pub const TOO_MANY_CODE_REQUESTS: u16 = 28;
    pub const EMPTY_PHONE: u16 = 29;
    pub const DUPLICATING_EXTERNAL_ID: u16 = 30;
    pub const GIFT_CARD_NOT_FOUND: u16 = 40;
    pub const GIFT_CARD_NOT_ACTIVATED: u16 = 42;
    pub const GIFT_CARD_EXPIRED: u16 = 43;
    pub const GIFT_CARD_BLOCKED: u16 = 44;
    pub const GIFT_CARD_NO_FUNDS: u16 = 45;
    pub const DUPLICATING_EMAIL: u16 = 48;
    pub const TEMPORARILY_UNAVAILABLE: u16 = 49;
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// Status of a gift card, as MAXMA spells it on the wire (`INACTIVE`, `ACTIVE`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GiftCardStatus {
    /// Issued but not sold/activated yet: error 42 when used.
    Inactive,
    /// Usable while it has a balance.
    Active,
    /// Spent to zero: error 45 when used.
    Redeemed,
    /// Past its validity: error 43 when used.
    Expired,
    /// Blocked by the merchant: error 44 when used.
    Blocked,
}

impl GiftCardStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GiftCardStatus::Inactive => "INACTIVE",
            GiftCardStatus::Active => "ACTIVE",
            GiftCardStatus::Redeemed => "REDEEMED",
            GiftCardStatus::Expired => "EXPIRED",
            GiftCardStatus::Blocked => "BLOCKED",
        }
    }
}

/// A client to seed with [`MaxmaSandbox::add_client`].
#[derive(Debug, Clone, Default)]
pub struct SandboxClient {
    /// Any format (`+7 999 000-00-01`, `89990000001`, …); stored as the digits `7XXXXXXXXXX`.
    pub phone: Option<String>,
    /// Card barcode, unique.
    pub card: Option<String>,
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub surname: Option<String>,
    pub patronymic_name: Option<String>,
    /// Derived from surname, name and patronymic when absent.
    pub full_name: Option<String>,
    pub email: Option<String>,
    /// Stored and returned as given (MAXMA uses `YYYY-MM-DD`).
    pub birthdate: Option<String>,
    /// 0 unknown, 1 male, 2 female.
    pub gender: u8,
    /// Available bonuses.
    pub bonuses: i64,
}

/// Loyalty programme settings; [`Default`] is what [`MaxmaSandbox::new`] starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSettings {
    /// `get-settings.phoneVerification`: registration must be confirmed with a code.
    pub phone_verification: bool,
    /// `get-settings.bonusApplyingConfirmation`: spending bonuses must be confirmed with a code.
    pub bonus_applying_confirmation: bool,
    /// Percent of the paid row amount collected as bonuses (default 5).
    pub earn_percent: Decimal,
    /// At most this percent of the eligible rows may be paid with bonuses (default 50).
    pub max_spend_percent: Decimal,
    /// Bonuses credited by `/new-client` (default 0).
    pub welcome_bonus: i64,
    /// Codes one phone may receive in 60 s before errorCode 28 (default 3).
    pub code_requests_per_minute: u32,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            phone_verification: false,
            bonus_applying_confirmation: false,
            earn_percent: Decimal::from(5),
            max_spend_percent: Decimal::from(50),
            welcome_bonus: 0,
            code_requests_per_minute: 3,
        }
    }
}

/// The MAXMA emulator. Cheap to clone: clones share one state, so a test keeps a clone to seed
/// data and inspect effects while another clone serves.
#[derive(Clone)]
pub struct MaxmaSandbox {
    shared: Arc<Shared>,
}

impl fmt::Debug for MaxmaSandbox {
    /// Never shows the processing key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaxmaSandbox").finish_non_exhaustive()
    }
}

impl MaxmaSandbox {
    /// An empty sandbox (no clients, no gift cards, default settings) that accepts requests
    /// carrying `X-Processing-Key: <processing_key>`.
    pub fn new(processing_key: impl Into<String>) -> Self {
        MaxmaSandbox {
            shared: Arc::new(Shared {
                key: processing_key.into(),
                state: Locked::new(State::default()),
            }),
        }
    }

    /// A sandbox seeded for demos and black-box tests, with default settings.
    ///
    /// Clients:
    ///
    /// | phone        | card             | externalId | full name               | bonuses |
    /// |--------------|------------------|------------|-------------------------|---------|
    /// | +79990000001 | `DEMO-0001`      | `demo-1`   | Иванов Иван Иванович    | 500     |
    /// | +75551234567 | `0001`           | `demo-2`   | Петрова Мария Сергеевна | 0       |
    /// | +79990000003 | —                | `demo-3`   | Сидоров Пётр            | 150     |
    ///
    /// Иванов is male (gender 1), born 1985-03-14, email `ivanov@example.com`; Петрова is
    /// female (gender 2); the others have no email or birthdate.
    ///
    /// Gift cards:
    ///
    /// | code        | status   | balance | initial | valid until |
    /// |-------------|----------|---------|---------|-------------|
    /// | `123456`    | ACTIVE   | 1000.00 | 1000.00 | 2030-01-01  |
    /// | `1234567`   | ACTIVE   | 500.00  | 500.00  | —           |
    /// | `EXPIRED1`  | EXPIRED  | 300.00  | 300.00  | 2020-01-01  |
    /// | `BLOCKED1`  | BLOCKED  | 200.00  | 200.00  | —           |
    /// | `INACTIVE1` | INACTIVE | 1000.00 | 1000.00 | —           |
    pub fn with_demo_data(processing_key: impl Into<String>) -> Self {
        let sandbox = MaxmaSandbox::new(processing_key);
        let some = |s: &str| Some(s.to_owned());
        sandbox.add_client(SandboxClient {
            phone: some("+79990000001"),
            card: some("DEMO-0001"),
            external_id: some("demo-1"),
            name: some("Иван"),
            surname: some("Иванов"),
            patronymic_name: some("Иванович"),
            full_name: some("Иванов Иван Иванович"),
            email: some("ivanov@example.com"),
            birthdate: some("1985-03-14"),
            gender: 1,
            bonuses: 500,
        });
        sandbox.add_client(SandboxClient {
            phone: some("+75551234567"),
            card: some("0001"),
            external_id: some("demo-2"),
            name: some("Мария"),
            surname: some("Петрова"),
            patronymic_name: some("Сергеевна"),
            gender: 2,
            ..SandboxClient::default()
        });
        sandbox.add_client(SandboxClient {
            phone: some("+79990000003"),
            external_id: some("demo-3"),
            name: some("Пётр"),
            surname: some("Сидоров"),
            bonuses: 150,
            ..SandboxClient::default()
        });
        let rub = |units: i64| Decimal::new(units * 100, 2);
        sandbox.add_gift_card(
            "123456",
            GiftCardStatus::Active,
            rub(1000),
            rub(1000),
            Some("2030-01-01"),
        );
        sandbox.add_gift_card("1234567", GiftCardStatus::Active, rub(500), rub(500), None);
        sandbox.add_gift_card(
            "EXPIRED1",
            GiftCardStatus::Expired,
            rub(300),
            rub(300),
            Some("2020-01-01"),
        );
        sandbox.add_gift_card(
            "BLOCKED1",
            GiftCardStatus::Blocked,
            rub(200),
            rub(200),
            None,
        );
        sandbox.add_gift_card(
            "INACTIVE1",
            GiftCardStatus::Inactive,
            rub(1000),
            rub(1000),
            None,
        );
        sandbox
    }

    /// Adds a client. A seeded client replaces every existing client that shares its phone,
    /// card, externalId or email, so a test can reset a demo client without duplicates (the API
    /// itself refuses duplicates). A phone that is not a valid Russian number is kept as its
    /// digits and can then be found by card or externalId only.
    pub fn add_client(&self, client: SandboxClient) {
        let phone = client.phone.as_deref().and_then(|raw| {
            normalize_phone(raw).or_else(|| {
                let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
                (!digits.is_empty()).then_some(digits)
            })
        });
        let record = Client {
            phone,
            card: non_empty(client.card),
            external_id: non_empty(client.external_id),
            full_name: non_empty(client.full_name),
            name: non_empty(client.name),
            surname: non_empty(client.surname),
            patronymic_name: non_empty(client.patronymic_name),
            email: non_empty(client.email),
            birthdate: non_empty(client.birthdate),
            gender: client.gender,
            available: client.bonuses,
            pending: 0,
            reserved: 0,
            spent: Decimal::ZERO,
        };
        let mut state = self.shared.lock();
        for slot in &mut state.clients {
            if slot.as_ref().is_some_and(|old| old.collides_with(&record)) {
                *slot = None;
            }
        }
        state.clients.push(Some(record));
    }

    /// Adds (or replaces) a gift card. `valid_until` is `YYYY-MM-DD` or RFC 3339; the card is
    /// usable through that day (UTC). An unparsable date is ignored (no expiry).
    pub fn add_gift_card(
        &self,
        code: &str,
        status: GiftCardStatus,
        balance: Decimal,
        init: Decimal,
        valid_until: Option<&str>,
    ) {
        let valid_until = valid_until.and_then(parse_date);
        self.shared.lock().gift_cards.insert(
            code.to_owned(),
            GiftCard {
                status,
                balance,
                init,
                valid_until,
                held: Decimal::ZERO,
            },
        );
    }

    /// Replaces the programme settings; they apply to the next request.
    pub fn set_settings(&self, settings: SandboxSettings) {
        self.shared.lock().settings = settings;
    }

    /// Available bonuses of the client with this phone (any format), for test assertions.
    pub fn balance_by_phone(&self, phone: &str) -> Option<i64> {
        let phone = normalize_phone(phone)?;
        let state = self.shared.lock();
        state
            .find_client(&ClientKey::Phone(phone))
            .map(|(_, client)| client.available)
    }

    /// Current balance of a gift card (money held by pending purchases is still included: it is
    /// debited on `confirm-ticket`).
    pub fn gift_card_balance(&self, code: &str) -> Option<Decimal> {
        self.shared.lock().gift_cards.get(code).map(|c| c.balance)
    }

    /// How many requests reached `method` (`"/get-balance"`; the leading slash may be left out),
    /// failed and faulted ones included.
    pub fn calls(&self, method: &str) -> usize {
        self.shared.lock().traffic.calls(method)
    }

    /// Every `(path, body)` received, oldest first (the last 10,000). A body that is not JSON is
    /// a JSON string of its text; an empty or oversized body is `null`.
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.shared.lock().traffic.requests()
    }

    /// The last confirmation code sent to this phone (any format).
    pub fn last_code(&self, phone: &str) -> Option<String> {
        let phone = normalize_phone(phone)?;
        self.shared.lock().last_codes.get(&phone).cloned()
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
        harness::serve(listener, "maxma-sandbox", handler, shutdown).await
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

struct Shared {
    key: String,
    state: Locked<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    fn key_matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get("x-processing-key")
            .is_some_and(|v| secret_matches(v.as_bytes(), self.key.as_bytes()))
    }
}

/// The methods the sandbox emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    GetBalance,
    NewClient,
    GetSettings,
    SendConfirmationCode,
    CalculatePurchase,
    SetPurchase,
    ConfirmTicket,
    DiscardTicket,
    ApplyReturn,
}

impl Op {
    const ALL: [Op; 9] = [
        Op::GetBalance,
        Op::NewClient,
        Op::GetSettings,
        Op::SendConfirmationCode,
        Op::CalculatePurchase,
        Op::SetPurchase,
        Op::ConfirmTicket,
        Op::DiscardTicket,
        Op::ApplyReturn,
    ];

    fn path(self) -> &'static str {
        match self {
            Op::GetBalance => "/get-balance",
            Op::NewClient => "/new-client",
            Op::GetSettings => "/get-settings",
            Op::SendConfirmationCode => "/send-confirmation-code",
            Op::CalculatePurchase => "/v2/calculate-purchase",
            Op::SetPurchase => "/set-purchase",
            Op::ConfirmTicket => "/confirm-ticket",
            Op::DiscardTicket => "/discard-ticket",
            Op::ApplyReturn => "/apply-return",
        }
    }

    fn route(method: &Method, path: &str) -> Option<Op> {
        if method != Method::POST {
            return None;
        }
        Op::ALL.into_iter().find(|op| op.path() == path)
    }
}

/// MAXMA's own answers to [`Fault::Throttle`] and [`Fault::TooManyRequests`].
struct MaxmaFaults;

impl FaultAnswers for MaxmaFaults {
    fn throttled(&self) -> Response<Full<Bytes>> {
        json_response(
            StatusCode::OK,
            &ProcessingError::temporarily_unavailable().to_json(),
        )
    }

    fn too_many_requests(&self, retry_after: Option<HeaderValue>) -> Response<Full<Bytes>> {
        let mut response = respond(
            StatusCode::TOO_MANY_REQUESTS,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"too many requests"),
        );
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DroppedConnection> {
    let (parts, incoming) = req.into_parts();
    let path = parts.uri.path().to_owned();
    // `None`: over the size limit.
    let body = read_body(incoming).await?;
    let parsed: Option<Value> = match &body {
        Some(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Some(Value::Object(Map::new())),
        Some(bytes) => serde_json::from_slice(bytes).ok(),
        None => None,
    };
    let recorded = match (&body, &parsed) {
        (Some(bytes), _) if bytes.is_empty() => Value::Null,
        (_, Some(value)) => value.clone(),
        (Some(bytes), None) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        (None, None) => Value::Null,
    };
    let fault = shared
        .lock()
        .traffic
        .record(&path, (path.clone(), recorded));
    if let Some(answer) = inject(fault, &MaxmaFaults).await? {
        return Ok(answer);
    }

    let Some(op) = Op::route(&parts.method, &path) else {
        tracing::debug!(method = %parts.method, path = %path, "maxma sandbox: unknown method");
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            &json!({"errorCode": code::GENERAL, "description": "Unknown method"}),
        ));
    };
    if !shared.key_matches(&parts.headers) {
        tracing::debug!(path = %path, "maxma sandbox: invalid processing key");
        return Ok(json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"errorCode": code::GENERAL, "description": "Invalid processing key"}),
        ));
    }
    if body.is_none() {
        return Ok(json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &ProcessingError::malformed(format!("the body is over {MAX_BODY_BYTES} bytes"))
                .to_json(),
        ));
    }
    let result = match parsed {
        Some(Value::Object(request)) => shared.lock().apply(op, &request, &Now::current()),
        Some(_) => Err(ProcessingError::malformed("the body must be a JSON object")),
        None => Err(ProcessingError::malformed("the body is not valid JSON")),
    };
    let answer = match result {
        Ok(answer) => answer,
        Err(err) => {
            tracing::debug!(path = %path, error_code = err.code, "maxma sandbox: processing error");
            err.to_json()
        }
    };
    Ok(json_response(StatusCode::OK, &answer))
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A MAXMA processing error: top level `{"errorCode", "description", "hint"}`, or inside a
/// calculation `{"code", "description", "hint"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MAXMA error {code}: {description}")]
struct ProcessingError {
    code: u16,
    description: String,
    hint: String,
}

impl ProcessingError {
    fn new(code: u16, description: impl Into<String>, hint: impl Into<String>) -> Self {
        ProcessingError {
            code,
            description: description.into(),
            hint: hint.into(),
        }
    }

    fn to_json(&self) -> Value {
        json!({"errorCode": self.code, "description": self.description, "hint": self.hint})
    }

    fn to_nested_json(&self) -> Value {
        json!({"code": self.code, "description": self.description, "hint": self.hint})
    }

    fn malformed(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self::new(
            code::MALFORMED_REQUEST,
            format!("Malformed request: {detail}"),
            "Fix the request",
        )
    }

    fn client_not_found() -> Self {
        Self::new(
            code::CLIENT_NOT_FOUND,
            "Client not found",
            "Check the phone number, card or external id",
        )
    }

    fn incorrect_bonus_amount(max_to_apply: i64) -> Self {
        Self::new(
            code::INCORRECT_BONUS_AMOUNT,
            "Incorrect bonus amount",
            format!("Apply a whole number of bonuses from 0 to {max_to_apply}"),
        )
    }

    fn incorrect_return_item(detail: impl Into<String>) -> Self {
        Self::new(code::INCORRECT_RETURN_ITEM, "Incorrect return item", detail)
    }

    fn incorrect_return_amount(refundable: Decimal) -> Self {
        Self::new(
            code::INCORRECT_RETURN_AMOUNT,
            "Incorrect return amount",
            format!("At most {} can still be refunded", round_money(refundable)),
        )
    }

    fn incorrect_return_purchase(purchase_id: &str) -> Self {
        Self::new(
            code::INCORRECT_RETURN_PURCHASE,
            "Incorrect return purchase",
            format!("No confirmed purchase with txid {purchase_id:?}"),
        )
    }

    fn already_processed(what: &str) -> Self {
        Self::new(
            code::ALREADY_PROCESSED,
            format!("{what} already processed"),
            "Do not repeat a finished operation",
        )
    }

    fn empty_rows() -> Self {
        Self::new(
            code::EMPTY_ROWS_ARRAY,
            "Empty rows array",
            "Add at least one row",
        )
    }

    fn incorrect_phone() -> Self {
        Self::new(
            code::INCORRECT_PHONE,
            "Incorrect phone",
            "Use a Russian mobile number: +7XXXXXXXXXX",
        )
    }

    fn purchase_not_found(txid: &str) -> Self {
        Self::new(
            code::PURCHASE_NOT_FOUND,
            "Purchase not found",
            format!("No purchase with txid {txid:?}"),
        )
    }

    fn purchase_discarded() -> Self {
        Self::new(
            code::PURCHASE_DISCARDED,
            "Purchase discarded",
            "Start a new purchase with a new txid",
        )
    }

    fn duplicating(code: u16, field: &str) -> Self {
        Self::new(
            code,
            format!("Duplicating {field}"),
            format!("Another client already has this {field}"),
        )
    }

    fn too_many_code_requests() -> Self {
        Self::new(
            code::TOO_MANY_CODE_REQUESTS,
            "Too many code requests",
            "Wait a minute before requesting another code",
        )
    }

    fn empty_phone() -> Self {
        Self::new(
            code::EMPTY_PHONE,
            "Empty phone",
            "A phone number is required",
        )
    }

    fn temporarily_unavailable() -> Self {
        Self::new(
            code::TEMPORARILY_UNAVAILABLE,
            "Temporarily unavailable",
            "Retry later",
        )
    }

    fn too_large() -> Self {
        Self::malformed("an amount is too large")
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// Index into `State::clients`; stable because replaced clients leave a `None` behind.
type ClientId = usize;

#[derive(Debug, Clone)]
struct Client {
    /// Digits, `7XXXXXXXXXX`.
    phone: Option<String>,
    card: Option<String>,
    external_id: Option<String>,
    surname: Option<String>,
    name: Option<String>,
    patronymic_name: Option<String>,
    full_name: Option<String>,
    email: Option<String>,
    birthdate: Option<String>,
    gender: u8,
    /// Spendable now; negative after a return cancelled bonuses that were already spent.
    available: i64,
    /// To be collected by pending purchases.
    pending: i64,
    /// Applied by pending purchases.
    reserved: i64,
    /// Paid by confirmed purchases, minus refunds (the level's `levelSpent`).
    spent: Decimal,
}

impl Client {
    fn collides_with(&self, other: &Client) -> bool {
        fn same(a: &Option<String>, b: &Option<String>) -> bool {
            a.is_some() && a == b
        }
        same(&self.phone, &other.phone)
            || same(&self.card, &other.card)
            || same(&self.external_id, &other.external_id)
            || same_email(self.email.as_deref(), other.email.as_deref())
    }

    fn full_name(&self) -> Option<String> {
        self.full_name.clone().or_else(|| {
            let parts: Vec<&str> = [&self.surname, &self.name, &self.patronymic_name]
                .into_iter()
                .filter_map(|p| p.as_deref())
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "phoneNumber": self.phone.as_ref().map(|p| format!("+{p}")),
            "card": self.card,
            "externalId": self.external_id,
            "surname": self.surname,
            "name": self.name,
            "patronymicName": self.patronymic_name,
            "fullName": self.full_name(),
            "gender": self.gender,
            "birthdate": self.birthdate,
            "email": self.email,
            "bonuses": self.available,
            "pendingBonuses": self.pending,
        })
    }

    /// The bonus lots of `get-balance`: sandbox bonuses never expire.
    fn lots_json(&self) -> Value {
        if self.available > 0 {
            json!([{"amount": self.available, "expireAt": null}])
        } else {
            json!([])
        }
    }

    fn level_json(&self) -> Value {
        json!({
            "level": 1,
            "name": "Базовый",
            "levelSpent": money(self.spent),
            "remaining": money(Decimal::ZERO),
            "progressPercent": 0,
        })
    }

    fn bonuses_json(&self) -> Value {
        json!({"available": self.available, "pending": self.pending, "reserved": self.reserved})
    }
}

fn same_email(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.to_lowercase() == b.to_lowercase(),
        _ => false,
    }
}

fn wallets_link(id: ClientId) -> String {
    format!("https://wallet.maxma-sandbox.invalid/c/{id}")
}

#[derive(Debug, Clone)]
struct GiftCard {
    status: GiftCardStatus,
    balance: Decimal,
    /// Not exposed by the emulated methods; kept for completeness of the seed data.
    #[allow(dead_code)]
    init: Decimal,
    valid_until: Option<NaiveDate>,
    /// Promised to pending purchases, debited from `balance` on confirm.
    held: Decimal,
}

impl GiftCard {
    fn effective_status(&self, today: NaiveDate) -> GiftCardStatus {
        match (self.status, self.valid_until) {
            (GiftCardStatus::Active, Some(until)) if until < today => GiftCardStatus::Expired,
            (status, _) => status,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PurchaseStatus {
    Pending,
    Confirmed,
    Discarded,
}

#[derive(Debug)]
struct Purchase {
    ticket: String,
    status: PurchaseStatus,
    calc: Calculation,
    /// The `calculationResult` as first answered, repeated verbatim for a repeated txid.
    result: Value,
    /// Quantity already returned, by sku.
    returned: HashMap<String, Decimal>,
    refunded: Decimal,
    recovered: i64,
    cancelled: i64,
}

/// Wall-clock and monotonic "now" of one request.
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

#[derive(Default)]
struct State {
    settings: SandboxSettings,
    clients: Vec<Option<Client>>,
    gift_cards: HashMap<String, GiftCard>,
    purchases: HashMap<String, Purchase>,
    /// `transaction.id`s of applied returns.
    returns: HashSet<String>,
    /// `(path, body)` of every request, and the fault to inject.
    traffic: Traffic<(String, Value)>,
    /// When codes were sent, by phone, within the last minute.
    codes_sent: HashMap<String, VecDeque<Instant>>,
    last_codes: HashMap<String, String>,
}

/// How a request names a client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientKey {
    /// Normalised digits.
    Phone(String),
    Card(String),
    ExternalId(String),
}

impl State {
    fn live_clients(&self) -> impl Iterator<Item = (ClientId, &Client)> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| slot.as_ref().map(|c| (id, c)))
    }

    fn client(&self, id: ClientId) -> Option<&Client> {
        self.clients.get(id).and_then(Option::as_ref)
    }

    fn find_client(&self, key: &ClientKey) -> Option<(ClientId, &Client)> {
        self.live_clients().find(|(_, c)| match key {
            ClientKey::Phone(p) => c.phone.as_ref() == Some(p),
            ClientKey::Card(card) => c.card.as_ref() == Some(card),
            ClientKey::ExternalId(ext) => c.external_id.as_ref() == Some(ext),
        })
    }

    fn resolve(&self, key: &ClientKey) -> Result<ClientId, ProcessingError> {
        self.find_client(key)
            .map(|(id, _)| id)
            .ok_or_else(ProcessingError::client_not_found)
    }

    fn apply(
        &mut self,
        op: Op,
        request: &Map<String, Value>,
        now: &Now,
    ) -> Result<Value, ProcessingError> {
        match op {
            Op::GetBalance => self.get_balance(request),
            Op::NewClient => self.new_client(request),
            Op::GetSettings => Ok(json!({
                "phoneVerification": self.settings.phone_verification,
                "bonusApplyingConfirmation": self.settings.bonus_applying_confirmation,
            })),
            Op::SendConfirmationCode => self.send_confirmation_code(request, now),
            Op::CalculatePurchase => {
                let query = required_object(request, "calculationQuery")?;
                let calc = self.calculate(query, now.wall.date_naive())?;
                Ok(json!({"calculationResult": calc.to_json()}))
            }
            Op::SetPurchase => self.set_purchase(request, now),
            Op::ConfirmTicket => self.confirm_ticket(request),
            Op::DiscardTicket => self.discard_ticket(request),
            Op::ApplyReturn => self.apply_return(request),
        }
    }

    // --- clients -------------------------------------------------------------------------

    fn get_balance(&self, request: &Map<String, Value>) -> Result<Value, ProcessingError> {
        let key = client_key(request)?.ok_or_else(|| {
            ProcessingError::malformed("one of phoneNumber, card or externalId is required")
        })?;
        let id = self.resolve(&key)?;
        let client = self
            .client(id)
            .ok_or_else(ProcessingError::client_not_found)?;
        Ok(json!({
            "client": client.to_json(),
            "bonuses": client.lots_json(),
            "level": client.level_json(),
            "walletsLink": wallets_link(id),
        }))
    }

    fn new_client(&mut self, request: &Map<String, Value>) -> Result<Value, ProcessingError> {
        let fields = required_object(request, "client")?;
        let raw_phone =
            opt_string(fields, "phoneNumber")?.ok_or_else(ProcessingError::empty_phone)?;
        let phone = normalize_phone(&raw_phone).ok_or_else(ProcessingError::incorrect_phone)?;
        let client = Client {
            phone: Some(phone),
            card: opt_string(fields, "card")?,
            external_id: opt_string(fields, "externalId")?,
            surname: opt_string(fields, "surname")?,
            name: opt_string(fields, "name")?,
            patronymic_name: opt_string(fields, "patronymicName")?,
            full_name: opt_string(fields, "fullName")?,
            email: opt_string(fields, "email")?,
            birthdate: opt_string(fields, "birthdate")?,
            gender: opt_gender(fields)?,
            available: self.settings.welcome_bonus,
            pending: 0,
            reserved: 0,
            spent: Decimal::ZERO,
        };
        let taken = |pick: fn(&Client) -> &Option<String>| {
            pick(&client).is_some() && self.live_clients().any(|(_, c)| pick(c) == pick(&client))
        };
        if taken(|c| &c.phone) {
            return Err(ProcessingError::duplicating(
                code::DUPLICATING_PHONE,
                "phone",
            ));
        }
        if taken(|c| &c.card) {
            return Err(ProcessingError::duplicating(code::DUPLICATING_CARD, "card"));
        }
        if taken(|c| &c.external_id) {
            return Err(ProcessingError::duplicating(
                code::DUPLICATING_EXTERNAL_ID,
                "externalId",
            ));
        }
        if self
            .live_clients()
            .any(|(_, c)| same_email(c.email.as_deref(), client.email.as_deref()))
        {
            return Err(ProcessingError::duplicating(
                code::DUPLICATING_EMAIL,
                "email",
            ));
        }
        let answer = json!({
            "client": client.to_json(),
            "bonuses": client.lots_json(),
            "walletsLink": wallets_link(self.clients.len()),
        });
        self.clients.push(Some(client));
        Ok(answer)
    }

    fn send_confirmation_code(
        &mut self,
        request: &Map<String, Value>,
        now: &Now,
    ) -> Result<Value, ProcessingError> {
        let phone = match client_key(request)? {
            None => {
                return Err(ProcessingError::malformed(
                    "one of phoneNumber, card or externalId is required",
                ));
            }
            // Registration codes go to phones that are not clients yet.
            Some(ClientKey::Phone(phone)) => phone,
            Some(key) => {
                let id = self.resolve(&key)?;
                self.client(id)
                    .and_then(|c| c.phone.clone())
                    .ok_or_else(ProcessingError::empty_phone)?
            }
        };
        // Type-checked, otherwise ignored (maxma.md does not say what it selects).
        opt_string(request, "to")?;

        let limit = usize::try_from(self.settings.code_requests_per_minute).unwrap_or(usize::MAX);
        let window = self.codes_sent.entry(phone.clone()).or_default();
        while window
            .front()
            .is_some_and(|sent| now.mono.saturating_duration_since(*sent) >= CODE_WINDOW)
        {
            window.pop_front();
        }
        if window.len() >= limit {
            return Err(ProcessingError::too_many_code_requests());
        }
        window.push_back(now.mono);

        let code = random_code();
        self.last_codes.insert(phone, code.clone());
        let expires_at = now.wall + TimeDelta::minutes(CODE_LIFETIME_MINUTES);
        Ok(json!({
            "code": code,
            "msgid": uuid::Uuid::new_v4().simple().to_string(),
            "channel": "sms",
            "expiresAt": expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        }))
    }

    // --- calculation ---------------------------------------------------------------------

    fn calculate(
        &self,
        query: &Map<String, Value>,
        today: NaiveDate,
    ) -> Result<Calculation, ProcessingError> {
        let client = match opt_object(query, "client")? {
            Some(fields) => match client_key(fields)? {
                Some(key) => Some(self.resolve(&key)?),
                None => None,
            },
            None => None,
        };
        let rows = parse_rows(query)?;
        let apply = parse_apply(query)?;
        let collect = parse_collect(query)?;
        let gift_codes = parse_gift_codes(query)?;

        let hundred = Decimal::ONE_HUNDRED;
        // maxToApply = floor(min(available, max_spend_percent% of the eligible rows)).
        let eligible: Vec<i128> = rows
            .iter()
            .map(|r| {
                if r.no_apply {
                    Some(0)
                } else {
                    to_kopecks(r.amount)
                }
            })
            .collect::<Option<_>>()
            .ok_or_else(ProcessingError::too_large)?;
        let eligible_sum =
            checked_sum(eligible.iter().copied()).ok_or_else(ProcessingError::too_large)?;
        let max_to_apply = match client.and_then(|id| self.client(id)) {
            None => 0,
            Some(c) => {
                let percent = self
                    .settings
                    .max_spend_percent
                    .clamp(Decimal::ZERO, hundred);
                let cap = from_kopecks(eligible_sum)
                    .and_then(|sum| sum.checked_mul(percent))
                    .and_then(|x| x.checked_div(hundred))
                    .ok_or_else(ProcessingError::too_large)?
                    .floor()
                    .to_i64()
                    .unwrap_or(i64::MAX);
                cap.min(c.available).max(0)
            }
        };

        let (applied, bonus_error) = match apply {
            Requested::Auto => (max_to_apply, None),
            Requested::Amount(n) => {
                let valid = n.fract().is_zero() && n >= Decimal::ZERO;
                match n.to_i64().filter(|n| valid && *n <= max_to_apply) {
                    Some(n) => (n, None),
                    None => (
                        0,
                        Some(ProcessingError::incorrect_bonus_amount(max_to_apply)),
                    ),
                }
            }
        };
        let discounts = allocate(i128::from(applied) * 100, &eligible)
            .ok_or_else(ProcessingError::too_large)?;
        let applied_by_row =
            allocate(i128::from(applied), &discounts).ok_or_else(ProcessingError::too_large)?;

        let earn = self.settings.earn_percent.max(Decimal::ZERO);
        let mut auto_collect = Vec::with_capacity(rows.len());
        for (row, discount) in rows.iter().zip(&discounts) {
            if client.is_none() || row.no_collect {
                auto_collect.push(0);
                continue;
            }
            let paid = from_kopecks(to_kopecks(row.amount).unwrap_or(0) - discount)
                .ok_or_else(ProcessingError::too_large)?;
            let collected = paid
                .checked_mul(earn)
                .and_then(|x| x.checked_div(hundred))
                .ok_or_else(ProcessingError::too_large)?
                .floor()
                .to_i128()
                .unwrap_or(i128::from(i64::MAX));
            auto_collect.push(collected.clamp(0, i128::from(i64::MAX)));
        }
        let collected_by_row = match collect {
            Requested::Auto => auto_collect,
            Requested::Amount(cap) => {
                let cap = cap.to_i128().unwrap_or(i128::MAX);
                let total = checked_sum(auto_collect.iter().copied())
                    .ok_or_else(ProcessingError::too_large)?;
                if total <= cap {
                    auto_collect
                } else {
                    allocate(cap, &auto_collect).ok_or_else(ProcessingError::too_large)?
                }
            }
        };

        let mut calc_rows = Vec::with_capacity(rows.len());
        for (((row, discount), applied), collected) in rows
            .into_iter()
            .zip(discounts)
            .zip(applied_by_row)
            .zip(collected_by_row)
        {
            calc_rows.push(CalcRow {
                id: row.id,
                sku: row.sku,
                qty: row.qty,
                amount: row.amount,
                discount: from_kopecks(discount).ok_or_else(ProcessingError::too_large)?,
                applied: clamp_i64(applied),
                collected: clamp_i64(collected),
            });
        }
        let collected = calc_rows
            .iter()
            .fold(0i64, |sum, r| sum.saturating_add(r.collected));

        let mut calc = Calculation {
            client,
            rows: calc_rows,
            applied,
            collected,
            max_to_apply,
            bonus_error,
            gift_cards: None,
        };
        if let Some(codes) = gift_codes {
            let mut remaining = calc.paid_total().ok_or_else(ProcessingError::too_large)?;
            let mut used_here: HashMap<&str, Decimal> = HashMap::new();
            let mut uses = Vec::with_capacity(codes.len());
            for gift_code in &codes {
                let card = self.gift_cards.get(gift_code);
                let status = card.map(|c| c.effective_status(today));
                let used_before = used_here
                    .get(gift_code.as_str())
                    .copied()
                    .unwrap_or_default();
                let spendable = card
                    .and_then(|c| c.balance.checked_sub(c.held)?.checked_sub(used_before))
                    .unwrap_or(Decimal::ZERO);
                let error = match status {
                    None => Some((code::GIFT_CARD_NOT_FOUND, "Gift card not found")),
                    Some(GiftCardStatus::Inactive) => {
                        Some((code::GIFT_CARD_NOT_ACTIVATED, "Gift card not activated"))
                    }
                    Some(GiftCardStatus::Expired) => {
                        Some((code::GIFT_CARD_EXPIRED, "Gift card expired"))
                    }
                    Some(GiftCardStatus::Blocked) => {
                        Some((code::GIFT_CARD_BLOCKED, "Gift card blocked"))
                    }
                    Some(GiftCardStatus::Redeemed) => {
                        Some((code::GIFT_CARD_NO_FUNDS, "Gift card has no funds"))
                    }
                    Some(GiftCardStatus::Active) if spendable <= Decimal::ZERO => {
                        Some((code::GIFT_CARD_NO_FUNDS, "Gift card has no funds"))
                    }
                    Some(GiftCardStatus::Active) => None,
                };
                let used = if error.is_none() {
                    spendable.min(remaining).max(Decimal::ZERO)
                } else {
                    Decimal::ZERO
                };
                remaining -= used;
                *used_here.entry(gift_code.as_str()).or_default() += used;
                uses.push(GiftCardUse {
                    code: gift_code.clone(),
                    status,
                    used,
                    error: error.map(|(error_code, description)| {
                        ProcessingError::new(error_code, description, "Pay another way")
                    }),
                });
            }
            calc.gift_cards = Some(uses);
        }
        Ok(calc)
    }

    // --- purchases -----------------------------------------------------------------------

    fn set_purchase(
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

    fn confirm_ticket(&mut self, request: &Map<String, Value>) -> Result<Value, ProcessingError> {
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

    fn discard_ticket(&mut self, request: &Map<String, Value>) -> Result<Value, ProcessingError> {
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

    // --- returns -------------------------------------------------------------------------

    fn apply_return(&mut self, request: &Map<String, Value>) -> Result<Value, ProcessingError> {
        let transaction = required_object(request, "transaction")?;
        let id = required_string(transaction, "id")?;
        let purchase_id = required_string(transaction, "purchaseId")?;
        let items = parse_return_items(transaction)?;
        let refund_amount = match transaction.get("refundAmount") {
            None | Some(Value::Null) => None,
            Some(v) => Some(decimal_value(v, "transaction.refundAmount")?),
        };
        if self.returns.contains(&id) {
            return Err(ProcessingError::already_processed("Return"));
        }
        let purchase = self
            .purchases
            .get(&purchase_id)
            .filter(|p| p.status == PurchaseStatus::Confirmed)
            .ok_or_else(|| ProcessingError::incorrect_return_purchase(&purchase_id))?;
        let plan = plan_return(purchase, &items, refund_amount)?;

        let Some(purchase) = self.purchases.get_mut(&purchase_id) else {
            return Err(ProcessingError::incorrect_return_purchase(&purchase_id));
        };
        for (sku, count) in &items {
            *purchase.returned.entry(sku.clone()).or_default() += *count;
        }
        purchase.refunded += plan.refund_amount;
        purchase.recovered = purchase.recovered.saturating_add(plan.recovered);
        purchase.cancelled = purchase.cancelled.saturating_add(plan.cancelled);
        if let Some(client) = client_mut(&mut self.clients, purchase.calc.client) {
            client.available = client
                .available
                .saturating_add(plan.recovered)
                .saturating_sub(plan.cancelled);
            client.spent = client
                .spent
                .checked_sub(plan.refund_amount)
                .unwrap_or(client.spent);
        }
        self.returns.insert(id);
        Ok(json!({
            "confirmation": {
                "refundId": uuid::Uuid::new_v4().simple().to_string(),
                "refundAmount": money(plan.refund_amount),
                "recoveredBonuses": plan.recovered,
                "cancelledBonuses": plan.cancelled,
            }
        }))
    }
}

fn client_mut(clients: &mut [Option<Client>], id: Option<ClientId>) -> Option<&mut Client> {
    clients.get_mut(id?).and_then(Option::as_mut)
}

// ---------------------------------------------------------------------------------------------
// Calculation
// ---------------------------------------------------------------------------------------------

/// A calculated receipt: what `/v2/calculate-purchase` answers and what a purchase keeps.
#[derive(Debug, Clone)]
struct Calculation {
    client: Option<ClientId>,
    rows: Vec<CalcRow>,
    applied: i64,
    collected: i64,
    max_to_apply: i64,
    bonus_error: Option<ProcessingError>,
    /// `None` when the query had no `giftCards`.
    gift_cards: Option<Vec<GiftCardUse>>,
}

#[derive(Debug, Clone)]
struct CalcRow {
    id: Option<Value>,
    sku: String,
    qty: Decimal,
    /// Price × qty, rubles to the kopeck.
    amount: Decimal,
    /// Bonus discount, rubles to the kopeck.
    discount: Decimal,
    applied: i64,
    collected: i64,
}

#[derive(Debug, Clone)]
struct GiftCardUse {
    code: String,
    status: Option<GiftCardStatus>,
    used: Decimal,
    error: Option<ProcessingError>,
}

/// Totals of one sku over a purchase's rows.
#[derive(Debug, Clone, Copy, Default)]
struct SkuTotals {
    qty: Decimal,
    amount: Decimal,
    paid: Decimal,
}

impl Calculation {
    /// What the rows cost after bonus discounts (gift cards are a way to pay it).
    fn paid_total(&self) -> Option<Decimal> {
        self.rows.iter().try_fold(Decimal::ZERO, |sum, r| {
            sum.checked_add(r.amount.checked_sub(r.discount)?)
        })
    }

    fn by_sku(&self) -> Option<HashMap<&str, SkuTotals>> {
        let mut totals: HashMap<&str, SkuTotals> = HashMap::new();
        for row in &self.rows {
            let t = totals.entry(row.sku.as_str()).or_default();
            t.qty = t.qty.checked_add(row.qty)?;
            t.amount = t.amount.checked_add(row.amount)?;
            t.paid = t.paid.checked_add(row.amount.checked_sub(row.discount)?)?;
        }
        Some(totals)
    }

    fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut out = Map::new();
                if let Some(id) = &row.id {
                    out.insert("id".into(), id.clone());
                }
                out.insert("totalDiscount".into(), money(row.discount));
                out.insert("discounts".into(), discounts_json(row.discount));
                out.insert(
                    "bonuses".into(),
                    json!({"applied": row.applied, "collected": row.collected}),
                );
                Value::Object(out)
            })
            .collect();
        let total_discount = self
            .rows
            .iter()
            .fold(Decimal::ZERO, |sum, r| sum + r.discount);
        let prepaid = self
            .gift_cards
            .iter()
            .flatten()
            .fold(Decimal::ZERO, |sum, g| sum + g.used);
        let mut bonuses = Map::new();
        bonuses.insert("applied".into(), self.applied.into());
        bonuses.insert("collected".into(), self.collected.into());
        bonuses.insert("maxToApply".into(), self.max_to_apply.into());
        if let Some(err) = &self.bonus_error {
            bonuses.insert("error".into(), err.to_nested_json());
        }
        let mut result = Map::new();
        result.insert("rows".into(), Value::Array(rows));
        result.insert(
            "summary".into(),
            json!({
                "totalDiscount": money(total_discount),
                "discounts": discounts_json(total_discount),
                "prepaidAmount": money(prepaid),
            }),
        );
        result.insert("bonuses".into(), Value::Object(bonuses));
        if let Some(cards) = &self.gift_cards {
            let cards = cards
                .iter()
                .map(|g| {
                    let mut out = Map::new();
                    out.insert("code".into(), Value::String(g.code.clone()));
                    if let Some(status) = g.status {
                        out.insert("status".into(), Value::String(status.as_str().into()));
                    }
                    out.insert("usedAmount".into(), money(g.used));
                    if let Some(err) = &g.error {
                        out.insert("error".into(), err.to_nested_json());
                    }
                    Value::Object(out)
                })
                .collect();
            result.insert("giftCards".into(), Value::Array(cards));
        }
        Value::Object(result)
    }
}

/// Bonuses are the only discount the sandbox gives.
fn discounts_json(bonuses: Decimal) -> Value {
    let zero = money(Decimal::ZERO);
    json!({
        "auto": zero,
        "manual": zero,
        "bonuses": money(bonuses),
        "promocode": zero,
        "offer": zero,
        "rounding": zero,
    })
}

/// The outcome of a valid return, computed before anything changes.
struct ReturnPlan {
    refund_amount: Decimal,
    recovered: i64,
    cancelled: i64,
}

fn plan_return(
    purchase: &Purchase,
    listed: &[(String, Decimal)],
    refund_amount: Option<Decimal>,
) -> Result<ReturnPlan, ProcessingError> {
    let items = merge_return_items(listed)?;
    let items = items.as_slice();
    let calc = &purchase.calc;
    let totals = calc.by_sku().ok_or_else(ProcessingError::too_large)?;
    let returned = |sku: &str| purchase.returned.get(sku).copied().unwrap_or_default();
    for (sku, count) in items {
        let Some(line) = totals.get(sku.as_str()) else {
            return Err(ProcessingError::incorrect_return_item(format!(
                "sku {sku:?} is not in purchase"
            )));
        };
        let left = line.qty - returned(sku);
        if *count > left {
            return Err(ProcessingError::incorrect_return_item(format!(
                "only {left} of sku {sku:?} can still be returned"
            )));
        }
    }

    // value(line, count) = basis × count / qty; multiplying first keeps a full line exact.
    let part =
        |basis: Decimal, count: Decimal, qty: Decimal| basis.checked_mul(count)?.checked_div(qty);
    let sum_over_items = |basis: fn(&SkuTotals) -> Decimal| -> Option<Decimal> {
        items.iter().try_fold(Decimal::ZERO, |sum, (sku, count)| {
            let line = totals.get(sku.as_str())?;
            sum.checked_add(part(basis(line), *count, line.qty)?)
        })
    };
    let paid_total = calc.paid_total().ok_or_else(ProcessingError::too_large)?;
    let paid_value = sum_over_items(|t| t.paid).ok_or_else(ProcessingError::too_large)?;

    let mut asked: HashMap<&str, Decimal> = HashMap::new();
    for (sku, count) in items {
        *asked.entry(sku.as_str()).or_default() += *count;
    }
    let everything_back = totals
        .iter()
        .all(|(sku, line)| returned(sku) + asked.get(sku).copied().unwrap_or_default() >= line.qty);

    let refundable = (paid_total - purchase.refunded).max(Decimal::ZERO);
    // The default is the items' paid value; the return that completes the purchase refunds
    // exactly what is left, so kopeck roundings of earlier returns never strand a kopeck.
    let refund_amount = match refund_amount {
        Some(amount) => amount,
        None if everything_back => refundable,
        None => round_money(paid_value).min(refundable),
    };
    if refund_amount < Decimal::ZERO || refund_amount > refundable {
        return Err(ProcessingError::incorrect_return_amount(refundable));
    }

    // The share of the purchase this return takes back: on paid amounts, else on gross
    // amounts, else on quantities (a purchase that cost nothing).
    let amount_total = totals.values().fold(Decimal::ZERO, |s, t| s + t.amount);
    let basis: fn(&SkuTotals) -> Decimal = if paid_total > Decimal::ZERO {
        |t| t.paid
    } else if amount_total > Decimal::ZERO {
        |t| t.amount
    } else {
        |t| t.qty
    };
    let basis_total = totals.values().fold(Decimal::ZERO, |s, t| s + basis(t));
    let share = sum_over_items(basis)
        .and_then(|v| v.checked_div(basis_total))
        .unwrap_or(Decimal::ZERO)
        .clamp(Decimal::ZERO, Decimal::ONE);
    // Each partial return takes floor(total × share); the return that completes the purchase
    // takes whatever is left, so the returns always add up to the purchase's totals.
    let portion = |total: i64, so_far: i64| -> i64 {
        let left = total.saturating_sub(so_far).max(0);
        if everything_back {
            return left;
        }
        let part = Decimal::from(total)
            .checked_mul(share)
            .map_or(0, |x| x.floor().to_i64().unwrap_or(0));
        part.clamp(0, left)
    };
    Ok(ReturnPlan {
        refund_amount,
        recovered: portion(calc.applied, purchase.recovered),
        cancelled: portion(calc.collected, purchase.cancelled),
    })
}

// ---------------------------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------------------------

struct RowInput {
    id: Option<Value>,
    sku: String,
    qty: Decimal,
    amount: Decimal,
    no_apply: bool,
    no_collect: bool,
}

/// `applyBonuses` / `collectBonuses`: a number or "auto".
enum Requested {
    Auto,
    Amount(Decimal),
}

fn parse_rows(query: &Map<String, Value>) -> Result<Vec<RowInput>, ProcessingError> {
    let rows = match query.get("rows") {
        None | Some(Value::Null) => return Err(ProcessingError::empty_rows()),
        Some(Value::Array(rows)) if rows.is_empty() => return Err(ProcessingError::empty_rows()),
        Some(Value::Array(rows)) => rows,
        Some(_) => return Err(ProcessingError::malformed("rows must be an array")),
    };
    let limit = max_money();
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let at = |field: &str| format!("rows[{i}].{field}");
            let Value::Object(row) = row else {
                return Err(ProcessingError::malformed(format!(
                    "rows[{i}] must be an object"
                )));
            };
            let product = row
                .get("product")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    ProcessingError::malformed(format!("{} is required", at("product")))
                })?;
            let sku = opt_string(product, "sku")?.ok_or_else(|| {
                ProcessingError::malformed(format!("{} is required", at("product.sku")))
            })?;
            let price_field = |name: &str| -> Result<Option<Decimal>, ProcessingError> {
                let path = at(&format!("product.{name}"));
                match product.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => {
                        let price = decimal_value(v, &path)?;
                        if price < Decimal::ZERO || price > limit {
                            return Err(ProcessingError::malformed(format!(
                                "{path} must be between 0 and {limit}"
                            )));
                        }
                        Ok(Some(price))
                    }
                }
            };
            let black = price_field("blackPrice")?.ok_or_else(|| {
                ProcessingError::malformed(format!("{} is required", at("product.blackPrice")))
            })?;
            let price = price_field("redPrice")?.unwrap_or(black);
            let qty = match row.get("qty") {
                None | Some(Value::Null) => {
                    return Err(ProcessingError::malformed(format!(
                        "{} is required",
                        at("qty")
                    )));
                }
                Some(v) => decimal_value(v, &at("qty"))?,
            };
            if qty <= Decimal::ZERO || qty > max_qty() {
                return Err(ProcessingError::malformed(format!(
                    "{} must be above 0 and at most {}",
                    at("qty"),
                    max_qty()
                )));
            }
            let amount = price
                .checked_mul(qty)
                .map(round_money)
                .filter(|a| *a <= limit)
                .ok_or_else(|| {
                    ProcessingError::malformed(format!("rows[{i}]: price × qty is too large"))
                })?;
            Ok(RowInput {
                id: row.get("id").filter(|v| !v.is_null()).cloned(),
                sku,
                qty,
                amount,
                no_apply: opt_bool(row, "noApplyBonuses")?,
                no_collect: opt_bool(row, "noCollectBonuses")?,
            })
        })
        .collect()
}

fn parse_apply(query: &Map<String, Value>) -> Result<Requested, ProcessingError> {
    match query.get("applyBonuses") {
        None | Some(Value::Null) => Ok(Requested::Amount(Decimal::ZERO)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("auto") => Ok(Requested::Auto),
        // A number out of range is a calculation error (bonuses.error), not a malformed request.
        Some(v @ Value::Number(_)) => Ok(Requested::Amount(
            decimal_value(v, "applyBonuses").unwrap_or(Decimal::MAX),
        )),
        Some(_) => Err(ProcessingError::malformed(
            "applyBonuses must be a number or \"auto\"",
        )),
    }
}

fn parse_collect(query: &Map<String, Value>) -> Result<Requested, ProcessingError> {
    match query.get("collectBonuses") {
        None | Some(Value::Null) => Ok(Requested::Auto),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("auto") => Ok(Requested::Auto),
        Some(v @ Value::Number(_)) => {
            let n = decimal_value(v, "collectBonuses")?;
            if n < Decimal::ZERO || !n.fract().is_zero() {
                return Err(ProcessingError::malformed(
                    "collectBonuses must be a whole number from 0 or \"auto\"",
                ));
            }
            Ok(Requested::Amount(n))
        }
        Some(_) => Err(ProcessingError::malformed(
            "collectBonuses must be a number or \"auto\"",
        )),
    }
}

fn parse_gift_codes(query: &Map<String, Value>) -> Result<Option<Vec<String>>, ProcessingError> {
    let cards = match query.get("giftCards") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(cards)) => cards,
        Some(_) => return Err(ProcessingError::malformed("giftCards must be an array")),
    };
    cards
        .iter()
        .map(|card| match card {
            Value::String(code) => Ok(code.clone()),
            Value::Object(fields) => opt_string(fields, "code")?
                .ok_or_else(|| ProcessingError::malformed("giftCards[].code is required")),
            _ => Err(ProcessingError::malformed(
                "giftCards must hold gift card codes",
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Return items as listed, checked for shape only (their meaning is checked by
/// [`merge_return_items`], after the purchase is known, so error codes come in the documented
/// order).
fn parse_return_items(
    transaction: &Map<String, Value>,
) -> Result<Vec<(String, Decimal)>, ProcessingError> {
    let items: &[Value] = match transaction.get("items") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ProcessingError::malformed(
                "transaction.items must be an array",
            ));
        }
    };
    let mut listed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(item) = item else {
            return Err(ProcessingError::malformed(format!(
                "transaction.items[{i}] must be an object"
            )));
        };
        let sku = opt_string(item, "sku")?.ok_or_else(|| {
            ProcessingError::malformed(format!("transaction.items[{i}].sku is required"))
        })?;
        let path = format!("transaction.items[{i}].itemCount");
        let count = match item.get("itemCount") {
            None | Some(Value::Null) => {
                return Err(ProcessingError::malformed(format!("{path} is required")));
            }
            Some(v) => decimal_value(v, &path)?,
        };
        listed.push((sku, count));
    }
    Ok(listed)
}

/// Return items merged by sku in first-seen order; errorCode 10 for an empty list or a count
/// that is not above 0.
fn merge_return_items(
    listed: &[(String, Decimal)],
) -> Result<Vec<(String, Decimal)>, ProcessingError> {
    if listed.is_empty() {
        return Err(ProcessingError::incorrect_return_item(
            "list the returned items",
        ));
    }
    let mut merged: Vec<(String, Decimal)> = Vec::new();
    for (i, (sku, count)) in listed.iter().enumerate() {
        if *count <= Decimal::ZERO {
            return Err(ProcessingError::incorrect_return_item(format!(
                "transaction.items[{i}].itemCount must be above 0"
            )));
        }
        match merged.iter_mut().find(|(s, _)| s == sku) {
            // Saturating: an absurd total is then simply more than can be returned.
            Some((_, total)) => *total = total.saturating_add(*count),
            None => merged.push((sku.clone(), *count)),
        }
    }
    Ok(merged)
}

/// The client a request names: `phoneNumber`, else `card`, else `externalId`.
fn client_key(fields: &Map<String, Value>) -> Result<Option<ClientKey>, ProcessingError> {
    if let Some(phone) = opt_string(fields, "phoneNumber")? {
        let phone = normalize_phone(&phone).ok_or_else(ProcessingError::incorrect_phone)?;
        return Ok(Some(ClientKey::Phone(phone)));
    }
    if let Some(card) = opt_string(fields, "card")? {
        return Ok(Some(ClientKey::Card(card)));
    }
    Ok(opt_string(fields, "externalId")?.map(ClientKey::ExternalId))
}

fn required_object<'a>(
    fields: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Map<String, Value>, ProcessingError> {
    opt_object(fields, key)?.ok_or_else(|| ProcessingError::malformed(format!("{key} is required")))
}

fn opt_object<'a>(
    fields: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, ProcessingError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(obj)) => Ok(Some(obj)),
        Some(_) => Err(ProcessingError::malformed(format!(
            "{key} must be an object"
        ))),
    }
}

fn required_string(fields: &Map<String, Value>, key: &str) -> Result<String, ProcessingError> {
    opt_string(fields, key)?.ok_or_else(|| ProcessingError::malformed(format!("{key} is required")))
}

/// A string field; absent, `null` and `""` are all "not given".
fn opt_string(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, ProcessingError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(non_empty(Some(s.clone()))),
        Some(_) => Err(ProcessingError::malformed(format!(
            "{key} must be a string"
        ))),
    }
}

fn opt_bool(fields: &Map<String, Value>, key: &str) -> Result<bool, ProcessingError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ProcessingError::malformed(format!(
            "{key} must be true or false"
        ))),
    }
}

fn opt_gender(fields: &Map<String, Value>) -> Result<u8, ProcessingError> {
    match fields.get("gender") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|g| *g <= 2)
            .and_then(|g| u8::try_from(g).ok())
            .ok_or_else(|| ProcessingError::malformed("gender must be 0, 1 or 2")),
        Some(_) => Err(ProcessingError::malformed("gender must be 0, 1 or 2")),
    }
}

/// An exact decimal from a JSON number's text (`arbitrary_precision` keeps it); never via f64.
fn decimal_value(value: &Value, path: &str) -> Result<Decimal, ProcessingError> {
    let Value::Number(number) = value else {
        return Err(ProcessingError::malformed(format!(
            "{path} must be a number"
        )));
    };
    let text = number.as_str();
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| ProcessingError::malformed(format!("{path} is out of range")))
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// A Russian mobile number as the digits `7XXXXXXXXXX`: separators are dropped and a leading
/// `8` becomes `7`; `None` for anything else.
fn normalize_phone(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw
        .chars()
        .any(|c| !(c.is_ascii_digit() || "+-(). ".contains(c)))
    {
        return None;
    }
    if raw.chars().skip(1).any(|c| c == '+') {
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

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|dt| dt.with_timezone(&Utc).date_naive())
        })
        .or_else(|| {
            tracing::debug!(
                valid_until = text,
                "maxma sandbox: unparsable gift card date ignored"
            );
            None
        })
}

/// Three random digits, zero-padded ("042"), from the OS random source behind uuid v4.
fn random_code() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let n = u16::from_le_bytes([bytes[0], bytes[1]]) % 1000;
    format!("{n:03}")
}

// ---------------------------------------------------------------------------------------------
// Money
// ---------------------------------------------------------------------------------------------

/// The largest price or row amount accepted, in rubles (10¹²): far above any receipt, and low
/// enough that every product in the kopeck arithmetic fits an `i128`.
fn max_money() -> Decimal {
    Decimal::from(1_000_000_000_000_i64)
}

/// The largest row quantity accepted (10⁹), so sums of quantities cannot overflow.
fn max_qty() -> Decimal {
    Decimal::from(1_000_000_000_i64)
}

fn round_money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
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

fn to_kopecks(d: Decimal) -> Option<i128> {
    d.checked_mul(Decimal::ONE_HUNDRED)?.trunc().to_i128()
}

fn from_kopecks(k: i128) -> Option<Decimal> {
    Decimal::try_from_i128_with_scale(k, 2).ok()
}

fn checked_sum(mut values: impl Iterator<Item = i128>) -> Option<i128> {
    values.try_fold(0i128, i128::checked_add)
}

fn clamp_i64(n: i128) -> i64 {
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
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

    const KEY: &str = "sandbox-test-key";
    const IVANOV: &str = "+79990000001";

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// Money from an answer, read from the number's exact text.
    fn dec(v: &Value) -> Decimal {
        let n = v.as_number().unwrap_or_else(|| panic!("not a number: {v}"));
        Decimal::from_str_exact(n.as_str()).unwrap()
    }

    fn int(v: &Value) -> i64 {
        v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
    }

    struct Running {
        base: String,
        http: reqwest::Client,
        shutdown: Option<oneshot::Sender<()>>,
        task: Option<JoinHandle<std::io::Result<()>>>,
    }

    /// reqwest is built with `rustls-no-provider` (the crate's main dependency unifies features
    /// with the dev one): it panics on building a client unless a provider is installed, even
    /// for plain http. Installing twice is fine: the second attempt is refused and ignored.
    fn http_client() -> reqwest::ClientBuilder {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
    }

    async fn start(sandbox: &MaxmaSandbox) -> Running {
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
        async fn send(&self, path: &str, key: Option<&str>, body: &str) -> reqwest::Response {
            let mut req = self
                .http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_owned());
            if let Some(key) = key {
                req = req.header("X-Processing-Key", key);
            }
            req.send().await.unwrap()
        }

        async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
            let resp = self.send(path, Some(KEY), &body.to_string()).await;
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
            (status, value)
        }

        /// A successful call: HTTP 200 without errorCode.
        async fn ok(&self, path: &str, body: Value) -> Value {
            let (status, answer) = self.post(path, &body).await;
            assert_eq!(status, 200, "{path}: {answer}");
            assert!(answer.get("errorCode").is_none(), "{path}: {answer}");
            answer
        }

        /// A processing error: HTTP 200 with errorCode, description and hint.
        async fn error(&self, path: &str, body: Value) -> i64 {
            let (status, answer) = self.post(path, &body).await;
            assert_eq!(status, 200, "{path}: {answer}");
            assert!(answer["description"].is_string(), "{answer}");
            assert!(answer["hint"].is_string(), "{answer}");
            int(&answer["errorCode"])
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

    fn calc(client: Value, rows: Value, extra: Value) -> Value {
        let mut query = json!({
            "shop": {"code": "store-1", "name": "Магазин"},
            "cashier": {"code": "42", "name": "Кассир"},
            "rows": rows,
        });
        if !client.is_null() {
            query["client"] = client;
        }
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                query[k] = v;
            }
        }
        json!({ "calculationQuery": query })
    }

    fn row(id: &str, sku: &str, price: f64, qty: u32) -> Value {
        json!({"id": id, "product": {"sku": sku, "title": sku, "blackPrice": price}, "qty": qty})
    }

    fn ivanov() -> Value {
        json!({"phoneNumber": IVANOV})
    }

    // --- transport -----------------------------------------------------------------------

    #[tokio::test]
    async fn auth_routing_and_malformed_bodies_are_answered_as_documented() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let srv = start(&sandbox).await;
        let body = json!({"phoneNumber": IVANOV}).to_string();

        for key in [None, Some("wrong-key")] {
            let resp = srv.send("/get-balance", key, &body).await;
            assert_eq!(resp.status().as_u16(), 401);
            let answer: Value = resp.json().await.unwrap();
            assert_eq!(
                answer,
                json!({"errorCode": 1, "description": "Invalid processing key"})
            );
        }

        let (status, answer) = srv.post("/no-such-method", &json!({})).await;
        assert_eq!(status, 404);
        assert_eq!(
            answer,
            json!({"errorCode": 1, "description": "Unknown method"})
        );
        let resp = srv
            .http
            .get(format!("{}/get-balance", srv.base))
            .header("X-Processing-Key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404);

        for bad in ["{", "[1, 2]", "\"text\"", "{\"phoneNumber\": }"] {
            let resp = srv.send("/get-balance", Some(KEY), bad).await;
            assert_eq!(resp.status().as_u16(), 200);
            let answer: Value = resp.json().await.unwrap();
            assert_eq!(int(&answer["errorCode"]), 2, "{bad}: {answer}");
        }
        // An empty body is `{}`.
        let resp = srv.send("/get-settings", Some(KEY), "").await;
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["phoneVerification"], json!(false));

        assert_eq!(sandbox.calls("/get-balance"), 7);
        assert_eq!(sandbox.calls("get-balance"), 7);
        assert_eq!(sandbox.calls("/no-such-method"), 1);
        assert_eq!(sandbox.calls("/get-settings"), 1);
        let requests = sandbox.requests();
        assert_eq!(requests.len(), 9);
        assert_eq!(
            requests[0],
            ("/get-balance".into(), json!({"phoneNumber": IVANOV}))
        );
        assert_eq!(requests[3], ("/get-balance".into(), Value::Null)); // the GET
        assert_eq!(requests[4].1, Value::String("{".into()));
        assert_eq!(requests[8], ("/get-settings".into(), Value::Null));
        srv.stop().await;
    }

    #[tokio::test]
    async fn serves_h2c_and_shuts_down_gracefully() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let srv = start(&sandbox).await;
        let h2 = http_client().http2_prior_knowledge().build().unwrap();
        let resp = h2
            .post(format!("{}/get-settings", srv.base))
            .header("X-Processing-Key", KEY)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status().as_u16(), 200);
        srv.stop().await; // serve() returned Ok
    }

    #[tokio::test]
    async fn faults_apply_to_every_request_until_cleared() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let srv = start(&sandbox).await;
        let query = json!({"phoneNumber": IVANOV});

        sandbox.set_fault(Some(Fault::Http500));
        let resp = srv
            .send("/get-balance", Some(KEY), &query.to_string())
            .await;
        assert_eq!(resp.status().as_u16(), 500);

        sandbox.set_fault(Some(Fault::Garbage));
        let resp = srv
            .send("/get-balance", Some(KEY), &query.to_string())
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        let text = resp.text().await.unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

        sandbox.set_fault(Some(Fault::Throttle));
        assert_eq!(srv.error("/get-balance", query.clone()).await, 49);

        sandbox.set_fault(Some(Fault::TooManyRequests {
            retry_after: Some("2".into()),
        }));
        let resp = srv
            .send("/get-balance", Some(KEY), &query.to_string())
            .await;
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(resp.headers()["retry-after"], "2");

        sandbox.set_fault(Some(Fault::DropConnection));
        let result = srv
            .http
            .post(format!("{}/get-balance", srv.base))
            .header("X-Processing-Key", KEY)
            .body(query.to_string())
            .send()
            .await;
        assert!(result.is_err(), "{result:?}");

        // A faulted purchase never changes state.
        let purchase = json!({"txid": "faulted", "calculationQuery":
            calc(ivanov(), json!([row("1", "A", 100.0, 1)]), json!({"applyBonuses": 10}))
                ["calculationQuery"]});
        sandbox.set_fault(Some(Fault::Throttle));
        assert_eq!(srv.error("/set-purchase", purchase).await, 49);
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(500));

        sandbox.set_fault(Some(Fault::Delay(Duration::from_millis(300))));
        let started = std::time::Instant::now();
        let answer = srv.ok("/get-balance", query.clone()).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(int(&answer["client"]["bonuses"]), 500);

        sandbox.set_fault(None);
        srv.ok("/get-balance", query).await;
        assert_eq!(sandbox.calls("/get-balance"), 7);
        assert_eq!(sandbox.calls("/set-purchase"), 1);
        srv.stop().await;
    }

    // --- clients -------------------------------------------------------------------------

    #[tokio::test]
    async fn get_balance_finds_clients_by_any_identifier() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let srv = start(&sandbox).await;
        let queries = [
            json!({"phoneNumber": "+7 999 000-00-01"}),
            json!({"phoneNumber": "8 (999) 000-00-01"}),
            json!({"phoneNumber": "79990000001"}),
            json!({"card": "DEMO-0001"}),
            json!({"externalId": "demo-1"}),
            json!({"phoneNumber": "", "card": "DEMO-0001"}),
        ];
        for query in queries {
            let answer = srv.ok("/get-balance", query).await;
            let client = &answer["client"];
            assert_eq!(client["phoneNumber"], json!(IVANOV));
            assert_eq!(client["card"], json!("DEMO-0001"));
            assert_eq!(client["externalId"], json!("demo-1"));
            assert_eq!(client["surname"], json!("Иванов"));
            assert_eq!(client["name"], json!("Иван"));
            assert_eq!(client["patronymicName"], json!("Иванович"));
            assert_eq!(client["fullName"], json!("Иванов Иван Иванович"));
            assert_eq!(int(&client["gender"]), 1);
            assert_eq!(client["birthdate"], json!("1985-03-14"));
            assert_eq!(client["email"], json!("ivanov@example.com"));
            assert_eq!(int(&client["bonuses"]), 500);
            assert_eq!(int(&client["pendingBonuses"]), 0);
            assert_eq!(int(&answer["bonuses"][0]["amount"]), 500);
            assert_eq!(answer["level"]["name"], json!("Базовый"));
            assert_eq!(int(&answer["level"]["level"]), 1);
            assert_eq!(dec(&answer["level"]["levelSpent"]), Decimal::ZERO);
            assert!(answer["walletsLink"].is_string());
        }
        let second = srv.ok("/get-balance", json!({"card": "0001"})).await;
        assert_eq!(second["client"]["phoneNumber"], json!("+75551234567"));
        assert_eq!(
            second["client"]["fullName"],
            json!("Петрова Мария Сергеевна")
        );
        assert_eq!(second["bonuses"], json!([]));

        assert_eq!(
            srv.error("/get-balance", json!({"phoneNumber": "+79110000000"}))
                .await,
            3
        );
        assert_eq!(srv.error("/get-balance", json!({"card": "nope"})).await, 3);
        assert_eq!(
            srv.error("/get-balance", json!({"externalId": "nope"}))
                .await,
            3
        );
        for bad in [
            "12345",
            "+8 999 000 00 01",
            "+7 999 000-00-0100",
            "7999abc0001",
        ] {
            assert_eq!(
                srv.error("/get-balance", json!({"phoneNumber": bad})).await,
                20,
                "{bad}"
            );
        }
        assert_eq!(srv.error("/get-balance", json!({})).await, 2);
        assert_eq!(
            srv.error("/get-balance", json!({"phoneNumber": 79990000001_u64}))
                .await,
            2
        );
        srv.stop().await;
    }

    #[tokio::test]
    async fn new_client_registers_and_refuses_duplicates() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        sandbox.set_settings(SandboxSettings {
            welcome_bonus: 100,
            ..SandboxSettings::default()
        });
        let srv = start(&sandbox).await;
        let new = |client: Value| json!({"client": client, "shop": {"code": "s"}, "cashier": {"code": "c"}});

        let answer = srv
            .ok(
                "/new-client",
                new(json!({
                    "phoneNumber": "8 912 345-67-89", "card": "C-1", "externalId": "ms-1",
                    "surname": "Новикова", "name": "Анна", "gender": 2,
                    "birthdate": "1990-05-01", "email": "anna@example.com"
                })),
            )
            .await;
        assert_eq!(answer["client"]["phoneNumber"], json!("+79123456789"));
        assert_eq!(answer["client"]["fullName"], json!("Новикова Анна"));
        assert_eq!(int(&answer["client"]["bonuses"]), 100);
        assert_eq!(int(&answer["bonuses"][0]["amount"]), 100);
        assert!(answer["walletsLink"].is_string());
        assert_eq!(sandbox.balance_by_phone("+7 912 345 67 89"), Some(100));
        let found = srv.ok("/get-balance", json!({"card": "C-1"})).await;
        assert_eq!(found["client"]["email"], json!("anna@example.com"));

        let cases = [
            (json!({"name": "Без телефона"}), 29),
            (json!({"phoneNumber": ""}), 29),
            (json!({"phoneNumber": "123"}), 20),
            (json!({"phoneNumber": "+7 (999) 000-00-01"}), 24),
            (json!({"phoneNumber": "+79120000001", "card": "0001"}), 25),
            (
                json!({"phoneNumber": "+79120000002", "externalId": "demo-1"}),
                30,
            ),
            (
                json!({"phoneNumber": "+79120000003", "email": "IVANOV@example.com"}),
                48,
            ),
            (json!({"phoneNumber": "+79120000004", "gender": 7}), 2),
            (json!({"phoneNumber": "+79120000005", "name": 5}), 2),
        ];
        for (client, expected) in cases {
            assert_eq!(
                srv.error("/new-client", new(client.clone())).await,
                expected,
                "{client}"
            );
        }
        assert_eq!(srv.error("/new-client", json!({})).await, 2);
        assert_eq!(sandbox.balance_by_phone("+79120000001"), None);
        srv.stop().await;
    }

    #[tokio::test]
    async fn get_settings_reflects_set_settings() {
        let sandbox = MaxmaSandbox::new(KEY);
        let srv = start(&sandbox).await;
        let answer = srv.ok("/get-settings", json!({})).await;
        assert_eq!(answer["phoneVerification"], json!(false));
        assert_eq!(answer["bonusApplyingConfirmation"], json!(false));
        sandbox.set_settings(SandboxSettings {
            phone_verification: true,
            bonus_applying_confirmation: true,
            ..SandboxSettings::default()
        });
        let answer = srv.ok("/get-settings", json!({})).await;
        assert_eq!(answer["phoneVerification"], json!(true));
        assert_eq!(answer["bonusApplyingConfirmation"], json!(true));
        srv.stop().await;
    }

    #[tokio::test]
    async fn confirmation_codes_are_returned_recorded_and_throttled() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        sandbox.set_settings(SandboxSettings {
            code_requests_per_minute: 2,
            ..SandboxSettings::default()
        });
        let srv = start(&sandbox).await;

        let before = DateTime::<Utc>::from(SystemTime::now());
        let answer = srv
            .ok(
                "/send-confirmation-code",
                json!({"phoneNumber": "+7 911 000-00-00"}),
            )
            .await;
        let code = answer["code"].as_str().unwrap().to_owned();
        assert_eq!(code.len(), 3);
        assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
        assert_eq!(answer["channel"], json!("sms"));
        assert!(answer["msgid"].is_string());
        let expires = DateTime::parse_from_rfc3339(answer["expiresAt"].as_str().unwrap()).unwrap();
        let lifetime = expires.with_timezone(&Utc) - before;
        assert!(lifetime > TimeDelta::seconds(295) && lifetime <= TimeDelta::seconds(302));
        // Not a client yet: registration codes are allowed.
        assert_eq!(sandbox.last_code("89110000000"), Some(code));

        // By card: the code goes to the client's phone.
        let answer = srv
            .ok(
                "/send-confirmation-code",
                json!({"card": "DEMO-0001", "to": "sms"}),
            )
            .await;
        assert_eq!(
            sandbox.last_code(IVANOV).as_deref(),
            answer["code"].as_str()
        );
        assert_eq!(
            srv.error("/send-confirmation-code", json!({"card": "nope"}))
                .await,
            3
        );
        assert_eq!(
            srv.error("/send-confirmation-code", json!({"externalId": "nope"}))
                .await,
            3
        );
        assert_eq!(
            srv.error("/send-confirmation-code", json!({"phoneNumber": "1"}))
                .await,
            20
        );

        // Two codes per minute for one phone; another phone is unaffected.
        srv.ok("/send-confirmation-code", json!({"externalId": "demo-1"}))
            .await;
        assert_eq!(
            srv.error("/send-confirmation-code", json!({"phoneNumber": IVANOV}))
                .await,
            28
        );
        srv.ok(
            "/send-confirmation-code",
            json!({"phoneNumber": "+75551234567"}),
        )
        .await;
        assert_eq!(sandbox.calls("/send-confirmation-code"), 8);
        srv.stop().await;
    }

    #[test]
    fn the_code_window_slides() {
        let mut state = State::default();
        state.settings.code_requests_per_minute = 1;
        let request: Map<String, Value> =
            serde_json::from_value(json!({"phoneNumber": IVANOV})).unwrap();
        let t0 = Now::current();
        let at = |secs: u64| Now {
            wall: t0.wall,
            mono: t0.mono + Duration::from_secs(secs),
        };
        assert!(
            state
                .apply(Op::SendConfirmationCode, &request, &at(0))
                .is_ok()
        );
        let refused = state.apply(Op::SendConfirmationCode, &request, &at(59));
        assert_eq!(refused.unwrap_err().code, code::TOO_MANY_CODE_REQUESTS);
        // The refusal did not count: a minute after the first code, the next one goes out.
        assert!(
            state
                .apply(Op::SendConfirmationCode, &request, &at(60))
                .is_ok()
        );
    }

    // --- calculations --------------------------------------------------------------------

    #[tokio::test]
    async fn calculate_purchase_follows_the_documented_example() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let srv = start(&sandbox).await;
        let rows = json!([
            {"id": "pos-1", "qty": 2,
             "product": {"sku": "A-100", "title": "Кофе 250г", "blackPrice": 500.00}},
            {"id": "pos-2", "qty": 1,
             "product": {"sku": "B-7", "title": "Сигареты", "blackPrice": 250.00},
             "noApplyBonuses": true, "noCollectBonuses": true}
        ]);
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(
                    ivanov(),
                    rows,
                    json!({"applyBonuses": 150, "collectBonuses": "auto", "giftCards": ["123456"]}),
                ),
            )
            .await;
        let result = &answer["calculationResult"];
        let first = &result["rows"][0];
        assert_eq!(first["id"], json!("pos-1"));
        assert_eq!(first["totalDiscount"].to_string(), "150.00");
        assert_eq!(dec(&first["discounts"]["bonuses"]), d("150"));
        assert_eq!(dec(&first["discounts"]["auto"]), Decimal::ZERO);
        assert_eq!(int(&first["bonuses"]["applied"]), 150);
        assert_eq!(int(&first["bonuses"]["collected"]), 42); // floor(5% of 850)
        let second = &result["rows"][1];
        assert_eq!(dec(&second["totalDiscount"]), Decimal::ZERO);
        assert_eq!(int(&second["bonuses"]["applied"]), 0);
        assert_eq!(int(&second["bonuses"]["collected"]), 0);
        assert_eq!(dec(&result["summary"]["totalDiscount"]), d("150"));
        assert_eq!(dec(&result["summary"]["discounts"]["bonuses"]), d("150"));
        // The card pays what is left (1250 − 150), up to its balance.
        assert_eq!(result["summary"]["prepaidAmount"].to_string(), "1000.00");
        assert_eq!(int(&result["bonuses"]["applied"]), 150);
        assert_eq!(int(&result["bonuses"]["collected"]), 42);
        assert_eq!(int(&result["bonuses"]["maxToApply"]), 500);
        assert!(result["bonuses"].get("error").is_none());
        let card = &result["giftCards"][0];
        assert_eq!(card["code"], json!("123456"));
        assert_eq!(card["status"], json!("ACTIVE"));
        assert_eq!(dec(&card["usedAmount"]), d("1000"));
        assert!(card.get("error").is_none());
        // A calculation changes nothing.
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(500));
        assert_eq!(sandbox.gift_card_balance("123456"), Some(d("1000.00")));
        srv.stop().await;
    }

    #[tokio::test]
    async fn applied_bonuses_are_spread_to_the_kopeck() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let srv = start(&sandbox).await;
        let three = json!([
            row("a", "A", 100.0, 1),
            row("b", "B", 100.0, 1),
            row("c", "C", 100.0, 1)
        ]);

        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(ivanov(), three.clone(), json!({"applyBonuses": 100})),
            )
            .await;
        let rows = answer["calculationResult"]["rows"]
            .as_array()
            .unwrap()
            .clone();
        let discounts: Vec<Decimal> = rows.iter().map(|r| dec(&r["totalDiscount"])).collect();
        assert_eq!(discounts, [d("33.34"), d("33.33"), d("33.33")]);
        let applied: Vec<i64> = rows.iter().map(|r| int(&r["bonuses"]["applied"])).collect();
        assert_eq!(applied, [34, 33, 33]);
        // collected = floor(5% × (100 − discount)) per row.
        let collected: Vec<i64> = rows
            .iter()
            .map(|r| int(&r["bonuses"]["collected"]))
            .collect();
        assert_eq!(collected, [3, 3, 3]);

        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(ivanov(), three, json!({"applyBonuses": "auto"})),
            )
            .await;
        let result = &answer["calculationResult"];
        assert_eq!(int(&result["bonuses"]["maxToApply"]), 150);
        assert_eq!(int(&result["bonuses"]["applied"]), 150);
        assert_eq!(dec(&result["rows"][2]["totalDiscount"]), d("50"));

        // redPrice wins over blackPrice; fractional qty is rounded to the kopeck.
        let rows = json!([
            {"id": "r", "product": {"sku": "R", "blackPrice": 200, "redPrice": 150.5}, "qty": 1},
            {"id": "w", "product": {"sku": "W", "blackPrice": 99.99}, "qty": 0.333}
        ]);
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(ivanov(), rows, json!({"applyBonuses": "auto"})),
            )
            .await;
        let result = &answer["calculationResult"];
        // 50% of 150.50 + 33.30 = 91.90 → 91 bonuses.
        assert_eq!(int(&result["bonuses"]["maxToApply"]), 91);
        let total: Decimal = result["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| dec(&r["totalDiscount"]))
            .sum();
        assert_eq!(total, d("91"));
        srv.stop().await;
    }

    #[tokio::test]
    async fn bonus_problems_and_anonymous_receipts() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let srv = start(&sandbox).await;
        let rows = json!([row("1", "A", 1000.0, 1)]);

        for bad in [json!(501), json!(-1), json!(10.5), json!(1e30)] {
            let answer = srv
                .ok(
                    "/v2/calculate-purchase",
                    calc(ivanov(), rows.clone(), json!({"applyBonuses": bad})),
                )
                .await;
            let bonuses = &answer["calculationResult"]["bonuses"];
            assert_eq!(int(&bonuses["error"]["code"]), 6, "{bad}: {bonuses}");
            assert!(bonuses["error"]["description"].is_string());
            assert_eq!(int(&bonuses["applied"]), 0);
            assert_eq!(int(&bonuses["maxToApply"]), 500);
        }
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(ivanov(), rows.clone(), json!({"collectBonuses": 0})),
            )
            .await;
        assert_eq!(int(&answer["calculationResult"]["bonuses"]["collected"]), 0);
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(ivanov(), rows.clone(), json!({"collectBonuses": 7})),
            )
            .await;
        assert_eq!(int(&answer["calculationResult"]["bonuses"]["collected"]), 7);
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(ivanov(), rows.clone(), json!({})),
            )
            .await;
        let bonuses = &answer["calculationResult"]["bonuses"];
        assert_eq!(int(&bonuses["applied"]), 0); // absent applyBonuses = 0
        assert_eq!(int(&bonuses["collected"]), 50);

        // No client: nothing applied or collected.
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(Value::Null, rows.clone(), json!({"applyBonuses": "auto"})),
            )
            .await;
        let bonuses = &answer["calculationResult"]["bonuses"];
        assert_eq!(
            (int(&bonuses["applied"]), int(&bonuses["collected"])),
            (0, 0)
        );
        assert_eq!(int(&bonuses["maxToApply"]), 0);
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(Value::Null, rows.clone(), json!({"applyBonuses": 10})),
            )
            .await;
        assert_eq!(
            int(&answer["calculationResult"]["bonuses"]["error"]["code"]),
            6
        );

        let path = "/v2/calculate-purchase";
        assert_eq!(
            srv.error(path, calc(ivanov(), json!([]), json!({}))).await,
            18
        );
        assert_eq!(
            srv.error(path, calc(ivanov(), Value::Null, json!({})))
                .await,
            18
        );
        assert_eq!(
            srv.error(path, calc(json!({"card": "nope"}), rows.clone(), json!({})))
                .await,
            3
        );
        assert_eq!(
            srv.error(
                path,
                calc(json!({"phoneNumber": "1"}), rows.clone(), json!({}))
            )
            .await,
            20
        );
        assert_eq!(
            srv.error(
                path,
                calc(ivanov(), rows.clone(), json!({"applyBonuses": "many"}))
            )
            .await,
            2
        );
        assert_eq!(
            srv.error(
                path,
                calc(ivanov(), rows.clone(), json!({"collectBonuses": -1}))
            )
            .await,
            2
        );
        assert_eq!(srv.error(path, json!({})).await, 2);
        let bad_rows = [
            json!([{"product": {"sku": "A", "blackPrice": 10}, "qty": 0}]),
            json!([{"product": {"sku": "A", "blackPrice": 10}}]),
            json!([{"product": {"sku": "A"}, "qty": 1}]),
            json!([{"product": {"sku": "A", "blackPrice": "10"}, "qty": 1}]),
            json!([{"product": {"sku": "A", "blackPrice": -1}, "qty": 1}]),
            json!([{"product": {"sku": "A", "blackPrice": 1e300}, "qty": 1}]),
            json!([{"product": {"blackPrice": 10}, "qty": 1}]),
            json!([{"sku": "A", "blackPrice": 10, "qty": 1}]),
            json!(["A"]),
            json!({"0": {}}),
        ];
        for rows in bad_rows {
            assert_eq!(
                srv.error(path, calc(ivanov(), rows.clone(), json!({})))
                    .await,
                2,
                "{rows}"
            );
        }
        srv.stop().await;
    }

    #[tokio::test]
    async fn gift_cards_pay_in_order_or_say_why_not() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        sandbox.add_gift_card(
            "ZERO",
            GiftCardStatus::Active,
            Decimal::ZERO,
            d("100"),
            None,
        );
        sandbox.add_gift_card(
            "OLD",
            GiftCardStatus::Active,
            d("100"),
            d("100"),
            Some("2020-01-01"),
        );
        sandbox.add_gift_card(
            "GONE",
            GiftCardStatus::Redeemed,
            Decimal::ZERO,
            d("100"),
            None,
        );
        let srv = start(&sandbox).await;
        let codes = [
            "NOPE",
            "INACTIVE1",
            "EXPIRED1",
            "BLOCKED1",
            "ZERO",
            "OLD",
            "GONE",
            "1234567",
            "123456",
        ];
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(
                    Value::Null,
                    json!([row("1", "A", 1200.0, 1)]),
                    json!({"giftCards": codes}),
                ),
            )
            .await;
        let result = &answer["calculationResult"];
        let cards = result["giftCards"].as_array().unwrap();
        let errors: Vec<Option<i64>> = cards
            .iter()
            .map(|c| c.get("error").map(|e| int(&e["code"])))
            .collect();
        assert_eq!(
            errors,
            [
                Some(40),
                Some(42),
                Some(43),
                Some(44),
                Some(45),
                Some(43),
                Some(45),
                None,
                None
            ]
        );
        assert!(cards[0].get("status").is_none());
        assert_eq!(cards[1]["status"], json!("INACTIVE"));
        assert_eq!(cards[5]["status"], json!("EXPIRED"));
        let used: Vec<Decimal> = cards.iter().map(|c| dec(&c["usedAmount"])).collect();
        assert_eq!(&used[..7], &[Decimal::ZERO; 7]);
        assert_eq!(used[7], d("500"));
        assert_eq!(used[8], d("700"));
        assert_eq!(dec(&result["summary"]["prepaidAmount"]), d("1200"));
        // Without giftCards the field is absent.
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(Value::Null, json!([row("1", "A", 1.0, 1)]), json!({})),
            )
            .await;
        assert!(answer["calculationResult"].get("giftCards").is_none());
        srv.stop().await;
    }

    // --- purchases -----------------------------------------------------------------------

    fn purchase(txid: &str, client: Value, rows: Value, extra: Value) -> Value {
        json!({"txid": txid, "calculationQuery": calc(client, rows, extra)["calculationQuery"]})
    }

    #[tokio::test]
    async fn set_purchase_reserves_and_confirm_commits_once() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let srv = start(&sandbox).await;
        let body = purchase(
            "tx-1",
            ivanov(),
            json!([row("1", "A", 500.0, 2)]),
            json!({"applyBonuses": 150, "giftCards": ["1234567"]}),
        );
        let first = srv.ok("/set-purchase", body.clone()).await;
        let ticket = first["ticket"].as_str().unwrap().to_owned();
        assert_eq!(
            first["clientBonuses"],
            json!({"available": 350, "pending": 42, "reserved": 150})
        );
        assert_eq!(first["receiptInfo"], json!([]));
        assert_eq!(int(&first["calculationResult"]["bonuses"]["applied"]), 150);
        assert_eq!(
            dec(&first["calculationResult"]["summary"]["prepaidAmount"]),
            d("500")
        );
        // The pending purchase holds the card's money.
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(
                    Value::Null,
                    json!([row("1", "A", 10.0, 1)]),
                    json!({"giftCards": ["1234567"]}),
                ),
            )
            .await;
        assert_eq!(
            int(&answer["calculationResult"]["giftCards"][0]["error"]["code"]),
            45
        );

        // A repeat of a pending txid: same ticket and result, no second reservation.
        let again = srv.ok("/set-purchase", body.clone()).await;
        assert_eq!(again["ticket"], first["ticket"]);
        assert_eq!(again["calculationResult"], first["calculationResult"]);
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(350));
        let balance = srv.ok("/get-balance", ivanov()).await;
        assert_eq!(int(&balance["client"]["pendingBonuses"]), 42);

        let confirm = |ticket: &str| json!({"txid": "tx-1", "ticket": ticket, "sessionNum": "17", "receiptNum": "00042"});
        assert_eq!(srv.error("/confirm-ticket", confirm("wrong")).await, 2);
        assert_eq!(srv.ok("/confirm-ticket", confirm(&ticket)).await, json!({}));
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(392));
        let balance = srv.ok("/get-balance", ivanov()).await;
        assert_eq!(int(&balance["client"]["pendingBonuses"]), 0);
        assert_eq!(dec(&balance["level"]["levelSpent"]), d("850"));
        assert_eq!(sandbox.gift_card_balance("1234567"), Some(Decimal::ZERO));
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(
                    Value::Null,
                    json!([row("1", "A", 10.0, 1)]),
                    json!({"giftCards": ["1234567"]}),
                ),
            )
            .await;
        let card = &answer["calculationResult"]["giftCards"][0];
        assert_eq!(card["status"], json!("REDEEMED"));
        assert_eq!(int(&card["error"]["code"]), 45);

        // Repeats after confirmation.
        assert_eq!(srv.error("/confirm-ticket", confirm(&ticket)).await, 17);
        assert_eq!(srv.error("/set-purchase", body).await, 17);
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(392));
        assert_eq!(
            srv.error(
                "/confirm-ticket",
                json!({"txid": "tx-unknown", "ticket": ticket})
            )
            .await,
            21
        );
        assert_eq!(
            srv.error("/confirm-ticket", json!({"txid": "tx-1"})).await,
            2
        );
        srv.stop().await;
    }

    #[tokio::test]
    async fn gift_cards_are_debited_partially_on_confirm() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let srv = start(&sandbox).await;
        let set = srv
            .ok(
                "/set-purchase",
                purchase(
                    "tx-gc",
                    Value::Null,
                    json!([row("1", "A", 250.5, 1)]),
                    json!({"giftCards": ["123456"]}),
                ),
            )
            .await;
        assert!(set.get("clientBonuses").is_none()); // anonymous
        assert_eq!(sandbox.gift_card_balance("123456"), Some(d("1000")));
        srv.ok(
            "/confirm-ticket",
            json!({"txid": "tx-gc", "ticket": set["ticket"]}),
        )
        .await;
        assert_eq!(sandbox.gift_card_balance("123456"), Some(d("749.50")));
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(
                    Value::Null,
                    json!([row("1", "A", 1000.0, 1)]),
                    json!({"giftCards": ["123456"]}),
                ),
            )
            .await;
        let card = &answer["calculationResult"]["giftCards"][0];
        assert_eq!(card["status"], json!("ACTIVE"));
        assert_eq!(dec(&card["usedAmount"]), d("749.5"));
        srv.stop().await;
    }

    #[tokio::test]
    async fn discard_returns_the_reservation_once() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let srv = start(&sandbox).await;
        let body = purchase(
            "tx-2",
            ivanov(),
            json!([row("1", "A", 400.0, 1)]),
            json!({"applyBonuses": 100, "giftCards": ["123456"]}),
        );
        let set = srv.ok("/set-purchase", body.clone()).await;
        let ticket = set["ticket"].as_str().unwrap().to_owned();
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(400));
        let discard = json!({"txid": "tx-2", "ticket": ticket});
        assert_eq!(
            srv.error("/discard-ticket", json!({"txid": "tx-2", "ticket": "x"}))
                .await,
            2
        );
        assert_eq!(srv.ok("/discard-ticket", discard.clone()).await, json!({}));
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(500));
        let balance = srv.ok("/get-balance", ivanov()).await;
        assert_eq!(int(&balance["client"]["pendingBonuses"]), 0);
        assert_eq!(sandbox.gift_card_balance("123456"), Some(d("1000")));
        // The hold is gone too: the whole card is spendable again.
        let answer = srv
            .ok(
                "/v2/calculate-purchase",
                calc(
                    Value::Null,
                    json!([row("1", "A", 5000.0, 1)]),
                    json!({"giftCards": ["123456"]}),
                ),
            )
            .await;
        assert_eq!(
            dec(&answer["calculationResult"]["giftCards"][0]["usedAmount"]),
            d("1000")
        );

        assert_eq!(srv.error("/discard-ticket", discard.clone()).await, 22);
        assert_eq!(srv.error("/confirm-ticket", discard.clone()).await, 22);
        assert_eq!(srv.error("/set-purchase", body).await, 22);
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(500));
        assert_eq!(
            srv.error("/discard-ticket", json!({"txid": "nope", "ticket": "x"}))
                .await,
            21
        );

        // A confirmed purchase cannot be discarded.
        let set = srv
            .ok(
                "/set-purchase",
                purchase(
                    "tx-3",
                    ivanov(),
                    json!([row("1", "A", 100.0, 1)]),
                    json!({"applyBonuses": 10}),
                ),
            )
            .await;
        let done = json!({"txid": "tx-3", "ticket": set["ticket"]});
        srv.ok("/confirm-ticket", done.clone()).await;
        let (_, answer) = srv.post("/discard-ticket", &done).await;
        assert_eq!(int(&answer["errorCode"]), 17);
        assert!(
            answer["description"]
                .as_str()
                .unwrap()
                .contains("cannot be discarded")
        );
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(494)); // 500 − 10 + floor(5% × 90)
        srv.stop().await;
    }

    #[tokio::test]
    async fn set_purchase_refuses_what_it_cannot_commit() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        let srv = start(&sandbox).await;
        let rows = json!([row("1", "A", 100.0, 1)]);
        let too_many = purchase("tx-4", ivanov(), rows.clone(), json!({"applyBonuses": 100}));
        assert_eq!(srv.error("/set-purchase", too_many).await, 6);
        let blocked = purchase(
            "tx-4",
            ivanov(),
            rows.clone(),
            json!({"giftCards": ["BLOCKED1"]}),
        );
        assert_eq!(srv.error("/set-purchase", blocked).await, 44);
        assert_eq!(srv.error("/set-purchase", json!({"txid": "tx-4"})).await, 2);
        assert_eq!(
            srv.error(
                "/set-purchase",
                purchase("tx-4", ivanov(), json!([]), json!({}))
            )
            .await,
            18
        );
        assert_eq!(
            srv.error("/set-purchase", json!({"calculationQuery": calc(ivanov(), rows.clone(), json!({}))["calculationQuery"]}))
                .await,
            2
        );
        // Nothing was stored or reserved.
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(500));
        assert_eq!(
            srv.error("/confirm-ticket", json!({"txid": "tx-4", "ticket": "x"}))
                .await,
            21
        );
        // The txid is still free.
        srv.ok(
            "/set-purchase",
            purchase("tx-4", ivanov(), rows, json!({"applyBonuses": 50})),
        )
        .await;
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(450));
        srv.stop().await;
    }

    // --- returns -------------------------------------------------------------------------

    /// A confirmed purchase for a client with 1000 bonuses: 3 × A at 100.00 and 1 × B at 50.00,
    /// 101 bonuses applied (A 86.57, B 14.43 → paid 249.00), 10 + 1 = 11 collected.
    async fn returnable(sandbox: &MaxmaSandbox, srv: &Running, txid: &str) {
        sandbox.add_client(SandboxClient {
            phone: Some("+79995550000".into()),
            bonuses: 1000,
            ..SandboxClient::default()
        });
        let client = json!({"phoneNumber": "+79995550000"});
        let rows = json!([row("1", "A", 100.0, 3), row("2", "B", 50.0, 1)]);
        let set = srv
            .ok(
                "/set-purchase",
                purchase(txid, client, rows, json!({"applyBonuses": 101})),
            )
            .await;
        let result = &set["calculationResult"];
        assert_eq!(dec(&result["rows"][0]["totalDiscount"]), d("86.57"));
        assert_eq!(dec(&result["rows"][1]["totalDiscount"]), d("14.43"));
        assert_eq!(int(&result["bonuses"]["collected"]), 11);
        srv.ok(
            "/confirm-ticket",
            json!({"txid": txid, "ticket": set["ticket"]}),
        )
        .await;
        assert_eq!(
            sandbox.balance_by_phone("+79995550000"),
            Some(1000 - 101 + 11)
        );
    }

    fn ret(id: &str, purchase_id: &str, refund: Option<f64>, items: Value) -> Value {
        let mut t = json!({
            "id": id, "executedAt": "2025-01-01T12:00:00Z", "purchaseId": purchase_id,
            "items": items, "shopCode": "store-1", "shopName": "Магазин", "cashier": "Кассир",
        });
        if let Some(refund) = refund {
            t["refundAmount"] = json!(refund);
        }
        json!({ "transaction": t })
    }

    #[tokio::test]
    async fn partial_returns_add_up_to_the_purchase() {
        let sandbox = MaxmaSandbox::new(KEY);
        let srv = start(&sandbox).await;
        returnable(&sandbox, &srv, "sale-1").await;
        let one_a = json!([{"sku": "A", "itemCount": 1}]);

        // Errors first; none of them changes anything.
        let a = |n: i64| json!([{"sku": "A", "itemCount": n}]);
        let cases = [
            (ret("r0", "nope", None, a(1)), 13),
            // Documented order: 13 (the purchase) comes before 10 (the items).
            (ret("r0", "nope", None, json!([])), 13),
            (
                ret("r0", "sale-1", None, json!([{"sku": "Z", "itemCount": 1}])),
                10,
            ),
            (ret("r0", "sale-1", None, a(4)), 10),
            (
                ret(
                    "r0",
                    "sale-1",
                    None,
                    json!([{"sku": "A", "itemCount": 2}, {"sku": "A", "itemCount": 2}]),
                ),
                10,
            ),
            (ret("r0", "sale-1", None, a(0)), 10),
            (ret("r0", "sale-1", None, json!([])), 10),
            (ret("r0", "sale-1", Some(249.01), a(1)), 11),
            (ret("r0", "sale-1", Some(-1.0), a(1)), 11),
            (json!({"transaction": {"id": "r0"}}), 2),
            (
                json!({"transaction": {"id": "r0", "purchaseId": "sale-1", "items": "A"}}),
                2,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                srv.error("/apply-return", body.clone()).await,
                expected,
                "{body}"
            );
        }
        assert_eq!(sandbox.balance_by_phone("+79995550000"), Some(910));

        // 1 × A: share 71.1433…/249 → floor(101 × 0.2857) = 28, floor(11 × 0.2857) = 3.
        let answer = srv
            .ok(
                "/apply-return",
                ret("r1", "sale-1", Some(71.14), one_a.clone()),
            )
            .await;
        let c = &answer["confirmation"];
        assert_eq!(
            (int(&c["recoveredBonuses"]), int(&c["cancelledBonuses"])),
            (28, 3)
        );
        assert_eq!(c["refundAmount"].to_string(), "71.14");
        assert!(c["refundId"].is_string());
        // 17 (a repeated id) comes before anything about the items.
        assert_eq!(
            srv.error("/apply-return", ret("r1", "sale-1", None, json!([])))
                .await,
            17
        );
        assert_eq!(
            srv.error(
                "/apply-return",
                ret("r1", "sale-1", Some(71.14), one_a.clone())
            )
            .await,
            17
        );

        // 1 × B, refundAmount defaults to the paid value (35.57).
        let answer = srv
            .ok(
                "/apply-return",
                ret("r2", "sale-1", None, json!([{"sku": "B", "itemCount": 1}])),
            )
            .await;
        let c = &answer["confirmation"];
        assert_eq!(dec(&c["refundAmount"]), d("35.57"));
        assert_eq!(
            (int(&c["recoveredBonuses"]), int(&c["cancelledBonuses"])),
            (14, 1)
        );

        // 249.00 − 71.14 − 35.57 = 142.29 is all that is left to refund.
        assert_eq!(
            srv.error(
                "/apply-return",
                ret(
                    "r3",
                    "sale-1",
                    Some(142.3),
                    json!([{"sku": "A", "itemCount": 2}])
                )
            )
            .await,
            11
        );
        // The last two A complete the purchase and take the rest: 101 − 42, 11 − 4.
        let answer = srv
            .ok(
                "/apply-return",
                ret(
                    "r3",
                    "sale-1",
                    Some(142.29),
                    json!([{"sku": "A", "itemCount": 1}, {"sku": "A", "itemCount": 1}]),
                ),
            )
            .await;
        let c = &answer["confirmation"];
        assert_eq!(
            (int(&c["recoveredBonuses"]), int(&c["cancelledBonuses"])),
            (59, 7)
        );
        assert_eq!(sandbox.balance_by_phone("+79995550000"), Some(1000));
        assert_eq!(
            srv.error("/apply-return", ret("r4", "sale-1", Some(0.0), one_a))
                .await,
            10
        );
        let balance = srv
            .ok("/get-balance", json!({"phoneNumber": "+79995550000"}))
            .await;
        assert_eq!(dec(&balance["level"]["levelSpent"]), Decimal::ZERO);
        srv.stop().await;
    }

    #[tokio::test]
    async fn a_full_return_takes_back_everything_at_once() {
        let sandbox = MaxmaSandbox::new(KEY);
        let srv = start(&sandbox).await;
        returnable(&sandbox, &srv, "sale-2").await;
        let answer = srv
            .ok(
                "/apply-return",
                ret(
                    "r1",
                    "sale-2",
                    None,
                    json!([{"sku": "A", "itemCount": 3}, {"sku": "B", "itemCount": 1}]),
                ),
            )
            .await;
        let c = &answer["confirmation"];
        assert_eq!(dec(&c["refundAmount"]), d("249"));
        assert_eq!(
            (int(&c["recoveredBonuses"]), int(&c["cancelledBonuses"])),
            (101, 11)
        );
        assert_eq!(sandbox.balance_by_phone("+79995550000"), Some(1000));

        // A pending purchase cannot be returned.
        let set = srv
            .ok(
                "/set-purchase",
                purchase(
                    "sale-3",
                    Value::Null,
                    json!([row("1", "A", 10.0, 1)]),
                    json!({}),
                ),
            )
            .await;
        assert_eq!(
            srv.error(
                "/apply-return",
                ret("r2", "sale-3", None, json!([{"sku": "A", "itemCount": 1}]))
            )
            .await,
            13
        );
        srv.ok(
            "/confirm-ticket",
            json!({"txid": "sale-3", "ticket": set["ticket"]}),
        )
        .await;
        srv.ok(
            "/apply-return",
            ret("r2", "sale-3", None, json!([{"sku": "A", "itemCount": 1}])),
        )
        .await;
        srv.stop().await;
    }

    #[tokio::test]
    async fn thirds_of_a_purchase_round_down_until_the_last() {
        let sandbox = MaxmaSandbox::new(KEY);
        sandbox.set_settings(SandboxSettings {
            earn_percent: d("10"),
            ..SandboxSettings::default()
        });
        sandbox.add_client(SandboxClient {
            card: Some("T".into()),
            bonuses: 100,
            ..SandboxClient::default()
        });
        let srv = start(&sandbox).await;
        let set = srv
            .ok(
                "/set-purchase",
                purchase(
                    "s",
                    json!({"card": "T"}),
                    json!([row("1", "X", 100.0, 3)]),
                    json!({"applyBonuses": 100}),
                ),
            )
            .await;
        // Paid 200 → 20 collected.
        assert_eq!(int(&set["calculationResult"]["bonuses"]["collected"]), 20);
        srv.ok(
            "/confirm-ticket",
            json!({"txid": "s", "ticket": set["ticket"]}),
        )
        .await;
        let mut got = Vec::new();
        for id in ["a", "b", "c"] {
            let answer = srv
                .ok(
                    "/apply-return",
                    ret(id, "s", None, json!([{"sku": "X", "itemCount": 1}])),
                )
                .await;
            let c = &answer["confirmation"];
            got.push((
                dec(&c["refundAmount"]),
                int(&c["recoveredBonuses"]),
                int(&c["cancelledBonuses"]),
            ));
        }
        // The last return refunds what is left (66.66), not a third rounded up (66.67).
        assert_eq!(
            got,
            [
                (d("66.67"), 33, 6),
                (d("66.67"), 33, 6),
                (d("66.66"), 34, 8)
            ]
        );
        srv.stop().await;
    }

    // --- seeding -------------------------------------------------------------------------

    #[test]
    fn demo_data_and_seeding_hooks() {
        let sandbox = MaxmaSandbox::with_demo_data(KEY);
        assert_eq!(sandbox.balance_by_phone("+7 999 000 00 01"), Some(500));
        assert_eq!(sandbox.balance_by_phone("+75551234567"), Some(0));
        assert_eq!(sandbox.balance_by_phone("+70000000000"), None);
        assert_eq!(sandbox.balance_by_phone("garbage"), None);
        assert_eq!(sandbox.gift_card_balance("123456"), Some(d("1000.00")));
        assert_eq!(sandbox.gift_card_balance("1234567"), Some(d("500")));
        assert_eq!(sandbox.gift_card_balance("nope"), None);
        assert_eq!(sandbox.last_code(IVANOV), None);
        assert_eq!(sandbox.calls("/get-balance"), 0);
        // Re-seeding a client replaces it instead of creating a duplicate.
        sandbox.add_client(SandboxClient {
            phone: Some("89990000001".into()),
            bonuses: 7,
            ..SandboxClient::default()
        });
        assert_eq!(sandbox.balance_by_phone(IVANOV), Some(7));
        assert!(!format!("{sandbox:?}").contains(KEY));
    }

    // --- helpers -------------------------------------------------------------------------

    #[test]
    fn phones_normalise_to_eleven_digits() {
        for ok in [
            "+79990000001",
            "79990000001",
            "89990000001",
            "+7 (999) 000-00-01",
            " 8 999 000.00.01 ",
        ] {
            assert_eq!(normalize_phone(ok).as_deref(), Some("79990000001"), "{ok}");
        }
        for bad in [
            "",
            "+",
            "9990000001",
            "+89990000001",
            "799900000011",
            "7999000000a",
            "+7+9990000001",
            "69990000001",
            "７9990000001",
        ] {
            assert_eq!(normalize_phone(bad), None, "{bad}");
        }
    }

    #[test]
    fn money_is_written_with_two_decimals() {
        assert_eq!(money(d("150")).to_string(), "150.00");
        assert_eq!(money(d("0.005")).to_string(), "0.01");
        assert_eq!(money(d("-0")).to_string(), "0.00");
        assert_eq!(money(d("33.333")).to_string(), "33.33");
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
                    if *weight == 0 {
                        prop_assert_eq!(*part, 0);
                    }
                }
            }
        }

        #[test]
        fn calculations_never_panic(body in any::<String>(), n in any::<f64>(), q in any::<i64>()) {
            let sandbox = MaxmaSandbox::with_demo_data(KEY);
            let mut state = sandbox.shared.lock();
            let now = Now::current();
            let bodies = [
                json!({"calculationQuery": {"client": {"card": body.clone()}, "rows": [
                    {"product": {"sku": body.clone(), "blackPrice": n}, "qty": q}], "applyBonuses": n}}),
                json!({"calculationQuery": {"client": {"phoneNumber": IVANOV}, "rows": [
                    {"product": {"sku": "A", "blackPrice": q, "redPrice": n}, "qty": n}],
                    "applyBonuses": q, "collectBonuses": q, "giftCards": [body.clone()]}}),
            ];
            for body in bodies {
                if let Value::Object(request) = body {
                    let _ = state.apply(Op::CalculatePurchase, &request, &now);
                    let _ = state.apply(Op::ApplyReturn, &request, &now);
                }
            }
        }
    }
}
