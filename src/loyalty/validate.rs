//! Value rules beyond types (SPEC.md "validation"): quantities > 0, sums ≥ 0, rubles to the
//! kopeck and kopecks whole, percents 0–100, non-empty ids where exactly-once depends on them,
//! identifiers no longer than any real one. MoySklad never sends such values, so one
//! that arrives is reported with its field, not guessed around.

use rust_decimal::Decimal;

use super::models::{
    Assortment, CounterpartyCreateRequest, CounterpartyDetailRequest, CounterpartySearchQuery,
    CounterpartyVerifyRequest, Customer, GiftCardQuery, Meta, Pack, RecalcPosition, RecalcRequest,
    RetailStore, RetaildemandVerifyRequest, ReturnRequest, SaleRequest, SoldPosition,
};
use crate::amount::{Kopecks, Rubles};
use crate::error::{Error, FieldProblem};

/// Longest MoySklad id accepted (`meta.id`, `agent.meta.id`, `counterpartyId`, `retailStoreId`,
/// assortment and gift-card ids). MoySklad's ids are UUIDs, 36 characters; 128 leaves room for
/// any other id format while keeping what an id becomes small: cache, memory and journal keys,
/// vendor ids. (300 recalcs, each with a different 900 KB `agent.meta.id`, once filled the
/// lookup cache.)
pub const MAX_ID_CHARS: usize = 128;

/// Longest card number, phone, gift-card name or customer search accepted: what a cashier types
/// or scans is a few dozen characters (a barcode, a phone, a name), and MoySklad's own text
/// fields stop at 255.
pub const MAX_CODE_CHARS: usize = 255;

/// Longest `meta.href` of `/counterparty/verify`, where the href (a sync-id URL of about 100
/// characters) is what identifies the customer.
pub const MAX_HREF_CHARS: usize = 512;

pub trait Validate {
    fn validate(&self) -> Result<(), Error>;
}

fn out_of_range(parameter: impl Into<String>, rule: &str) -> Error {
    Error::invalid(parameter, FieldProblem::OutOfRange, rule)
}

fn non_negative(value: Decimal, parameter: impl FnOnce() -> String) -> Result<(), Error> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(out_of_range(
            parameter(),
            "значение не может быть отрицательным",
        ));
    }
    Ok(())
}

fn positive(value: Decimal, parameter: impl FnOnce() -> String) -> Result<(), Error> {
    if value <= Decimal::ZERO {
        return Err(out_of_range(parameter(), "значение должно быть больше 0"));
    }
    Ok(())
}

fn percent(value: Decimal, parameter: impl FnOnce() -> String) -> Result<(), Error> {
    if value < Decimal::ZERO || value > Decimal::ONE_HUNDRED {
        return Err(out_of_range(
            parameter(),
            "значение должно быть от 0 до 100",
        ));
    }
    Ok(())
}

/// Whether the value needs more than `places` decimals (`100.000` needs none): the value
/// counts, not how it was written. Normalised only when written with more.
fn finer_than(value: Decimal, places: u32) -> bool {
    value.scale() > places && value.normalize().scale() > places
}

/// The largest ruble amount accepted (a trillion): far above any till's, and small enough that
/// price × quantity summed over a receipt stays well inside `Decimal`'s range (≈ 7.9e28), where
/// the mapping's arithmetic would otherwise fail with a 502 instead of this 400.
const MAX_RUBLES: i64 = 1_000_000_000_000;

/// The largest quantity accepted (a billion units), for the same reason.
const MAX_QUANTITY: i64 = 1_000_000_000;

fn at_most_value(value: Decimal, max: i64, parameter: impl Fn() -> String) -> Result<(), Error> {
    if value > Decimal::from(max) {
        return Err(out_of_range(
            parameter(),
            &format!("значение не может быть больше {max}"),
        ));
    }
    Ok(())
}

