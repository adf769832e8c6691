//! The bundle's data documents: every `data.json`, `data.yaml` and
//! `data.yml`, at any depth, merged at its directory's path as OPA does
//! (`insertValue` and `internal/merge` in OPA): objects merge key by key;
//! the same key holding anything but two objects is a conflict, and the
//! error names both files. A `data.json` at the bundle root must be an
//! object.

use crate::strict_json;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The merged data, with the file that set each key, for conflict errors.
#[derive(Debug, Default)]
pub(crate) struct DataTree {
    root: Map<String, Value>,
    /// Every key a file inserted (not merged into), by path.
    owners: BTreeMap<Vec<String>, String>,
}

impl DataTree {
    /// Merges `value`, read from `file`, at the path `dir`.
    pub fn insert(&mut self, dir: &[String], value: Value, file: &str) -> Result<(), String> {
        let (last, parents) = match dir.split_last() {
            Some(split) => split,
            None => {
                let Value::Object(map) = value else {
                    return Err(format!(
                        "{file}: data at the bundle root must be a JSON object"
                    ));
                };
                let mut at = Vec::new();
                return merge(&mut self.root, map, &mut at, file, &mut self.owners);
            }
        };
        let mut node = &mut self.root;
        let mut at: Vec<String> = Vec::with_capacity(dir.len());
        for segment in parents {
            at.push(segment.clone());
            if !node.contains_key(segment) {
                node.insert(segment.clone(), Value::Object(Map::new()));
                self.owners.insert(at.clone(), file.to_owned());
            }
            node = match node.get_mut(segment) {
                Some(Value::Object(map)) => map,
                _ => return Err(conflict(&at, file, &self.owners)),
            };
        }
        at.push(last.clone());
        match (node.get_mut(last), value) {
            (None, value) => {
                node.insert(last.clone(), value);
                self.owners.insert(at, file.to_owned());
                Ok(())
            }
            (Some(Value::Object(existing)), Value::Object(map)) => {
                merge(existing, map, &mut at, file, &mut self.owners)
            }
            (Some(_), _) => Err(conflict(&at, file, &self.owners)),
        }
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.root)
    }

    pub fn root(&self) -> &Map<String, Value> {
        &self.root
    }

    /// The file that set the value at `at` (or the object holding it).
    pub fn owner(&self, at: &[String]) -> Option<&str> {
        (0..=at.len())
            .rev()
            .find_map(|n| self.owners.get(at.get(..n).unwrap_or_default()))
            .map(String::as_str)
    }
}

fn merge(
    existing: &mut Map<String, Value>,
    new: Map<String, Value>,
    at: &mut Vec<String>,
    file: &str,
    owners: &mut BTreeMap<Vec<String>, String>,
) -> Result<(), String> {
    for (key, value) in new {
        at.push(key.clone());
        match (existing.get_mut(&key), value) {
            (None, value) => {
                existing.insert(key, value);
                owners.insert(at.clone(), file.to_owned());
            }
            (Some(Value::Object(old)), Value::Object(map)) => merge(old, map, at, file, owners)?,
            (Some(_), _) => return Err(conflict(at, file, owners)),
        }
        at.pop();
    }
    Ok(())
}

/// "`/a/b` is set by both `x/data.json` and `a/data.json`".
fn conflict(at: &[String], file: &str, owners: &BTreeMap<Vec<String>, String>) -> String {
    let earlier = (0..=at.len())
        .rev()
        .find_map(|n| owners.get(at.get(..n).unwrap_or_default()))
        .map_or("an earlier data file".to_owned(), |f| format!("`{f}`"));
    format!(
        "{file}: data at `/{}` conflicts with {earlier}",
        at.join("/")
    )
}

