//! Buyers: their records and `/buyer-info`, `/buyer-register`, `/buyer-edit`.

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use tokio::time::Instant;
use uuid::Uuid;

use super::errors::{PbError, shorten};
use super::parse::{
    Edit, check_date, check_email, check_gender, edit_string, is_pb_phone, looks_like_phone,
    opt_bool, opt_string, phone_field, required_phone,
};
use super::{GROUP_NAME, State};
use crate::money::money;

/// Index into `State::buyers`; stable because replaced buyers leave a `None` behind.
pub(super) type BuyerId = usize;

#[derive(Debug, Clone)]
pub(super) struct Buyer {
    pub(super) client_id: Uuid,
    /// Digits, `7XXXXXXXXXX`.
    pub(super) phone: Option<String>,
    pub(super) card_number: Option<String>,
    pub(super) surname: Option<String>,
    pub(super) name: Option<String>,
    pub(super) middle_name: Option<String>,
    pub(super) birth_date: Option<String>,
    pub(super) gender: Option<String>,
    pub(super) email: Option<String>,
    pub(super) external_id: Option<String>,
    /// Active, spendable; negative after bonuses already spent were taken back.
    pub(super) balance: Decimal,
    /// To be credited when `not_approved` purchases are approved.
    pub(super) inactive: Decimal,
    pub(super) blocked: bool,
    /// Stored as registered or edited; it gates nothing (verification does).
    pub(super) phone_checked: bool,
}

impl Buyer {
    pub(super) fn collides_with(&self, other: &Buyer) -> bool {
        fn same(a: &Option<String>, b: &Option<String>) -> bool {
            a.is_some() && a == b
        }
        same(&self.phone, &other.phone)
            || same(&self.card_number, &other.card_number)
            || same(&self.external_id, &other.external_id)
            || same_email(self.email.as_deref(), other.email.as_deref())
    }

    pub(super) fn credit(&mut self, amount: Decimal) {
        self.balance = self.balance.saturating_add(amount);
    }

    pub(super) fn debit(&mut self, amount: Decimal) {
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
pub(super) fn client_id(phone: Option<&str>) -> Uuid {
    match phone {
        Some(phone) => Uuid::new_v5(&namespace(), format!("buyer:{phone}").as_bytes()),
        None => Uuid::new_v4(),
    }
}

pub(super) fn group_id() -> Uuid {
    Uuid::new_v5(&namespace(), b"group:base")
}

/// How a request names a buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdentType {
    Phone,
    Email,
    Card,
    ExternalId,
}

impl IdentType {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            IdentType::Phone => "phone",
            IdentType::Email => "email",
            IdentType::Card => "card",
            IdentType::ExternalId => "external_id",
        }
    }
}

impl State {
    /// The buyer a request names: `phone`, else `identificator`, else (when allowed)
    /// `external_id`. `Ok((None, _))` when nobody matches.
    pub(super) fn identify(
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

    pub(super) fn profile(&self, buyer: &Buyer, ident: IdentType) -> Map<String, Value> {
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

    pub(super) fn buyer_info(
        &self,
        request: &Map<String, Value>,
    ) -> Result<Map<String, Value>, PbError> {
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

    pub(super) fn buyer_register(
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

    pub(super) fn buyer_edit(
        &mut self,
        request: &Map<String, Value>,
    ) -> Result<Map<String, Value>, PbError> {
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
}