/// A quantity (units or packs): more than 0, at most [`MAX_QUANTITY`].
fn count(value: Decimal, parameter: impl Fn() -> String) -> Result<(), Error> {
    positive(value, &parameter)?;
    at_most_value(value, MAX_QUANTITY, parameter)
}

/// An amount in rubles: not negative, at most [`MAX_RUBLES`], and kopecks are the finest unit.
/// A finer amount is none a till rang up; vendors refuse or round it, and the answer could not
/// be read back.
fn rubles(value: Rubles, parameter: impl Fn() -> String) -> Result<(), Error> {
    non_negative(value.0, &parameter)?;
    at_most_value(value.0, MAX_RUBLES, &parameter)?;
    if finer_than(value.0, 2) {
        return Err(Error::invalid(
            parameter(),
            FieldProblem::NotAllowed,
            "сумма в рублях: не больше двух знаков после запятой",
        ));
    }
    Ok(())
}

/// An amount in kopecks: not negative, at most [`MAX_RUBLES`] in kopecks, and whole.
fn kopecks(value: Kopecks, parameter: impl Fn() -> String) -> Result<(), Error> {
    non_negative(value.0, &parameter)?;
    at_most_value(value.0, MAX_RUBLES * 100, &parameter)?;
    if finer_than(value.0, 0) {
        return Err(Error::invalid(
            parameter(),
            FieldProblem::NotAllowed,
            "сумма в копейках: только целое число",
        ));
    }
    Ok(())
}

fn non_blank(value: &str, parameter: impl FnOnce() -> String) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::invalid(
            parameter(),
            FieldProblem::Missing,
            "значение не должно быть пустым",
        ));
    }
    Ok(())
}

/// At most `max` characters.
fn at_most(value: &str, max: usize, parameter: impl FnOnce() -> String) -> Result<(), Error> {
    // Bytes are never fewer than characters: only a long text is counted.
    if value.len() > max && value.chars().count() > max {
        return Err(out_of_range(
            parameter(),
            &format!("значение длиннее {max} символов"),
        ));
    }
    Ok(())
}

fn id(value: &str, parameter: impl FnOnce() -> String) -> Result<(), Error> {
    at_most(value, MAX_ID_CHARS, parameter)
}

fn code(value: Option<&str>, parameter: impl FnOnce() -> String) -> Result<(), Error> {
    value.map_or(Ok(()), |v| at_most(v, MAX_CODE_CHARS, parameter))
}

fn store(store: &RetailStore) -> Result<(), Error> {
    id(&store.meta.id, || "retailStore.meta.id".into())
}

/// What identifies a customer besides its id: phone and card number (`at` names the field).
fn customer_codes(
    phone: Option<&str>,
    card: Option<&str>,
    at: impl Fn(&str) -> String,
) -> Result<(), Error> {
    code(phone, || at("phone"))?;
    code(card, || at("discountCardNumber"))
}

fn agent(agent: &Customer) -> Result<(), Error> {
    id(&agent.meta.id, || "agent.meta.id".into())?;
    customer_codes(
        agent.phone.as_deref(),
        agent.discount_card_number.as_deref(),
        |field| format!("agent.{field}"),
    )
}

/// A sale's or return's own id: without it exactly-once cannot be kept (SPEC.md §7).
fn document_id(meta: &Meta) -> Result<(), Error> {
    if meta.id.trim().is_empty() {
        return Err(Error::invalid(
            "meta.id",
            FieldProblem::Missing,
            "идентификатор документа пуст; без него нельзя гарантировать однократную запись",
        ));
    }
    id(&meta.id, || "meta.id".into())
}

fn assortment(assortment: &Assortment, at: impl Fn(&str) -> String) -> Result<(), Error> {
    id(&assortment.meta.id, || at("assortment.meta.id"))?;
    match &assortment.sync_id {
        Some(sync_id) => id(sync_id, || at("assortment.syncId")),
        None => Ok(()),
    }
}

