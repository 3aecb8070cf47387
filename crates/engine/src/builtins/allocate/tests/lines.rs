//! `allocate_lines` (one discount per position) and `prorate` (an amount over weights).

use super::*;

fn ds(texts: &[&str]) -> Vec<Decimal> {
    texts.iter().map(|t| d(t)).collect()
}

/// Σ over a position's lines of round_money(discounted_price × quantity), kopecks, per position.
fn line_totals(count: usize, lines: &[AllocLine]) -> Vec<i128> {
    let mut totals = vec![0; count];
    for l in lines {
        totals[l.source] += as_kopecks(round_money(l.discounted_price * l.quantity));
    }
    totals
}

fn amount_of(p: &AllocInput) -> i128 {
    as_kopecks(round_money(p.price * p.quantity))
}

#[test]
fn each_position_loses_exactly_its_own_discount() {
    // 30.00 − 1.00 = 29.00 over 3 units: 2 at 9.67, 1 at 9.66 (serials divided 2 and 1);
    // 5.00 − 0.50 = 4.50; 0.5 kg × 100.00 = 50.00 − 0.01 = 49.99 at 99.97 (49.985 → 49.99).
    let cart = [
        AllocInput {
            serials: 3,
            ..pos("3", "10.00")
        },
        pos("1", "5.00"),
        pos("0.5", "100.00"),
    ];
    let lines = allocate_lines(&cart, &ds(&["1.00", "0.50", "0.01"])).unwrap();
    assert_eq!(
        summary(&lines),
        vec![
            row(0, "2", "9.67", "3.30"),
            row(0, "1", "9.66", "3.40"),
            row(1, "1", "4.50", "10.00"),
            row(2, "0.5", "99.97", "0.03"),
        ]
    );
    assert_eq!((lines[0].sn.clone(), lines[1].sn.clone()), (0..2, 2..3));
    assert_eq!(line_totals(3, &lines), vec![2900, 450, 4999]);
}

#[test]
fn no_kopeck_moves_between_positions() {
    // allocate_discount of the same 1.00 in total would spread it by amount (0.50 each);
    // allocate_lines keeps the vendor's split.
    let cart = [pos("1", "10.00"), pos("1", "10.00")];
    let lines = allocate_lines(&cart, &ds(&["1.00", "0"])).unwrap();
    assert_eq!(
        summary(&lines),
        vec![row(0, "1", "9.00", "10.00"), row(1, "1", "10.00", "0.00")]
    );
}

#[test]
fn a_weighed_position_keeps_its_miss() {
    // 1.5 kg × 100.00 less 0.01: the reachable totals are 149.99 (99.99 → 149.985) and
    // 150.00, so 149.99 — exact here. Less 0.02: 149.98 is unreachable (99.98 → 149.97,
    // 99.99 → 149.99; a tie takes the upper), and the whole position beside it is not asked to
    // make up the kopeck, as allocate_discount would.
    let cart = [pos("1.5", "100.00"), pos("1", "10.00")];
    let lines = allocate_lines(&cart, &ds(&["0.01", "0"])).unwrap();
    assert_eq!(line_totals(2, &lines), vec![14999, 1000]);
    let lines = allocate_lines(&cart, &ds(&["0.02", "0"])).unwrap();
    assert_eq!(line_totals(2, &lines), vec![14999, 1000]);
    assert_eq!(
        summary(&lines),
        vec![row(0, "1.5", "99.99", "0.01"), row(1, "1", "10.00", "0.00")]
    );
}

