//! Built-in functions that mapping expressions call where jq is not safe enough (docs/design.md §3).
//!
//! All of them are pure: no I/O, no clock, no global state. Money is [`Decimal`] throughout and
//! JSON numbers are read from their exact text ([`decimal_of`]), never through `f64` — a jq
//! expression over floats put a real cart one kopeck off.
//!
//! Each built-in is declared once, in [`BUILTINS`] (after Vector's VRL): its name, what it takes
//! and gives ([`Signature`], which carries the implementation), a summary and examples. jaq's
//! registration (`natives.rs`) and the native path's compiler (`fast/compile.rs`) both read the
//! table, and a test runs every example through both (`expr/builtin_examples.rs`).
//!
//! By family: money ([`money`]: rounding, kopecks, sums, exact arithmetic, [`decimal_of`]),
//! [`allocate`] (`allocate_discount`, `allocate_lines`, `prorate`), [`phones`], [`ids`] (`uuid_v5`), [`dates`] and [`json`]
//! (`drop_nulls`). Every failure is a [`BuiltinError`] whose message names the function, the
//! argument and what was wrong with it.

pub mod allocate;
pub mod dates;
pub mod ids;
pub mod json;
pub mod money;
pub mod phones;

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

pub use allocate::{
    AllocInput, AllocLine, allocate_discount, allocate_lines, priced_json, prorate,
};
pub use dates::{date_to_ms, iso_to_ms, ms_to_iso};
pub use ids::{UUID_NAMESPACE, uuid_v5};
pub use json::drop_nulls;
pub use money::{
    checked_kopecks, checked_sum_money, decimal_of, kopecks, round_money, rubles, sum_money,
};
pub use phones::{phone_7, phone_digits, phone_e164};

/// What was wrong with which argument of a built-in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuiltinError {
    #[error("allocate_discount: total_discount must not be negative, got {discount}")]
    NegativeDiscount { discount: Decimal },
    #[error(
        "allocate_discount: total_discount {discount} is not a whole number of kopecks \
         (at most 2 decimals)"
    )]
    DiscountNotKopecks { discount: Decimal },
    #[error("allocate_discount: total_discount {discount} is above the receipt total {total}")]
    DiscountAboveTotal { discount: Decimal, total: Decimal },
    #[error("{function}: positions[{index}].quantity must be above zero, got {quantity}")]
    NonPositiveQuantity {
        function: &'static str,
        index: usize,
        quantity: Decimal,
    },
    #[error("{function}: positions[{index}].price must not be negative, got {price}")]
    NegativePrice {
        function: &'static str,
        index: usize,
        price: Decimal,
    },
    #[error(
        "{function}: positions[{index}].price {price} is not a whole number of kopecks \
         (at most 2 decimals)"
    )]
    PriceNotKopecks {
        function: &'static str,
        index: usize,
        price: Decimal,
    },
    #[error("{function}: the numbers are too large to compute exactly")]
    Overflow { function: &'static str },
    #[error(
        "allocate_lines: {discounts} discounts for {positions} positions; expected one per position"
    )]
    DiscountCount { positions: usize, discounts: usize },
    #[error("allocate_lines: discounts[{index}] must not be negative, got {discount}")]
    NegativeLineDiscount { index: usize, discount: Decimal },
    #[error(
        "allocate_lines: discounts[{index}] {discount} is not a whole number of kopecks \
         (at most 2 decimals)"
    )]
    LineDiscountNotKopecks { index: usize, discount: Decimal },
    #[error(
        "allocate_lines: discounts[{index}] {discount} is above the amount of positions[{index}], \
         {amount}"
    )]
    LineDiscountAboveAmount {
        index: usize,
        discount: Decimal,
        amount: Decimal,
    },
    #[error("prorate: total must not be negative, got {total}")]
    NegativeProrateTotal { total: Decimal },
    #[error("prorate: total {total} is not a whole number of kopecks (at most 2 decimals)")]
    ProrateTotalNotKopecks { total: Decimal },
    #[error("prorate: weights[{index}] must not be negative, got {weight}")]
    NegativeWeight { index: usize, weight: Decimal },
    #[error("prorate: the weights add up to 0, so there is nothing to spread {total} by")]
    NoWeight { total: Decimal },
    /// The phone itself is not repeated: it is personal data and error messages get logged.
    #[error("{function}: the phone {reason}")]
    InvalidPhone {
        function: &'static str,
        reason: String,
    },
    #[error("{function}: {argument} {input:?} is not a valid date; expected {expected}")]
    InvalidDate {
        function: &'static str,
        argument: &'static str,
        input: String,
        expected: &'static str,
    },
    #[error("ms_to_iso: offset {input:?} is not a UTC offset like \"+03:00\", \"-0530\" or \"Z\"")]
    InvalidOffset { input: String },
    #[error("decimal_of: expected a JSON number or a numeric string, got {found}")]
    NotADecimal { found: String },
}