fn pack(pack: Option<&Pack>, at: impl Fn(&str) -> String) -> Result<(), Error> {
    if let Some(quantity) = pack.and_then(|p| p.quantity) {
        count(quantity.0, || at("pack.quantity"))?;
    }
    Ok(())
}

fn recalc_position(i: usize, p: &RecalcPosition) -> Result<(), Error> {
    let at = |field: &str| format!("positions[{i}].{field}");
    assortment(&p.assortment, at)?;
    count(p.quantity.0, || at("quantity"))?;
    rubles(p.price, || at("price"))?;
    pack(p.pack.as_ref(), at)
}

fn sold_positions(positions: &[SoldPosition]) -> Result<(), Error> {
    for (i, p) in positions.iter().enumerate() {
        let at = |field: &str| format!("positions[{i}].{field}");
        assortment(&p.assortment, at)?;
        count(p.quantity.0, || at("quantity"))?;
        rubles(p.price, || at("price"))?;
        if let Some(d) = p.discount_percent {
            percent(d.0, || at("discountPercent"))?;
        }
        if let Some(d) = p.discounted_price {
            rubles(d, || at("discountedPrice"))?;
        }
    }
    Ok(())
}

impl Validate for CounterpartyCreateRequest {
    fn validate(&self) -> Result<(), Error> {
        store(&self.retail_store)?;
        id(&self.meta.id, || "meta.id".into())?;
        if let Some(sync_id) = &self.sync_id {
            id(sync_id, || "syncId".into())?;
        }
        customer_codes(
            self.phone.as_deref(),
            self.discount_card_number.as_deref(),
            str::to_string,
        )
    }
}

impl Validate for CounterpartySearchQuery {
    fn validate(&self) -> Result<(), Error> {
        code(Some(&self.search), || "search".into())?;
        id(&self.retail_store_id, || "retailStoreId".into())
    }
}

impl Validate for CounterpartyDetailRequest {
    fn validate(&self) -> Result<(), Error> {
        store(&self.retail_store)?;
        non_blank(&self.meta.id, || "meta.id".into())?;
        id(&self.meta.id, || "meta.id".into())?;
        customer_codes(
            self.phone.as_deref(),
            self.discount_card_number.as_deref(),
            str::to_string,
        )
    }
}

impl Validate for CounterpartyVerifyRequest {
    fn validate(&self) -> Result<(), Error> {
        store(&self.retail_store)?;
        non_blank(&self.meta.href, || "meta.href".into())?;
        at_most(&self.meta.href, MAX_HREF_CHARS, || "meta.href".into())?;
        if let Some(meta_id) = &self.meta.id {
            id(meta_id, || "meta.id".into())?;
        }
        customer_codes(
            self.phone.as_deref(),
            self.discount_card_number.as_deref(),
            str::to_string,
        )
    }
}

impl Validate for RetaildemandVerifyRequest {
    fn validate(&self) -> Result<(), Error> {
        store(&self.retail_store)?;
        non_blank(&self.counterparty_id, || "counterpartyId".into())?;
        id(&self.counterparty_id, || "counterpartyId".into())?;
        code(self.phone.as_deref(), || "phone".into())
    }
}

impl Validate for RecalcRequest {
    fn validate(&self) -> Result<(), Error> {
        store(&self.retail_store)?;
        agent(&self.agent)?;
        for (i, p) in self.positions.iter().enumerate() {
            recalc_position(i, p)?;
        }
        if let Some(points) = self.preferred_bonus_to_spend {
            non_negative(points.0, || "preferredBonusToSpend".into())?;
        }
        Ok(())
    }
}

