//! `canonical_path::check` on any bytes: never panics, and a path it
//! accepts reads one way only. The oracle re-derives each promise of the
//! module from the bytes, with its own decoding.
//!
//! Input: byte 0 holds flags (bit 0: `allow_parameters`, bit 1: method
//! `OPTIONS` instead of `GET`); the rest is `:path`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_core::canonical_path::{check, PathProblem};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, path)) = data.split_first() else {
        return;
    };
    let allow_parameters = flags & 1 == 1;
    let method: &[u8] = if flags & 2 == 2 { b"OPTIONS" } else { b"GET" };
    let result = check(path, method, allow_parameters);
    if palisade_fuzz::debug() {
        eprintln!("{result:?}");
    }

    // Every problem has a stable reason and a message.
    if let Err(problem) = result {
        assert!(problem.reason().starts_with("path_"));
        assert!(!problem.message().is_empty());
        if problem == PathProblem::Parameter {
            assert!(!allow_parameters, "parameters refused though allowed");
        }
    }
    // The method matters for `OPTIONS *` only.
    if path != b"*" {
        assert_eq!(result, check(path, b"POST", allow_parameters), "method");
    }
    // Allowing parameters never refuses more.
    if !allow_parameters && result.is_ok() {
        assert_eq!(check(path, method, true), Ok(()));
    }
    if result.is_err() || (path == b"*" && method == b"OPTIONS") {
        return;
    }
    assert_canonical(path, allow_parameters);
});

/// What an accepted path promises.
fn assert_canonical(path: &[u8], allow_parameters: bool) {
    let (path_part, query) = match path.iter().position(|&b| b == b'?') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (path, &[][..]),
    };
    assert_eq!(path_part.first(), Some(&b'/'), "not absolute");
    // Printable ASCII only, path and query alike.
    assert!(
        path.iter().all(|&b| (0x20..0x7f).contains(&b)),
        "control or non-ASCII byte"
    );
    // Every `%` starts a well-formed escape, and none encodes NUL.
    let escapes = |bytes: &[u8]| -> Vec<(usize, u8)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let v = hex_pair(bytes.get(i + 1..i + 3).unwrap_or_default())
                    .expect("a % not followed by two hex digits");
                out.push((i, v));
                i += 3;
            } else {
                i += 1;
            }
        }
        out
    };
    for (_, v) in escapes(query) {
        assert_ne!(v, 0, "%00 in the query");
    }
    let path_escapes = escapes(path_part);
    for &(at, v) in &path_escapes {
        assert!(!matches!(v, 0 | b'/' | b'\\'), "%{v:02X} in the path");
        // Any encoded `%` could decode, once more, to a new escape
        // (`%252e`, `%25%32%65`).
        assert_ne!(v, b'%', "an encoded % in the path at {at}");
        if !allow_parameters {
            assert_ne!(v, b';', "an encoded ; parameter at {at}");
        }
    }
    assert!(!path_part.contains(&b'\\'), "backslash");
    if !allow_parameters {
        assert!(!path_part.contains(&b';'), "path parameter");
    }
    // Segments: no empty one (only a trailing `/`), and none that is `.`
    // or `..` once decoded, with or without a `;` parameter.
    let body = &path_part[1..];
    let segments: Vec<&[u8]> = body.split(|&b| b == b'/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            assert_eq!(i, segments.len() - 1, "empty segment");
            continue;
        }
        let name = segment.split(|&b| b == b';').next().unwrap_or_default();
        let decoded = percent_decode(name);
        assert!(
            decoded != b"." && decoded != b"..",
            "dot segment {:?}",
            String::from_utf8_lossy(segment)
        );
    }
    // Decoding once adds no separator: the upstream sees the same segments.
    let decoded = percent_decode(path_part);
    assert_eq!(
        decoded.iter().filter(|&&b| b == b'/').count(),
        path_part.iter().filter(|&&b| b == b'/').count()
    );
    assert!(!decoded.contains(&b'\\'));
}

/// `%XX` decoding of a well-formed string (checked above).
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(v) = hex_pair(bytes.get(i + 1..i + 3).unwrap_or_default()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The byte two hex digits spell (`u8::from_str_radix` alone would take `+f`).
fn hex_pair(pair: &[u8]) -> Option<u8> {
    if pair.len() != 2 || !pair.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()
}
