//! The built-ins ([`crate::builtins::BUILTINS`]) registered with jaq: each row's [`Signature`]
//! adapted once from jaq's values to the function the row carries. Money never goes through
//! jq's floating-point arithmetic: numbers are read from their exact decimal text, and written
//! back the same way.

use jaq_core::native::{Fun, bome, run, unary, v};
use jaq_core::{Cv, DataT, RunPtr, ValR, ValXs};
use jaq_json::Val;
use rust_decimal::Decimal;

use crate::builtins::{self, BUILTINS, Builtin, BuiltinError, Signature};
use crate::jaq_value::{from_val, to_val};

/// jaq's natives are plain function pointers, with no room for data: the pointer of row `I` of
/// the table is [`row`] made for that `I`. (The array in [`funs`] has the table's length, so a
/// row added without its index there does not compile.)
macro_rules! rows {
    ($d:ident: $($i:literal)*) => {
        [$(row::<$d, $i> as RunPtr<$d>),*]
    };
}

/// Every built-in as a jaq native.
pub fn funs<D: for<'a> DataT<V<'a> = Val>>() -> impl Iterator<Item = Fun<D>> {
    let rows: [RunPtr<D>; BUILTINS.len()] = rows![
        D: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22
    ];
    BUILTINS
        .iter()
        .zip(rows)
        .map(|(builtin, row)| run::<D>((builtin.name, v(builtin.signature.arity()), row)))
}

fn row<D: for<'a> DataT<V<'a> = Val>, const I: usize>(cv: Cv<'_, D>) -> ValXs<'_, Val> {
    call(&BUILTINS[I], cv)
}

/// `builtin` called on jaq's input (and argument, bound as a variable).
fn call<'a, D: for<'b> DataT<V<'b> = Val>>(builtin: &Builtin, cv: Cv<'a, D>) -> ValXs<'a, Val> {
    let name = builtin.name;
    match builtin.signature {
        Signature::Text(f) => bome(text(&cv.1).and_then(|t| f(&t).map(string).map_err(fail))),
        Signature::TextText(f) => unary(cv, move |input, arg| {
            f(&text(&input)?, &text(&arg)?).map(string).map_err(fail)
        }),
        Signature::Number(f) => bome(decimal(&cv.1).and_then(|d| {
            f(d).ok_or_else(|| fail(format!("{d} is out of range")))
                .and_then(number)
        })),
        Signature::NumberNumber(f) => unary(cv, move |a, b| {
            let (a, b) = (decimal(&a)?, decimal(&b)?);
            f(a, b)
                .ok_or_else(|| fail(format!("decimal arithmetic failed on {a} and {b}")))
                .and_then(number)
        }),
        Signature::Round(f) => unary(cv, move |x, places| {
            let places = u32::try_from(decimal(&places)?.trunc().mantissa())
                .ok()
                .filter(|p| *p <= 10)
                .ok_or_else(|| fail(format!("{name}: places must be 0–10")))?;
            number(f(decimal(&x)?, places))
        }),
        Signature::Numbers(f) => bome(decimals(name, "amounts", &cv.1).and_then(|xs| {
            f(&xs)
                .ok_or_else(|| fail(format!("{name}: the sum is out of range")))
                .and_then(number)
        })),
        Signature::Json(f) => bome(from_val(&cv.1).map(|v| to_val(&f(v))).map_err(fail)),
        Signature::Positions(f) => unary(cv, move |positions, total| {
            let total = decimal(&total)?;
            priced(name, &positions, |inputs| f(inputs, total))
        }),
        Signature::PositionsEach(f) => unary(cv, move |positions, discounts| {
            let discounts = decimals(name, "discounts", &discounts)?;
            priced(name, &positions, |inputs| f(inputs, &discounts))
        }),
        Signature::Shares(f) => unary(cv, move |weights, total| {
            let shares =
                f(&decimals(name, "weights", &weights)?, decimal(&total)?).map_err(fail)?;
            shares.into_iter().map(number).collect()
        }),
    }
}

/// Positions as jaq has them, priced by `price` (`name`'s).
fn priced(
    name: &str,
    positions: &Val,
    price: impl FnOnce(&[builtins::AllocInput]) -> Result<Vec<builtins::AllocLine>, BuiltinError>,
) -> ValR<Val> {
    let positions = from_val(positions).map_err(fail)?;
    builtins::priced_json(name, positions, price)
        .map(|v| to_val(&v))
        .map_err(fail)
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

/// An array of numbers: `name`'s input or argument, `what` (`"weights"`) in errors.
fn decimals(name: &str, what: &str, v: &Val) -> Result<Vec<Decimal>, jaq_core::Error<Val>> {
    let Val::Arr(items) = v else {
        return Err(fail(format!(
            "{name}: expected an array of {what}, got {v}"
        )));
    };
    let read = |(i, item)| {
        let value = from_val(item).map_err(fail)?;
        builtins::decimal_of(&value).map_err(|e| fail(format!("{name}: {what}[{i}]: {e}")))
    };
    items.iter().enumerate().map(read).collect()
}

fn number(d: Decimal) -> ValR<Val> {
    jaq_json::read::parse_single_num(d.normalize().to_string().as_bytes())
        .map(Val::Num)
        .ok_or_else(|| fail(format!("cannot represent {d}")))
}
