//! Money over lines, to the kopeck. `allocate_discount` spreads a receipt-level discount (UDS
//! computes discounts per receipt, MoySklad wants them per position) over the positions;
//! `allocate_lines` takes one discount per position (vendors that price line by line);
//! `prorate` splits an amount over weights. Where no single unit price gives a position its
//! discount exactly, the position is split in two (LoyaltyAPI recalc rules).

#[cfg(test)]
mod tests;

use std::ops::Range;

use rust_decimal::Decimal;
use serde_json::Value;

use super::BuiltinError;
use super::money::decimal_of;

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

/// Amounts beyond exact 128-bit integer arithmetic (not reachable with real receipts); each
/// public function reports it as [`BuiltinError::Overflow`] under its own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TooLarge;

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
    const FUNCTION: &str = "allocate_discount";
    let too_large = |TooLarge| BuiltinError::Overflow { function: FUNCTION };
    if total_discount < Decimal::ZERO {
        return Err(BuiltinError::NegativeDiscount {
            discount: total_discount,
        });
    }
    let discount = exact_kopecks(total_discount).ok_or(BuiltinError::DiscountNotKopecks {
        discount: total_discount,
    })?;
    let items = items_of(FUNCTION, positions)?;
    let total = items
        .iter()
        .try_fold(0i128, |sum, item| sum.checked_add(item.amount))
        .ok_or(BuiltinError::Overflow { function: FUNCTION })?;
    if discount > total {
        return Err(BuiltinError::DiscountAboveTotal {
            discount: total_discount,
            total: kopecks_to_rubles(total).map_err(too_large)?,
        });
    }

    let amounts: Vec<i128> = items.iter().map(|item| item.amount).collect();
    let shares = proportional_shares(&amounts, discount).map_err(too_large)?;
    let targets: Vec<i128> = amounts.iter().zip(&shares).map(|(a, s)| a - s).collect();
    let plans = plan_lines(&items, &targets).map_err(too_large)?;
    lines_of(positions, &items, plans).map_err(too_large)
}

/// Prices every position so that its line total is its amount (`round_money(price ×
/// quantity)`) less its own discount: `discounts[i]` (rubles, at most 2 decimals) for
/// `positions[i]`, for vendors that compute discounts line by line (MAXMA's rows, Premium
/// Bonus's items).
///
/// Each position is priced exactly as `allocate_discount` prices a receipt of that position
/// alone, so the lines are those of `[p] | allocate_discount(d)` per position, concatenated: a
/// whole quantity meets its discount exactly, split into two lines a kopeck apart when its
/// units cannot share it evenly (serial numbers divided); a quantity below one unit meets it
/// exactly; a fractional quantity above one unit (`1.5` kg) takes the nearest unit price, which
/// may miss its discount by up to `⌊⌈q⌉/2⌋` kopecks. Nothing is carried from one position to
/// another: each keeps the discount its vendor gave it, and no other line's discount changes
/// to make up a weighed line's miss.
///
/// A discount above its position's amount is an error, not clamped: the vendor's numbers do not
/// fit the cart, and clamping would quietly price the receipt above what the vendor charged.
///
/// Errors: not one discount per position; a negative discount, or one with more than 2
/// decimals; a discount above its position's amount; the positions' errors of
/// `allocate_discount` (quantity ≤ 0, price negative or with more than 2 decimals).
pub fn allocate_lines(
    positions: &[AllocInput],
    discounts: &[Decimal],
) -> Result<Vec<AllocLine>, BuiltinError> {
    const FUNCTION: &str = "allocate_lines";
    let too_large = |TooLarge| BuiltinError::Overflow { function: FUNCTION };
    if positions.len() != discounts.len() {
        return Err(BuiltinError::DiscountCount {
            positions: positions.len(),
            discounts: discounts.len(),
        });
    }
    let items = items_of(FUNCTION, positions)?;
    let mut plans = Vec::with_capacity(items.len());
    for (index, (item, &discount)) in items.iter().zip(discounts).enumerate() {
        if discount < Decimal::ZERO {
            return Err(BuiltinError::NegativeLineDiscount { index, discount });
        }
        let kopecks = exact_kopecks(discount)
            .ok_or(BuiltinError::LineDiscountNotKopecks { index, discount })?;
        if kopecks > item.amount {
            return Err(BuiltinError::LineDiscountAboveAmount {
                index,
                discount,
                amount: kopecks_to_rubles(item.amount).map_err(too_large)?,
            });
        }
        // A receipt of this position alone: its share is the whole discount, and there is
        // nothing to carry a weighed position's miss to.
        let plan = plan_lines(std::slice::from_ref(item), &[item.amount - kopecks]);
        plans.extend(plan.map_err(too_large)?);
    }
    lines_of(positions, &items, plans).map_err(too_large)
}

