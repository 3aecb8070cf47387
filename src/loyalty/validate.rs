//! Value rules beyond types (SPEC.md "validation"): quantities > 0, sums ≥ 0, percents 0–100,
//! non-empty ids where exactly-once depends on them. MoySklad never sends such values, so one
//! that arrives is reported with its field, not guessed around.

use rust_decimal::Decimal;

use super::models::{
    CounterpartyCreateRequest, CounterpartyDetailRequest, CounterpartyVerifyRequest, Meta, Pack,
    RecalcPosition, RecalcRequest, RetaildemandVerifyRequest, ReturnRequest, SaleRequest,
    SoldPosition,
};
use crate::error::{Error, FieldProblem};

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

fn non_blank(value: &str, parameter: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::invalid(
            parameter,
            FieldProblem::Missing,
            "значение не должно быть пустым",
        ));
    }
    Ok(())
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
    Ok(())
}

fn pack(pack: Option<&Pack>, at: impl Fn(&str) -> String) -> Result<(), Error> {
    if let Some(quantity) = pack.and_then(|p| p.quantity) {
        positive(quantity.0, || at("pack.quantity"))?;
    }
    Ok(())
}

fn recalc_position(i: usize, p: &RecalcPosition) -> Result<(), Error> {
    let at = |field: &str| format!("positions[{i}].{field}");
    positive(p.quantity.0, || at("quantity"))?;
    non_negative(p.price.0, || at("price"))?;
    pack(p.pack.as_ref(), at)
}

fn sold_positions(positions: &[SoldPosition]) -> Result<(), Error> {
    for (i, p) in positions.iter().enumerate() {
        let at = |field: &str| format!("positions[{i}].{field}");
        positive(p.quantity.0, || at("quantity"))?;
        non_negative(p.price.0, || at("price"))?;
        if let Some(d) = p.discount_percent {
            percent(d.0, || at("discountPercent"))?;
        }
        if let Some(d) = p.discounted_price {
            non_negative(d.0, || at("discountedPrice"))?;
        }
    }
    Ok(())
}

impl Validate for CounterpartyCreateRequest {
    fn validate(&self) -> Result<(), Error> {
        Ok(())
    }
}

impl Validate for CounterpartyDetailRequest {
    fn validate(&self) -> Result<(), Error> {
        non_blank(&self.meta.id, "meta.id")
    }
}

impl Validate for CounterpartyVerifyRequest {
    fn validate(&self) -> Result<(), Error> {
        non_blank(&self.meta.href, "meta.href")
    }
}

impl Validate for RetaildemandVerifyRequest {
    fn validate(&self) -> Result<(), Error> {
        non_blank(&self.counterparty_id, "counterpartyId")
    }
}

impl Validate for RecalcRequest {
    fn validate(&self) -> Result<(), Error> {
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
        document_id(&self.meta)?;
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
            non_negative(v.0, || "cashSum".into())?;
        }
        if let Some(v) = self.no_cash_sum {
            non_negative(v.0, || "noCashSum".into())?;
        }
        for (i, card) in self.gift_cards.iter().flatten().enumerate() {
            non_blank(&card.name, &format!("giftCards[{i}].name"))?;
            non_negative(card.payment_sum.0, || format!("giftCards[{i}].paymentSum"))?;
        }
        Ok(())
    }
}

impl Validate for ReturnRequest {
    fn validate(&self) -> Result<(), Error> {
        document_id(&self.meta)?;
        sold_positions(&self.positions)?;
        if let Some(v) = self.cash_sum {
            non_negative(v.0, || "cashSum".into())?;
        }
        if let Some(v) = self.no_cash_sum {
            non_negative(v.0, || "noCashSum".into())?;
        }
        Ok(())
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