/// Positions priced (`allocate_discount`, `allocate_lines`): their lines, or what was wrong.
pub type Priced = Result<Vec<AllocLine>, BuiltinError>;

/// A built-in as mapping expressions see it.
pub struct Builtin {
    /// The jq name it is called by.
    pub name: &'static str,
    /// What it does, in one line.
    pub summary: &'static str,
    pub signature: Signature,
    /// Calls and what they give; every built-in has some, and the tests run each through
    /// both evaluators.
    pub examples: &'static [Example],
}

/// Printed as `name/arity`, which tells built-ins apart (the native path keys shared rule
/// operands by how their tree prints).
impl fmt::Debug for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.signature.arity())
    }
}

/// What a built-in takes and gives, with its implementation. Each kind is adapted once to
/// jaq's values (`natives.rs`) and once to the native path's (`fast/calls.rs`); a failure is
/// the built-in's error on the jaq path, where the native path leaves it to jaq.
#[derive(Clone, Copy)]
pub enum Signature {
    /// `text | f` → text.
    Text(fn(&str) -> Result<String, BuiltinError>),
    /// `text | f(text)` → text.
    TextText(fn(&str, &str) -> Result<String, BuiltinError>),
    /// `number | f` → number; `None`: out of range.
    Number(fn(Decimal) -> Option<Decimal>),
    /// `number | f(number)` → number; `None`: out of range, or no result (÷ 0).
    NumberNumber(fn(Decimal, Decimal) -> Option<Decimal>),
    /// `number | f(places)` → number, `places` a whole number from 0 to 10.
    Round(fn(Decimal, u32) -> Decimal),
    /// `[number, …] | f` → number; `None`: out of range.
    Numbers(fn(&[Decimal]) -> Option<Decimal>),
    /// `value | f` → value.
    Json(fn(Value) -> Value),
    /// `positions | f(total)` → lines: `allocate_discount`. The kinds over positions are their
    /// own because the native path builds the lines borrowing the positions; both paths read
    /// the positions and write the lines alike (`allocate::priced_json`, `fast/calls.rs`).
    Positions(fn(&[AllocInput], Decimal) -> Priced),
    /// `positions | f([discount, …])` → lines, one discount per position: `allocate_lines`.
    PositionsEach(fn(&[AllocInput], &[Decimal]) -> Priced),
    /// `[number, …] | f(number)` → `[number, …]`: `prorate`.
    Shares(fn(&[Decimal], Decimal) -> Result<Vec<Decimal>, BuiltinError>),
}

impl Signature {
    /// How many arguments a call passes.
    pub fn arity(&self) -> usize {
        match self {
            Signature::Text(_) | Signature::Number(_) | Signature::Numbers(_) => 0,
            Signature::Json(_) => 0,
            Signature::TextText(_)
            | Signature::NumberNumber(_)
            | Signature::Round(_)
            | Signature::Positions(_)
            | Signature::PositionsEach(_)
            | Signature::Shares(_) => 1,
        }
    }
}

/// One call of a built-in and what it gives.
pub struct Example {
    /// The input, as JSON.
    pub input: &'static str,
    /// The arguments, as JSON (each a jq literal).
    pub args: &'static [&'static str],
    /// What the call gives, as JSON; `None`: it fails.
    pub output: Option<&'static str>,
}

/// `input | f` gives `output`.
const fn gives(input: &'static str, output: &'static str) -> Example {
    Example {
        input,
        args: &[],
        output: Some(output),
    }
}

/// `input | f` fails.
const fn fails(input: &'static str) -> Example {
    Example {
        input,
        args: &[],
        output: None,
    }
}

/// `input | f(args…)` gives `output` (`None`: fails).
const fn called(
    input: &'static str,
    args: &'static [&'static str],
    output: Option<&'static str>,
) -> Example {
    Example {
        input,
        args,
        output,
    }
}

/// `dround`'s rounding: half away from zero, as cash registers round.
fn round_half_away(x: Decimal, places: u32) -> Decimal {
    x.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero)
}