impl Validate for SaleRequest {
    fn validate(&self) -> Result<(), Error> {
        store(&self.retail_store)?;
        document_id(&self.meta)?;
        if let Some(customer) = &self.agent {
            agent(customer)?;
        }
        sold_positions(&self.positions)?;
        if let Some(bonus) = &self.bonus_program {
            if let Some(v) = bonus.bonus_value_to_spend {
                non_negative(v.0, || "bonusProgram.bonusValueToSpend".into())?;
            }
            if let Some(v) = bonus.bonus_value_to_earn {
                non_negative(v.0, || "bonusProgram.bonusValueToEarn".into())?;
            }
        }
        if let Some(v) = self.cash_sum {
            rubles(v, || "cashSum".into())?;
        }
        if let Some(v) = self.no_cash_sum {
            rubles(v, || "noCashSum".into())?;
        }
        for (i, card) in self.gift_cards.iter().flatten().enumerate() {
            let at = |field: &str| format!("giftCards[{i}].{field}");
            non_blank(&card.name, || at("name"))?;
            code(Some(&card.name), || at("name"))?;
            if let Some(card_id) = &card.id {
                id(card_id, || at("id"))?;
            }
            kopecks(card.payment_sum, || at("paymentSum"))?;
        }
        Ok(())
    }
}

impl Validate for ReturnRequest {
    fn validate(&self) -> Result<(), Error> {
        store(&self.retail_store)?;
        document_id(&self.meta)?;
        if let Some(sale) = &self.demand.meta.id {
            id(sale, || "demand.meta.id".into())?;
        }
        if let Some(customer) = &self.agent.id {
            id(customer, || "agent.id".into())?;
        }
        sold_positions(&self.positions)?;
        if let Some(v) = self.cash_sum {
            rubles(v, || "cashSum".into())?;
        }
        // Documented as kopecks, unlike the sale's.
        if let Some(v) = self.no_cash_sum {
            kopecks(v, || "noCashSum".into())?;
        }
        Ok(())
    }
}

