//! Exact decimal amounts of the LoyaltyAPI, one type per unit so the unit is in the signature:
//! rubles (most sums), kopecks (gift-card sums and the return's `noCashSum`), loyalty points,
//! quantities (3 decimals) and percents. Binary floating point never touches them.
//!
//! On the wire they are JSON numbers, parsed from the number's exact text (serde_json's
//! `arbitrary_precision`) and written back the same way; a JSON string where a number belongs is
//! a type error, not silently accepted.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! decimal_amount {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub Decimal);

        impl $name {
            pub const ZERO: $name = $name(Decimal::ZERO);

            /// Strictly below zero (`-0` is not negative).
            pub fn is_negative(self) -> bool {
                self.0 < Decimal::ZERO
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_decimal(self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_decimal(d).map($name)
            }
        }
    };
}

decimal_amount! {
    /// An amount in rubles, e.g. `123.45`.
    Rubles
}
decimal_amount! {
    /// An amount in kopecks, e.g. `12345` for 123.45 ₽.
    Kopecks
}
decimal_amount! {
    /// Loyalty points (bonuses). Whole or fractional depending on the vendor.
    Points
}
decimal_amount! {
    /// A quantity of goods, up to 3 decimals.
    Quantity
}
decimal_amount! {
    /// A percentage, 0–100.
    Percent
}

const KOPECKS_PER_RUBLE: Decimal = Decimal::ONE_HUNDRED;

impl Rubles {
    pub fn to_kopecks(self) -> Kopecks {
        Kopecks(self.0 * KOPECKS_PER_RUBLE)
    }
}

impl Kopecks {
    pub fn to_rubles(self) -> Rubles {
        Rubles(self.0 / KOPECKS_PER_RUBLE)
    }
}

/// How serde_json passes a number's text with `arbitrary_precision`, both ways: written as a
/// one-field struct of this name and field, read as a one-entry map with this key (as its own
/// `Number` does, and its `Value` parser and writer recognise).
pub(crate) const NUMBER_TOKEN: &str = "$serde_json::private::Number";

pub(crate) fn serialize_decimal<S: Serializer>(value: Decimal, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    // A whole amount written without a point (a quantity of 2, 300 points) is the text
    // serde_json writes for that integer, and a `Value` built from it keeps the integer without
    // scanning its text again (the text path costs a scan and two allocations there). Negative
    // zero (`-0`, which no integer writes) keeps its text below.
    if value.scale() == 0 && !(value.is_zero() && value.is_sign_negative()) {
        if let Ok(i) = i64::try_from(value.mantissa()) {
            return s.serialize_i64(i);
        }
        if let Ok(u) = u64::try_from(value.mantissa()) {
            return s.serialize_u64(u);
        }
    }
    // The number's text as it is (62.95 is written as 62.95), from the stack: no `Number`
    // (a heap string) is built to write it.
    let text = StackText::decimal(value);
    let mut number = s.serialize_struct(NUMBER_TOKEN, 1)?;
    number.serialize_field(NUMBER_TOKEN, text.as_str())?;
    number.end()
}

/// `value` as a JSON number with exactly its text (`250.00` stays `250.00`). The text is
/// formatted on the stack; serde_json then parses it into the number's own copy (its only
/// public way to build an exact number from text), which allocates.
pub fn json_number(value: Decimal) -> Option<serde_json::Number> {
    serde_json::Number::from_str(StackText::decimal(value).as_str()).ok()
}

/// A short text built without the heap; longer writes fail. A `Decimal` needs at most 31
/// bytes (28 digits, sign, point, a leading zero).
#[derive(Default)]
pub(crate) struct StackText {
    bytes: [u8; 32],
    len: usize,
}

