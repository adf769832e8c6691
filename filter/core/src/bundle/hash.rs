//! File digests exactly as OPA computes them for `.signatures.json`
//! (`v1/bundle/hash.go`, `VerifyBundleFile` in `v1/bundle/verify.go`), so a
//! bundle signed by `opa build --signing-key` or `opa sign` verifies.
//!
//! A file whose base name is `data.json`, `data.yaml`, `.manifest` or
//! `signatures.json` (OPA's `IsStructuredDoc`) is hashed as a document, so
//! whitespace and key order do not matter: OPA parses it (as JSON if it is
//! valid JSON, else as YAML, keeping JSON numbers as written) and hashes
//! a canonical text: objects as `{` key `:` value, `,`-separated, keys in
//! byte order, `}`; arrays as `[` values `]`; strings, numbers, booleans
//! and `null` as Go's `encoding/json` writes them without HTML escaping.
//! Every other file (`*.rego`, `data.yml`, anything else) is hashed as its
//! bytes.

use super::data::yaml_to_json;
use serde_json::Value;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512, Sha512_224, Sha512_256};
use std::collections::BTreeMap;

/// The hash algorithms OPA names in `.signatures.json`, less MD5 and SHA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashAlg {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Sha512_224,
    Sha512_256,
}

impl HashAlg {
    /// OPA's names (`SHA-256`, ...), exactly. MD5 and SHA-1, which OPA
    /// accepts, are refused: collisions for both are practical, so a file
    /// could be swapped under a valid signature.
    pub fn parse(name: &str) -> Result<HashAlg, String> {
        Ok(match name {
            "SHA-224" => HashAlg::Sha224,
            "SHA-256" => HashAlg::Sha256,
            "SHA-384" => HashAlg::Sha384,
            "SHA-512" => HashAlg::Sha512,
            "SHA-512-224" => HashAlg::Sha512_224,
            "SHA-512-256" => HashAlg::Sha512_256,
            "MD5" | "SHA-1" => {
                return Err(format!(
                    "hash algorithm `{name}` is not accepted: its collisions are practical; sign with SHA-256"
                ))
            }
            "" => return Err("no hash algorithm given".into()),
            _ => return Err(format!("unknown hash algorithm `{name}`")),
        })
    }

    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha224 => Sha224::digest(bytes).to_vec(),
            HashAlg::Sha256 => Sha256::digest(bytes).to_vec(),
            HashAlg::Sha384 => Sha384::digest(bytes).to_vec(),
            HashAlg::Sha512 => Sha512::digest(bytes).to_vec(),
            HashAlg::Sha512_224 => Sha512_224::digest(bytes).to_vec(),
            HashAlg::Sha512_256 => Sha512_256::digest(bytes).to_vec(),
        }
    }
}

/// True for the files OPA hashes as documents.
pub(crate) fn is_structured(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    matches!(
        base,
        "data.json" | "data.yaml" | "signatures.json" | ".manifest"
    )
}

/// The digest OPA would list for the file at `path`.
pub(crate) fn file_digest(path: &str, bytes: &[u8], alg: HashAlg) -> Result<Vec<u8>, String> {
    if is_structured(path) {
        Ok(alg.digest(&canonical(bytes)?))
    } else {
        Ok(alg.digest(bytes))
    }
}

/// The text OPA hashes for a structured file.
pub(crate) fn canonical(bytes: &[u8]) -> Result<Vec<u8>, String> {
    // `util.Unmarshal` drops a UTF-8 byte order mark first.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let mut parser = JsonText {
        text: text.as_bytes(),
        at: 0,
    };
    let mut out = Vec::with_capacity(bytes.len());
    parser.skip_space();
    // Not JSON: OPA falls back to YAML (`util.Unmarshal`).
    if parser.value(&mut out, 0).is_err() || {
        parser.skip_space();
        parser.at != parser.text.len()
    } {
        let value = yaml_to_json(bytes)?;
        out.clear();
        canonical_value(&value, &mut out);
    }
    Ok(out)
}

/// Deeper documents are refused (serde_json's own limit is 128).
const MAX_DEPTH: usize = 128;

/// A JSON reader that writes OPA's canonical text as it goes, keeping
/// numbers as written (OPA decodes with `UseNumber`). Go's decoder keeps
/// the last of duplicate keys; so does this (the data loader refuses them).
struct JsonText<'a> {
    text: &'a [u8],
    at: usize,
}