/// Splits `total` (rubles, at most 2 decimals) into one share per weight, proportional to the
/// weights, to the kopeck: the shares add up to `total` exactly, each is within one kopeck of
/// its exact proportion `total·w/Σw`, and a zero weight gets 0. The method is
/// `allocate_discount`'s (largest remainder: everyone gets the proportion rounded down and the
/// kopecks left over go one each to the largest remainders, ties to the earlier weight).
/// Weights are any non-negative numbers (amounts, quantities, percentages), compared exactly.
///
/// Errors: a negative `total`, or one with more than 2 decimals; a negative weight; weights
/// adding up to 0 when `total` is not 0 (there is nothing to spread it by); weights or a total
/// too large for exact integer arithmetic.
pub fn prorate(weights: &[Decimal], total: Decimal) -> Result<Vec<Decimal>, BuiltinError> {
    let too_large = |TooLarge| BuiltinError::Overflow {
        function: "prorate",
    };
    if total < Decimal::ZERO {
        return Err(BuiltinError::NegativeProrateTotal { total });
    }
    let kopecks = exact_kopecks(total).ok_or(BuiltinError::ProrateTotalNotKopecks { total })?;
    if let Some((index, &weight)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| **w < Decimal::ZERO)
    {
        return Err(BuiltinError::NegativeWeight { index, weight });
    }
    // The weights as integers in units of the finest decimal any of them has.
    let weights: Vec<Decimal> = weights.iter().map(|w| w.normalize()).collect();
    let scale = weights.iter().map(Decimal::scale).max().unwrap_or(0);
    let units = weights
        .iter()
        .map(|w| mul(w.mantissa(), 10i128.pow(scale - w.scale())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(too_large)?;
    let sum = units
        .iter()
        .try_fold(0i128, |sum, &w| add(sum, w))
        .map_err(too_large)?;
    if sum == 0 && kopecks != 0 {
        return Err(BuiltinError::NoWeight { total });
    }
    proportional_shares(&units, kopecks)
        .and_then(|shares| shares.into_iter().map(kopecks_to_rubles).collect())
        .map_err(too_large)
}

/// The positions validated and in kopecks; errors name `function`.
fn items_of(function: &'static str, positions: &[AllocInput]) -> Result<Vec<Item>, BuiltinError> {
    positions
        .iter()
        .enumerate()
        .map(|(index, position)| Item::new(function, index, position))
        .collect()
}

/// The lines of `positions` priced by `plans` (one per position).
fn lines_of(
    positions: &[AllocInput],
    items: &[Item],
    plans: Vec<Plan>,
) -> Result<Vec<AllocLine>, TooLarge> {
    let mut lines = Vec::with_capacity(positions.len() + 1);
    for (source, ((input, item), plan)) in positions.iter().zip(items).zip(plans).enumerate() {
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
                let first =
                    Decimal::try_from_i128_with_scale(units_high, 0).map_err(|_| TooLarge)?;
                let at = usize::try_from(units_high).map_err(|_| TooLarge)?;
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
    fn line_total(self, unit: i128) -> Result<i128, TooLarge> {
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
    /// `positions[index]` of a call of `function` (which errors name).
    fn new(
        function: &'static str,
        index: usize,
        position: &AllocInput,
    ) -> Result<Self, BuiltinError> {
        if position.quantity <= Decimal::ZERO {
            return Err(BuiltinError::NonPositiveQuantity {
                function,
                index,
                quantity: position.quantity,
            });
        }
        if position.price < Decimal::ZERO {
            return Err(BuiltinError::NegativePrice {
                function,
                index,
                price: position.price,
            });
        }
        let price = exact_kopecks(position.price).ok_or(BuiltinError::PriceNotKopecks {
            function,
            index,
            price: position.price,
        })?;
        let qty = Qty::of(position.quantity);
        let amount = qty
            .line_total(price)
            .map_err(|TooLarge| BuiltinError::Overflow { function })?;
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

/// Largest-remainder shares of `discount` proportional to `amounts` (kopecks, or any whole
/// units for `prorate`'s weights), `discount ≥ 0`, `amounts ≥ 0`. All zero when the amounts
/// are. With `discount ≤ Σ amounts` no share is above its amount.
fn proportional_shares(amounts: &[i128], discount: i128) -> Result<Vec<i128>, TooLarge> {
    let total = amounts.iter().try_fold(0i128, |sum, &a| add(sum, a))?;
    if discount == 0 || total == 0 {
        return Ok(vec![0; amounts.len()]);
    }
    let mut shares = Vec::with_capacity(amounts.len());
    for &amount in amounts {
        shares.push(quot(mul(discount, amount)?, total));
    }
    // Σ remainders = left · total with every remainder < total, so 0 ≤ left < positions, and only
    // positions with a positive remainder (hence a non-zero amount, and a share below it when
    // `discount ≤ total`) get a kopeck.
    let left = discount - shares.iter().sum::<i128>();
    let left = usize::try_from(left).map_err(|_| TooLarge)?;
    if left == 0 {
        // Exact shares (always so for a single position): no remainders to rank.
        return Ok(shares);
    }
    let remainders = amounts
        .iter()
        .map(|&amount| Ok(rem(mul(discount, amount)?, total)))
        .collect::<Result<Vec<_>, TooLarge>>()?;
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
fn plan_lines(items: &[Item], targets: &[i128]) -> Result<Vec<Plan>, TooLarge> {
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
) -> Result<(Vec<i128>, i128), TooLarge> {
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
) -> Result<Option<(Vec<i128>, i128)>, TooLarge> {
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
) -> Result<Option<(i128, Vec<i128>, i128)>, TooLarge> {
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
fn realise(item: Item, total: i128) -> Result<Plan, TooLarge> {
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

fn discount_percent(price: i128, unit: i128) -> Result<Decimal, TooLarge> {
    if price == 0 {
        return Ok(Decimal::new(0, 2));
    }
    let hundredths = div_round(mul(price - unit, 10_000)?, price)?;
    Decimal::try_from_i128_with_scale(hundredths, 2).map_err(|_| TooLarge)
}

/// `value` in kopecks when it has at most 2 decimals (trailing zeros do not count).
fn exact_kopecks(value: Decimal) -> Option<i128> {
    let value = value.normalize();
    let scale = value.scale();
    // A normalized mantissa is below 2^96, so ×100 fits.
    (scale <= 2).then(|| value.mantissa() * 10i128.pow(2 - scale))
}

fn kopecks_to_rubles(kopecks: i128) -> Result<Decimal, TooLarge> {
    Decimal::try_from_i128_with_scale(kopecks, 2).map_err(|_| TooLarge)
}

fn mul(a: i128, b: i128) -> Result<i128, TooLarge> {
    a.checked_mul(b).ok_or(TooLarge)
}

fn add(a: i128, b: i128) -> Result<i128, TooLarge> {
    a.checked_add(b).ok_or(TooLarge)
}

fn sub(a: i128, b: i128) -> Result<i128, TooLarge> {
    a.checked_sub(b).ok_or(TooLarge)
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
fn div_round(n: i128, d: i128) -> Result<i128, TooLarge> {
    Ok(quot(add(mul(2, n)?, d)?, mul(2, d)?))
}

/// `⌈n / d⌉` for `n ≥ 0`, `d > 0`.
fn div_ceil(n: i128, d: i128) -> i128 {
    quot(n, d) + i128::from(rem(n, d) != 0)
}

/// `allocate_discount` or `allocate_lines` (`function`, priced by `price`) on LoyaltyAPI
/// positions as JSON: the same positions with `quantity`, `discountedPrice` and
/// `discountPercent` set (and `sn` divided where a position splits), a position giving two lines
/// where kopecks demand it. The jaq path calls this; the native path builds the same lines
/// borrowing the positions (`fast`).
pub fn priced_json(
    function: &str,
    positions: Value,
    price: impl FnOnce(&[AllocInput]) -> Result<Vec<AllocLine>, BuiltinError>,
) -> Result<Value, String> {
    let Value::Array(sources) = &positions else {
        return Err(format!("{function}: expected an array of positions"));
    };
    let field = |p: &Value, name: &str, i: usize| {
        let v = p
            .as_object()
            .and_then(|m| m.get(name))
            .ok_or_else(|| format!("{function}: positions[{i}] has no {name}"))?;
        decimal_of(v).map_err(|e| format!("{function}: positions[{i}].{name}: {e}"))
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
    let lines = price(&inputs).map_err(|e| e.to_string())?;
    // Written as the native path writes its decimals: normalized, exact text.
    let number =
        |d: Decimal| crate::amount::json_number(d.normalize()).map_or(Value::Null, Value::Number);
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let Value::Object(source) = &sources[line.source] else {
            // Not reached: `field` found a quantity in it.
            return Err(format!(
                "{function}: positions[{}] is not an object",
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
