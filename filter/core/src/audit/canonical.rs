//! The canonical bytes of an audit record, which its hash covers.
//!
//! Compact JSON with every object's keys in byte order, at every depth, as
//! `serde_json` writes strings and numbers. It does not depend on how the
//! record was built or parsed (`serde_json` may keep insertion order), so a
//! verifier that parses a line from the log gets the same bytes the filter
//! hashed.

use serde_json::Value;

/// Writes `value` canonically.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            // serde_json keeps keys sorted unless built with
            // `preserve_order`; sort only when they are not.
            let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b);
            if sorted {
                for (i, (key, v)) in map.iter().enumerate() {
                    member(i, key, v, out);
                }
            } else {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for (i, key) in keys.into_iter().enumerate() {
                    if let Some(v) = map.get(key) {
                        member(i, key, v, out);
                    }
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        // Scalars write infallibly into a Vec; a failure would fail
        // verification, never pass it.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// A top-level object (without `key`) written canonically, with where a
/// member `key` goes: the bytes are what its hash covers, and
/// [`Marked::with`] gives the bytes with the member inserted, without
/// writing the object again.
pub fn to_vec_marked(map: &serde_json::Map<String, Value>, key: &str) -> Marked {
    let mut members: Vec<(&str, &Value)> = map
        .iter()
        .filter(|(k, _)| k.as_str() != key)
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    if !members.windows(2).all(|w| w[0].0 < w[1].0) {
        members.sort_by(|a, b| a.0.cmp(b.0));
    }
    let mut out = Vec::with_capacity(2048);
    out.push(b'{');
    let mut at = None;
    for (i, (k, v)) in members.iter().enumerate() {
        if at.is_none() && key < *k {
            at = Some((out.len(), i));
        }
        member(i, k, v, &mut out);
    }
    let at = at.unwrap_or((out.len(), members.len()));
    out.push(b'}');
    Marked {
        bytes: out,
        at: at.0,
        index: at.1,
        len: members.len(),
        key: key.to_owned(),
    }
}

/// Canonical bytes of an object, and where one more member would go.
#[derive(Debug, Clone)]
pub struct Marked {
    pub bytes: Vec<u8>,
    /// Byte offset of the insertion point.
    at: usize,
    /// The member's index among the object's members, once inserted.
    index: usize,
    len: usize,
    key: String,
}

impl Marked {
    /// The canonical bytes of the object with the marked member holding
    /// `value`: what writing it again after inserting would give.
    pub fn with(self, value: &Value) -> Vec<u8> {
        let mut piece = Vec::with_capacity(self.key.len() + 80);
        if self.index > 0 {
            piece.push(b',');
        }
        let _ = serde_json::to_writer(&mut piece, &self.key);
        piece.push(b':');
        write(value, &mut piece);
        if self.index == 0 && self.len > 0 {
            piece.push(b',');
        }
        let mut out = self.bytes;
        out.splice(self.at..self.at, piece);
        out
    }
}

fn member(i: usize, key: &str, value: &Value, out: &mut Vec<u8>) {
    if i > 0 {
        out.push(b',');
    }
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
    write(value, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth_and_nothing_else_changes() {
        let v = json!({"b": 1, "a": {"z": [3, {"y": null, "x": "é\n"}], "c": 1.5}});
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            r#"{"a":{"c":1.5,"z":[3,{"x":"é\n","y":null}]},"b":1}"#
        );
    }

    #[test]
    fn a_marked_member_is_spliced_where_inserting_it_would_write_it() {
        let hash = json!("ab12");
        for record in [
            json!({}),
            json!({"a": 1}),
            json!({"z": 1}),
            json!({"a": 1, "z": [1, {"y": 2, "b": 3}]}),
            json!({"chain_id": "c", "enforced": true, "http_status": 200, "seq": 4}),
            json!({"hash": "stale", "a": 1}),
        ] {
            let map = record.as_object().unwrap().clone();
            let marked = to_vec_marked(&map, "hash");
            let mut without = map.clone();
            without.remove("hash");
            assert_eq!(marked.bytes, to_vec(&Value::Object(without)), "{record}");
            let mut with = map.clone();
            with.insert("hash".into(), hash.clone());
            assert_eq!(marked.with(&hash), to_vec(&Value::Object(with)), "{record}");
        }
    }

    #[test]
    fn parsing_the_output_gives_the_same_bytes() {
        let v = json!({"decision_id": "d", "input": {"h": {"B": "1", "a": "2"}}, "seq": 18446744073709551615u64});
        let bytes = to_vec(&v);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(to_vec(&back), bytes);
    }
}