impl JsonText<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), ()> {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), ()> {
        if depth > MAX_DEPTH {
            return Err(());
        }
        self.skip_space();
        match self.peek().ok_or(())? {
            b'{' => {
                self.at += 1;
                let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                self.skip_space();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                } else {
                    loop {
                        self.skip_space();
                        let key = self.string()?;
                        self.eat(b':')?;
                        let mut value = Vec::new();
                        self.value(&mut value, depth + 1)?;
                        members.insert(key, value);
                        self.skip_space();
                        match self.peek() {
                            Some(b',') => self.at += 1,
                            Some(b'}') => {
                                self.at += 1;
                                break;
                            }
                            _ => return Err(()),
                        }
                    }
                }
                out.push(b'{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    go_string(key, out);
                    out.push(b':');
                    out.extend_from_slice(value);
                }
                out.push(b'}');
            }
            b'[' => {
                self.at += 1;
                out.push(b'[');
                self.skip_space();
                if self.peek() == Some(b']') {
                    self.at += 1;
                } else {
                    let mut first = true;
                    loop {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        self.value(out, depth + 1)?;
                        self.skip_space();
                        match self.peek() {
                            Some(b',') => self.at += 1,
                            Some(b']') => {
                                self.at += 1;
                                break;
                            }
                            _ => return Err(()),
                        }
                    }
                }
                out.push(b']');
            }
            b'"' => {
                let s = self.string()?;
                go_string(&s, out);
            }
            b't' => self.literal(b"true", out)?,
            b'f' => self.literal(b"false", out)?,
            b'n' => self.literal(b"null", out)?,
            _ => self.number(out)?,
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
        if self.text.get(self.at..self.at + word.len()) == Some(word) {
            self.at += word.len();
            out.extend_from_slice(word);
            Ok(())
        } else {
            Err(())
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, copied as written.
    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), ()> {
        let start = self.at;
        let digits = |p: &mut Self| {
            let from = p.at;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.at += 1;
            }
            if p.at == from {
                Err(())
            } else {
                Ok(())
            }
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        if self.peek() == Some(b'0') {
            self.at += 1;
        } else {
            digits(self)?;
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            digits(self)?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            digits(self)?;
        }
        out.extend_from_slice(self.text.get(start..self.at).ok_or(())?);
        Ok(())
    }

    /// A JSON string, decoded. A lone surrogate escape becomes U+FFFD, as
    /// in Go.
    fn string(&mut self) -> Result<String, ()> {
        if self.peek() != Some(b'"') {
            return Err(());
        }
        self.at += 1;
        let mut s = String::new();
        loop {
            let rest = self.text.get(self.at..).ok_or(())?;
            let run = rest
                .iter()
                .position(|b| *b == b'"' || *b == b'\\' || *b < 0x20)
                .ok_or(())?;
            // The input is UTF-8 and the run stops at an ASCII byte.
            s.push_str(std::str::from_utf8(rest.get(..run).ok_or(())?).map_err(|_| ())?);
            self.at += run;
            match self.peek().ok_or(())? {
                b'"' => {
                    self.at += 1;
                    return Ok(s);
                }
                b'\\' => {
                    self.at += 1;
                    let escape = self.peek().ok_or(())?;
                    self.at += 1;
                    match escape {
                        b'"' => s.push('"'),
                        b'\\' => s.push('\\'),
                        b'/' => s.push('/'),
                        b'b' => s.push('\u{8}'),
                        b'f' => s.push('\u{c}'),
                        b'n' => s.push('\n'),
                        b'r' => s.push('\r'),
                        b't' => s.push('\t'),
                        b'u' => {
                            let high = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&high)
                                && self.text.get(self.at..self.at + 2) == Some(b"\\u")
                            {
                                let save = self.at;
                                self.at += 2;
                                let low = self.hex4()?;
                                if (0xDC00..0xE000).contains(&low) {
                                    char::from_u32(
                                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00),
                                    )
                                } else {
                                    self.at = save;
                                    None
                                }
                            } else {
                                char::from_u32(high)
                            };
                            s.push(c.unwrap_or('\u{FFFD}'));
                        }
                        _ => return Err(()),
                    }
                }
                _ => return Err(()), // a raw control character
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ()> {
        let digits = self.text.get(self.at..self.at + 4).ok_or(())?;
        let text = std::str::from_utf8(digits).map_err(|_| ())?;
        let value = u32::from_str_radix(text, 16).map_err(|_| ())?;
        self.at += 4;
        Ok(value)
    }
}

/// The canonical text of a parsed value (a YAML document). Numbers are
/// written as Go's `json.Marshal` writes the YAML decoder's int or float64,
/// because that is the text OPA's YAML-to-JSON step hands its hasher.
pub(crate) fn canonical_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            let text = match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i.to_string(),
                (None, Some(u), _) => u.to_string(),
                (None, None, Some(f)) => go_float(f),
                _ => n.to_string(),
            };
            out.extend_from_slice(text.as_bytes());
        }
        Value::String(s) => go_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push(b'{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                go_string(key, out);
                out.push(b':');
                canonical_value(item, out);
            }
            out.push(b'}');
        }
    }
}

/// Go's `encoding/json` float64 text: shortest round-trip digits, in
/// exponent form below 1e-6 or from 1e21 (`1e+21`, `1e-7`).
pub(crate) fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => text,
        }
    } else {
        format!("{f}")
    }
}

/// A string as Go's `encoding/json` writes it with `SetEscapeHTML(false)`
/// (Go 1.22 and later: `\b` and `\f` are short escapes).
pub(crate) fn go_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{0}'..='\u{1f}' => {
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            _ => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
#[path = "hash_tests.rs"]
mod tests;
