//! Built-in functions that mapping expressions call where jq is not safe enough (docs/design.md §3).
//!
//! All of them are pure: no I/O, no clock, no global state. Money is [`Decimal`] throughout and
//! JSON numbers are read from their exact text ([`decimal_of`]), never through `f64` — a jq
//! expression over floats put a real cart one kopeck off.
//!
//! * Money: [`round_money`], [`kopecks`], [`rubles`], [`sum_money`].
//! * [`allocate_discount`]: spread a receipt-level discount (UDS computes discounts per receipt,
//!   MoySklad wants them per position) over the positions, to the kopeck, splitting a position
//!   in two when no single unit price gives its share exactly (LoyaltyAPI recalc rules).
//! * Phones: [`phone_digits`], [`phone_e164`], [`phone_7`].
//! * [`uuid_v5`]: stable GUIDs for vendor ids that are not GUIDs.
//! * Dates: [`ms_to_iso`], [`iso_to_ms`], [`date_to_ms`].
//! * [`decimal_of`]: a decimal from a JSON number or a numeric string.
//!
//! Every failure is a [`BuiltinError`] whose message names the function, the argument and what
//! was wrong with it.

use std::ops::Range;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use uuid::Uuid;

// =============================================================================================
// Errors

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
    #[error("allocate_discount: positions[{index}].quantity must be above zero, got {quantity}")]
    NonPositiveQuantity { index: usize, quantity: Decimal },
    #[error("allocate_discount: positions[{index}].price must not be negative, got {price}")]
    NegativePrice { index: usize, price: Decimal },
    #[error(
        "allocate_discount: positions[{index}].price {price} is not a whole number of kopecks \
         (at most 2 decimals)"
    )]
    PriceNotKopecks { index: usize, price: Decimal },
    #[error("allocate_discount: the amounts are too large to compute exactly")]
    Overflow,
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

// =============================================================================================
// Money

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

// =============================================================================================
// Spreading a receipt discount over positions

/// One position of the cart, as MoySklad sent it (`quantity`, `price` in rubles, `sn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocInput {
    pub quantity: Decimal,
    pub price: Decimal,
    /// How many serial numbers the position has (`sn`, one per unit when MoySklad sends them);
    /// 0 for goods without serials. The lines say which of them each carries.
    pub serials: usize,
}

/// One line of the answer. A position gives one line, or two adjacent ones when it is split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocLine {
    /// Index of the position in the input this line comes from.
    pub source: usize,
    pub quantity: Decimal,
    /// The position's price, unchanged.
    pub price: Decimal,
    /// Per unit, 2 decimals (scale 2), `0 ≤ discounted_price ≤ price`.
    pub discounted_price: Decimal,
    /// `round_money((price − discounted_price) / price × 100)`, scale 2; `0.00` when the price
    /// is 0.
    pub discount_percent: Decimal,
    /// The source position's serial numbers this line carries (indices into its `sn`): all of
    /// them unless the position is split. A range, not copies: the caller slices its own.
    pub sn: Range<usize>,
}

/// Spreads a receipt-level discount (rubles, at most 2 decimals) over `positions` and prices
/// every position per unit, to the kopeck.
///
/// **Shares.** A position's amount is `round_money(price × quantity)`; the receipt total is their
/// sum. Each position's share of `total_discount` is proportional to its amount, to the kopeck by
/// the largest-remainder method: everyone gets `⌊D·amount/total⌋` kopecks and the kopecks left
/// over go one each to the largest remainders (ties: the earlier position). A share is never
/// above its amount, a zero-amount position gets nothing, and each share is within one kopeck of
/// the exact proportion. A position's target line total is its amount minus its share.
///
/// **Unit prices.** The goal is Σ over lines of `round_money(discounted_price × quantity)` ==
/// receipt total − `total_discount`, exactly. How a position meets its target `T` depends on its
/// quantity `q`:
///
/// * **Whole `q`**: any `T` between 0 and the amount is reachable. With `u = ⌊T/q⌋` (kopecks) and
///   `q1 = T − u·q` (kopecks, so `0 ≤ q1 < q`): when `q1 = 0` one line at `u`; otherwise the
///   position is **split** into two adjacent lines with the same `source` and `price`: `q1` units
///   at `u + 0.01`, then `q − q1` units at `u`. Serial numbers: when `sn.len() == q` (MoySklad sends
///   one per unit) the first `q1` go to the first line and the rest to the second, so each line
///   has exactly its quantity of serials; when `sn` is non-empty but of another length they cannot
///   be divided meaningfully, so all of them stay on the first line (the second gets none).
/// * **Fractional `q` below one unit** (`0.5` kg): every line total between 0 and the amount is
///   reached by some unit price (a kopeck of unit price moves the total by less than a kopeck), so
///   `T` is met exactly with one line — the smallest unit price `u` with `round_money(u·q) = T`.
/// * **Fractional `q` above one unit** (`1.5`, `123.456` kg): no split is possible and the
///   reachable line totals are about `q` kopecks apart. The unit price is `u = T/q` rounded to
///   kopecks, i.e. of the reachable totals just below and just above the target the nearer
///   (a tie takes the upper), and the difference `T − round_money(u·q)` is **carried**.
///
/// **Carry.** Fractional positions above one unit are priced first, in source order, each aiming
/// at its own target plus the carry so far (the carry is Σ targets − Σ line totals chosen so
/// far). Then the other positions (whole, or below one unit — they can hit any total) absorb the
/// remaining carry, in source order, each as far as its bounds allow (line total between 0 and
/// its amount), so the last of them takes what is left if it can. Two refinements keep the total
/// exact where the plain carry would miss:
/// 1. when the nearer reachable total of a fractional position would leave a carry that the whole
///    and sub-unit positions cannot absorb, and the total on the other side of its target would
///    leave one they can, the latter is taken;
/// 2. if the carry still cannot be absorbed (e.g. a cart of `1.5` kg and `2.5` kg only), a
///    search (dynamic programming over the partial carries) tries the combinations of the
///    fractional positions' unit prices within 2, then 10, then 50 kopecks of their proportional
///    `round(T/q)`, and keeps the one whose carry is absorbed best, then the one closest to the
///    proportional targets (Σ |T − line total|). It is used only if it does better than the
///    carry, and it gives up (the carry result stands) beyond its limits: partial carries
///    spanning more than 65,536 kopecks or more than 2²¹ steps — far beyond real carts (four
///    fractional positions of up to 20 units each stay well inside).
///
/// **Guarantees** (tested as properties below): every line has `0 ≤ discounted_price ≤ price`;
/// a position's lines add up to its quantity; only whole quantities are split, into at most two
/// lines whose unit prices differ by one kopeck, the dearer first. The receipt total is exact
/// when (a) every quantity is whole or below one unit, or (b) the discount is 0 or the whole
/// receipt, or (c) the whole and sub-unit positions' amounts add up to at least `⌈q⌉` kopecks
/// for every fractional `q > 1` in the receipt, or (d) some choice of the fractional positions'
/// unit prices, each within 50 kopecks of its `round(T/q)`, makes it exact (and the search stayed
/// within its limits). Otherwise it
/// is off by at most `⌊⌈q⌉/2⌋` kopecks for the largest such `q` — often unavoidable: a single line
/// of `1.5` kg has no 2-decimal unit price giving a total of `0.01`.
///
/// With whole quantities only, every position's discount is exactly its share, and each line's
/// unit price is `⌊T/q⌋` or `⌈T/q⌉` kopecks.
///
/// Errors: negative `total_discount`, or one with more than 2 decimals; `total_discount` above the
/// receipt total; a quantity ≤ 0; a negative price, or one with more than 2 decimals; amounts too
/// large for exact integer arithmetic (not reachable with real receipts).
pub fn allocate_discount(
    positions: &[AllocInput],
    total_discount: Decimal,
) -> Result<Vec<AllocLine>, BuiltinError> {
    if total_discount < Decimal::ZERO {
        return Err(BuiltinError::NegativeDiscount {
            discount: total_discount,
        });
    }
    let discount = exact_kopecks(total_discount).ok_or(BuiltinError::DiscountNotKopecks {
        discount: total_discount,
    })?;
    let items = positions
        .iter()
        .enumerate()
        .map(|(index, position)| Item::new(index, position))
        .collect::<Result<Vec<_>, _>>()?;
    let total = items
        .iter()
        .try_fold(0i128, |sum, item| sum.checked_add(item.amount))
        .ok_or(BuiltinError::Overflow)?;
    if discount > total {
        return Err(BuiltinError::DiscountAboveTotal {
            discount: total_discount,
            total: kopecks_to_rubles(total)?,
        });
    }

    let amounts: Vec<i128> = items.iter().map(|item| item.amount).collect();
    let shares = proportional_shares(&amounts, discount)?;
    let targets: Vec<i128> = amounts.iter().zip(&shares).map(|(a, s)| a - s).collect();
    let plans = plan_lines(&items, &targets)?;

    let mut lines = Vec::with_capacity(positions.len() + 1);
    for (source, ((input, item), plan)) in positions.iter().zip(&items).zip(plans).enumerate() {
        let line = |quantity: Decimal, unit: i128, sn: Range<usize>| -> Result<AllocLine, _> {
            Ok(AllocLine {
                source,
                quantity,
                price: input.price,
                discounted_price: kopecks_to_rubles(unit)?,
                discount_percent: discount_percent(item.price, unit)?,
                sn,
            })
        };
        match plan {
            Plan::Single { unit } => lines.push(line(input.quantity, unit, 0..input.serials)?),
            Plan::Split { units_high, unit } => {
                let first = Decimal::try_from_i128_with_scale(units_high, 0)
                    .map_err(|_| BuiltinError::Overflow)?;
                let at = usize::try_from(units_high).map_err(|_| BuiltinError::Overflow)?;
                // `units_high < quantity`, so with one serial per unit the split point is inside.
                let one_per_unit = i128::try_from(input.serials).ok() == item.qty.whole();
                let (sn_high, sn_low) = if one_per_unit && at < input.serials {
                    (0..at, at..input.serials)
                } else {
                    (0..input.serials, input.serials..input.serials)
                };
                lines.push(line(first, unit + 1, sn_high)?);
                lines.push(line(input.quantity - first, unit, sn_low)?);
            }
        }
    }
    Ok(lines)
}

