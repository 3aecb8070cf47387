//! A stateful emulator of the MAXMA (formerly CloudLoyalty) Processing API, following the
//! repository's `docs/vendors/maxma.md` (maxma.md below).
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

mod calculation;
mod clients;
mod errors;
mod parse;
mod purchases;
mod returns;
mod routes;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, MutexGuard};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

use self::calculation::GiftCard;
use self::clients::{Client, ClientId};
use self::errors::ProcessingError;
use self::parse::{ClientKey, non_empty, parse_date, required_object};
use self::purchases::Purchase;
use self::routes::{Op, handle};
pub use crate::harness::Fault;
use crate::harness::auth::secret_matches;
use crate::harness::{self, Locked, Traffic};
use crate::phone::russian_mobile;

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
            russian_mobile(raw).or_else(|| {
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
        let phone = russian_mobile(phone)?;
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
        let phone = russian_mobile(phone)?;
        self.shared.lock().last_codes.get(&phone).cloned()
    }

    /// Injects `fault` into every following request, or stops injecting with `None`.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared.lock().traffic.set_fault(fault);
    }

    /// Answers at most `per_second` calls in each second from now (whole seconds from this
    /// call), the rest with 429 and `Retry-After: 1`, as a rate-limiting proxy in front of
    /// MAXMA would (maxma.md documents no limits of its own); `None` lifts it.
    pub fn set_call_limit(&self, per_second: Option<usize>) {
        self.shared.lock().traffic.set_limit(per_second);
    }

    /// Calls that arrived in each second since the call limit was set, refused ones included.
    pub fn calls_per_second(&self) -> Vec<usize> {
        self.shared.lock().traffic.calls_per_second()
    }

    /// Calls refused with 429 for going over the call limit.
    pub fn refused_over_limit(&self) -> usize {
        self.shared.lock().traffic.over_limit()
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
}
