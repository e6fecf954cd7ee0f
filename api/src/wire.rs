//! Deserialization of the wire types in one pass.
//!
//! Every wire struct keeps the fields it does not model in an `extra` map.
//! serde's `#[serde(flatten)]` does that by buffering every field of the
//! object first, and the tagged enums (items, content parts, tools) used to
//! go through a `serde_json::Value` and back: each value was parsed two or
//! three times. The impls generated here read each field once, straight
//! into its type, and only the unknown ones into `extra`; a tagged enum
//! reads its `type` (first, as every writer this proxy meets puts it) and
//! hands the rest of the object to the variant's struct. Serialization
//! stays derived.

use serde::de::{self, Deserializer, Visitor};
use std::borrow::Cow;
use std::fmt;

/// An object key or a short string, borrowed from the input unless it
/// holds escapes.
#[derive(Debug)]
pub(crate) struct Key<'de>(pub Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The value of a field once the object has been read: `req` fields must
/// have been there, `opt` fields default, `or(expr)` fields default to
/// `expr`.
macro_rules! field_value {
    (req, $field:ident, $key:literal) => {
        $field.ok_or_else(|| <A::Error as serde::de::Error>::missing_field($key))?
    };
    (opt, $field:ident, $key:literal) => {
        $field.unwrap_or_default()
    };
    (or($default:expr), $field:ident, $key:literal) => {
        $field.unwrap_or_else(|| $default)
    };
}
pub(crate) use field_value;

/// Implements `Deserialize` for a struct with an `extra` map: each listed
/// field (`mode field: "key"`, mode `req`, `opt` or `or(default)`) read
/// straight into its type, `ignore`d keys skipped, every other key kept in
/// `extra`. Also gives the struct `visit_fields`, which reads the rest of
/// an object whose tag a tagged enum has already read.
macro_rules! deserialize_with_extra {
    (
        $ty:ident {
            $( $mode:ident $( ($default:expr) )? $field:ident : $key:literal ),* $(,)?
        }
        $( ignore $( $ignored:literal )|+ )?
    ) => {
        impl $ty {
            /// Reads the (remaining) fields of an object.
            #[allow(clippy::redundant_closure_call)]
            pub(crate) fn visit_fields<'de, A: serde::de::MapAccess<'de>>(
                mut map: A,
            ) -> Result<Self, A::Error> {
                $( let mut $field = None; )*
                let mut extra = serde_json::Map::new();
                while let Some(key) = map.next_key::<$crate::wire::Key<'de>>()? {
                    match &*key.0 {
                        $( $key => $field = Some(map.next_value()?), )*
                        $( $( $ignored )|+ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        } )?
                        _ => {
                            let value = map.next_value()?;
                            extra.insert(key.0.into_owned(), value);
                        }
                    }
                }
                Ok($ty {
                    $( $field: $crate::wire::field_value!($mode $( ($default) )?, $field, $key), )*
                    extra,
                })
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!("an object (", stringify!($ty), ")"))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$ty, A::Error> {
                        $ty::visit_fields(map)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}
pub(crate) use deserialize_with_extra;

/// Reads a tagged object: when its first key is `type` (a string), `fast`
/// reads the rest of it as the kind the tag names; otherwise the whole
/// object is read into a value and `slow` decides.
pub(crate) fn tagged<'de, A, T>(
    mut map: A,
    fast: impl FnOnce(&str, A) -> Result<T, A::Error>,
    slow: impl FnOnce(serde_json::Value) -> Result<T, A::Error>,
) -> Result<T, A::Error>
where
    A: de::MapAccess<'de>,
{
    let mut object = serde_json::Map::new();
    if let Some(first) = map.next_key::<Key<'de>>()? {
        if first.0 == "type" {
            let tag: serde_json::Value = map.next_value()?;
            if let serde_json::Value::String(tag) = tag {
                return fast(&tag, map);
            }
            object.insert("type".into(), tag);
        } else {
            object.insert(first.0.into_owned(), map.next_value()?);
        }
    }
    while let Some(key) = map.next_key::<Key<'de>>()? {
        object.insert(key.0.into_owned(), map.next_value()?);
    }
    slow(serde_json::Value::Object(object))
}

/// The rest of an object whose `type` was `tag`, as a value (a kind no
/// variant models), its `type` first.
pub(crate) fn rest_as_value<'de, A: de::MapAccess<'de>>(
    tag: &str,
    mut map: A,
) -> Result<serde_json::Value, A::Error> {
    let mut object = serde_json::Map::new();
    object.insert("type".into(), serde_json::Value::String(tag.into()));
    while let Some(key) = map.next_key::<Key<'de>>()? {
        object.insert(key.0.into_owned(), map.next_value()?);
    }
    Ok(serde_json::Value::Object(object))
}

/// Reads a value that is a string or a list (`input`, a message's
/// `content`): `text` or `list` makes the result; `what` says what is
/// expected, `name` names the list in an error about one of its elements.
pub(crate) fn text_or_list<'de, D, T, E>(
    d: D,
    what: &'static str,
    name: &'static str,
    text: fn(String) -> T,
    list: fn(Vec<E>) -> T,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: de::Deserialize<'de>,
{
    struct V<T, E> {
        what: &'static str,
        name: &'static str,
        text: fn(String) -> T,
        list: fn(Vec<E>) -> T,
    }
    impl<'de, T, E: de::Deserialize<'de>> Visitor<'de> for V<T, E> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.what)
        }
        fn visit_str<Er: de::Error>(self, v: &str) -> Result<T, Er> {
            Ok((self.text)(v.to_owned()))
        }
        fn visit_string<Er: de::Error>(self, v: String) -> Result<T, Er> {
            Ok((self.text)(v))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
            crate::wire::list(seq, self.name).map(self.list)
        }
    }
    d.deserialize_any(V {
        what,
        name,
        text,
        list,
    })
}

/// Reads a list, an error naming the position that failed
/// (`{name}[{i}]: ...`).
pub(crate) fn list<'de, A, T>(mut seq: A, name: &str) -> Result<Vec<T>, A::Error>
where
    A: de::SeqAccess<'de>,
    T: de::Deserialize<'de>,
{
    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
    loop {
        let i = out.len();
        match seq.next_element::<T>() {
            Ok(Some(v)) => out.push(v),
            Ok(None) => return Ok(out),
            Err(e) => return Err(de::Error::custom(format!("{name}[{i}]: {e}"))),
        }
    }
}