/// A quantity as the exact fraction `num / den`, `den` a power of ten.
#[derive(Debug, Clone, Copy)]
struct Qty {
    num: i128,
    den: i128,
}

impl Qty {
    fn of(quantity: Decimal) -> Self {
        let q = quantity.normalize();
        Qty {
            num: q.mantissa(),
            // scale ≤ 28 and 10^28 < i128::MAX
            den: 10i128.pow(q.scale()),
        }
    }

    fn whole(self) -> Option<i128> {
        (self.den == 1).then_some(self.num)
    }

    /// Whole, or below one unit: every line total from 0 to the amount is reachable.
    fn is_flexible(self) -> bool {
        self.den == 1 || self.num < self.den
    }

    /// `round_money(unit × q)` in kopecks, for `unit` in kopecks.
    fn line_total(self, unit: i128) -> Result<i128, BuiltinError> {
        div_round(mul(unit, self.num)?, self.den)
    }
}

/// A validated position in kopecks.
#[derive(Debug, Clone, Copy)]
struct Item {
    /// Per unit, kopecks.
    price: i128,
    qty: Qty,
    /// `round_money(price × quantity)`, kopecks.
    amount: i128,
}

impl Item {
    fn new(index: usize, position: &AllocInput) -> Result<Self, BuiltinError> {
        if position.quantity <= Decimal::ZERO {
            return Err(BuiltinError::NonPositiveQuantity {
                index,
                quantity: position.quantity,
            });
        }
        if position.price < Decimal::ZERO {
            return Err(BuiltinError::NegativePrice {
                index,
                price: position.price,
            });
        }
        let price = exact_kopecks(position.price).ok_or(BuiltinError::PriceNotKopecks {
            index,
            price: position.price,
        })?;
        let qty = Qty::of(position.quantity);
        let amount = qty.line_total(price)?;
        Ok(Item { price, qty, amount })
    }
}

/// How one position is priced: one line, or `units_high` units at `unit + 1` kopeck followed by
/// the rest at `unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Single { unit: i128 },
    Split { units_high: i128, unit: i128 },
}

/// Largest-remainder shares of `discount` proportional to `amounts` (all in kopecks).
/// Requires `0 ≤ discount ≤ Σ amounts`.
fn proportional_shares(amounts: &[i128], discount: i128) -> Result<Vec<i128>, BuiltinError> {
    let total: i128 = amounts.iter().sum();
    if discount == 0 || total == 0 {
        return Ok(vec![0; amounts.len()]);
    }
    let mut shares = Vec::with_capacity(amounts.len());
    for &amount in amounts {
        shares.push(quot(mul(discount, amount)?, total));
    }
    // Σ remainders = left · total with every remainder < total, so 0 ≤ left < positions, and only
    // positions with a positive remainder (hence a share below their amount) get a kopeck.
    let left = discount - shares.iter().sum::<i128>();
    let left = usize::try_from(left).map_err(|_| BuiltinError::Overflow)?;
    if left == 0 {
        // Exact shares (always so for a single position, as `allocate_discount` is called per
        // position in mappings): no remainders to rank.
        return Ok(shares);
    }
    let remainders = amounts
        .iter()
        .map(|&amount| Ok(rem(mul(discount, amount)?, total)))
        .collect::<Result<Vec<_>, BuiltinError>>()?;
    let mut order: Vec<usize> = (0..amounts.len()).collect();
    order.sort_by(|&a, &b| remainders[b].cmp(&remainders[a]).then(a.cmp(&b)));
    for &index in order.iter().take(left) {
        shares[index] += 1;
    }
    Ok(shares)
}

/// How far (kopecks) the search may move a fractional position's unit price from its
/// proportional one, widened in this order until the total is exact.
const SEARCH_WINDOWS: [i128; 3] = [2, 10, 50];
/// The search gives up (the carry result stands) when the partial sums would span more kopecks
/// than this…
const SEARCH_MAX_SPAN: usize = 1 << 16;
/// …or when it would take more steps (partial sum × candidate price) than this, over all windows.
const SEARCH_BUDGET: usize = 1 << 21;
// Candidate indices are stored as `u8`, with `u8::MAX` meaning "unreachable".
const _: () = assert!(2 * SEARCH_WINDOWS[2] + 1 < u8::MAX as i128);

/// What the flexible positions (whole, or below one unit) can absorb: each can go down to 0 and
/// up to its amount.
#[derive(Debug, Clone, Copy)]
struct Room {
    down: i128,
    up: i128,
}

impl Room {
    /// Kopecks of `carry` that the flexible positions cannot absorb.
    fn miss(self, carry: i128) -> i128 {
        (carry - self.up).max(-self.down - carry).max(0)
    }
}

/// Chooses every position's line total and unit price(s): see [`allocate_discount`].
fn plan_lines(items: &[Item], targets: &[i128]) -> Result<Vec<Plan>, BuiltinError> {
    let mut room = Room { down: 0, up: 0 };
    let mut fractional = Vec::new();
    for (index, (item, &target)) in items.iter().zip(targets).enumerate() {
        if item.qty.is_flexible() {
            room.down = add(room.down, target)?;
            room.up = add(room.up, item.amount - target)?;
        } else {
            fractional.push(index);
        }
    }

    let (mut units, mut carry) = carry_fractional(items, targets, &fractional, room)?;
    // One fractional position with nothing to absorb its carry (a weighed position priced on
    // its own, as mappings call this per position): the nearest reachable total is already the
    // least miss there is, and the search replaces only a strictly better one. Skipped, as it
    // was a recalc's costliest part.
    let alone = fractional.len() == 1 && room.down == 0 && room.up == 0;
    if room.miss(carry) > 0 && !alone {
        if let Some((found, found_carry)) = search_fractional(items, targets, &fractional, room)? {
            if room.miss(found_carry) < room.miss(carry) {
                (units, carry) = (found, found_carry);
            }
        }
    }

    let mut plans = vec![Plan::Single { unit: 0 }; items.len()];
    for (&index, &unit) in fractional.iter().zip(&units) {
        plans[index] = Plan::Single { unit };
    }
    // Whole and sub-unit quantities: exactly their target plus the carry, within bounds.
    for (index, (item, &target)) in items.iter().zip(targets).enumerate() {
        if !item.qty.is_flexible() {
            continue;
        }
        let desired = add(target, carry)?;
        let total = desired.clamp(0, item.amount);
        carry = desired - total;
        plans[index] = realise(*item, total)?;
    }
    Ok(plans)
}

