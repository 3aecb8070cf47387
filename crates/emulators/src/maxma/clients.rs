//! Clients: their records and `/get-balance`, `/new-client`, `/send-confirmation-code`.

use std::time::Duration;

use chrono::{SecondsFormat, TimeDelta};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::errors::{ProcessingError, code};
use super::parse::{ClientKey, client_key, opt_gender, opt_string, random_code, required_object};
use super::{Now, State};
use crate::money::money;
use crate::phone::russian_mobile;

/// The window of `code_requests_per_minute`.
const CODE_WINDOW: Duration = Duration::from_secs(60);
/// A confirmation code's `expiresAt` is this far in the future.
const CODE_LIFETIME_MINUTES: i64 = 5;

/// Index into `State::clients`; stable because replaced clients leave a `None` behind.
pub(super) type ClientId = usize;

#[derive(Debug, Clone)]
pub(super) struct Client {
    /// Digits, `7XXXXXXXXXX`.
    pub(super) phone: Option<String>,
    pub(super) card: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) surname: Option<String>,
    pub(super) name: Option<String>,
    pub(super) patronymic_name: Option<String>,
    pub(super) full_name: Option<String>,
    pub(super) email: Option<String>,
    pub(super) birthdate: Option<String>,
    pub(super) gender: u8,
    /// Spendable now; negative after a return cancelled bonuses that were already spent.
    pub(super) available: i64,
    /// To be collected by pending purchases.
    pub(super) pending: i64,
    /// Applied by pending purchases.
    pub(super) reserved: i64,
    /// Paid by confirmed purchases, minus refunds (the level's `levelSpent`).
    pub(super) spent: Decimal,
}

impl Client {
    pub(super) fn collides_with(&self, other: &Client) -> bool {
        fn same(a: &Option<String>, b: &Option<String>) -> bool {
            a.is_some() && a == b
        }
        same(&self.phone, &other.phone)
            || same(&self.card, &other.card)
            || same(&self.external_id, &other.external_id)
            || same_email(self.email.as_deref(), other.email.as_deref())
    }

    pub(super) fn full_name(&self) -> Option<String> {
        self.full_name.clone().or_else(|| {
            let parts: Vec<&str> = [&self.surname, &self.name, &self.patronymic_name]
                .into_iter()
                .filter_map(|p| p.as_deref())
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
    }

    pub(super) fn to_json(&self) -> Value {
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

    pub(super) fn bonuses_json(&self) -> Value {
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

pub(super) fn client_mut(
    clients: &mut [Option<Client>],
    id: Option<ClientId>,
) -> Option<&mut Client> {
    clients.get_mut(id?).and_then(Option::as_mut)
}

impl State {
    pub(super) fn get_balance(
        &self,
        request: &Map<String, Value>,
    ) -> Result<Value, ProcessingError> {
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

    pub(super) fn new_client(
        &mut self,
        request: &Map<String, Value>,
    ) -> Result<Value, ProcessingError> {
        let fields = required_object(request, "client")?;
        let raw_phone =
            opt_string(fields, "phoneNumber")?.ok_or_else(ProcessingError::empty_phone)?;
        let phone = russian_mobile(&raw_phone).ok_or_else(ProcessingError::incorrect_phone)?;
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

    pub(super) fn send_confirmation_code(
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
}