impl Validate for GiftCardQuery {
    fn validate(&self) -> Result<(), Error> {
        code(Some(&self.name), || "name".into())?;
        id(&self.retail_store_id, || "retailStoreId".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loyalty::parse::json_body;

    fn parameter_of<T: serde::de::DeserializeOwned + Validate>(body: &str) -> String {
        let value: T = json_body(body.as_bytes()).expect("parses");
        match value.validate().unwrap_err() {
            Error::InvalidField { parameter, .. } => parameter,
            other => panic!("{other:?}"),
        }
    }

    const HEAD: &str = r#""retailStore":{"meta":{"id":"s"}},"agent":{"meta":{"id":"a"}}"#;

    fn recalc_with(position: &str) -> String {
        let ok = r#"{"assortment":{"meta":{"id":"p"}},"quantity":1,"price":1}"#;
        format!(r#"{{{HEAD},"positions":[{ok},{position}]}}"#)
    }

    #[test]
    fn recalc_rules_name_the_field() {
        let cases = [
            (
                r#"{"assortment":{"meta":{"id":"p"}},"quantity":0,"price":1}"#,
                "positions[1].quantity",
            ),
            (
                r#"{"assortment":{"meta":{"id":"p"}},"quantity":-1,"price":1}"#,
                "positions[1].quantity",
            ),
            (
                r#"{"assortment":{"meta":{"id":"p"}},"quantity":1,"price":-0.01}"#,
                "positions[1].price",
            ),
            (
                r#"{"assortment":{"meta":{"id":"p"}},"quantity":1,"price":1,"pack":{"quantity":0}}"#,
                "positions[1].pack.quantity",
            ),
        ];
        for (position, expected) in cases {
            assert_eq!(
                parameter_of::<RecalcRequest>(&recalc_with(position)),
                expected
            );
        }
        let body = format!(r#"{{{HEAD},"positions":[],"preferredBonusToSpend":-5}}"#);
        assert_eq!(
            parameter_of::<RecalcRequest>(&body),
            "preferredBonusToSpend"
        );
    }

    #[test]
    fn price_zero_is_allowed() {
        let body = recalc_with(r#"{"assortment":{"meta":{"id":"p"}},"quantity":0.001,"price":0}"#);
        let value: RecalcRequest = json_body(body.as_bytes()).unwrap();
        value.validate().unwrap();
    }

    fn sale(extra: &str, meta_id: &str) -> String {
        format!(
            r#"{{"retailStore":{{"meta":{{"id":"s"}}}},"meta":{{"href":"","id":"{meta_id}"}},
                "positions":[{{"assortment":{{"meta":{{"id":"p"}}}},"quantity":1,"price":10,"discountPercent":10,"discountedPrice":9}}]{extra}}}"#
        )
    }

    #[test]
    fn sale_rules_name_the_field() {
        assert_eq!(parameter_of::<SaleRequest>(&sale("", "")), "meta.id");
        assert_eq!(parameter_of::<SaleRequest>(&sale("", "  ")), "meta.id");
        assert_eq!(
            parameter_of::<SaleRequest>(&sale(r#","cashSum":-1"#, "x")),
            "cashSum"
        );
        assert_eq!(
            parameter_of::<SaleRequest>(&sale(r#","bonusProgram":{"bonusValueToSpend":-1}"#, "x")),
            "bonusProgram.bonusValueToSpend"
        );
        assert_eq!(
            parameter_of::<SaleRequest>(&sale(
                r#","giftCards":[{"name":"1","paymentSum":-100}]"#,
                "x"
            )),
            "giftCards[0].paymentSum"
        );
        let over = sale("", "x").replace(r#""discountPercent":10"#, r#""discountPercent":100.01"#);
        assert_eq!(
            parameter_of::<SaleRequest>(&over),
            "positions[0].discountPercent"
        );
    }

    #[test]
    fn return_needs_its_own_id_but_not_a_linked_sale() {
        let body = r#"{"retailStore":{"meta":{"id":"s"}},"meta":{"href":"","id":""},"demand":{"meta":{"href":"","id":""}},"agent":{},"positions":[]}"#;
        assert_eq!(parameter_of::<ReturnRequest>(body), "meta.id");
        let with_id = body.replacen(r#""id":"""#, r#""id":"r1""#, 1);
        let value: ReturnRequest = json_body(with_id.as_bytes()).unwrap();
        value.validate().unwrap();
        assert_eq!(value.demand.meta.id(), None);
    }

    // ---------------------------------------------------------------------------------------
    // Every request type, from the reference's examples, edited one field at a time.

    use crate::loyalty::ops::{Op, Request};
    use serde_json::{Value, json};

    /// The reference's request example of `op` (sales and returns with a real `meta.id`), or
    /// the query of a GET as an object.
    fn example(op: Op) -> Value {
        let text = match op {
            Op::CounterpartyCreate => {
                include_str!("../../tests/fixtures/loyaltyapi/counterparty.create.request.json")
            }
            Op::CounterpartyDetail => {
                include_str!("../../tests/fixtures/loyaltyapi/counterparty.detail.request.json")
            }
            Op::CounterpartyVerify => {
                include_str!("../../tests/fixtures/loyaltyapi/counterparty.verify.request.json")
            }
            Op::RetaildemandRecalc => {
                include_str!("../../tests/fixtures/loyaltyapi/retaildemand.recalc.request.json")
            }
            Op::RetaildemandVerify => {
                include_str!("../../tests/fixtures/loyaltyapi/retaildemand.verify.request.json")
            }
            Op::RetaildemandCreate => {
                include_str!("../../tests/fixtures/loyaltyapi/retaildemand.create.request.json")
            }
            Op::RetailsalesreturnCreate => include_str!(
                "../../tests/fixtures/loyaltyapi/retailsalesreturn.create.request.json"
            ),
            Op::CounterpartySearch => r#"{"search": "+7 555 123 4567", "retailStoreId": "s1"}"#,
            Op::GiftcardSearch => r#"{"name": "123456", "retailStoreId": "s1"}"#,
        };
        let mut value: Value = serde_json::from_str(text).unwrap();
        if matches!(op, Op::RetaildemandCreate | Op::RetailsalesreturnCreate) {
            value["meta"]["id"] = json!("b1f4b6a8-3c2d-11ef-0a80-0d5a00000001");
        }
        value
    }

    /// `request` parsed and validated as the server does it (a GET's object as its query).
    fn parse(op: Op, request: &Value) -> Result<Request, Error> {
        if op.has_body() {
            return Request::parse(op, None, request.to_string().as_bytes());
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in request.as_object().unwrap() {
            query.append_pair(k, v.as_str().unwrap());
        }
        Request::parse(op, Some(&query.finish()), b"")
    }

    /// `op`'s example with the field at `pointer` set to `value`: refused naming `parameter`
    /// (when given), else accepted.
    fn check(op: Op, pointer: &str, value: Value, parameter: Option<&str>) {
        let mut request = example(op);
        *request
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{op}: no {pointer} in the example")) = value.clone();
        let shown: String = value.to_string().chars().take(40).collect();
        match (parse(op, &request), parameter) {
            (Ok(_), None) => {}
            (Err(Error::InvalidField { parameter: got, .. }), Some(want)) => {
                assert_eq!(got, want, "{op} {pointer} = {shown}")
            }
            (Ok(_), Some(want)) => panic!("{op} {pointer} = {shown}: accepted, {want} expected"),
            (Err(e), _) => panic!("{op} {pointer} = {shown}: {e:?}"),
        }
    }

    fn number(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn every_example_is_accepted_as_it_is() {
        for op in Op::ALL {
            parse(op, &example(op)).unwrap_or_else(|e| panic!("{op}: {e:?}"));
        }
    }

    #[test]
    fn ruble_amounts_have_at_most_two_decimals_and_kopecks_none() {
        use Op::RetailsalesreturnCreate as Return;
        use Op::{RetaildemandCreate as Sale, RetaildemandRecalc as Recalc};
        let rubles = [
            (Recalc, "/positions/0/price", "positions[0].price"),
            (Sale, "/positions/0/price", "positions[0].price"),
            (
                Sale,
                "/positions/0/discountedPrice",
                "positions[0].discountedPrice",
            ),
            (Sale, "/cashSum", "cashSum"),
            (Sale, "/noCashSum", "noCashSum"),
            (Return, "/positions/0/price", "positions[0].price"),
            (
                Return,
                "/positions/0/discountedPrice",
                "positions[0].discountedPrice",
            ),
            (Return, "/cashSum", "cashSum"),
        ];
        for (op, pointer, parameter) in rubles {
            check(op, pointer, number("100.005"), Some(parameter));
            check(op, pointer, number("0.001"), Some(parameter));
            check(op, pointer, number("1e-3"), Some(parameter));
            // Beyond any till, and where receipt sums would leave Decimal's range.
            check(op, pointer, number("1000000000000.01"), Some(parameter));
            check(op, pointer, number("5e28"), Some(parameter));
            check(op, pointer, number("1000000000000"), None);
            // The value counts, not how it is written: 100.000 is 100 rubles.
            for fine in ["100.005e1", "100.000", "100.1", "100", "0.01", "1e2"] {
                check(op, pointer, number(fine), None);
            }
        }
        for op in [Recalc, Sale, Return] {
            let (pointer, parameter) = ("/positions/0/quantity", "positions[0].quantity");
            check(op, pointer, number("1000000001"), Some(parameter));
            check(op, pointer, number("1000000000"), None);
        }
        let kopecks = [
            (Sale, "/giftCards/1/paymentSum", "giftCards[1].paymentSum"),
            (Return, "/noCashSum", "noCashSum"),
        ];
        for (op, pointer, parameter) in kopecks {
            check(op, pointer, number("1000.5"), Some(parameter));
            check(op, pointer, number("0.01"), Some(parameter));
            check(op, pointer, number("100000000000001"), Some(parameter));
            for fine in ["283100.0", "283100", "1000.00", "1.5e1"] {
                check(op, pointer, number(fine), None);
            }
        }
    }

    #[test]
    fn identifiers_are_capped_naming_the_field() {
        use Op::*;
        let ids = [
            (
                RetaildemandRecalc,
                "/retailStore/meta/id",
                "retailStore.meta.id",
            ),
            (RetaildemandRecalc, "/agent/meta/id", "agent.meta.id"),
            (
                RetaildemandRecalc,
                "/positions/0/assortment/meta/id",
                "positions[0].assortment.meta.id",
            ),
            (RetaildemandCreate, "/meta/id", "meta.id"),
            (RetaildemandCreate, "/agent/meta/id", "agent.meta.id"),
            (
                RetaildemandCreate,
                "/positions/0/assortment/syncId",
                "positions[0].assortment.syncId",
            ),
            (RetaildemandCreate, "/giftCards/1/id", "giftCards[1].id"),
            (RetailsalesreturnCreate, "/meta/id", "meta.id"),
            (
                RetailsalesreturnCreate,
                "/retailStore/meta/id",
                "retailStore.meta.id",
            ),
            (RetailsalesreturnCreate, "/demand/meta/id", "demand.meta.id"),
            (RetailsalesreturnCreate, "/agent", "agent.id"),
            (CounterpartyCreate, "/meta/id", "meta.id"),
            (CounterpartyCreate, "/syncId", "syncId"),
            (CounterpartyDetail, "/meta/id", "meta.id"),
            (RetaildemandVerify, "/counterpartyId", "counterpartyId"),
            (CounterpartySearch, "/retailStoreId", "retailStoreId"),
            (GiftcardSearch, "/retailStoreId", "retailStoreId"),
        ];
        let codes = [
            (RetaildemandRecalc, "/agent/phone", "agent.phone"),
            (
                RetaildemandRecalc,
                "/agent/discountCardNumber",
                "agent.discountCardNumber",
            ),
            (
                RetaildemandCreate,
                "/agent/discountCardNumber",
                "agent.discountCardNumber",
            ),
            (RetaildemandCreate, "/giftCards/1/name", "giftCards[1].name"),
            (CounterpartyCreate, "/phone", "phone"),
            (
                CounterpartyCreate,
                "/discountCardNumber",
                "discountCardNumber",
            ),
            (CounterpartyDetail, "/phone", "phone"),
            (
                CounterpartyDetail,
                "/discountCardNumber",
                "discountCardNumber",
            ),
            (CounterpartyVerify, "/phone", "phone"),
            (
                CounterpartyVerify,
                "/discountCardNumber",
                "discountCardNumber",
            ),
            (RetaildemandVerify, "/phone", "phone"),
            (CounterpartySearch, "/search", "search"),
            (GiftcardSearch, "/name", "name"),
        ];
        let hrefs = [(CounterpartyVerify, "/meta/href", "meta.href")];
        for (cases, max) in [
            (&ids[..], MAX_ID_CHARS),
            (&codes[..], MAX_CODE_CHARS),
            (&hrefs[..], MAX_HREF_CHARS),
        ] {
            for &(op, pointer, parameter) in cases {
                let text = |c: &str, n: usize| {
                    let s = c.repeat(n);
                    // The return's agent is `{id, href}`, not a customer object.
                    if pointer == "/agent" {
                        json!({ "id": s })
                    } else {
                        json!(s)
                    }
                };
                // Characters count, not bytes: as many Cyrillic letters as the cap allows pass.
                check(op, pointer, text("ж", max), None);
                check(op, pointer, text("7", max + 1), Some(parameter));
                check(op, pointer, text("ж", 900 * 1024 / 2), Some(parameter));
            }
        }
    }

    #[test]
    fn verify_and_detail_need_their_ids() {
        let body = r#"{"retailStore":{"meta":{"id":"s"}},"counterpartyId":" "}"#;
        assert_eq!(
            parameter_of::<RetaildemandVerifyRequest>(body),
            "counterpartyId"
        );
        let body = r#"{"retailStore":{"meta":{"id":"s"}},"meta":{"id":""}}"#;
        assert_eq!(parameter_of::<CounterpartyDetailRequest>(body), "meta.id");
    }
}
