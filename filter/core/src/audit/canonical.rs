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
    let mut out = Vec::with_capacity(512);
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write(v, out);
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
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Scalars serialize infallibly; an empty write would fail verification, not pass it.
    if let Ok(bytes) = serde_json::to_vec(value) {
        out.extend(bytes);
    }
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
    fn parsing_the_output_gives_the_same_bytes() {
        let v = json!({"decision_id": "d", "input": {"h": {"B": "1", "a": "2"}}, "seq": 18446744073709551615u64});
        let bytes = to_vec(&v);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(to_vec(&back), bytes);
    }
}
