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

/// A top-level object written canonically with one more member, `key`
/// (absent from `map`) holding `extra`: the bytes of the same object after
/// `map.insert(key, extra)`, without copying the map.
pub fn to_vec_with(map: &serde_json::Map<String, Value>, key: &str, extra: &Value) -> Vec<u8> {
    let mut members: Vec<(&str, &Value)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    members.push((key, extra));
    members.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(1024);
    out.push(b'{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        member(i, k, v, &mut out);
    }
    out.push(b'}');
    out
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
    fn adding_a_member_writes_what_inserting_it_would() {
        let v = json!({"b": 1, "z": {"y": 2, "x": [1]}});
        let with = to_vec_with(v.as_object().unwrap(), "hash", &json!("h"));
        let mut inserted = v.clone();
        inserted["hash"] = json!("h");
        assert_eq!(with, to_vec(&inserted));
    }

    #[test]
    fn parsing_the_output_gives_the_same_bytes() {
        let v = json!({"decision_id": "d", "input": {"h": {"B": "1", "a": "2"}}, "seq": 18446744073709551615u64});
        let bytes = to_vec(&v);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(to_vec(&back), bytes);
    }
}