/// Fractional quantities above one unit, in source order: the reachable total nearest to the
/// target plus the carry (or the other neighbour when only that one leaves an absorbable carry).
/// Returns their unit prices and the carry left for the flexible positions.
fn carry_fractional(
    items: &[Item],
    targets: &[i128],
    fractional: &[usize],
    room: Room,
) -> Result<(Vec<i128>, i128), BuiltinError> {
    let mut units = Vec::with_capacity(fractional.len());
    // Target total minus the line totals chosen so far, in kopecks.
    let mut carry = 0i128;
    for &index in fractional {
        let item = items[index];
        let desired = add(targets[index], carry)?;
        let (unit, total) = if desired >= item.amount {
            (item.price, item.amount)
        } else if desired <= 0 {
            (0, 0)
        } else {
            // 0 < desired < amount ≤ price·q + ½ and q > 1, so low < price.
            let low = quot(mul(desired, item.qty.den)?, item.qty.num).min(item.price);
            let low_total = item.qty.line_total(low)?;
            if low_total == desired {
                (low, low_total)
            } else {
                let high = low + 1;
                let high_total = item.qty.line_total(high)?;
                let (near, far) = if desired - low_total < high_total - desired {
                    ((low, low_total), (high, high_total))
                } else {
                    ((high, high_total), (low, low_total))
                };
                if room.miss(desired - near.1) > 0 && room.miss(desired - far.1) == 0 {
                    far
                } else {
                    near
                }
            }
        };
        units.push(unit);
        carry = desired - total;
    }
    Ok((units, carry))
}

/// When the carry cannot be absorbed: a search over the fractional positions' unit prices within
/// a window of `round(T/q)` for the choice whose carry the flexible positions absorb best, then
/// with the smallest Σ |T − line total|; the window widens through [`SEARCH_WINDOWS`] until the
/// carry is absorbed. Returns the best choice found, `None` if the limits stopped it at once.
fn search_fractional(
    items: &[Item],
    targets: &[i128],
    fractional: &[usize],
    room: Room,
) -> Result<Option<(Vec<i128>, i128)>, BuiltinError> {
    let mut budget = SEARCH_BUDGET;
    // (miss, cost, units, carry)
    let mut best: Option<(i128, i128, Vec<i128>, i128)> = None;
    for window in SEARCH_WINDOWS {
        let Some((cost, units, carry)) =
            search_window(items, targets, fractional, room, window, &mut budget)?
        else {
            break;
        };
        let miss = room.miss(carry);
        if best.as_ref().is_none_or(|b| (miss, cost) < (b.0, b.1)) {
            best = Some((miss, cost, units, carry));
        }
        if miss == 0 {
            break;
        }
    }
    Ok(best.map(|(_, _, units, carry)| (units, carry)))
}

/// Dynamic programming over the partial sums of `T − line total` (the carry) for unit prices
/// within `window` kopecks of each fractional position's `round(T/q)`: for every reachable carry,
/// the smallest Σ |T − line total| (ties: the first found, lower prices first). Returns
/// (cost, units, carry) of the carry absorbed best, or `None` beyond the search limits.
fn search_window(
    items: &[Item],
    targets: &[i128],
    fractional: &[usize],
    room: Room,
    window: i128,
    budget: &mut usize,
) -> Result<Option<(i128, Vec<i128>, i128)>, BuiltinError> {
    const UNREACHABLE: u8 = u8::MAX;
    // Candidate (unit, T − line total) per position, and the range every partial sum lies in.
    let mut options = Vec::with_capacity(fractional.len());
    let (mut low, mut high, mut prefix_low, mut prefix_high) = (0i128, 0i128, 0i128, 0i128);
    for &index in fractional {
        let item = items[index];
        let target = targets[index];
        let center = div_round(mul(target, item.qty.den)?, item.qty.num)?.min(item.price);
        let mut candidates = Vec::new();
        for unit in (center - window).max(0)..=(center + window).min(item.price) {
            candidates.push((unit, sub(target, item.qty.line_total(unit)?)?));
        }
        let deviations = candidates.iter().map(|&(_, deviation)| deviation);
        prefix_low = add(prefix_low, deviations.clone().min().unwrap_or(0))?;
        prefix_high = add(prefix_high, deviations.max().unwrap_or(0))?;
        low = low.min(prefix_low);
        high = high.max(prefix_high);
        options.push(candidates);
    }
    let span = usize::try_from(high - low + 1).unwrap_or(usize::MAX);
    if span > SEARCH_MAX_SPAN {
        return Ok(None);
    }
    // Index i stands for the partial sum low + i.
    let index_of = |sum: i128| usize::try_from(sum - low).ok().filter(|&i| i < span);
    let mut cost = vec![i128::MAX; span];
    let Some(start) = index_of(0) else {
        return Ok(None);
    };
    cost[start] = 0;
    let mut choices: Vec<Vec<u8>> = Vec::with_capacity(options.len());
    for candidates in &options {
        let reachable: Vec<usize> = (0..span).filter(|&i| cost[i] != i128::MAX).collect();
        let work = reachable
            .len()
            .saturating_mul(candidates.len())
            .saturating_add(span);
        if work > *budget {
            return Ok(None);
        }
        *budget -= work;
        let mut next = vec![i128::MAX; span];
        let mut choice = vec![UNREACHABLE; span];
        for &i in &reachable {
            for (k, &(_, deviation)) in candidates.iter().enumerate() {
                let Some(j) = index_of(low + i as i128 + deviation) else {
                    continue; // not reachable: the range covers every partial sum
                };
                let c = cost[i] + deviation.abs();
                if c < next[j] {
                    next[j] = c;
                    choice[j] = k as u8; // k < 2·window + 1 < u8::MAX
                }
            }
        }
        cost = next;
        choices.push(choice);
    }
    let Some(end) = (0..span)
        .filter(|&i| cost[i] != i128::MAX)
        .min_by_key(|&i| {
            let sum = low + i as i128;
            (room.miss(sum), cost[i], sum.abs(), sum)
        })
    else {
        return Ok(None);
    };
    let carry = low + end as i128;
    let mut units = vec![0; options.len()];
    let mut at = end;
    for ((slot, candidates), choice) in units.iter_mut().zip(&options).zip(&choices).rev() {
        let Some(&(unit, deviation)) = candidates.get(usize::from(choice[at])) else {
            return Ok(None);
        };
        *slot = unit;
        let Some(previous) = index_of(low + at as i128 - deviation) else {
            return Ok(None);
        };
        at = previous;
    }
    Ok(Some((cost[end], units, carry)))
}

/// Unit price(s) giving exactly `total` kopecks for a whole or sub-unit quantity,
/// `0 ≤ total ≤ amount`.
fn realise(item: Item, total: i128) -> Result<Plan, BuiltinError> {
    if let Some(units) = item.qty.whole() {
        let unit = quot(total, units);
        let units_high = total - unit * units;
        return Ok(if units_high == 0 {
            Plan::Single { unit }
        } else {
            Plan::Split { units_high, unit }
        });
    }
    // q < 1: the smallest unit u with u·q ≥ total − ½ rounds to exactly `total`, because
    // u·q < total − ½ + q < total + ½; and u ≤ price since price·q ≥ amount − ½ ≥ total − ½.
    if total == 0 {
        return Ok(Plan::Single { unit: 0 });
    }
    let unit = div_ceil(
        mul(sub(mul(2, total)?, 1)?, item.qty.den)?,
        mul(2, item.qty.num)?,
    );
    debug_assert_eq!(item.qty.line_total(unit), Ok(total));
    debug_assert!(unit <= item.price);
    Ok(Plan::Single { unit })
}

fn discount_percent(price: i128, unit: i128) -> Result<Decimal, BuiltinError> {
    if price == 0 {
        return Ok(Decimal::new(0, 2));
    }
    let hundredths = div_round(mul(price - unit, 10_000)?, price)?;
    Decimal::try_from_i128_with_scale(hundredths, 2).map_err(|_| BuiltinError::Overflow)
}

/// `value` in kopecks when it has at most 2 decimals (trailing zeros do not count).
fn exact_kopecks(value: Decimal) -> Option<i128> {
    let value = value.normalize();
    let scale = value.scale();
    // A normalized mantissa is below 2^96, so ×100 fits.
    (scale <= 2).then(|| value.mantissa() * 10i128.pow(2 - scale))
}

fn kopecks_to_rubles(kopecks: i128) -> Result<Decimal, BuiltinError> {
    Decimal::try_from_i128_with_scale(kopecks, 2).map_err(|_| BuiltinError::Overflow)
}

fn mul(a: i128, b: i128) -> Result<i128, BuiltinError> {
    a.checked_mul(b).ok_or(BuiltinError::Overflow)
}

fn add(a: i128, b: i128) -> Result<i128, BuiltinError> {
    a.checked_add(b).ok_or(BuiltinError::Overflow)
}

fn sub(a: i128, b: i128) -> Result<i128, BuiltinError> {
    a.checked_sub(b).ok_or(BuiltinError::Overflow)
}

/// `n / d`, for `d > 0`. Real amounts fit in 64 bits, where division is a machine instruction;
/// 128-bit division is a library call several times slower (it showed in a recalc's profile).
fn quot(n: i128, d: i128) -> i128 {
    match (i64::try_from(n), i64::try_from(d)) {
        (Ok(n), Ok(d)) if d > 0 => i128::from(n / d),
        _ => n / d,
    }
}

