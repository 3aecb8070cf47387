//! Calls of the functions the native path knows: jq's own (`tostring`, `length`, …) and the
//! built-ins.

use std::borrow::Cow;

use rust_decimal::Decimal;
use serde_json::Value;

use super::value::{V, decimal, index_number, insert, member, number_of, small_int_text, text_of};
use super::{Fun0, Stop};
use crate::builtins::{self, AllocInput, AllocLine, Builtin, BuiltinError, Signature};

/// Beyond this many entries `from_entries` goes to jaq (keys are kept unique by a scan).
pub(super) const MAX_BUILT_ENTRIES: usize = 64;

pub(super) fn call0<'a>(f: Fun0, v: &V<'a>) -> Result<V<'a>, Stop> {
    Ok(match f {
        Fun0::Not => V::Own(Value::Bool(!v.truthy())),
        Fun0::Tostring => {
            let small = match v {
                V::Ref(Value::Number(n)) | V::Own(Value::Number(n)) => small_int_text(n),
                _ => None,
            };
            match (v, small) {
                (_, Some(text)) => V::Ref(text),
                (V::Ref(Value::String(_)) | V::Own(Value::String(_)), _) => v.clone(),
                _ => V::Own(Value::String(text_of(&v.json())?.into_owned())),
            }
        }
        Fun0::Length => {
            let n = match v {
                V::Arr(items) => items.len(),
                V::Obj(entries) => entries.len(),
                _ => match &*v.json() {
                    Value::Null => 0,
                    Value::String(s) if s.is_ascii() => s.len(),
                    Value::Array(a) => a.len(),
                    Value::Object(m) => m.len(),
                    _ => return Err(Stop::Unsure),
                },
            };
            V::Own(Value::Number(n.into()))
        }
        Fun0::ToEntries => {
            let entry = |i: usize, v: V<'a>| {
                V::Obj(vec![
                    (Cow::Borrowed("key"), index_number(i)),
                    (Cow::Borrowed("value"), v),
                ])
            };
            match v {
                V::Ref(Value::Array(a)) => V::Arr(
                    a.iter()
                        .enumerate()
                        .map(|(i, x)| entry(i, V::Ref(x)))
                        .collect(),
                ),
                V::Own(Value::Array(a)) => V::Arr(
                    a.iter()
                        .enumerate()
                        .map(|(i, x)| entry(i, V::Own(x.clone())))
                        .collect(),
                ),
                V::Arr(a) => V::Arr(
                    a.iter()
                        .enumerate()
                        .map(|(i, x)| entry(i, x.clone()))
                        .collect(),
                ),
                V::Ref(Value::Object(_)) | V::Own(Value::Object(_)) | V::Obj(_) => {
                    return Err(Stop::Unsure);
                }
                _ => return Err(Stop::Jq),
            }
        }
        Fun0::FromEntries => {
            // `reduce (.[] | {(.key): .value}) as $x ({}; . + $x)`, for string keys.
            // The entries are read where they are (an array built by `map` is not copied).
            let owned: Vec<V<'a>>;
            let items: &[V<'a>] = match v {
                V::Ref(Value::Array(a)) => {
                    owned = a.iter().map(V::Ref).collect();
                    &owned
                }
                V::Own(Value::Array(a)) => {
                    owned = a.iter().cloned().map(V::Own).collect();
                    &owned
                }
                V::Arr(a) => a,
                _ => return Err(Stop::Unsure),
            };
            if items.len() > MAX_BUILT_ENTRIES {
                return Err(Stop::Unsure);
            }
            let mut map = Vec::with_capacity(items.len());
            for e in items {
                let field = |name: &str| match e {
                    V::Ref(Value::Object(m)) => member(m, name).map(V::Ref),
                    V::Own(Value::Object(m)) => member(m, name).cloned().map(V::Own),
                    V::Obj(entries) => entries
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone()),
                    _ => None,
                };
                let (Some(key), Some(value)) = (field("key"), field("value")) else {
                    return Err(Stop::Unsure);
                };
                let key = key.as_text().ok_or(Stop::Unsure)?;
                insert(&mut map, key, value);
            }
            V::Obj(map)
        }
    })
}

/// `builtin` on `v`, with its argument's value when it takes one. A failure is jaq's to report
/// (`Stop::Jq`): the built-in fails there too, with its own message.
pub(super) fn call_builtin<'a>(
    builtin: &Builtin,
    v: &V<'a>,
    arg: Option<&V<'a>>,
) -> Result<V<'a>, Stop> {
    let text = |v: &V<'a>| v.as_text().ok_or(Stop::Jq);
    let string = |s: String| V::Own(Value::String(s));
    Ok(match (builtin.signature, arg) {
        (Signature::Text(f), None) => string(f(&text(v)?).map_err(|_| Stop::Jq)?),
        (Signature::TextText(f), Some(arg)) => {
            string(f(&text(v)?, &text(arg)?).map_err(|_| Stop::Jq)?)
        }
        (Signature::Number(f), None) => number_of(f(decimal(v)?).ok_or(Stop::Jq)?)?,
        (Signature::NumberNumber(f), Some(arg)) => {
            let (a, b) = (decimal(v)?, decimal(arg)?);
            number_of(f(a, b).ok_or(Stop::Jq)?)?
        }
        (Signature::Round(f), Some(places)) => {
            // As jaq's adapter reads `places`: a whole number from 0 to 10.
            let places = u32::try_from(decimal(places)?.trunc().mantissa())
                .ok()
                .filter(|p| *p <= 10)
                .ok_or(Stop::Jq)?;
            number_of(f(decimal(v)?, places))?
        }
        (Signature::Numbers(f), None) => number_of(f(&decimals(v)?).ok_or(Stop::Jq)?)?,
        (Signature::Json(f), None) => V::Own(f(v.clone().into_value())),
        (Signature::Positions(f), Some(total)) => {
            let total = decimal(total)?;
            priced(builtin.name, v, |inputs| f(inputs, total))?
        }
        (Signature::PositionsEach(f), Some(discounts)) => {
            let discounts = decimals(discounts)?;
            priced(builtin.name, v, |inputs| f(inputs, &discounts))?
        }
        (Signature::Shares(f), Some(total)) => {
            let shares = f(&decimals(v)?, decimal(total)?).map_err(|_| Stop::Jq)?;
            V::Arr(
                shares
                    .into_iter()
                    .map(number_of)
                    .collect::<Result<_, _>>()?,
            )
        }
        // Not reached: the compiler matched the call's arity with the signature's.
        _ => return Err(Stop::Unsure),
    })
}