impl StackText {
    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s and ASCII digits are ever copied in, so the bytes are UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    /// `value` written as `Decimal`'s `Display` writes it (sign, digits, the point where the
    /// scale puts it: `-0.50`, `250.00`, `0.005`), without the formatting machinery, which
    /// showed in profiles: every amount the bridge reads into a mapping, builds or answers
    /// passes here.
    pub(crate) fn decimal(value: Decimal) -> StackText {
        let mut buffer = itoa::Buffer::new();
        let digits = buffer.format(value.mantissa().unsigned_abs()).as_bytes();
        let scale = value.scale() as usize;
        let mut out = StackText::default();
        // `Display` writes negative zero as `-0`, and so does this.
        if value.is_sign_negative() {
            out.push(b"-");
        }
        if digits.len() > scale {
            let (whole, fraction) = digits.split_at(digits.len() - scale);
            out.push(whole);
            if scale > 0 {
                out.push(b".");
                out.push(fraction);
            }
        } else {
            out.push(b"0.");
            for _ in digits.len()..scale {
                out.push(b"0");
            }
            out.push(digits);
        }
        out
    }

    /// At most 31 bytes are ever pushed (29 digits, a sign, a point; or a sign, `0.` and 28
    /// digits of fraction), so nothing is cut.
    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(self.bytes.len());
        self.bytes[self.len..end].copy_from_slice(&bytes[..end - self.len]);
        self.len = end;
    }
}

fn deserialize_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    d.deserialize_any(DecimalVisitor)
}

fn decimal_of_text<E: serde::de::Error>(text: &str) -> Result<Decimal, E> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| E::custom(format!("number {text} is out of range")))
}

/// A JSON number read exactly. Its text comes as serde_json hands it over (the
/// [`NUMBER_TOKEN`] map, borrowed where it can be); integers may come as integers, and a
/// number serde_json found to be exactly its shortest float text as that float.
struct DecimalVisitor;

