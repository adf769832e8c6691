//! `Config::from_json` on any bytes: never panics; an error names a field;
//! a configuration that loads keeps every promise of the loader and can
//! decide a plain request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_core::config::{Config, MAX_LEEWAY_SECONDS, MAX_TOKEN_CACHE};
use palisade_core::ratelimit::{limits::Limits, store::MemoryStore};
use palisade_core::request::{Headers, Request};
use palisade_core::token::cache::TokenCache;
use palisade_fuzz::NOW;
use std::rc::Rc;

/// Found by this target in a dependency: regorus 0.14.1 parses nested `{`
/// and `[` in time exponential in the depth (its parser tries a
/// comprehension, backtracks, then a set or object, at every level), so
/// `x := {{{{{{{{{{{{{{{{{{{{{{{{1` kept `Config::from_json` busy for
/// minutes. The core now refuses modules nested deeper than
/// `palisade_core::policy::MAX_NESTING` before parsing them; this target
/// checks that guard (a miss shows up as a timeout).
const _GUARDED_BY: usize = palisade_core::policy::MAX_NESTING;

fuzz_target!(|data: &[u8]| {
    let config = match Config::from_json(data) {
        Ok(config) => config,
        Err(e) => {
            if palisade_fuzz::debug() {
                eprintln!("refused: {e}");
            }
            // `<field path>: <message>`
            assert!(e.0.contains(": "), "error without a field: {e}");
            return;
        }
    };
    let mut names: Vec<&str> = Vec::new();
    for p in &config.providers {
        assert!(!p.name.trim().is_empty() && !p.issuer.is_empty());
        assert!(!names.contains(&p.name.as_str()), "duplicate provider");
        names.push(&p.name);
        assert!(!p.audiences.is_empty() && p.audiences.iter().all(|a| !a.is_empty()));
        assert!(!p.algorithms.is_empty());
        assert!(p.leeway_seconds <= MAX_LEEWAY_SECONDS);
        assert!(p.max_lifetime_seconds > 0);
        assert!(!p.sources.is_empty());
        assert!(!p.keys.is_empty(), "a provider without keys");
        let mut kids: Vec<&str> = Vec::new();
        for k in &p.keys {
            assert!(!k.algorithms.is_empty());
            assert!(
                k.algorithms.iter().all(|a| p.algorithms.contains(a)),
                "a key verifies an algorithm the provider does not allow"
            );
            if let Some(kid) = k.kid.as_deref() {
                assert!(!kids.contains(&kid), "duplicate kid");
                kids.push(kid);
            }
        }
    }
    for s in config.token_sources() {
        assert!(!s.name.is_empty());
        assert_eq!(s.name, s.name.to_ascii_lowercase());
    }
    assert!(config.token_cache_capacity <= MAX_TOKEN_CACHE);
    assert!(config.policy.decision().starts_with("data."));
    assert_eq!(config.policy.fixed().map_or(64, |p| p.revision.len()), 64);

    // A config that loads can decide: GET /health, no token.
    let request = Request {
        headers: Headers::from_pairs([
            (b":method".to_vec(), b"GET".to_vec()),
            (b":path".to_vec(), b"/health".to_vec()),
        ]),
        ..Request::default()
    };
    let limits = Limits::new(&config.rate_limits, Rc::new(MemoryStore::default()));
    let mut cache = TokenCache::new(config.token_cache_capacity);
    let evaluation = config.decide(&request, NOW, &mut cache, &limits);
    if palisade_fuzz::debug() {
        eprintln!("loaded; GET /health: {}", evaluation.reason());
    }
    assert!(!evaluation.reason().is_empty());
});
