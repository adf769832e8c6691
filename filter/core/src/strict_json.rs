//! JSON parsing that refuses duplicate object keys at any depth.
//!
//! `serde_json` keeps the last of two equal keys. For a token that means
//! `{"sub":"alice","sub":"admin"}` could be read one way by Palisade and another
//! way by a downstream system, so duplicate claim names are a verification
//! failure (RFC 7519 §4 lets a parser reject them, and we must).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Parses `bytes` as JSON, failing on duplicate keys in any object.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<StrictValue>(bytes).map(|v| v.0)
}

/// True when `err` (from this module) is a duplicate key rather than bad syntax.
pub fn is_duplicate_key(err: &serde_json::Error) -> bool {
    err.is_data() && err.to_string().starts_with("duplicate key")
}

/// A key serde_json uses internally for arbitrary-precision numbers; regorus's
/// conversion from `serde_json::Value` reads an object holding it as a number
/// (or, if unparsable, turns the whole document undefined), so attacker-shaped
/// JSON could hide or rewrite a claim. It never appears in real tokens.
const RESERVED_KEY: &str = "$serde_json::private::Number";

/// Parses `text` as JSON, failing on duplicate keys in any object.
pub fn from_str(text: &str) -> Result<Value, serde_json::Error> {
    from_slice(text.as_bytes())
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if key == RESERVED_KEY {
                return Err(de::Error::custom(format!("reserved key `{key}`")));
            }
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_json() {
        let v = from_str(r#"{"a":[1,2.5,{"b":null}],"c":true}"#).unwrap();
        assert_eq!(v["a"][1], 2.5);
        assert_eq!(v["c"], true);
    }

    #[test]
    fn rejects_top_level_duplicate() {
        let err = from_str(r#"{"sub":"alice","sub":"admin"}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key `sub`"), "{err}");
        assert!(is_duplicate_key(&err));
    }

    #[test]
    fn rejects_nested_duplicate() {
        assert!(from_str(r#"{"a":[{"x":1,"x":2}]}"#).is_err());
    }

    #[test]
    fn rejects_the_serde_json_number_marker() {
        let err = from_str(r#"{"sub":{"$serde_json::private::Number":"1"}}"#).unwrap_err();
        assert!(!is_duplicate_key(&err));
    }

    #[test]
    fn rejects_trailing_garbage() {
        let err = from_str(r#"{"a":1} x"#).unwrap_err();
        assert!(!is_duplicate_key(&err));
    }
}
