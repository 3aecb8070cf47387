//! Money as the emulators count it: `rust_decimal` rubles (or points) with two decimals, and
//! whole kopecks where an amount is split. Every vendor writes money with exactly two decimals.

use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

/// The largest amount accepted (10¹²): far above any receipt, and low enough that every
/// product in the arithmetic fits (kopecks in an `i128`, rubles in a `Decimal`).
pub(crate) fn max_money() -> Decimal {
    Decimal::from(1_000_000_000_000_i64)
}

/// The largest quantity accepted (10⁹), so sums of quantities cannot overflow.
pub(crate) fn max_quantity() -> Decimal {
    Decimal::from(1_000_000_000_i64)
}

/// To the kopeck, half away from zero.
pub(crate) fn round_money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Down to the kopeck.
pub(crate) fn floor_money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::ToNegativeInfinity)
}

/// Money with exactly two decimals, as text (`150.00`; never `-0.00`).
pub(crate) fn money_text(d: Decimal) -> String {
    let mut d = round_money(d);
    if d.is_zero() {
        d = Decimal::ZERO;
    }
    d.rescale(2);
    d.to_string()
}

/// Money as a JSON number with exactly two decimals (`150.00`).
pub(crate) fn money(d: Decimal) -> Value {
    serde_json::Number::from_str(&money_text(d)).map_or(Value::Null, Value::Number)
}

pub(crate) fn to_kopecks(d: Decimal) -> Option<i128> {
    d.checked_mul(Decimal::ONE_HUNDRED)?.trunc().to_i128()
}

pub(crate) fn from_kopecks(k: i128) -> Option<Decimal> {
    Decimal::try_from_i128_with_scale(k, 2).ok()
}

pub(crate) fn checked_sum(mut values: impl Iterator<Item = i128>) -> Option<i128> {
    values.try_fold(0i128, i128::checked_add)
}

/// Splits `total` whole units over `weights` (all ≥ 0) in proportion, by largest remainder
/// with ties going to the earlier weight: the parts add up to exactly `total`, each is the
/// floor or the ceiling of its exact share, and a zero weight gets nothing. `None` on overflow.
pub(crate) fn allocate(total: i128, weights: &[i128]) -> Option<Vec<i128>> {
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

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn money_is_written_with_two_decimals() {
        assert_eq!(money(d("150")).to_string(), "150.00");
        assert_eq!(money(d("0.005")).to_string(), "0.01");
        assert_eq!(money(d("-0")).to_string(), "0.00");
        assert_eq!(money(d("-0.001")).to_string(), "0.00");
        assert_eq!(money(d("33.333")).to_string(), "33.33");
        assert_eq!(money(d("-47.5")).to_string(), "-47.50");
        assert_eq!(money(d("-200")).to_string(), "-200.00");
        assert_eq!(floor_money(d("99.999")), d("99.99"));
        assert_eq!(floor_money(d("216.665")), d("216.66"));
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
    }
}