impl<'de> serde::de::Visitor<'de> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON number")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Decimal, E> {
        decimal_of_text(&v.to_string())
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Decimal, E> {
        decimal_of_text(&v.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Decimal, E> {
        // serde_json passes a float only when its shortest text is the number's text: that
        // text, as serde_json writes it, is the number.
        let number = serde_json::Number::from_f64(v)
            .ok_or_else(|| E::custom(format!("number {v} is not finite")))?;
        decimal_of_text(number.as_str())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Decimal, A::Error> {
        use serde::de::Error;
        // The key comes borrowed (serde_json's own and the native path's reader, `fast/read.rs`, both hand it so): no copy.
        match map.next_key_seed(TextSeed)? {
            Some(key) if key == NUMBER_TOKEN => {}
            _ => return Err(A::Error::invalid_type(serde::de::Unexpected::Map, &self)),
        }
        // A bad text fails here, not inside the value: a path-tracking reader (the request's
        // `parameter`) then names the amount's field, not the token.
        map.next_value_seed(DecimalText)?.map_err(A::Error::custom)
    }
}

/// A number's text parsed where it is handed over, borrowed or not: no copy of it (a number
/// built by a mapping, as `allocate_discount`'s prices, comes as a passing `&str`).
struct DecimalText;

impl<'de> serde::de::DeserializeSeed<'de> for DecimalText {
    type Value = Result<Decimal, serde::de::value::Error>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for DecimalText {
    type Value = Result<Decimal, serde::de::value::Error>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number's text")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(decimal_of_text(v))
    }
}

/// A string, borrowed from the input when it has no escapes (a key skipped or a number's text
/// read costs no allocation).
pub(crate) struct TextSeed;

impl<'de> serde::de::DeserializeSeed<'de> for TextSeed {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TextSeed {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn amounts_are_written_as_display_writes_them() {
        for text in [
            "0",
            "-0",
            "0.00",
            "-0.00",
            "0.005",
            "250.00",
            "-1.5",
            "123.456",
            "1e-28",
            "2",
            "-2",
            "18446744073709551616",
            "-9223372036854775809",
        ] {
            let value = Decimal::from_scientific(text)
                .or_else(|_| Decimal::from_str(text))
                .unwrap();
            let shown = value.to_string();
            assert_eq!(StackText::decimal(value).as_str(), shown, "{text}");
            // The same text whichever way serde_json writes the amount: as JSON, or as a
            // `Value` (whole amounts take their own path there).
            assert_eq!(
                serde_json::to_string(&Points(value)).unwrap(),
                shown,
                "{text}"
            );
            let built = serde_json::to_value(Points(value)).unwrap();
            assert_eq!(
                built.as_number().map(|n| n.as_str()),
                Some(shown.as_str()),
                "{text}"
            );
        }
        for value in [
            Decimal::MAX,
            Decimal::MIN,
            Decimal::new(1, 28),
            Decimal::new(-1, 28),
        ] {
            assert_eq!(StackText::decimal(value).as_str(), value.to_string());
        }
    }

    proptest::proptest! {
        #[test]
        fn an_amount_is_written_and_built_with_its_text(
            lo: u32, mid: u32, negative: bool, scale in 0u32..=4, small: bool,
        ) {
            // Small whole amounts too (integers take their own path), and negative zero.
            let (lo, mid) = if small { (lo % 1000, 0) } else { (lo, mid) };
            let value = Decimal::from_parts(lo, mid, 0, negative, scale);
            let text = value.to_string();
            proptest::prop_assert_eq!(&serde_json::to_string(&Rubles(value)).unwrap(), &text);
            let built = serde_json::to_value(Rubles(value)).unwrap();
            proptest::prop_assert_eq!(built.as_number().map(|n| n.as_str()), Some(text.as_str()));
        }

        #[test]
        fn any_decimal_is_written_as_display_writes_it(
            lo: u32, mid: u32, hi: u32, negative: bool, scale in 0u32..=28,
        ) {
            let value = Decimal::from_parts(lo, mid, hi, negative, scale);
            let written = StackText::decimal(value);
            proptest::prop_assert_eq!(written.as_str(), value.to_string());
        }
    }

    #[test]
    fn converts_exactly() {
        assert_eq!(Rubles(d("123.45")).to_kopecks(), Kopecks(d("12345")));
        assert_eq!(Kopecks(d("283100")).to_rubles(), Rubles(d("2831")));
        assert_eq!(Kopecks(d("1")).to_rubles(), Rubles(d("0.01")));
    }

    #[test]
    fn negative_zero_is_not_negative() {
        assert!(!Rubles(d("-0")).is_negative());
        assert!(Rubles(d("-0.01")).is_negative());
    }

    #[test]
    fn json_numbers_round_trip_exactly() {
        let r: Rubles = serde_json::from_str("1107.5").unwrap();
        assert_eq!(r, Rubles(d("1107.5")));
        assert_eq!(serde_json::to_string(&Rubles(d("62.95"))).unwrap(), "62.95");
        // Into a `Value` too (the request as the mapping sees it), text kept.
        assert_eq!(
            serde_json::to_value(Rubles(d("62.950")))
                .unwrap()
                .to_string(),
            "62.950"
        );
        let v: Value = serde_json::from_str(r#"{"a": 18.850, "b": 7}"#).unwrap();
        let r: Rubles = serde_json::from_value(v["a"].clone()).unwrap();
        assert_eq!(r.to_string(), "18.850");
        assert_eq!(Rubles::deserialize(&v["b"]).unwrap(), Rubles(d("7")));
        assert!(Rubles::deserialize(&Value::String("1".into())).is_err());
        let k: Kopecks = serde_json::from_str("283100.0").unwrap();
        assert_eq!(serde_json::to_string(&k).unwrap(), "283100.0");
        // A float parse would give 0.30000000000000004 here.
        let q: Quantity = serde_json::from_str("0.3").unwrap();
        assert_eq!(q.0, d("0.1") + d("0.2"));
        let e: Points = serde_json::from_str("1.5e2").unwrap();
        assert_eq!(e.0, d("150"));
    }

    #[test]
    fn strings_and_out_of_range_numbers_are_refused() {
        assert!(serde_json::from_str::<Rubles>("\"12.5\"").is_err());
        assert!(serde_json::from_str::<Rubles>("1e400").is_err());
        assert!(serde_json::from_str::<Rubles>("null").is_err());
    }
}
