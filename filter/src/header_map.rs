//! Decoding the proxy-wasm serialized header map, with bounds checks and no
//! UTF-8 assumption on names or values.
//!
//! The SDK's own decoder converts names with `String::from_utf8(..).unwrap()`
//! and indexes without checks; a malformed or non-UTF-8 map would panic and,
//! with `panic = "abort"`, kill the VM for every request on that worker.
//!
//! Layout (little-endian): `count: u32`, then `count` pairs of
//! `(name_len: u32, value_len: u32)`, then for each pair the name bytes, a
//! NUL, the value bytes, a NUL.

/// Serializes pairs in the same layout (used by hosts, such as the harness).
pub fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend((k.as_ref().len() as u32).to_le_bytes());
        out.extend((v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// Decodes a serialized map; `None` if it is malformed.
pub fn decode(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(bytes, 0)? as usize;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    if data > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let sizes = 4 + i * 8;
        let name_len = read_u32(bytes, sizes)? as usize;
        let value_len = read_u32(bytes, sizes + 4)? as usize;
        let (name, next) = field(bytes, data, name_len)?;
        let (value, next) = field(bytes, next, value_len)?;
        data = next;
        pairs.push((name, value));
    }
    Some(pairs)
}

/// `len` bytes at `at`, which must be followed by a NUL; returns them and
/// the offset after the NUL.
fn field(bytes: &[u8], at: usize, len: usize) -> Option<(Vec<u8>, usize)> {
    let end = at.checked_add(len)?;
    let value = bytes.get(at..end)?.to_vec();
    (*bytes.get(end)? == 0).then_some((value, end + 1))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_including_non_utf8() {
        let pairs: &[(&[u8], &[u8])] = &[
            (b":path", b"/x"),
            (b"x-\xff", b"\xfe\x00\x01"),
            (b"empty", b""),
        ];
        let decoded = decode(&encode(pairs)).unwrap();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn empty_buffer_is_an_empty_map() {
        assert_eq!(decode(&[]), Some(vec![]));
    }

    #[test]
    fn malformed_maps_are_refused_not_panics() {
        let good = encode(&[(b"a", b"b")]);
        for cut in 1..good.len() {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), None);
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), None);
    }
}
