//! A value of the native evaluation read straight into a typed model (the LoyaltyAPI
//! answer), without building it as a `serde_json::Value` first.

use std::borrow::Cow;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{IntoDeserializer, Visitor};
use serde_json::Value;

use super::value::V;

/// `Deserializer` methods of [`V`] that hand a part of the input to serde_json's own
/// deserializer and read a built value with `deserialize_any`.
macro_rules! read_like_a_value {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<Vis: Visitor<'de>>(
            self,
            $($arg: $ty,)*
            visitor: Vis,
        ) -> Result<Vis::Value, Self::Error> {
            match self {
                V::Ref(v) => serde::Deserializer::$method(v, $($arg,)* visitor),
                V::Own(v) => serde::Deserializer::$method(v, $($arg,)* visitor),
                built => built.deserialize_any(visitor),
            }
        }
    )*};
}

/// A value read straight into a typed model (the LoyaltyAPI answer), as serde_json reads the
/// same value built as a `Value`: parts of the input through serde_json's own deserializer,
/// built arrays and objects as sequences and maps. Anything this reads differently fails, and
/// the caller then reads the built `Value` (`Expr::eval_into`), so a gap costs time, not
/// correctness.
impl<'de> serde::Deserializer<'de> for V<'de> {
    type Error = serde_json::Error;

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit seq map identifier ignored_any
    }

    fn deserialize_any<Vis: Visitor<'de>>(self, visitor: Vis) -> Result<Vis::Value, Self::Error> {
        match self {
            V::Ref(Value::Number(n)) => number_any(NumberText::Borrowed(n.as_str()), visitor),
            V::Own(Value::Number(n)) => number_any(NumberText::Local(n.as_str()), visitor),
            V::Dec(d) => {
                let text = crate::amount::StackText::decimal(d);
                number_any(NumberText::Local(text.as_str()), visitor)
            }
            V::Ref(v) => serde::Deserializer::deserialize_any(v, visitor),
            V::Own(v) => serde::Deserializer::deserialize_any(v, visitor),
            V::Arr(items) => {
                let len = items.len();
                let mut seq = SeqOfV(items.into_iter());
                let out = visitor.visit_seq(&mut seq)?;
                if seq.0.len() != 0 {
                    return Err(serde::de::Error::invalid_length(len, &"fewer elements"));
                }
                Ok(out)
            }
            V::Obj(entries) => visitor.visit_map(MapOfV {
                entries: entries.into_iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<Vis: Visitor<'de>>(
        self,
        visitor: Vis,
    ) -> Result<Vis::Value, Self::Error> {
        match self {
            // Read by `deserialize_any` above, not by serde_json's float detour.
            V::Ref(Value::Number(_)) | V::Own(Value::Number(_)) | V::Dec(_) => {
                visitor.visit_some(self)
            }
            V::Ref(v) => serde::Deserializer::deserialize_option(v, visitor),
            V::Own(v) => serde::Deserializer::deserialize_option(v, visitor),
            built => visitor.visit_some(built),
        }
    }

    fn deserialize_newtype_struct<Vis: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: Vis,
    ) -> Result<Vis::Value, Self::Error> {
        match self {
            V::Ref(v) => serde::Deserializer::deserialize_newtype_struct(v, name, visitor),
            V::Own(v) => serde::Deserializer::deserialize_newtype_struct(v, name, visitor),
            built => visitor.visit_newtype_struct(built),
        }
    }

    // Read as serde_json reads a `Value`: parts of the input by its own deserializer, built
    // arrays and objects as sequences and maps (`deserialize_any`).
    read_like_a_value! {
        deserialize_unit_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
    }

    fn deserialize_enum<Vis: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: Vis,
    ) -> Result<Vis::Value, Self::Error> {
        match self {
            V::Ref(v) => serde::Deserializer::deserialize_enum(v, name, variants, visitor),
            V::Own(v) => serde::Deserializer::deserialize_enum(v, name, variants, visitor),
            // Built objects as enums: left to the `Value` path.
            _ => Err(serde::de::Error::custom("a built value read as an enum")),
        }
    }
}

/// A number read as serde_json's own deserializer reads it — integers as integers, the rest
/// as its text (`amount::NUMBER_TOKEN`) — except that serde_json first tries the number as a
/// float and formats that float back to compare (twice, for every amount of an answer): the
/// text goes as it is, which reads the same.
/// Integers are told by parsing the text, as serde_json's `Number::as_u64`/`as_i64` do with
/// `arbitrary_precision`; a number computed here (`V::Dec`) goes the same way from its text.
fn number_any<'de, Vis: Visitor<'de>>(
    text: NumberText<'de, '_>,
    visitor: Vis,
) -> Result<Vis::Value, serde_json::Error> {
    let digits = text.as_str();
    if let Ok(u) = digits.parse::<u64>() {
        visitor.visit_u64(u)
    } else if let Ok(i) = digits.parse::<i64>() {
        visitor.visit_i64(i)
    } else {
        visitor.visit_map(NumberMap(Some(text)))
    }
}

/// A number's text: borrowed from the input, or from a number built here.
#[derive(Clone, Copy)]
enum NumberText<'de, 't> {
    Borrowed(&'de str),
    Local(&'t str),
}

impl NumberText<'_, '_> {
    fn as_str(&self) -> &str {
        match *self {
            NumberText::Borrowed(text) | NumberText::Local(text) => text,
        }
    }
}

/// serde_json's one-entry map for a number's text.
struct NumberMap<'de, 't>(Option<NumberText<'de, 't>>);

impl<'de> serde::de::MapAccess<'de> for NumberMap<'de, '_> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        if self.0.is_none() {
            return Ok(None);
        }
        seed.deserialize(BorrowedStrDeserializer::new(crate::amount::NUMBER_TOKEN))
            .map(Some)
    }

    fn next_value_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        match self.0.take() {
            Some(NumberText::Borrowed(text)) => {
                seed.deserialize(BorrowedStrDeserializer::new(text))
            }
            Some(NumberText::Local(text)) => {
                seed.deserialize(serde::de::value::StrDeserializer::new(text))
            }
            None => Err(serde::de::Error::custom("a number read twice")),
        }
    }
}

struct SeqOfV<'de>(std::vec::IntoIter<V<'de>>);

impl<'de> serde::de::SeqAccess<'de> for SeqOfV<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0.next().map(|v| seed.deserialize(v)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct MapOfV<'de> {
    entries: std::vec::IntoIter<(Cow<'de, str>, V<'de>)>,
    value: Option<V<'de>>,
}

impl<'de> serde::de::MapAccess<'de> for MapOfV<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        let key = match key {
            Cow::Borrowed(k) => seed.deserialize(BorrowedStrDeserializer::<Self::Error>::new(k)),
            Cow::Owned(k) => seed.deserialize(k.into_deserializer()),
        };
        key.map(Some)
    }

    fn next_value_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        match self.value.take() {
            Some(v) => seed.deserialize(v),
            None => Err(serde::de::Error::custom("a map value read before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