#[test]
fn line_allocation_errors_name_the_argument() {
    let cart = [pos("1", "10.00"), pos("2", "5.00")];
    let message = |discounts: &[&str]| allocate_lines(&cart, &ds(discounts)).unwrap_err();
    assert_eq!(
        message(&["1"]).to_string(),
        "allocate_lines: 1 discounts for 2 positions; expected one per position"
    );
    assert_eq!(
        message(&["1", "-0.01"]).to_string(),
        "allocate_lines: discounts[1] must not be negative, got -0.01"
    );
    assert_eq!(
        message(&["0.005", "0"]).to_string(),
        "allocate_lines: discounts[0] 0.005 is not a whole number of kopecks (at most 2 decimals)"
    );
    assert_eq!(
        message(&["0", "10.01"]),
        BuiltinError::LineDiscountAboveAmount {
            index: 1,
            discount: d("10.01"),
            amount: d("10.00")
        }
    );
    assert_eq!(
        message(&["0", "10.01"]).to_string(),
        "allocate_lines: discounts[1] 10.01 is above the amount of positions[1], 10.00"
    );
    // The whole amount is fine: the position is priced at 0.
    assert!(allocate_lines(&cart, &ds(&["10.00", "10"])).is_ok());
    let err = allocate_lines(&[pos("1", "1"), pos("0", "1")], &ds(&["0", "0"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "allocate_lines: positions[1].quantity must be above zero, got 0"
    );
    let err = allocate_lines(&[pos("1", "1.001")], &ds(&["0"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "allocate_lines: positions[0].price 1.001 is not a whole number of kopecks (at most 2 decimals)"
    );
    assert_eq!(allocate_lines(&[], &[]).unwrap(), vec![]);
}

#[test]
fn prorate_splits_by_largest_remainder() {
    // 10.00 by 100 : 200 : 0 = 3.333… : 6.666… : 0 → 3.33 and 6.66, the kopeck left to the
    // larger remainder.
    assert_eq!(
        prorate(&ds(&["100", "200", "0"]), d("10")).unwrap(),
        ds(&["3.33", "6.67", "0"])
    );
    // Equal remainders: the earlier weights take the kopecks.
    assert_eq!(
        prorate(&ds(&["1", "1", "1"]), d("0.05")).unwrap(),
        ds(&["0.02", "0.02", "0.01"])
    );
    // Weights of any scale, compared exactly: 0.001 : 1.5.
    assert_eq!(
        prorate(&ds(&["0.001", "1.5"]), d("15.01")).unwrap(),
        ds(&["0.01", "15.00"])
    );
    // A zero weight gets nothing even when kopecks are left over.
    assert_eq!(
        prorate(&ds(&["0", "1", "0", "1"]), d("0.01")).unwrap(),
        ds(&["0", "0.01", "0", "0"])
    );
    assert_eq!(prorate(&ds(&["0", "0"]), d("0")).unwrap(), ds(&["0", "0"]));
    assert_eq!(prorate(&[], d("0")).unwrap(), vec![]);
}

#[test]
fn prorate_errors_name_the_argument() {
    let message =
        |weights: &[&str], total: &str| prorate(&ds(weights), d(total)).unwrap_err().to_string();
    assert_eq!(
        message(&["1"], "-0.01"),
        "prorate: total must not be negative, got -0.01"
    );
    assert_eq!(
        message(&["1"], "1.001"),
        "prorate: total 1.001 is not a whole number of kopecks (at most 2 decimals)"
    );
    assert_eq!(
        message(&["1", "-2"], "1"),
        "prorate: weights[1] must not be negative, got -2"
    );
    assert_eq!(
        message(&["0", "0"], "0.01"),
        "prorate: the weights add up to 0, so there is nothing to spread 0.01 by"
    );
    assert_eq!(
        message(&[], "1"),
        "prorate: the weights add up to 0, so there is nothing to spread 1 by"
    );
    assert_eq!(
        prorate(
            &ds(&[
                "79228162514264337593543950335",
                "0.0000000000000000000000000001"
            ]),
            d("1")
        )
        .unwrap_err(),
        BuiltinError::Overflow {
            function: "prorate"
        }
    );
}

/// Positions (whole, below one unit, or — with `weighed` — fractional above one) with one
/// discount each, from 0 to the position's amount.
fn cart_with_line_discounts(
    weighed: bool,
) -> impl Strategy<Value = (Vec<AllocInput>, Vec<Decimal>)> {
    let quantity = if weighed {
        prop_oneof![
            (1i64..=12).prop_map(|n| n * 1000),
            1i64..1000,
            1001i64..=20_000,
        ]
        .boxed()
    } else {
        prop_oneof![(1i64..=12).prop_map(|n| n * 1000), 1i64..1000].boxed()
    };
    let position = (
        quantity,
        prop_oneof![1 => Just(0i64), 9 => 1i64..=50_000],
        any::<bool>(),
    );
    prop::collection::vec(position, 0..8)
        .prop_flat_map(|rows| {
            let discounts: Vec<_> = rows
                .iter()
                .map(|&(q, p, _)| {
                    let amount = amount_kopecks(Decimal::new(q, 3), p);
                    prop_oneof![1 => Just(0), 1 => Just(amount), 8 => 0..=amount]
                })
                .collect();
            (Just(rows), discounts)
        })
        .prop_map(|(rows, discounts)| {
            let cart = rows
                .into_iter()
                .map(|(q, p, serials)| {
                    let quantity = Decimal::new(q, 3);
                    let whole = usize::try_from(q / 1000).unwrap();
                    AllocInput {
                        quantity,
                        price: Decimal::new(p, 2),
                        // One serial per unit where the quantity is whole, else one.
                        serials: usize::from(serials) * if q % 1000 == 0 { whole } else { 1 },
                    }
                })
                .collect();
            let discounts = discounts.into_iter().map(|k| Decimal::new(k, 2)).collect();
            (cart, discounts)
        })
}

/// Non-negative weights: zeros, kopeck amounts and quantities in thousandths.
fn weights() -> impl Strategy<Value = Vec<Decimal>> {
    let weight = prop_oneof![
        1 => Just(Decimal::ZERO),
        4 => (1i64..=1_000_000).prop_map(|k| Decimal::new(k, 2)),
        2 => (1i64..=50_000).prop_map(|t| Decimal::new(t, 3)),
        1 => (1i64..=5).prop_map(Decimal::from),
    ];
    prop::collection::vec(weight, 0..10)
}

proptest! {
    /// The lines are those of `[p] | allocate_discount(d)` per position (what the shipped
    /// mappings built with a loop before), and each position's line total is its amount less
    /// its discount: exactly for whole and sub-unit quantities, within ⌊⌈q⌉/2⌋ kopecks for
    /// fractional ones above one unit. Prices stay between 0 and the shelf price.
    #[test]
    fn each_line_is_priced_as_a_receipt_of_its_own(
        (cart, discounts) in cart_with_line_discounts(true)
    ) {
        let lines = allocate_lines(&cart, &discounts).unwrap();
        let total_discount: Decimal = discounts.iter().sum();
        check_structure(&cart, total_discount, &lines);

        let mut per_position = Vec::new();
        for (source, (p, &discount)) in cart.iter().zip(&discounts).enumerate() {
            let alone = allocate_discount(std::slice::from_ref(p), discount).unwrap();
            per_position.extend(alone.into_iter().map(|l| AllocLine { source, ..l }));
        }
        prop_assert_eq!(&lines, &per_position);

        let totals = line_totals(cart.len(), &lines);
        for ((p, &discount), total) in cart.iter().zip(&discounts).zip(totals) {
            let target = amount_of(p) - as_kopecks(discount);
            let q = p.quantity;
            let miss = if q.fract().is_zero() || q < Decimal::ONE {
                0
            } else {
                q.ceil().normalize().mantissa() / 2
            };
            prop_assert!((total - target).abs() <= miss, "{} vs {} for {:?}", total, target, p);
        }
    }

    /// Whole and sub-unit quantities only: Σ line totals == Σ amounts − Σ discounts exactly.
    #[test]
    fn whole_and_sub_unit_lines_add_up_exactly(
        (cart, discounts) in cart_with_line_discounts(false)
    ) {
        let lines = allocate_lines(&cart, &discounts).unwrap();
        let total_discount: Decimal = discounts.iter().sum();
        let (target, actual) = check_structure(&cart, total_discount, &lines);
        prop_assert_eq!(actual, target);
    }

    /// Σ shares == total; each share within a kopeck of total·w/Σw; a zero weight gets 0.
    #[test]
    fn prorate_is_exact(weights in weights(), total in 0i64..=10_000_000) {
        prop_assume!(total == 0 || weights.iter().any(|w| !w.is_zero()));
        let total = Decimal::new(total, 2);
        let shares = prorate(&weights, total).unwrap();
        prop_assert_eq!(shares.len(), weights.len());
        prop_assert_eq!(shares.iter().sum::<Decimal>(), total);
        let sum: Decimal = weights.iter().sum();
        for (share, weight) in shares.iter().zip(&weights) {
            prop_assert!(*share >= Decimal::ZERO && share.scale() <= 2);
            if weight.is_zero() {
                prop_assert!(share.is_zero());
            } else {
                // |share − total·w/Σw| < 0.01, without dividing.
                prop_assert!(
                    ((*share * sum) - total * weight).abs() < sum / Decimal::ONE_HUNDRED,
                    "{} of {} by {} / {}", share, total, weight, sum
                );
            }
        }
    }

    /// The same shares as `allocate_discount` gives positions: for whole and sub-unit
    /// quantities, `allocate_lines(prorate(amounts))` is `allocate_discount`.
    #[test]
    fn prorate_by_amount_then_allocate_lines_is_allocate_discount(
        (cart, discounts) in cart_with_line_discounts(false)
    ) {
        let amounts: Vec<Decimal> = cart.iter().map(|p| round_money(p.price * p.quantity)).collect();
        let total_discount: Decimal = discounts.iter().sum();
        let shares = prorate(&amounts, total_discount).unwrap();
        prop_assert_eq!(
            allocate_lines(&cart, &shares).unwrap(),
            allocate_discount(&cart, total_discount).unwrap()
        );
    }

    /// Line discounts plus a cart-level amount spread by what is left of each line: the
    /// combined discount never prices a position below 0, and with whole and sub-unit
    /// quantities the receipt is exact.
    #[test]
    fn a_cart_amount_on_top_of_line_discounts_fits(
        (cart, discounts) in cart_with_line_discounts(false),
        part in 0u32..=100,
    ) {
        let left: Vec<Decimal> = cart
            .iter()
            .zip(&discounts)
            .map(|(p, d)| round_money(p.price * p.quantity) - d)
            .collect();
        let room = as_kopecks(left.iter().sum());
        let extra = Decimal::new(i64::try_from(room * i128::from(part) / 100).unwrap(), 2);
        let shares = prorate(&left, extra).unwrap();
        let combined: Vec<Decimal> = discounts.iter().zip(&shares).map(|(d, s)| d + s).collect();
        let lines = allocate_lines(&cart, &combined).unwrap();
        let total_discount: Decimal = combined.iter().sum();
        let (target, actual) = check_structure(&cart, total_discount, &lines);
        prop_assert_eq!(actual, target);
    }
}