/// The data path of a data file: its directory's segments. OPA strips
/// leading `.` characters from that path (`getNormalizedPath`), so
/// `.hidden/data.json` would land at `/hidden`; such paths are refused
/// rather than silently renamed.
pub(crate) fn data_dir(path: &str) -> Result<Vec<String>, String> {
    let dir = match path.rsplit_once('/') {
        Some((dir, _)) => dir,
        None => return Ok(Vec::new()),
    };
    if dir.starts_with('.') {
        return Err(format!(
            "{path}: OPA would load this data at a path without the leading `.`; rename the directory"
        ));
    }
    Ok(dir.split('/').map(str::to_owned).collect())
}

/// A `data.json`: strict JSON (duplicate keys refused at any depth).
pub(crate) fn parse_json(path: &str, bytes: &[u8]) -> Result<Value, String> {
    strict_json::from_slice(bytes).map_err(|e| format!("{path}: not valid JSON: {e}"))
}

/// A `data.yaml`/`data.yml`, as JSON.
pub(crate) fn parse_yaml(path: &str, bytes: &[u8]) -> Result<Value, String> {
    yaml_to_json(bytes).map_err(|e| format!("{path}: {e}"))
}

/// The key serde_json uses for arbitrary-precision numbers, refused for the
/// reason `strict_json` refuses it in JSON: regorus would read an object
/// holding it as a number.
const SERDE_JSON_NUMBER_KEY: &str = "$serde_json::private::Number";

/// Plain (unquoted) scalars that YAML 1.1, which OPA's YAML library reads,
/// takes as booleans and YAML 1.2, which `yaml_serde` reads, as strings.
const YAML11_BOOLEANS: [&str; 16] = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

/// Parses YAML into JSON values: duplicate keys, tags, non-string keys and
/// non-finite numbers are refused, merge keys (`<<`) applied as OPA's YAML
/// library does. A plain `yes`/`no`/`on`/`off`/`y`/`n` is refused: OPA
/// reads it as a boolean (YAML 1.1) and Palisade would read a string, and
/// `admin: no` must not mean one thing to OPA and another here.
pub(crate) fn yaml_to_json(bytes: &[u8]) -> Result<Value, String> {
    // OPA's `util.Unmarshal` drops a UTF-8 byte order mark.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    if let Some((line, word)) = plain_yaml11_boolean(text) {
        return Err(format!(
            "line {line}: `{word}` is a boolean to OPA (YAML 1.1) but a string to Palisade (YAML 1.2); \
             write `true`/`false`, or quote it if a string is meant"
        ));
    }
    let mut value: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    value
        .apply_merge()
        .map_err(|e| format!("not valid YAML: {e}"))?;
    convert(value)
}

/// What YAML 1.1 (OPA's reader) makes of `s` written plain, when that is
/// not the string YAML 1.2 (`yaml_serde`) makes of it: a boolean word, or
/// a number in a form YAML 1.2 does not know (`0755` octal, `1_000`,
/// `0b101`, sexagesimal `1:30`). The parsed value does not say whether
/// the text was quoted, and an anchor or tag can hide it from a line
/// scan, so such a string is refused however it was written: `data.json`
/// holds it unambiguously.
fn yaml11_reading(s: &str) -> Option<&'static str> {
    if YAML11_BOOLEANS.contains(&s) {
        return Some("a boolean");
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let all = |t: &str, ok: fn(char) -> bool| !t.is_empty() && t.chars().all(ok);
    let octal = |c: char| ('0'..='7').contains(&c) || c == '_';
    let decimal = |c: char| c.is_ascii_digit() || c == '_';
    let number = if let Some(bits) = digits.strip_prefix("0b") {
        all(bits, |c| c == '0' || c == '1' || c == '_')
    } else if digits.len() > 1 && digits.starts_with('0') && !digits.contains('.') {
        all(&digits[1..], octal)
    } else if let Some((whole, _)) = digits.split_once(':') {
        // Sexagesimal: `190:20:30`, `1:30.5`.
        all(whole, decimal)
            && digits
                .split(':')
                .skip(1)
                .all(|part| all(part.split('.').next().unwrap_or(part), decimal))
    } else {
        digits.contains('_')
            && digits.chars().next().is_some_and(|c| c.is_ascii_digit())
            && all(&digits.replace('.', ""), decimal)
    };
    number.then_some("a number")
}