/// Every built-in, once.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "phone_e164",
        summary: "a Russian phone as E.164, `+7` and 10 digits",
        signature: Signature::Text(phone_e164),
        examples: &[
            gives(r#""8 (555) 123-45-67""#, r#""+75551234567""#),
            gives(r#""955 123 45 67""#, r#""+79551234567""#),
            fails(r#""12""#),
            fails("75551234567"),
        ],
    },
    Builtin {
        name: "phone_digits",
        summary: "a Russian phone as 11 digits starting with 7",
        signature: Signature::Text(phone_digits),
        examples: &[
            gives(r#""+7 555 123 4567""#, r#""75551234567""#),
            fails(r#""+1 555 123 4567""#),
        ],
    },
    Builtin {
        name: "phone_7",
        summary: "Premium Bonus's phone form: 11 digits starting with 7, no `+`",
        signature: Signature::Text(phone_7),
        examples: &[
            gives(r#""+7 555 123 4567""#, r#""75551234567""#),
            gives(r#""8 555 123 45 67""#, r#""75551234567""#),
            fails(r#""phone""#),
        ],
    },
    Builtin {
        name: "uuid_v5",
        summary: "a stable GUID for any text (a vendor id that is not a GUID)",
        signature: Signature::Text(|name| Ok(uuid_v5(name))),
        examples: &[
            gives(r#""maxma:1""#, r#""78820e4b-3d63-5350-99bf-9dbcbea28c2f""#),
            fails("1"),
        ],
    },
    Builtin {
        name: "ms_to_iso",
        summary: "a MoySklad date-time as ISO-8601 at the given UTC offset",
        signature: Signature::TextText(ms_to_iso),
        examples: &[
            called(
                r#""2023-07-14 00:00:00""#,
                &[r#""+03:00""#],
                Some(r#""2023-07-14T00:00:00+03:00""#),
            ),
            called(
                r#""2023-07-14 10:30:00""#,
                &[r#""Z""#],
                Some(r#""2023-07-14T10:30:00+00:00""#),
            ),
            called(r#""2023-07-14 00:00:00""#, &[r#""3h""#], None),
            called(r#""14.07.2023""#, &[r#""+03:00""#], None),
        ],
    },
    Builtin {
        name: "iso_to_ms",
        summary: "an ISO-8601 date or date-time as MoySklad's, in UTC when it has a zone",
        signature: Signature::Text(iso_to_ms),
        examples: &[
            gives(r#""2025-07-14T00:00:00Z""#, r#""2025-07-14 00:00:00""#),
            gives(r#""2023-07-14T10:00:00+03:00""#, r#""2023-07-14 07:00:00""#),
            gives(r#""2023-07-14""#, r#""2023-07-14 00:00:00""#),
            fails(r#""14.07.2023""#),
        ],
    },
    Builtin {
        name: "date_to_ms",
        summary: "a calendar date (`DD.MM.YYYY` or `YYYY-MM-DD`) as a MoySklad date-time",
        signature: Signature::Text(date_to_ms),
        examples: &[
            gives(r#""1985-03-14""#, r#""1985-03-14 00:00:00""#),
            gives(r#""14.07.2023""#, r#""2023-07-14 00:00:00""#),
            fails(r#""2023/07/14""#),
        ],
    },
    Builtin {
        name: "kopecks",
        summary: "rubles to kopecks, rounded half away from zero",
        signature: Signature::Number(checked_kopecks),
        examples: &[
            gives("123.45", "12345"),
            gives("1.005", "101"),
            gives(r#""2.5""#, "250"),
            fails(r#""x""#),
        ],
    },
    Builtin {
        name: "rubles",
        summary: "kopecks to rubles, exact",
        signature: Signature::Number(|kopecks| Some(rubles(kopecks))),
        examples: &[gives("12345", "123.45"), fails("null")],
    },
    Builtin {
        name: "round_money",
        summary: "rubles rounded to kopecks, half away from zero",
        signature: Signature::Number(|x| Some(round_money(x))),
        examples: &[
            gives("2.675", "2.68"),
            gives("-1.005", "-1.01"),
            gives("1.004", "1"),
        ],
    },
    Builtin {
        name: "dfloor",
        summary: "the largest whole number not above the number, exact",
        signature: Signature::Number(|x| Some(x.floor())),
        examples: &[gives("7.9", "7"), gives("-7.1", "-8")],
    },
    Builtin {
        name: "dceil",
        summary: "the smallest whole number not below the number, exact",
        signature: Signature::Number(|x| Some(x.ceil())),
        examples: &[gives("7.1", "8"), gives("-7.9", "-7")],
    },
    Builtin {
        name: "decimal",
        summary: "a number or a numeric string as an exact number",
        signature: Signature::Number(Some),
        examples: &[
            gives(r#""12.5""#, "12.5"),
            gives("1.50", "1.5"),
            fails(r#""12,5""#),
        ],
    },
    Builtin {
        name: "dround",
        summary: "rounded to `places` decimals (0–10), half away from zero",
        signature: Signature::Round(round_half_away),
        examples: &[
            called("2.675", &["2"], Some("2.68")),
            called("-2.5", &["0"], Some("-3")),
            called("2.675", &["11"], None),
        ],
    },
    Builtin {
        name: "dadd",
        summary: "exact decimal addition",
        signature: Signature::NumberNumber(Decimal::checked_add),
        examples: &[
            called("0.1", &["0.2"], Some("0.3")),
            called("1", &[r#""x""#], None),
        ],
    },
    Builtin {
        name: "dsub",
        summary: "exact decimal subtraction",
        signature: Signature::NumberNumber(Decimal::checked_sub),
        examples: &[called("18.850", &["0.35"], Some("18.5"))],
    },
    Builtin {
        name: "dmul",
        summary: "exact decimal multiplication",
        signature: Signature::NumberNumber(Decimal::checked_mul),
        // In binary floating point this product is 15240.643199999999…
        examples: &[called("123.456", &["123.45"], Some("15240.6432"))],
    },
    Builtin {
        name: "ddiv",
        summary: "exact decimal division",
        signature: Signature::NumberNumber(Decimal::checked_div),
        examples: &[called("10", &["4"], Some("2.5")), called("1", &["0"], None)],
    },
    Builtin {
        name: "sum_money",
        summary: "the exact sum of an array of amounts, rounded once to kopecks",
        signature: Signature::Numbers(checked_sum_money),
        examples: &[
            gives("[0.1, 0.2, 0.005]", "0.31"),
            gives("[]", "0"),
            fails("5"),
            fails(r#"[1, "a"]"#),
        ],
    },
    Builtin {
        name: "drop_nulls",
        summary: "the value without the `null` members of its objects, at every depth",
        signature: Signature::Json(drop_nulls),
        examples: &[
            gives(
                r#"{"a": null, "b": {"c": null, "d": 1}}"#,
                r#"{"b": {"d": 1}}"#,
            ),
            gives(r#"[null, {"a": null}]"#, r#"[null, {}]"#),
        ],
    },
    Builtin {
        name: "allocate_discount",
        summary: "a receipt discount spread over positions to the kopeck, splitting one where needed",
        signature: Signature::Positions(allocate_discount),
        examples: &[
            called(
                r#"[{"id": "a", "quantity": 2, "price": 50}, {"id": "b", "quantity": 1, "price": 100}]"#,
                &["20"],
                Some(
                    r#"[{"id": "a", "quantity": 2, "price": 50, "discountedPrice": 45, "discountPercent": 10},
                        {"id": "b", "quantity": 1, "price": 100, "discountedPrice": 90, "discountPercent": 10}]"#,
                ),
            ),
            // A negative total (a string: a literal `-1` is jq arithmetic, outside the native subset).
            called(r#"[{"quantity": 1, "price": 10}]"#, &[r#""-1""#], None),
            called(r#"[{"price": 10}]"#, &["1"], None),
        ],
    },
    Builtin {
        name: "allocate_lines",
        summary: "one discount per position taken off that position to the kopeck, splitting it where needed",
        signature: Signature::PositionsEach(allocate_lines),
        examples: &[
            // 30.00 − 1.00 = 29.00 over 3 units: 2 at 9.67 and 1 at 9.66; 5.00 − 0.50 at 4.50.
            called(
                r#"[{"id": "a", "quantity": 3, "price": 10}, {"id": "b", "quantity": 1, "price": 5}]"#,
                &["[1, 0.5]"],
                Some(
                    r#"[{"id": "a", "quantity": 2, "price": 10, "discountedPrice": 9.67, "discountPercent": 3.3},
                        {"id": "a", "quantity": 1, "price": 10, "discountedPrice": 9.66, "discountPercent": 3.4},
                        {"id": "b", "quantity": 1, "price": 5, "discountedPrice": 4.5, "discountPercent": 10}]"#,
                ),
            ),
            // A discount above its position's amount; not one discount per position.
            called(r#"[{"quantity": 1, "price": 10}]"#, &["[10.01]"], None),
            called(r#"[{"quantity": 1, "price": 10}]"#, &["[1, 0]"], None),
        ],
    },
    Builtin {
        name: "prorate",
        summary: "an amount split over weights to the kopeck, the shares adding up to it exactly",
        signature: Signature::Shares(prorate),
        examples: &[
            called("[100, 200, 0]", &["10"], Some("[3.33, 6.67, 0]")),
            // Equal remainders: the earlier weight takes the kopeck.
            called("[1, 1, 1]", &["0.02"], Some("[0.01, 0.01, 0]")),
            called("[1.5, 0.5]", &["1"], Some("[0.75, 0.25]")),
            called("[]", &["0"], Some("[]")),
            called("[1, -1]", &["1"], None),
            called("[0, 0]", &["1"], None),
            called("[1]", &["0.001"], None),
        ],
    },
];

/// The built-in called `name` with `arity` arguments, if there is one.
pub fn find(name: &str, arity: usize) -> Option<&'static Builtin> {
    BUILTINS
        .iter()
        .find(|b| b.name == name && b.signature.arity() == arity)
}
