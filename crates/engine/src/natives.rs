//! The built-in functions mapping expressions can call, registered as jq natives. Each is a
//! thin adapter from jaq values to a function of [`crate::builtins`], where the logic and its
//! tests live. Money never goes through jq's floating-point arithmetic: `dmul`, `dadd`, … work
//! on the numbers' exact decimal text.
//!
//! | function | input → output |
//! |---|---|
//! | `phone_e164`, `phone_digits`, `phone_7` | phone text → `+7…` / `7…` / `7…` |
//! | `uuid_v5` | any text → a stable GUID |
//! | `kopecks`, `rubles`, `round_money` | number → number (rubles ×100, ÷100, 2 decimals) |
//! | `sum_money` | array of numbers → their exact sum, 2 decimals |
//! | `dadd($x)`, `dsub($x)`, `dmul($x)`, `ddiv($x)` | exact decimal arithmetic |
//! | `dfloor`, `dceil`, `dround($places)` | rounding (`dround`: half away from zero) |
//! | `decimal` | number or numeric string → number |
//! | `allocate_discount($total)` | positions → positions with `discountedPrice`, `discountPercent`, split when needed |
//! | `ms_to_iso($offset)`, `iso_to_ms`, `date_to_ms` | date format conversions |
//! | `drop_nulls` | removes `null` members of objects, recursively |

use jaq_core::native::{Filter, Fun, bome, run, unary, v};
use jaq_core::{DataT, RunPtr, ValR};
use jaq_json::Val;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::builtins;
use crate::jaq_value::{from_val, to_val};

pub fn funs<D: for<'a> DataT<V<'a> = Val>>() -> impl Iterator<Item = Fun<D>> {
    base().into_vec().into_iter().map(run)
}

fn fail(message: impl ToString) -> jaq_core::Error<Val> {
    jaq_core::Error::str(message)
}

fn text(v: &Val) -> Result<String, jaq_core::Error<Val>> {
    match v {
        Val::TStr(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        other => Err(fail(format!("expected a string, got {other}"))),
    }
}

fn string(s: String) -> Val {
    Val::utf8_str(s.into_bytes())
}

fn decimal(v: &Val) -> Result<Decimal, jaq_core::Error<Val>> {
    let value = from_val(v).map_err(fail)?;
    builtins::decimal_of(&value).map_err(fail)
}

fn number(d: Decimal) -> ValR<Val> {
    jaq_json::read::parse_single_num(d.normalize().to_string().as_bytes())
        .map(Val::Num)
        .ok_or_else(|| fail(format!("cannot represent {d}")))
}

fn text_fn(v: Val, f: fn(&str) -> Result<String, builtins::BuiltinError>) -> ValR<Val> {
    f(&text(&v)?).map(string).map_err(fail)
}

fn money_fn(v: Val, f: fn(Decimal) -> Option<Decimal>) -> ValR<Val> {
    let d = decimal(&v)?;
    f(d).ok_or_else(|| fail(format!("{d} is out of range")))
        .and_then(number)
}

fn arith(a: Val, b: Val, f: fn(Decimal, Decimal) -> Option<Decimal>) -> ValR<Val> {
    let (a, b) = (decimal(&a)?, decimal(&b)?);
    f(a, b)
        .ok_or_else(|| fail(format!("decimal arithmetic failed on {a} and {b}")))
        .and_then(number)
}

fn base<D: for<'a> DataT<V<'a> = Val>>() -> Box<[Filter<RunPtr<D>>]> {
    Box::new([
        ("phone_e164", v(0), |cv| {
            bome(text_fn(cv.1, builtins::phone_e164))
        }),
        ("phone_digits", v(0), |cv| {
            bome(text_fn(cv.1, builtins::phone_digits))
        }),
        ("phone_7", v(0), |cv| bome(text_fn(cv.1, builtins::phone_7))),
        ("iso_to_ms", v(0), |cv| {
            bome(text_fn(cv.1, builtins::iso_to_ms))
        }),
        ("date_to_ms", v(0), |cv| {
            bome(text_fn(cv.1, builtins::date_to_ms))
        }),
        ("uuid_v5", v(0), |cv| {
            bome(text(&cv.1).map(|t| string(builtins::uuid_v5(&t))))
        }),
        ("ms_to_iso", v(1), |cv| {
            unary(cv, |date, offset| {
                builtins::ms_to_iso(&text(&date)?, &text(&offset)?)
                    .map(string)
                    .map_err(fail)
            })
        }),
        ("kopecks", v(0), |cv| {
            bome(money_fn(cv.1, builtins::checked_kopecks))
        }),
        ("rubles", v(0), |cv| {
            bome(money_fn(cv.1, |d| Some(builtins::rubles(d))))
        }),
        ("round_money", v(0), |cv| {
            bome(money_fn(cv.1, |d| Some(builtins::round_money(d))))
        }),
        ("dfloor", v(0), |cv| {
            bome(money_fn(cv.1, |d| Some(d.floor())))
        }),
        ("dceil", v(0), |cv| bome(money_fn(cv.1, |d| Some(d.ceil())))),
        ("decimal", v(0), |cv| bome(money_fn(cv.1, Some))),
        ("dround", v(1), |cv| {
            unary(cv, |x, places| {
                let places = u32::try_from(decimal(&places)?.trunc().mantissa())
                    .ok()
                    .filter(|p| *p <= 10)
                    .ok_or_else(|| fail("dround: places must be 0–10"))?;
                number(
                    decimal(&x)?
                        .round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero),
                )
            })
        }),
        ("dadd", v(1), |cv| {
            unary(cv, |a, b| arith(a, b, Decimal::checked_add))
        }),
        ("dsub", v(1), |cv| {
            unary(cv, |a, b| arith(a, b, Decimal::checked_sub))
        }),
        ("dmul", v(1), |cv| {
            unary(cv, |a, b| arith(a, b, Decimal::checked_mul))
        }),
        ("ddiv", v(1), |cv| {
            unary(cv, |a, b| arith(a, b, Decimal::checked_div))
        }),
        ("sum_money", v(0), |cv| {
            bome(match &cv.1 {
                Val::Arr(items) => items
                    .iter()
                    .map(decimal)
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|xs| {
                        builtins::checked_sum_money(&xs)
                            .ok_or_else(|| fail("sum_money: the sum is out of range"))
                            .and_then(number)
                    }),
                other => Err(fail(format!("sum_money: expected an array, got {other}"))),
            })
        }),
        ("drop_nulls", v(0), |cv| {
            bome(
                from_val(&cv.1)
                    .map(|v| to_val(&builtins::drop_nulls(v)))
                    .map_err(fail),
            )
        }),
        ("allocate_discount", v(1), |cv| {
            unary(cv, |positions, total| {
                let positions = from_val(&positions).map_err(fail)?;
                let total = decimal(&total)?;
                builtins::allocate_json(positions, total)
                    .map(|v| to_val(&v))
                    .map_err(fail)
            })
        }),
    ])
}