/// `n % d`, for `d > 0` (see [`quot`]).
fn rem(n: i128, d: i128) -> i128 {
    match (i64::try_from(n), i64::try_from(d)) {
        (Ok(n), Ok(d)) if d > 0 => i128::from(n % d),
        _ => n % d,
    }
}

/// `n / d` rounded half away from zero, for `n ≥ 0`, `d > 0`.
fn div_round(n: i128, d: i128) -> Result<i128, BuiltinError> {
    Ok(quot(add(mul(2, n)?, d)?, mul(2, d)?))
}

/// `⌈n / d⌉` for `n ≥ 0`, `d > 0`.
fn div_ceil(n: i128, d: i128) -> i128 {
    quot(n, d) + i128::from(rem(n, d) != 0)
}

/// `allocate_discount($total)` on LoyaltyAPI positions as JSON: the same positions with
/// `quantity`, `discountedPrice` and `discountPercent` set (and `sn` divided where a position
/// splits), a position giving two lines where kopecks demand it. The jaq path calls this; the
/// native path builds the same lines borrowing the positions (`fast`).
pub fn allocate_json(positions: Value, total: Decimal) -> Result<Value, String> {
    let Value::Array(sources) = &positions else {
        return Err("allocate_discount: expected an array of positions".into());
    };
    let field = |p: &Value, name: &str, i: usize| {
        let v = p
            .as_object()
            .and_then(|m| m.get(name))
            .ok_or_else(|| format!("allocate_discount: positions[{i}] has no {name}"))?;
        decimal_of(v).map_err(|e| format!("positions[{i}].{name}: {e}"))
    };
    let serials = |p: &Value| p.get("sn").and_then(Value::as_array).map_or(0, Vec::len);
    let inputs = sources
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(AllocInput {
                quantity: field(p, "quantity", i)?,
                price: field(p, "price", i)?,
                serials: serials(p),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let lines = allocate_discount(&inputs, total).map_err(|e| e.to_string())?;
    // Written as the native path writes its decimals: normalized, exact text.
    let number =
        |d: Decimal| crate::amount::json_number(d.normalize()).map_or(Value::Null, Value::Number);
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let Value::Object(source) = &sources[line.source] else {
            // Not reached: `field` found a quantity in it.
            return Err(format!(
                "allocate_discount: positions[{}] is not an object",
                line.source
            ));
        };
        let mut entries = serde_json::Map::new();
        for (key, value) in source {
            if !matches!(
                key.as_str(),
                "quantity" | "discountedPrice" | "discountPercent" | "sn"
            ) {
                entries.insert(key.clone(), value.clone());
            }
        }
        entries.insert("quantity".into(), number(line.quantity));
        entries.insert("discountedPrice".into(), number(line.discounted_price));
        entries.insert("discountPercent".into(), number(line.discount_percent));
        // Serials come from the source's `sn` (none without one): all of them, unless a split
        // divides them. A non-array `sn` is written as `[]`.
        if let Some(sn) = source.get("sn") {
            let all = sn.as_array().map_or(&[][..], Vec::as_slice);
            entries.insert(
                "sn".into(),
                if sn.is_array() && line.sn == (0..all.len()) {
                    sn.clone()
                } else {
                    Value::Array(all[line.sn].to_vec())
                },
            );
        }
        out.push(Value::Object(entries));
    }
    Ok(Value::Array(out))
}

// =============================================================================================
// JSON values

/// `drop_nulls`: the value without the `null` members of its objects, at every depth.
pub fn drop_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, drop_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(drop_nulls).collect()),
        other => other,
    }
}

// =============================================================================================
// Phones

/// A Russian phone as 11 digits starting with 7: `"+7 (555) 123-45-67"`, `"8 555 123 45 67"`,
/// `"9551234567"` (10 digits: the country code is added) and `"75551234567"` all give
/// `"75551234567"`.
///
/// Accepted: digits, whitespace, `-`, `(`, `)`, `.`, and one `+` at the start. A leading `8` of
/// an 11-digit number is the domestic trunk prefix and becomes `7`; with a `+`, the number must be
/// `+7` and 11 digits. Anything else (other countries, too few or too many digits, letters) is
/// an error.
pub fn phone_digits(s: &str) -> Result<String, BuiltinError> {
    russian_phone(s, "phone_digits")
}

/// The phone in E.164, `"+75551234567"` (UDS, MAXMA). Same rules as [`phone_digits`].
pub fn phone_e164(s: &str) -> Result<String, BuiltinError> {
    russian_phone(s, "phone_e164").map(|digits| format!("+{digits}"))
}

/// Premium Bonus's phone form `7XXXXXXXXXX` (11 digits, no `+`): the same result as
/// [`phone_digits`], under the name the Premium Bonus mapping reads naturally.
pub fn phone_7(s: &str) -> Result<String, BuiltinError> {
    russian_phone(s, "phone_7")
}

fn russian_phone(s: &str, function: &'static str) -> Result<String, BuiltinError> {
    let invalid = |reason: String| BuiltinError::InvalidPhone { function, reason };
    let s = s.trim();
    let (plus, rest) = match s.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let mut digits = String::with_capacity(11);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | '(' | ')' | '.' => {}
            c if c.is_whitespace() => {}
            '+' => return Err(invalid("has a '+' that is not at the start".into())),
            other => {
                return Err(invalid(format!(
                    "contains {other:?}; only digits, spaces, '-', '(', ')', '.' and a leading \
                     '+' are allowed"
                )));
            }
        }
    }
    let count = digits.len();
    match digits.as_bytes().first() {
        None => Err(invalid("has no digits".into())),
        Some(b'7') if count == 11 => Ok(digits),
        Some(_) if plus => Err(invalid(format!(
            "is not a Russian number: with '+' it must be +7 and 11 digits, got {count} digits \
             starting with {}",
            &digits[..1]
        ))),
        Some(b'8') if count == 11 => Ok(format!("7{}", &digits[1..])),
        Some(_) if count == 10 => Ok(format!("7{digits}")),
        Some(_) if count == 11 => Err(invalid(format!(
            "has 11 digits starting with {}; expected 7 or 8",
            &digits[..1]
        ))),
        Some(_) => Err(invalid(format!(
            "has {count} digits; expected 10 (without the country code) or 11 (starting with 7 \
             or 8)"
        ))),
    }
}

// =============================================================================================
// Stable UUIDs

/// The namespace of [`uuid_v5`]: `Uuid::new_v5(&Uuid::NAMESPACE_URL,
/// b"https://github.com/loyalty-bridge/loyalty-bridge")`, written out as a constant (a test checks
/// the derivation).
///
/// **Never change it**: MoySklad stores the ids we give it (search rows' `id`), and a different
/// namespace changes every one of them, so stored customers would no longer match.
pub const UUID_NAMESPACE: Uuid = Uuid::from_u128(0xae592ffb_47ab_523f_8fec_1f603b2ff51e);

/// A stable GUID (version 5, lowercase, hyphenated) for a vendor id that is not a GUID, e.g. a
/// numeric UDS participant id: the same `name` always gives the same GUID, different names give
/// different ones. Namespace: [`UUID_NAMESPACE`]. The GUID cannot be turned back into the id:
/// keep the vendor id too.
pub fn uuid_v5(name: &str) -> String {
    Uuid::new_v5(&UUID_NAMESPACE, name.as_bytes())
        .hyphenated()
        .to_string()
}

// =============================================================================================
// Dates

const MS_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A MoySklad date-time `"YYYY-MM-DD HH:MM:SS"` (local time, no zone) as ISO-8601 with the
/// given UTC offset: `("2023-07-14 00:00:00", "+03:00") → "2023-07-14T00:00:00+03:00"`. The
/// clock time is kept, the offset only says where it was read.
///
/// `offset`: `"+HH:MM"`, `"-HH:MM"`, `"+HHMM"`, `"-HHMM"` or `"Z"`; always written as `±HH:MM`
/// (`"Z"` → `"+00:00"`). The date must be exactly the fixed-width MoySklad format.
pub fn ms_to_iso(s: &str, offset: &str) -> Result<String, BuiltinError> {
    let naive = (s.len() == 19)
        .then(|| NaiveDateTime::parse_from_str(s, MS_FORMAT).ok())
        .flatten()
        .ok_or_else(|| BuiltinError::InvalidDate {
            function: "ms_to_iso",
            argument: "date",
            input: s.to_string(),
            expected: "\"YYYY-MM-DD HH:MM:SS\"",
        })?;
    let minutes = parse_offset_minutes(offset).ok_or_else(|| BuiltinError::InvalidOffset {
        input: offset.to_string(),
    })?;
    let sign = if minutes < 0 { '-' } else { '+' };
    let minutes = minutes.abs();
    Ok(format!(
        "{}{sign}{:02}:{:02}",
        naive.format("%Y-%m-%dT%H:%M:%S"),
        minutes / 60,
        minutes % 60
    ))
}

