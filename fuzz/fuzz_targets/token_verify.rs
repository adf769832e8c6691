//! Token extraction and verification against the demo issuer: never
//! panics, never accepts content no trusted key signed, and every token it
//! accepts satisfies the claim rules (checked from the claims themselves).
//!
//! Byte 0 picks the mode; the rest is:
//! - 0: a token, verified as if read from `authorization`;
//! - 1: an `authorization` header value, through `find_token` then `verify`
//!   (a value holding a comma never yields a token);
//! - 2: header JSON, NUL, payload JSON, signed with the trusted Ed25519
//!   key: reaches the claim checks that a mutated signature never does;
//! - 3: the same, signed with an untrusted key claiming the trusted kid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_core::config::Config;
use palisade_core::mint::SigningKey;
use palisade_core::request::Headers;
use palisade_core::token::extract::find_token;
use palisade_core::token::verify::{verify, VerifiedToken};
use palisade_core::token::TokenError;
use palisade_fuzz::{
    assert_claims_hold, attacker_eddsa, decode_parts, demo_config, genuine_contents, minted_tokens,
    top_level_names, trusted_eddsa, NOW,
};
use serde_json::{Map, Value};

struct Fixtures {
    config: Config,
    genuine: Vec<(Map<String, Value>, Map<String, Value>)>,
    trusted: SigningKey,
    attacker: SigningKey,
}

thread_local! {
    static FIXTURES: Fixtures = Fixtures {
        config: demo_config(),
        genuine: genuine_contents(&minted_tokens()),
        trusted: trusted_eddsa(),
        attacker: attacker_eddsa(),
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    FIXTURES.with(|f| match mode % 4 {
        0 => raw_token(f, rest),
        1 => header_value(f, rest),
        2 => signed(f, rest, true),
        _ => signed(f, rest, false),
    });
});

fn check(f: &Fixtures, token: &[u8]) -> Result<VerifiedToken, TokenError> {
    let result = verify(token, "authorization", &f.config.providers, NOW);
    if palisade_fuzz::debug() {
        eprintln!("{:?}", result.as_ref().map(|t| &t.payload));
    }
    if let Err(e) = &result {
        assert!(e.reason().starts_with("token_"));
        assert!(!e.description().is_empty());
    }
    // No provider reads this header: nothing verifies there.
    assert!(verify(token, "x-unread", &f.config.providers, NOW).is_err());
    result
}

/// A token the fuzzer wrote verifies only if a trusted key signed its content.
fn raw_token(f: &Fixtures, token: &[u8]) {
    if let Ok(verified) = check(f, token) {
        assert_genuine(f, token, &verified);
    }
}

fn header_value(f: &Fixtures, value: &[u8]) {
    let headers = Headers::from_pairs([(b"authorization".to_vec(), value.to_vec())]);
    let found = find_token(&headers, f.config.token_sources());
    if value.contains(&b',') {
        // A list, or a JWS JSON serialization: never one token.
        assert!(
            matches!(found, Err(TokenError::Multiple | TokenError::Unsupported)),
            "a comma-joined value gave {found:?}"
        );
    }
    let Ok(Some(found)) = found else {
        return;
    };
    assert_eq!(found.header, "authorization");
    assert!(!found.token.is_empty());
    assert!(
        !found.token.iter().any(|b| matches!(b, b' ' | b'\t' | b',')),
        "a token with a separator"
    );
    assert!(
        value.windows(found.token.len()).any(|w| w == found.token),
        "the token is not from the value"
    );
    if let Ok(verified) = check(f, found.token) {
        assert_genuine(f, found.token, &verified);
    }
}

fn assert_genuine(f: &Fixtures, token: &[u8], verified: &VerifiedToken) {
    let content = decode_parts(token).expect("a verified token decodes");
    assert!(
        f.genuine.contains(&content),
        "accepted content no trusted key signed: {content:?}"
    );
    assert_eq!(
        (&verified.header, &verified.payload),
        (&content.0, &content.1)
    );
    assert_claims_hold(verified, &f.config.providers[0], NOW);
}

/// Fuzzer-chosen header and claims under a real signature.
fn signed(f: &Fixtures, rest: &[u8], trusted: bool) {
    let Some(nul) = rest.iter().position(|&b| b == 0) else {
        return;
    };
    let (Ok(header), Ok(payload)) = (
        std::str::from_utf8(&rest[..nul]),
        std::str::from_utf8(&rest[nul + 1..]),
    ) else {
        return;
    };
    let key = if trusted { &f.trusted } else { &f.attacker };
    let Ok(token) = key.sign_raw(header, payload) else {
        return;
    };
    let result = check(f, token.as_bytes());
    let Ok(verified) = result else {
        return;
    };
    assert!(trusted, "a token signed by an untrusted key was accepted");
    assert_eq!(verified.header.get("alg"), Some(&Value::from("EdDSA")));
    for json in [header, payload] {
        let names = top_level_names(json.as_bytes()).expect("an accepted part is an object");
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "duplicate member names accepted");
    }
    let parsed = |s: &str| serde_json::from_str::<Map<String, Value>>(s).expect("JSON object");
    assert_eq!(verified.header, parsed(header));
    assert_eq!(verified.payload, parsed(payload));
    assert_claims_hold(&verified, &f.config.providers[0], NOW);
}