#[cfg(test)]
mod tests {
    use crate::expr::Expr;
    use serde_json::{Value, json};

    fn eval(src: &str, input: Value) -> Value {
        Expr::compile(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(&input)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn num(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn phones_and_ids() {
        assert_eq!(
            eval("phone_e164", json!("8 (555) 123-45-67")),
            json!("+75551234567")
        );
        assert_eq!(
            eval("phone_digits", json!("+7 555 123 4567")),
            json!("75551234567")
        );
        assert_eq!(
            eval("phone_7", json!("+7 555 123 4567")),
            json!("75551234567")
        );
        assert!(
            Expr::compile("phone_e164")
                .unwrap()
                .eval(&json!("12"))
                .is_err()
        );
        let a = eval("uuid_v5", json!("maxma:1"));
        assert_eq!(a, eval("uuid_v5", json!("maxma:1")));
        assert!(uuid::Uuid::parse_str(a.as_str().unwrap()).is_ok());
    }

    #[test]
    fn exact_decimal_arithmetic() {
        let input: Value = serde_json::from_str(r#"{"p": 123.45, "q": 123.456}"#).unwrap();
        // In binary floating point this product is 15240.643199999999…
        assert_eq!(
            eval(".p as $p | .q | dmul($p)", input.clone()),
            num("15240.6432")
        );
        assert_eq!(
            eval(".p as $p | .q | dmul($p) | round_money", input.clone()),
            num("15240.64")
        );
        assert_eq!(eval("0.1 | dadd(0.2)", json!(null)), num("0.3"));
        assert_eq!(eval("10 | ddiv(4)", json!(null)), num("2.5"));
        assert_eq!(eval("2.675 | dround(2)", json!(null)), num("2.68"));
        assert_eq!(
            eval("[0.1, 0.2, 0.005] | sum_money", json!(null)),
            num("0.31")
        );
        assert_eq!(eval("123.45 | kopecks", json!(null)), num("12345"));
        assert_eq!(eval("12345 | rubles", json!(null)), num("123.45"));
        assert_eq!(eval("7.9 | dfloor", json!(null)), num("7"));
        assert_eq!(eval("\"12.5\" | decimal", json!(null)), num("12.5"));
        assert!(
            Expr::compile("1 | ddiv(0)")
                .unwrap()
                .eval(&json!(null))
                .is_err()
        );
        assert!(
            Expr::compile("\"x\" | kopecks")
                .unwrap()
                .eval(&json!(null))
                .is_err()
        );
    }

    #[test]
    fn allocation_keeps_the_position_and_splits_serials() {
        let positions = json!([
            {"assortment": {"meta": {"id": "a"}}, "quantity": 3, "price": 10,
             "sn": [{"name": "1"}, {"name": "2"}, {"name": "3"}]}
        ]);
        let out = eval(". as $p | $p | allocate_discount(0.01)", positions);
        let lines = out.as_array().unwrap();
        assert_eq!(lines.len(), 2, "{out}");
        let total: rust_decimal::Decimal = lines
            .iter()
            .map(|l| {
                let q: rust_decimal::Decimal = l["quantity"].to_string().parse().unwrap();
                let p: rust_decimal::Decimal = l["discountedPrice"].to_string().parse().unwrap();
                q * p
            })
            .sum();
        assert_eq!(total.to_string(), "29.99");
        for line in lines {
            assert_eq!(line["assortment"]["meta"]["id"], "a");
            assert_eq!(
                line["sn"].as_array().unwrap().len().to_string(),
                line["quantity"].to_string()
            );
        }
    }

    #[test]
    fn dates_and_nulls() {
        assert_eq!(
            eval("ms_to_iso(\"+03:00\")", json!("2023-07-14 00:00:00")),
            json!("2023-07-14T00:00:00+03:00")
        );
        assert_eq!(
            eval("iso_to_ms", json!("2025-07-14T00:00:00Z")),
            json!("2025-07-14 00:00:00")
        );
        assert_eq!(
            eval("date_to_ms", json!("1985-03-14")),
            json!("1985-03-14 00:00:00")
        );
        assert_eq!(
            eval("drop_nulls", json!({"a": null, "b": {"c": null, "d": 1}})),
            json!({"b": {"d": 1}})
        );
    }
}