/// An ISO-8601 date or date-time from a vendor in MoySklad's `"YYYY-MM-DD HH:MM:SS"`:
///
/// * with a zone (RFC 3339 `"2023-07-14T10:00:00+03:00"`, `"…Z"`, or `"+0300"`): converted to
///   UTC, `"2023-07-14 07:00:00"`;
/// * naive (`"2023-07-14T10:00:00"` or `"2023-07-14 10:00:00"`): the clock time is kept;
/// * a date `"2023-07-14"`: midnight, `"2023-07-14 00:00:00"`.
///
/// Fractions of a second are dropped (truncated), MoySklad's format has none.
pub fn iso_to_ms(s: &str) -> Result<String, BuiltinError> {
    let invalid = || BuiltinError::InvalidDate {
        function: "iso_to_ms",
        argument: "date",
        input: s.to_string(),
        expected: "ISO-8601 like \"2023-07-14T10:00:00+03:00\", \"2023-07-14T10:00:00\" or \
                   \"2023-07-14\"",
    };
    let zoned = DateTime::parse_from_rfc3339(s).ok().or_else(|| {
        ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"]
            .iter()
            .find_map(|format| DateTime::parse_from_str(s, format).ok())
    });
    let naive = match zoned {
        Some(zoned) => zoned.with_timezone(&Utc).naive_utc(),
        None => ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(s, format).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .and_then(|date| date.and_hms_opt(0, 0, 0))
            })
            .ok_or_else(invalid)?,
    };
    format_ms(naive).ok_or_else(invalid)
}

/// A calendar date from a vendor (a birthdate) as a MoySklad date-time at midnight:
/// `"14.07.2023"` or `"2023-07-14"` → `"2023-07-14 00:00:00"`. No zone conversion: a birthdate
/// is the same day everywhere.
pub fn date_to_ms(s: &str) -> Result<String, BuiltinError> {
    ["%d.%m.%Y", "%Y-%m-%d"]
        .iter()
        .find_map(|format| NaiveDate::parse_from_str(s, format).ok())
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .and_then(format_ms)
        .ok_or_else(|| BuiltinError::InvalidDate {
            function: "date_to_ms",
            argument: "date",
            input: s.to_string(),
            expected: "\"DD.MM.YYYY\" or \"YYYY-MM-DD\"",
        })
}

/// `"YYYY-MM-DD HH:MM:SS"`, for years that have four digits.
fn format_ms(naive: NaiveDateTime) -> Option<String> {
    (1..=9999)
        .contains(&naive.year())
        .then(|| naive.format(MS_FORMAT).to_string())
}

/// `"Z"`, `"±HH:MM"` or `"±HHMM"` → minutes east of UTC.
fn parse_offset_minutes(offset: &str) -> Option<i32> {
    if offset == "Z" || offset == "z" {
        return Some(0);
    }
    let (sign, rest) = match offset.as_bytes().first()? {
        b'+' => (1, &offset[1..]),
        b'-' => (-1, &offset[1..]),
        _ => return None,
    };
    let (hours, minutes) = match rest.len() {
        5 if rest.as_bytes()[2] == b':' => (&rest[..2], &rest[3..]),
        4 => (&rest[..2], &rest[2..]),
        _ => return None,
    };
    let two_digits = |text: &str| -> Option<i32> {
        text.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| text.parse().ok())
            .flatten()
    };
    let (hours, minutes) = (two_digits(hours)?, two_digits(minutes)?);
    (hours <= 23 && minutes <= 59).then_some(sign * (hours * 60 + minutes))
}

// =============================================================================================
// Decimals

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

