//! Money: rubles and kopecks rounded the commercial way, exact sums, and decimals read from a
//! JSON number's exact text or a numeric string, never through `f64`.

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use super::BuiltinError;

const KOPECKS_PER_RUBLE: Decimal = Decimal::ONE_HUNDRED;

/// Rounds rubles to kopecks (2 decimals), **half away from zero** — commercial rounding, as
/// cash registers and UDS ("round half up" on non-negative sums) do: `1.005 → 1.01`,
/// `1.004 → 1.00`, `-1.005 → -1.01`. Not banker's rounding.
///
/// A value that already has 2 decimals or fewer is returned unchanged (scale included:
/// `1.5` stays `1.5`); compare results as numbers, not as text.
pub fn round_money(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Rubles → kopecks: `round_money(rubles) × 100`, as a whole number with scale 0 (so it is
/// written `150`, not `150.00`). `1.5 → 150`, `0.005 → 1`.
///
/// # Panics
/// Only if `|rubles|` is above `Decimal::MAX / 100` (≈ 7.9e26), far beyond any real sum.
pub fn kopecks(rubles: Decimal) -> Decimal {
    (round_money(rubles) * KOPECKS_PER_RUBLE).trunc()
}

/// [`kopecks`] for the mapping language: `None` where it would overflow (a hostile amount in a
/// request or a vendor's answer, never a real sum), rather than a panic.
pub fn checked_kopecks(rubles: Decimal) -> Option<Decimal> {
    round_money(rubles)
        .checked_mul(KOPECKS_PER_RUBLE)
        .map(|k| k.trunc())
}

/// Kopecks → rubles: `kopecks / 100`, exact (`12345 → 123.45`); fractional kopecks are kept, not
/// rounded (`0.5 → 0.005`).
pub fn rubles(kopecks: Decimal) -> Decimal {
    kopecks / KOPECKS_PER_RUBLE
}

/// The exact sum of `values`, rounded once at the end with [`round_money`] (rounding each term
/// first could be off by a kopeck per term).
///
/// # Panics
/// Only if the sum exceeds the range of `Decimal` (≈ 7.9e28).
pub fn sum_money(values: &[Decimal]) -> Decimal {
    round_money(values.iter().sum())
}

/// [`sum_money`] for the mapping language: `None` where the sum leaves `Decimal`'s range.
pub fn checked_sum_money(values: &[Decimal]) -> Option<Decimal> {
    values
        .iter()
        .try_fold(Decimal::ZERO, |sum, x| sum.checked_add(*x))
        .map(round_money)
}

/// A decimal from a JSON number (its exact text: `0.3` is 0.3, not 0.299…) or from a string
/// holding a number in JSON syntax (`"12.50"`, `"-1"`, `"1.5e2"`) — some vendors send amounts
/// as strings. Anything else is an error: `null`, booleans, arrays, objects, `""`, `"12,5"`,
/// `" 1"`, `"1_000"`, numbers beyond `Decimal`'s range or precision.
pub fn decimal_of(v: &Value) -> Result<Decimal, BuiltinError> {
    let not_a_decimal = |found: String| BuiltinError::NotADecimal { found };
    match v {
        Value::Number(number) => parse_decimal(number.as_str()).ok_or_else(|| {
            not_a_decimal(format!(
                "number {} (out of the exact decimal range)",
                number.as_str()
            ))
        }),
        Value::String(text) if is_json_number(text) => parse_decimal(text).ok_or_else(|| {
            not_a_decimal(format!("string {text:?} (out of the exact decimal range)"))
        }),
        Value::String(text) => {
            let shown: String = text.chars().take(40).collect();
            let ellipsis = if shown.len() < text.len() { "…" } else { "" };
            Err(not_a_decimal(format!("string {shown:?}{ellipsis}")))
        }
        Value::Null => Err(not_a_decimal("null".into())),
        Value::Bool(b) => Err(not_a_decimal(format!("boolean {b}"))),
        Value::Array(_) => Err(not_a_decimal("an array".into())),
        Value::Object(_) => Err(not_a_decimal("an object".into())),
    }
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

/// `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?` (JSON's number syntax, leading zeros allowed).
fn is_json_number(text: &str) -> bool {
    fn digits(bytes: &[u8], mut i: usize) -> usize {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    }
    let bytes = text.as_bytes();
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let start = i;
    i = digits(bytes, i);
    if i == start {
        return false;
    }
    if bytes.get(i) == Some(&b'.') {
        let start = i + 1;
        i = digits(bytes, start);
        if i == start {
            return false;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        i = digits(bytes, start);
        if i == start {
            return false;
        }
    }
    i == bytes.len()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// Amounts beyond `Decimal`'s range (hostile input) are `None` for the mapping language,
    /// where the plain functions panic.
    #[test]
    fn checked_money_is_none_beyond_decimal() {
        assert_eq!(checked_kopecks(d("123.455")), Some(d("12346")));
        assert_eq!(checked_kopecks(Decimal::MAX), None);
        assert_eq!(
            checked_sum_money(&[d("0.005"), d("0.005")]),
            Some(d("0.01"))
        );
        assert_eq!(checked_sum_money(&[Decimal::MAX, Decimal::MAX]), None);
    }

    #[test]
    fn round_money_is_half_away_from_zero() {
        assert_eq!(round_money(d("1.005")), d("1.01"));
        assert_eq!(round_money(d("1.004")), d("1.00"));
        assert_eq!(round_money(d("-1.005")), d("-1.01"));
        // Banker's rounding would give 0.12 and 2.66.
        assert_eq!(round_money(d("0.125")), d("0.13"));
        assert_eq!(round_money(d("2.665")), d("2.67"));
        assert_eq!(round_money(d("15240.6432")), d("15240.64"));
        assert_eq!(round_money(d("1.5")).to_string(), "1.5");
        assert_eq!(round_money(d("0")), Decimal::ZERO);
    }

    #[test]
    fn kopecks_and_rubles_convert_exactly() {
        assert_eq!(kopecks(d("123.45")), d("12345"));
        assert_eq!(kopecks(d("1.5")).to_string(), "150");
        assert_eq!(kopecks(d("1.50")).to_string(), "150");
        assert_eq!(kopecks(d("0.005")), d("1"));
        assert_eq!(kopecks(d("0.0049")), d("0"));
        assert_eq!(kopecks(d("-1.5")), d("-150"));
        assert_eq!(rubles(d("12345")), d("123.45"));
        assert_eq!(rubles(d("283100")), d("2831"));
        assert_eq!(rubles(d("1")), d("0.01"));
        assert_eq!(rubles(d("0.5")), d("0.005"));
    }

    #[test]
    fn sum_money_rounds_once_at_the_end() {
        assert_eq!(sum_money(&[d("0.1"), d("0.2")]), d("0.3"));
        // Rounding each term first would give 0.02.
        assert_eq!(sum_money(&[d("0.005"), d("0.004")]), d("0.01"));
        assert_eq!(sum_money(&[d("0.004"), d("0.004")]), d("0.01"));
        assert_eq!(sum_money(&[]), Decimal::ZERO);
        assert_eq!(sum_money(&[d("10.00"), d("-2.50")]), d("7.5"));
    }

    proptest! {
        #[test]
        fn kopecks_of_rubles_round_trips(k in -10_000_000_000i64..10_000_000_000) {
            prop_assert_eq!(kopecks(rubles(Decimal::from(k))), Decimal::from(k));
        }

        #[test]
        fn round_money_is_idempotent_and_within_half_a_kopeck(m in any::<i64>(), scale in 0u32..8) {
            let x = Decimal::new(m, scale);
            let r = round_money(x);
            prop_assert_eq!(round_money(r), r);
            prop_assert!((r - x).abs() <= d("0.005"));
        }
    }

    #[test]
    fn decimal_of_reads_exact_numbers_and_numeric_strings() {
        let number = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        assert_eq!(decimal_of(&number("0.3")).unwrap(), d("0.1") + d("0.2"));
        assert_eq!(
            decimal_of(&number("1107.5000000000018")).unwrap(),
            d("1107.5000000000018")
        );
        assert_eq!(decimal_of(&number("1.5e2")).unwrap(), d("150"));
        assert_eq!(decimal_of(&number("-12")).unwrap(), d("-12"));
        assert_eq!(decimal_of(&json!("12.50")).unwrap().to_string(), "12.50");
        assert_eq!(decimal_of(&json!("-0.01")).unwrap(), d("-0.01"));
        assert_eq!(decimal_of(&json!("1E+2")).unwrap(), d("100"));
        assert_eq!(decimal_of(&json!("007")).unwrap(), d("7"));
    }

    #[test]
    fn decimal_of_refuses_everything_else() {
        let found = |v: Value| match decimal_of(&v) {
            Err(BuiltinError::NotADecimal { found }) => found,
            other => panic!("{v} gave {other:?}"),
        };
        assert_eq!(found(Value::Null), "null");
        assert_eq!(found(json!(true)), "boolean true");
        assert_eq!(found(json!([1])), "an array");
        assert_eq!(found(json!({"a": 1})), "an object");
        for bad in [
            "", "12,5", " 1", "1 ", "1_000", "+1", ".5", "5.", "1e", "NaN", "inf", "0x10", "--1",
        ] {
            assert!(found(json!(bad)).starts_with("string"), "{bad:?}");
        }
        assert!(found(json!("1e400")).contains("out of the exact decimal range"));
        let big: Value = serde_json::from_str("1e400").unwrap();
        let big = found(big);
        assert!(big.starts_with("number 1e") && big.ends_with("(out of the exact decimal range)"));
        let long = "x".repeat(100);
        assert_eq!(found(json!(long)), format!("string {:?}…", "x".repeat(40)));
        assert_eq!(
            decimal_of(&json!("12,5")).unwrap_err().to_string(),
            "decimal_of: expected a JSON number or a numeric string, got string \"12,5\""
        );
    }
}