fn yaml11_refusal(s: &str, what: &str) -> String {
    format!(
        "`{s}` is {what} to OPA (YAML 1.1) but a string to Palisade (YAML 1.2), and Palisade cannot tell whether it was quoted; put this data in a data.json"
    )
}

fn convert(value: yaml_serde::Value) -> Result<Value, String> {
    use yaml_serde::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("`{n}` is not a finite number"))?
            }
        }
        Y::String(s) => {
            if let Some(what) = yaml11_reading(&s) {
                return Err(yaml11_refusal(&s, what));
            }
            Value::String(s)
        }
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(convert)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, item) in mapping {
                let Y::String(key) = key else {
                    // Not `yaml_serde::to_string`: the emitter would add
                    // ~100 KiB to the filter for one message.
                    let found = match key {
                        Y::Null => "null",
                        Y::Bool(_) => "a boolean",
                        Y::Number(_) => "a number",
                        Y::Sequence(_) => "a sequence",
                        Y::Mapping(_) => "a mapping",
                        _ => "a tagged value",
                    };
                    return Err(format!("mapping keys must be strings (found {found})"));
                };
                if let Some(what) = yaml11_reading(&key) {
                    return Err(yaml11_refusal(&key, what));
                }
                if key == SERDE_JSON_NUMBER_KEY {
                    return Err(format!("reserved key `{key}`"));
                }
                map.insert(key, convert(item)?);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => return Err(format!("YAML tags are not supported (`{}`)", tagged.tag)),
    })
}

/// The first plain scalar in `text` that is a YAML 1.1 boolean word, as a
/// key, a value, a sequence item or a flow item: `(line, word)`. A line
/// scan, not a YAML parser: it may flag such a word on a line of a block
/// scalar, which is refused loudly, never accepted wrongly.
fn plain_yaml11_boolean(text: &str) -> Option<(usize, &'static str)> {
    for (n, line) in text.lines().enumerate() {
        let line = without_comment(line);
        let mut rest = line.trim_start();
        // Sequence items: `- x`, `- - x`.
        while let Some(after) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("-\t")) {
            rest = after.trim_start();
        }
        let mut scalars = vec![rest];
        if let Some((_, value)) = rest.split_once(": ").or_else(|| rest.split_once(":\t")) {
            scalars.push(value.trim_start());
        }
        // Flow collections: `[yes, no]`, `{a: on}`.
        let flow: Vec<&str> = scalars
            .iter()
            .filter(|s| s.starts_with(['[', '{']))
            .flat_map(|s| {
                let bytes = s.as_bytes();
                bytes
                    .iter()
                    .enumerate()
                    .filter(|(i, b)| {
                        matches!(b, b'[' | b'{' | b',')
                            || (**b == b':' && matches!(bytes.get(i + 1), Some(b' ' | b'\t')))
                    })
                    .filter_map(|(i, _)| s.get(i + 1..).map(str::trim_start))
            })
            .collect();
        scalars.extend(flow);
        for scalar in scalars {
            if let Some(word) = YAML11_BOOLEANS.iter().find(|w| is_plain_at(scalar, w)) {
                return Some((n + 1, word));
            }
        }
    }
    None
}

/// `line` up to a comment: a `#` at its start or after a space or tab.
fn without_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let cut = bytes.iter().enumerate().position(|(i, b)| {
        *b == b'#' && (i == 0 || matches!(bytes.get(i - 1), Some(b' ' | b'\t')))
    });
    match cut {
        Some(at) => line.get(..at).unwrap_or(line),
        None => line,
    }
}

/// `text` starts with `word` followed by the end of a plain scalar.
fn is_plain_at(text: &str, word: &str) -> bool {
    text.strip_prefix(word).is_some_and(|after| {
        let after = after.trim_end();
        after.is_empty()
            || after == ":"
            || after.starts_with([',', ']', '}'])
            || after.starts_with(": ")
            || after.starts_with(":\t")
    })
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