/// An array of numbers, as jaq's adapter reads one.
fn decimals(v: &V<'_>) -> Result<Vec<Decimal>, Stop> {
    match v {
        V::Ref(Value::Array(items)) | V::Own(Value::Array(items)) => {
            items.iter().map(|x| decimal(&V::Ref(x))).collect()
        }
        V::Arr(items) => items.iter().map(decimal).collect(),
        _ => Err(Stop::Jq),
    }
}

/// `allocate_discount` or `allocate_lines` (`function`, priced by `price`). Positions borrowed
/// from the input (the usual case) give lines that borrow them too; built positions are made
/// JSON first and priced as jaq's adapter prices them. Any problem: jaq raises the error, with
/// its own text.
pub(super) fn priced<'a>(
    function: &str,
    positions: &V<'a>,
    price: impl FnOnce(&[AllocInput]) -> Result<Vec<AllocLine>, BuiltinError>,
) -> Result<V<'a>, Stop> {
    let borrowed: Option<Vec<&'a Value>> = match positions {
        V::Ref(Value::Array(items)) => Some(items.iter().collect()),
        V::Arr(items) => items
            .iter()
            .map(|p| match p {
                V::Ref(v) => Some(*v),
                _ => None,
            })
            .collect(),
        _ => None,
    };
    match borrowed {
        Some(sources) => priced_lines(function, &sources, price).map(V::Arr),
        None => builtins::priced_json(function, positions.clone().into_value(), price).map(V::Own),
    }
    .map_err(|_| Stop::Jq)
}

/// The lines `price` gives for `sources`: each the position it comes from with `quantity`,
/// `discountedPrice` and `discountPercent` set (and `sn` when split), borrowing the rest of it.
/// A position may give two lines where kopecks demand it.
pub(super) fn priced_lines<'a>(
    function: &str,
    sources: &[&'a Value],
    price: impl FnOnce(&[AllocInput]) -> Result<Vec<AllocLine>, BuiltinError>,
) -> Result<Vec<V<'a>>, String> {
    let field = |p: &Value, name: &str, i: usize| {
        let v = p
            .as_object()
            .and_then(|m| member(m, name))
            .ok_or_else(|| format!("{function}: positions[{i}] has no {name}"))?;
        builtins::decimal_of(v).map_err(|e| format!("{function}: positions[{i}].{name}: {e}"))
    };
    // A position's serial numbers; lines borrow them (a split one takes a part of them).
    let serials = |p: &'a Value| {
        p.get("sn")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    };
    let inputs = sources
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(AllocInput {
                quantity: field(p, "quantity", i)?,
                price: field(p, "price", i)?,
                serials: serials(p).len(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let lines = price(&inputs).map_err(|e| e.to_string())?;
    // Kept as decimals until written or read (a negative zero is `odd_numbers_v`'s to catch).
    let number = |d: Decimal| V::Dec(d.normalize());
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let Value::Object(source) = sources[line.source] else {
            // Not reached: `field` found a quantity in it.
            return Err(format!(
                "{function}: positions[{}] is not an object",
                line.source
            ));
        };
        let mut entries: Vec<(Cow<'a, str>, V<'a>)> = Vec::with_capacity(source.len() + 3);
        for (key, value) in source {
            if !matches!(
                key.as_str(),
                "quantity" | "discountedPrice" | "discountPercent" | "sn"
            ) {
                entries.push((Cow::Borrowed(key.as_str()), V::Ref(value)));
            }
        }
        entries.push((Cow::Borrowed("quantity"), number(line.quantity)));
        entries.push((
            Cow::Borrowed("discountedPrice"),
            number(line.discounted_price),
        ));
        entries.push((
            Cow::Borrowed("discountPercent"),
            number(line.discount_percent),
        ));
        // Serials come from the source's `sn` (none without one); all of them stay borrowed
        // as they are, unless a split divides them. A non-array `sn` is written as `[]`.
        if let Some(sn) = source.get("sn") {
            let all = serials(sources[line.source]);
            entries.push((
                Cow::Borrowed("sn"),
                if sn.is_array() && line.sn == (0..all.len()) {
                    V::Ref(sn)
                } else {
                    V::Arr(all[line.sn].iter().map(V::Ref).collect())
                },
            ));
        }
        // In the order a JSON object has them (sorted keys), for `.[]` and `to_entries`.
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out.push(V::Obj(entries));
    }
    Ok(out)
}