// =============================================================================================

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

    fn pos(quantity: &str, price: &str) -> AllocInput {
        AllocInput {
            quantity: d(quantity),
            price: d(price),
            serials: 0,
        }
    }

    /// (source, quantity, discounted_price, discount_percent) of each line.
    fn summary(lines: &[AllocLine]) -> Vec<(usize, Decimal, Decimal, Decimal)> {
        lines
            .iter()
            .map(|l| (l.source, l.quantity, l.discounted_price, l.discount_percent))
            .collect()
    }

    fn row(
        source: usize,
        quantity: &str,
        price: &str,
        percent: &str,
    ) -> (usize, Decimal, Decimal, Decimal) {
        (source, d(quantity), d(price), d(percent))
    }

    /// Σ round_money(discounted_price × quantity) over the lines.
    fn receipt_total(lines: &[AllocLine]) -> Decimal {
        lines
            .iter()
            .map(|l| round_money(l.discounted_price * l.quantity))
            .sum()
    }

    // ---- money

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

    // ---- allocate_discount: worked by hand

    #[test]
    fn three_positions_of_33_33_share_10_00() {
        // Amounts 33.33 each, total 99.99; shares 1000·3333/9999 = 333.33… → 333 each and the
        // last kopeck to the first of the equal remainders.
        let lines = allocate_discount(
            &[pos("1", "33.33"), pos("1", "33.33"), pos("1", "33.33")],
            d("10.00"),
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                row(0, "1", "29.99", "10.02"),
                row(1, "1", "30.00", "9.99"),
                row(2, "1", "30.00", "9.99"),
            ]
        );
        assert_eq!(receipt_total(&lines), d("89.99"));
        assert!(
            lines
                .iter()
                .all(|l| l.discounted_price.scale() == 2 && l.price == d("33.33"))
        );
    }

    #[test]
    fn three_units_of_33_33_split_to_hit_the_total() {
        // Target 99.99 − 10.00 = 89.99 = 8999 kopecks over 3 units: u = 29.99, 2 kopecks left,
        // so 2 units at 30.00 and 1 at 29.99.
        let lines = allocate_discount(&[pos("3", "33.33")], d("10.00")).unwrap();
        assert_eq!(
            summary(&lines),
            vec![row(0, "2", "30.00", "9.99"), row(0, "1", "29.99", "10.02")]
        );
        assert_eq!(receipt_total(&lines), d("89.99"));
    }

    #[test]
    fn spec_example_weighed_position() {
        // 123.456 kg × 123.45 = 15240.6432 → 15240.64. Discount 7469.08 leaves 7771.56, which
        // 62.95 × 123.456 = 7771.5552 → 7771.56 hits exactly. (SPEC's example shows 49.99 %, an
        // illustrative figure; (123.45 − 62.95)/123.45 is 49.0077… %.)
        let input = AllocInput {
            serials: 1,
            ..pos("123.456", "123.45")
        };
        let lines = allocate_discount(std::slice::from_ref(&input), d("7469.08")).unwrap();
        assert_eq!(summary(&lines), vec![row(0, "123.456", "62.95", "49.01")]);
        assert_eq!(lines[0].sn, 0..1);
        assert_eq!(receipt_total(&lines), d("7771.56"));
    }

    #[test]
    fn weighed_position_alone_takes_the_nearest_total() {
        // Target 7771.64: the reachable totals around it are 62.95 → 7771.56 and
        // 62.96 → 7772.79, so 8 kopecks off is the best there is.
        let lines = allocate_discount(&[pos("123.456", "123.45")], d("7469.00")).unwrap();
        assert_eq!(summary(&lines), vec![row(0, "123.456", "62.95", "49.01")]);
        assert_eq!(receipt_total(&lines), d("7771.56"));
    }

    #[test]
    fn a_whole_position_absorbs_the_weighed_ones_carry() {
        // Amounts 1524064 and 1000 kopecks; shares of 746900: 746410 (+0) and 489 (+1, the larger
        // remainder). The weighed target 7776.54 is reached as 62.99 → 7776.49, carrying 5
        // kopecks to the 10.00 item: 10.00 − 4.90 + 0.05 = 5.15.
        let lines = allocate_discount(&[pos("123.456", "123.45"), pos("1", "10.00")], d("7469.00"))
            .unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                row(0, "123.456", "62.99", "48.98"),
                row(1, "1", "5.15", "48.50")
            ]
        );
        assert_eq!(receipt_total(&lines), d("15250.64") - d("7469.00"));
    }

    #[test]
    fn split_divides_three_serials_one_and_two() {
        // 3 × 10.00 − 1.01 = 28.99 = 2899 kopecks: u = 9.66, 1 kopeck left → 1 unit at 9.67.
        let input = AllocInput {
            serials: 3,
            ..pos("3", "10.00")
        };
        let lines = allocate_discount(&[input], d("1.01")).unwrap();
        assert_eq!(
            summary(&lines),
            vec![row(0, "1", "9.67", "3.30"), row(0, "2", "9.66", "3.40")]
        );
        assert_eq!(lines[0].sn, 0..1);
        assert_eq!(lines[1].sn, 1..3);
        assert_eq!(lines[1].price, d("10.00"));
        assert_eq!(receipt_total(&lines), d("28.99"));
    }

    #[test]
    fn serials_that_do_not_match_the_quantity_stay_on_the_first_line() {
        let input = AllocInput {
            serials: 2,
            ..pos("3", "10.00")
        };
        let lines = allocate_discount(&[input], d("1.01")).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].sn, 0..2);
        assert!(lines[1].sn.is_empty());
    }

    #[test]
    fn quantity_written_with_decimals_is_still_whole() {
        let input = AllocInput {
            serials: 3,
            ..pos("3.000", "10.00")
        };
        let lines = allocate_discount(&[input], d("1.01")).unwrap();
        assert_eq!(
            summary(&lines),
            vec![row(0, "1", "9.67", "3.30"), row(0, "2", "9.66", "3.40")]
        );
        assert_eq!(lines[1].sn, 1..3);
    }

    #[test]
    fn zero_price_positions_get_no_discount() {
        let lines = allocate_discount(
            &[pos("1", "0.00"), pos("2", "50.00"), pos("0.5", "0")],
            d("10.00"),
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                row(0, "1", "0.00", "0.00"),
                row(1, "2", "45.00", "10.00"),
                row(2, "0.5", "0.00", "0.00"),
            ]
        );
    }

    #[test]
    fn discount_equal_to_the_total_prices_everything_at_zero() {
        // 1.5 × 3.33 = 4.995 → 5.00; total 25.00.
        let lines =
            allocate_discount(&[pos("2", "10.00"), pos("1.5", "3.33")], d("25.00")).unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                row(0, "2", "0.00", "100.00"),
                row(1, "1.5", "0.00", "100.00")
            ]
        );
        assert_eq!(receipt_total(&lines), Decimal::ZERO);
    }

    #[test]
    fn no_discount_keeps_prices() {
        let lines = allocate_discount(
            &[pos("2", "10.00"), pos("1.5", "3.33"), pos("0.3", "0.05")],
            d("0"),
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                row(0, "2", "10.00", "0.00"),
                row(1, "1.5", "3.33", "0.00"),
                row(2, "0.3", "0.05", "0.00"),
            ]
        );
    }

    #[test]
    fn a_single_kopeck_goes_to_the_largest_remainder() {
        // Shares of 1 kopeck: 1000/3000 and 2000/3000 → the second position.
        let lines = allocate_discount(&[pos("1", "10.00"), pos("1", "20.00")], d("0.01")).unwrap();
        assert_eq!(
            summary(&lines),
            vec![row(0, "1", "10.00", "0.00"), row(1, "1", "19.99", "0.05")]
        );
    }

    #[test]
    fn a_single_kopeck_off_a_three_unit_position_splits_it() {
        let lines = allocate_discount(&[pos("3", "10.00")], d("0.01")).unwrap();
        assert_eq!(
            summary(&lines),
            vec![row(0, "2", "10.00", "0.00"), row(0, "1", "9.99", "0.10")]
        );
    }

    #[test]
    fn sub_unit_quantity_hits_any_total() {
        // 0.5 × 99.99 = 49.995 → 50.00; target 49.99: 99.97 × 0.5 = 49.985 → 49.99.
        let lines = allocate_discount(&[pos("0.5", "99.99")], d("0.01")).unwrap();
        assert_eq!(summary(&lines), vec![row(0, "0.5", "99.97", "0.02")]);
        assert_eq!(receipt_total(&lines), d("49.99"));
    }

    #[test]
    fn the_search_finds_an_exact_total_for_weighed_goods_only() {
        // 1.5 × 100.00 twice, 0.03 off: targets 149.98 and 149.99. Reachable totals near them:
        // 149.97 (99.98), 149.99 (99.99), 150.00 (100.00). The carry alone ends 1 kopeck off;
        // 149.97 + 150.00 is exact.
        let lines =
            allocate_discount(&[pos("1.5", "100.00"), pos("1.5", "100.00")], d("0.03")).unwrap();
        assert_eq!(receipt_total(&lines), d("299.97"));
        assert_eq!(
            summary(&lines),
            vec![
                row(0, "1.5", "99.98", "0.02"),
                row(1, "1.5", "100.00", "0.00")
            ]
        );
    }

    #[test]
    fn empty_cart() {
        assert_eq!(allocate_discount(&[], d("0")).unwrap(), vec![]);
        assert!(matches!(
            allocate_discount(&[], d("0.01")),
            Err(BuiltinError::DiscountAboveTotal { .. })
        ));
    }

    #[test]
    fn allocation_errors_name_the_argument() {
        let cart = [pos("1", "10.00"), pos("2", "5.00")];
        let err = allocate_discount(&cart, d("-0.01")).unwrap_err();
        assert_eq!(
            err,
            BuiltinError::NegativeDiscount {
                discount: d("-0.01")
            }
        );
        assert_eq!(
            err.to_string(),
            "allocate_discount: total_discount must not be negative, got -0.01"
        );
        assert_eq!(
            allocate_discount(&cart, d("1.005")).unwrap_err(),
            BuiltinError::DiscountNotKopecks {
                discount: d("1.005")
            }
        );
        let err = allocate_discount(&cart, d("20.01")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "allocate_discount: total_discount 20.01 is above the receipt total 20.00"
        );
        assert_eq!(
            allocate_discount(&[pos("1", "1"), pos("0", "1")], d("0")).unwrap_err(),
            BuiltinError::NonPositiveQuantity {
                index: 1,
                quantity: d("0")
            }
        );
        let err = allocate_discount(&[pos("-1", "1")], d("0")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "allocate_discount: positions[0].quantity must be above zero, got -1"
        );
        assert_eq!(
            allocate_discount(&[pos("1", "-0.01")], d("0")).unwrap_err(),
            BuiltinError::NegativePrice {
                index: 0,
                price: d("-0.01")
            }
        );
        let err = allocate_discount(&[pos("1", "1"), pos("1", "10.005")], d("0")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "allocate_discount: positions[1].price 10.005 is not a whole number of kopecks (at most 2 decimals)"
        );
        // Trailing zeros are not extra decimals.
        assert!(allocate_discount(&[pos("1", "10.000")], d("1.000")).is_ok());
    }

    #[test]
    fn absurd_amounts_are_an_error_not_a_panic() {
        let huge = AllocInput {
            quantity: d("79228162514264337593543950335"),
            price: d("79228162514264337593543950335"),
            serials: 0,
        };
        assert_eq!(
            allocate_discount(&[huge.clone(), huge], d("1")).unwrap_err(),
            BuiltinError::Overflow
        );
    }

    // ---- allocate_discount: properties

    /// (quantity, price in kopecks, serials: 0 none, 1 one per unit, 2 a wrong count).
    fn whole_cart() -> impl Strategy<Value = (Vec<AllocInput>, Decimal)> {
        let position = (
            1i64..=12,
            prop_oneof![1 => Just(0i64), 9 => 1i64..=50_000],
            0u8..3,
        );
        prop::collection::vec(position, 1..8)
            .prop_flat_map(|rows| {
                let total: i64 = rows.iter().map(|(q, p, _)| q * p).sum();
                let discount = prop_oneof![1 => Just(0), 1 => Just(total), 8 => 0..=total];
                (Just(rows), discount)
            })
            .prop_map(|(rows, discount)| {
                let cart = rows
                    .into_iter()
                    .map(|(q, p, serial)| {
                        let count = usize::try_from(q).unwrap();
                        AllocInput {
                            quantity: Decimal::from(q),
                            price: Decimal::new(p, 2),
                            serials: match serial {
                                0 => 0,
                                1 => count,
                                _ => count + 1,
                            },
                        }
                    })
                    .collect();
                (cart, Decimal::new(discount, 2))
            })
    }

    /// Quantities in thousandths: whole, below one, or fractional above one.
    fn mixed_cart(
        max_positions: usize,
        max_price: i64,
    ) -> impl Strategy<Value = (Vec<AllocInput>, Decimal)> {
        let quantity = prop_oneof![
            (1i64..=5).prop_map(|n| n * 1000),
            1i64..1000,
            1001i64..=20_000,
        ];
        let position = (
            quantity,
            prop_oneof![1 => Just(0i64), 9 => 1i64..=max_price],
        );
        prop::collection::vec(position, 1..=max_positions)
            .prop_flat_map(|rows| {
                let total: i64 = rows
                    .iter()
                    .map(|&(q, p)| amount_kopecks(Decimal::new(q, 3), p))
                    .sum();
                let discount = prop_oneof![1 => Just(0), 1 => Just(total), 8 => 0..=total];
                (Just(rows), discount)
            })
            .prop_map(|(rows, discount)| {
                let cart = rows
                    .into_iter()
                    .map(|(q, p)| AllocInput {
                        quantity: Decimal::new(q, 3),
                        price: Decimal::new(p, 2),
                        serials: 1,
                    })
                    .collect();
                (cart, Decimal::new(discount, 2))
            })
    }

    fn amount_kopecks(quantity: Decimal, price_kopecks: i64) -> i64 {
        let amount = kopecks(Decimal::new(price_kopecks, 2) * quantity);
        i64::try_from(amount.mantissa()).unwrap()
    }

    fn as_kopecks(rubles: Decimal) -> i128 {
        exact_kopecks(rubles).unwrap()
    }

    /// Checks every structural promise; returns the receipt's target and actual totals in
    /// kopecks.
    fn check_structure(
        cart: &[AllocInput],
        discount: Decimal,
        lines: &[AllocLine],
    ) -> (i128, i128) {
        let mut next_source = 0;
        let mut i = 0;
        while i < lines.len() {
            let source = lines[i].source;
            assert_eq!(source, next_source, "lines in source order, none skipped");
            let group: Vec<&AllocLine> = lines[i..]
                .iter()
                .take_while(|l| l.source == source)
                .collect();
            let input = &cart[source];
            assert!(group.len() <= 2);
            let quantity: Decimal = group.iter().map(|l| l.quantity).sum();
            assert_eq!(
                quantity, input.quantity,
                "Σ line quantities == position quantity"
            );
            let sn: Vec<usize> = group.iter().flat_map(|l| l.sn.clone()).collect();
            assert_eq!(
                sn,
                (0..input.serials).collect::<Vec<_>>(),
                "serials kept, in order"
            );
            for l in &group {
                assert_eq!(l.price, input.price);
                assert!(l.quantity > Decimal::ZERO);
                assert!(Decimal::ZERO <= l.discounted_price && l.discounted_price <= l.price);
                assert_eq!(l.discounted_price.scale(), 2);
                let expected = if l.price.is_zero() {
                    Decimal::ZERO
                } else {
                    round_money((l.price - l.discounted_price) / l.price * Decimal::ONE_HUNDRED)
                };
                assert_eq!(l.discount_percent, expected);
                if input.serials
                    == usize::try_from(input.quantity.normalize().mantissa()).unwrap_or(0)
                    && input.quantity.fract().is_zero()
                {
                    assert_eq!(Decimal::from(l.sn.len()), l.quantity, "one serial per unit");
                }
            }
            if group.len() == 2 {
                assert!(
                    input.quantity.fract().is_zero(),
                    "only whole quantities split"
                );
                assert_eq!(
                    group[0].discounted_price,
                    group[1].discounted_price + d("0.01")
                );
                assert!(group[0].quantity.fract().is_zero() && group[1].quantity.fract().is_zero());
            }
            next_source += 1;
            i += group.len();
        }
        assert_eq!(next_source, cart.len(), "every position has lines");
        let total: i128 = cart
            .iter()
            .map(|p| as_kopecks(round_money(p.price * p.quantity)))
            .sum();
        (
            total - as_kopecks(discount),
            as_kopecks(receipt_total(lines)),
        )
    }

    /// The proportional target line total of every position (kopecks), as the docs define it.
    fn targets_of(cart: &[AllocInput], discount: Decimal) -> Vec<i128> {
        let amounts: Vec<i128> = cart
            .iter()
            .map(|p| as_kopecks(round_money(p.price * p.quantity)))
            .collect();
        let shares = proportional_shares(&amounts, as_kopecks(discount)).unwrap();
        amounts.iter().zip(shares).map(|(a, s)| a - s).collect()
    }

    proptest! {
        /// `plan_lines` skips the search for a weighed position alone: what the search would
        /// have chosen must be the same unit price.
        #[test]
        fn weighed_position_alone_is_priced_as_the_search_would(
            q in 1001i64..60_000,
            p in 1i64..100_000,
            share in 0u32..=1000,
        ) {
            prop_assume!(q % 1000 != 0);
            let position = AllocInput {
                quantity: Decimal::new(q, 3),
                price: Decimal::new(p, 2),
                serials: 0,
            };
            let item = Item::new(0, &position).unwrap();
            let target = item.amount - item.amount * i128::from(share) / 1000;
            let room = Room { down: 0, up: 0 };
            let (units, carry) = carry_fractional(&[item], &[target], &[0], room).unwrap();
            let searched = search_fractional(&[item], &[target], &[0], room).unwrap();
            let expected = match searched {
                Some((found, found_carry)) if room.miss(found_carry) < room.miss(carry) => found,
                _ => units,
            };
            let plans = plan_lines(&[item], &[target]).unwrap();
            prop_assert_eq!(plans, vec![Plan::Single { unit: expected[0] }]);
        }

        #[test]
        fn whole_quantities_hit_the_total_exactly((cart, discount) in whole_cart()) {
            let lines = allocate_discount(&cart, discount).unwrap();
            let (target, actual) = check_structure(&cart, discount, &lines);
            prop_assert_eq!(actual, target);

            let amounts: Vec<i128> = cart.iter().map(|p| as_kopecks(p.price * p.quantity)).collect();
            let total: i128 = amounts.iter().sum();
            let discount = as_kopecks(discount);
            for (source, input) in cart.iter().enumerate() {
                let group: Vec<&AllocLine> = lines.iter().filter(|l| l.source == source).collect();
                let line_total: i128 = group
                    .iter()
                    .map(|l| as_kopecks(l.discounted_price * l.quantity))
                    .sum();
                // The position's discount is within a kopeck of the exact proportion D·a/S.
                let given = amounts[source] - line_total;
                prop_assert!((given * total - discount * amounts[source]).abs() < total.max(1));
                // Each unit price is ⌊T/q⌋ or ⌈T/q⌉: within a kopeck of the position's exact
                // per-unit share (which is within 1/q kopeck of p·(1 − D/S)).
                let q = input.quantity.normalize().mantissa();
                for l in &group {
                    let unit = as_kopecks(l.discounted_price);
                    prop_assert!(unit * q <= line_total + q && line_total <= unit * q + q,
                        "unit {} vs T {} / q {}", unit, line_total, q);
                }
                if input.serials == usize::try_from(q).unwrap() {
                    for l in &group {
                        prop_assert_eq!(Decimal::from(l.sn.len()), l.quantity);
                    }
                }
            }
        }

        #[test]
        fn fractional_quantities_keep_their_promises((cart, discount) in mixed_cart(6, 100_000)) {
            let lines = allocate_discount(&cart, discount).unwrap();
            let (target, actual) = check_structure(&cart, discount, &lines);
            let inflexible: Vec<&AllocInput> = cart
                .iter()
                .filter(|p| !p.quantity.fract().is_zero() && p.quantity > Decimal::ONE)
                .collect();
            // (e) never further off than half the widest gap between reachable totals.
            let bound = inflexible
                .iter()
                .map(|p| p.quantity.ceil().normalize().mantissa() / 2)
                .max()
                .unwrap_or(0);
            prop_assert!((actual - target).abs() <= bound, "off by {} > {}", actual - target, bound);
            // (a) only whole and sub-unit quantities; (b) no discount or all of it.
            let total = target + as_kopecks(discount);
            if inflexible.is_empty() || discount.is_zero() || as_kopecks(discount) == total {
                prop_assert_eq!(actual, target);
            }
            // (c) enough whole and sub-unit amount to absorb the widest gap.
            let flexible_amount: i128 = cart
                .iter()
                .filter(|p| p.quantity.fract().is_zero() || p.quantity < Decimal::ONE)
                .map(|p| as_kopecks(round_money(p.price * p.quantity)))
                .sum();
            let widest = inflexible
                .iter()
                .map(|p| p.quantity.ceil().normalize().mantissa())
                .max()
                .unwrap_or(0);
            if flexible_amount >= widest {
                prop_assert_eq!(actual, target);
            }
            // Fractional positions are never split and keep their serials.
            for l in &lines {
                if !cart[l.source].quantity.fract().is_zero() {
                    prop_assert_eq!(l.quantity, cart[l.source].quantity);
                }
            }
        }

        /// (d): when any choice of the fractional unit prices within 50 kopecks of round(T/q)
        /// would make the total exact (the rest absorbed by whole and sub-unit positions), the
        /// result is exact. Checked by brute force on carts the search limits allow (up to four
        /// positions of up to 20 units).
        #[test]
        fn fractional_total_is_exact_when_a_nearby_choice_is((cart, discount) in mixed_cart(4, 50_000)) {
            let lines = allocate_discount(&cart, discount).unwrap();
            let (target, actual) = check_structure(&cart, discount, &lines);
            let targets = targets_of(&cart, discount);
            let (mut down, mut up) = (0i128, 0i128);
            let mut options: Vec<Vec<i128>> = Vec::new(); // T − line total per candidate
            for (input, &t) in cart.iter().zip(&targets) {
                let q = Qty::of(input.quantity);
                let amount = as_kopecks(round_money(input.price * input.quantity));
                if q.is_flexible() {
                    down += t;
                    up += amount - t;
                    continue;
                }
                let price = as_kopecks(input.price);
                let center = div_round(t * q.den, q.num).unwrap().min(price);
                options.push(
                    ((center - 50).max(0)..=(center + 50).min(price))
                        .map(|u| t - q.line_total(u).unwrap())
                        .collect(),
                );
            }
            let mut carries = std::collections::BTreeSet::from([0i128]);
            for choice in &options {
                carries = carries.iter().flat_map(|c| choice.iter().map(move |x| c + x)).collect();
            }
            if carries.iter().any(|&c| -down <= c && c <= up) {
                prop_assert_eq!(actual, target);
            }
        }

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

    // ---- phones

    #[test]
    fn phones_normalise_to_eleven_digits() {
        for input in [
            "+7 (555) 123-45-67",
            "8 555 123 45 67",
            "5551234567",
            "75551234567",
            "+75551234567",
            "8(555)123-45-67",
            " +7 555 123 4567 ",
            "7.555.123.45.67",
        ] {
            assert_eq!(phone_digits(input).unwrap(), "75551234567", "{input}");
            assert_eq!(phone_7(input).unwrap(), "75551234567", "{input}");
            assert_eq!(phone_e164(input).unwrap(), "+75551234567", "{input}");
        }
        assert_eq!(phone_digits("9551234567").unwrap(), "79551234567");
        assert_eq!(phone_digits("800 123 45 67").unwrap(), "78001234567");
    }

    #[test]
    fn phone_errors() {
        let reason = |s: &str| match phone_digits(s) {
            Err(BuiltinError::InvalidPhone { function, reason }) => {
                assert_eq!(function, "phone_digits");
                reason
            }
            other => panic!("{s:?} gave {other:?}"),
        };
        assert_eq!(reason(""), "has no digits");
        assert_eq!(reason(" - "), "has no digits");
        assert!(reason("555123456").contains("has 9 digits"));
        assert!(reason("755512345678").contains("has 12 digits"));
        assert!(reason("95551234567").contains("starting with 9; expected 7 or 8"));
        assert!(reason("+8 555 123 45 67").contains("not a Russian number"));
        assert!(reason("+380 44 123 4567").contains("not a Russian number"));
        assert!(reason("+5551234567").contains("not a Russian number"));
        assert!(reason("+7 555 123 456").contains("not a Russian number"));
        assert!(reason("7 555 123 45 67 ext 1").contains("contains 'e'"));
        assert!(reason("7+5551234567").contains("'+' that is not at the start"));
        assert_eq!(
            phone_e164("12").unwrap_err().to_string(),
            "phone_e164: the phone has 2 digits; expected 10 (without the country code) or 11 \
             (starting with 7 or 8)"
        );
        assert!(matches!(
            phone_7("x"),
            Err(BuiltinError::InvalidPhone {
                function: "phone_7",
                ..
            })
        ));
    }

    // ---- uuid_v5

    #[test]
    fn uuid_namespace_is_derived_from_the_project_url() {
        assert_eq!(
            UUID_NAMESPACE,
            Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                b"https://github.com/loyalty-bridge/loyalty-bridge"
            )
        );
    }

    #[test]
    fn uuid_v5_is_stable_lowercase_and_hyphenated() {
        // Pinned: these ids may already be stored by MoySklad.
        assert_eq!(uuid_v5("12345"), "e9a0a887-c9ff-5b2f-babc-975caf7d583b");
        assert_eq!(
            uuid_v5("1099511627776"),
            "b48a239f-37b3-5dcb-ae0e-72728c8ac8d4"
        );
        assert_eq!(uuid_v5(""), "7949efb5-86a5-5a6b-bd67-45a3cbc784b3");
        assert_eq!(uuid_v5("12345"), uuid_v5("12345"));
        assert_ne!(uuid_v5("12345"), uuid_v5("12346"));
        let id = uuid_v5("Иван");
        assert_eq!(id.len(), 36);
        assert_eq!(id, id.to_lowercase());
        assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 5);
    }

    // ---- dates

    #[test]
    fn ms_to_iso_attaches_the_offset() {
        assert_eq!(
            ms_to_iso("2023-07-14 00:00:00", "+03:00").unwrap(),
            "2023-07-14T00:00:00+03:00"
        );
        assert_eq!(
            ms_to_iso("2023-07-14 23:59:59", "-0530").unwrap(),
            "2023-07-14T23:59:59-05:30"
        );
        assert_eq!(
            ms_to_iso("2023-07-14 10:00:00", "Z").unwrap(),
            "2023-07-14T10:00:00+00:00"
        );
        assert_eq!(
            ms_to_iso("2023-07-14 10:00:00", "+00:00").unwrap(),
            "2023-07-14T10:00:00+00:00"
        );
    }

    #[test]
    fn ms_to_iso_errors() {
        for bad in [
            "2023-07-14T00:00:00",
            "2023-07-14",
            "2023-7-14 00:00:00",
            "2023-02-30 00:00:00",
            "",
        ] {
            assert!(
                matches!(
                    ms_to_iso(bad, "+03:00"),
                    Err(BuiltinError::InvalidDate {
                        argument: "date",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        for bad in [
            "03:00",
            "+3:00",
            "+24:00",
            "+03:60",
            "+03-00",
            "UTC",
            "",
            "+030",
            "+０３:00",
        ] {
            assert_eq!(
                ms_to_iso("2023-07-14 00:00:00", bad),
                Err(BuiltinError::InvalidOffset {
                    input: bad.to_string()
                }),
                "{bad}"
            );
        }
        assert_eq!(
            ms_to_iso("14.07.2023", "+03:00").unwrap_err().to_string(),
            "ms_to_iso: date \"14.07.2023\" is not a valid date; expected \"YYYY-MM-DD HH:MM:SS\""
        );
    }

    #[test]
    fn iso_to_ms_converts_zoned_times_to_utc() {
        assert_eq!(
            iso_to_ms("2023-07-14T10:00:00+03:00").unwrap(),
            "2023-07-14 07:00:00"
        );
        assert_eq!(
            iso_to_ms("2023-07-14T01:00:00+03:00").unwrap(),
            "2023-07-13 22:00:00"
        );
        assert_eq!(
            iso_to_ms("2026-11-29T10:15:00.123Z").unwrap(),
            "2026-11-29 10:15:00"
        );
        assert_eq!(
            iso_to_ms("2023-07-14T10:00:00-0130").unwrap(),
            "2023-07-14 11:30:00"
        );
        assert_eq!(
            iso_to_ms("2023-07-14 10:00:00+03:00").unwrap(),
            "2023-07-14 07:00:00"
        );
    }

    #[test]
    fn iso_to_ms_keeps_naive_times_and_dates() {
        assert_eq!(
            iso_to_ms("2023-07-14T10:00:00").unwrap(),
            "2023-07-14 10:00:00"
        );
        assert_eq!(
            iso_to_ms("2023-07-14 10:00:00").unwrap(),
            "2023-07-14 10:00:00"
        );
        assert_eq!(
            iso_to_ms("2023-07-14T10:00:00.999").unwrap(),
            "2023-07-14 10:00:00"
        );
        assert_eq!(iso_to_ms("2023-07-14").unwrap(), "2023-07-14 00:00:00");
    }

    #[test]
    fn iso_to_ms_errors() {
        for bad in [
            "",
            "14.07.2023",
            "2023-07-14T25:00:00",
            "2023-13-01",
            "yesterday",
            "2023-07-14T10:00",
        ] {
            assert!(
                matches!(
                    iso_to_ms(bad),
                    Err(BuiltinError::InvalidDate {
                        function: "iso_to_ms",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn date_to_ms_reads_birthdates() {
        assert_eq!(date_to_ms("14.07.2023").unwrap(), "2023-07-14 00:00:00");
        assert_eq!(date_to_ms("2023-07-14").unwrap(), "2023-07-14 00:00:00");
        assert_eq!(date_to_ms("06.05.1990").unwrap(), "1990-05-06 00:00:00");
        for bad in [
            "",
            "1990-05-06T00:00:00",
            "31.02.2023",
            "07/14/2023",
            "2023-07-14 ",
        ] {
            assert!(
                matches!(
                    date_to_ms(bad),
                    Err(BuiltinError::InvalidDate {
                        function: "date_to_ms",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            date_to_ms("31.02.2023").unwrap_err().to_string(),
            "date_to_ms: date \"31.02.2023\" is not a valid date; expected \"DD.MM.YYYY\" or \"YYYY-MM-DD\""
        );
    }

    // ---- decimal_of

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
