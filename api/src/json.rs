//! Cheap JSON object surgery for pass-through translators.
//!
//! [`RawObject`] parses only the top level of a JSON object: every value stays
//! the exact text the client sent, in the client's order, so a translator can
//! rewrite a few fields and forward everything else untouched - including
//! fields it has never heard of - without building a `Value` tree.

use crate::wire::Key;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A JSON object whose values are kept as raw JSON text, in order.
#[derive(Debug, Default)]
pub struct RawObject<'a> {
    fields: Vec<(Cow<'a, str>, Cow<'a, RawValue>)>,
}

impl<'a> RawObject<'a> {
    /// Parses `json`, which must be a JSON object. Duplicate keys are kept
    /// once (the last one wins, as in most JSON parsers).
    pub fn parse(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let object = de.deserialize_map(ObjectVisitor)?;
        de.end()?;
        Ok(object)
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Deserializes the value of `key`; `Ok(None)` when the key is absent.
    pub fn get_as<T: de::Deserialize<'a>>(
        &'a self,
        key: &str,
    ) -> Result<Option<T>, serde_json::Error> {
        self.get(key)
            .map(|raw| serde_json::from_str(raw.get()))
            .transpose()
    }

    /// Sets `key` to `value`, keeping its position if it exists.
    pub fn set(
        &mut self,
        key: &str,
        value: impl serde::Serialize,
    ) -> Result<(), serde_json::Error> {
        let raw = serde_json::value::to_raw_value(&value)?;
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = Cow::Owned(raw),
            None => self
                .fields
                .push((Cow::Owned(key.to_owned()), Cow::Owned(raw))),
        }
        Ok(())
    }

    /// Removes `key`, returning whether it was present.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.fields.len();
        self.fields.retain(|(k, _)| k != key);
        self.fields.len() != before
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(k, _)| k.as_ref())
    }

    /// Serializes the object back to JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let len: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = Vec::with_capacity(len + 2);
        out.push(b'{');
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_string(&mut out, key);
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.push(b'}');
        out
    }
}

/// Appends `s` to `out` as a JSON string literal.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Serializing a &str into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = RawObject<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Vec<(Cow<'de, str>, Cow<'de, RawValue>)> =
            Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(Key(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            if let Some(slot) = fields.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = Cow::Borrowed(value);
            } else {
                fields.push((key, Cow::Borrowed(value)));
            }
        }
        Ok(RawObject { fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_raw_text() {
        let src = br#"{"z":1,"model":"a","x":{"deep":[1, 2.50, "\u00e9"]},"k\"q":null}"#;
        let mut obj = RawObject::parse(src).unwrap();
        obj.set("model", "b").unwrap();
        let out = String::from_utf8(obj.to_vec()).unwrap();
        assert_eq!(
            out,
            r#"{"z":1,"model":"b","x":{"deep":[1, 2.50, "\u00e9"]},"k\"q":null}"#
        );
    }

    #[test]
    fn set_appends_and_remove_drops() {
        let mut obj = RawObject::parse(br#"{"a":1}"#).unwrap();
        obj.set("b", true).unwrap();
        assert!(obj.remove("a"));
        assert!(!obj.remove("a"));
        assert_eq!(obj.to_vec(), br#"{"b":true}"#);
    }

    #[test]
    fn rejects_non_objects_and_trailing_garbage() {
        assert!(RawObject::parse(b"[1]").is_err());
        assert!(RawObject::parse(br#"{"a":1} x"#).is_err());
        assert!(RawObject::parse(br#"{"a":}"#).is_err());
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let obj = RawObject::parse(br#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(obj.to_vec(), br#"{"a":2}"#);
    }
}
