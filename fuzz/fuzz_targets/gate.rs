//! The whole per-request pipeline under the shipped demo configuration, as
//! the filter runs it: `request_headers.scrub`, then `Config::decide`
//! (token, limits, input, the reference Rego policy, the decision).
//!
//! Invariants: never panics; a scrubbed request holds no header a client
//! may not set and has a canonical path; a token the decision carries was
//! signed by a trusted key and keeps the claim rules; the reference policy
//! lets an anonymous request through only for `GET /health`, and anything
//! only for `GET` (true of envoy/demo-config.json's policy today).
//!
//! Input: the request text format of `palisade_fuzz`; `@token NAME` adds
//! one of the minted test tokens (`customer`, `support`, `export`,
//! `expired`, `attacker`, `attacker-eddsa`, `hs256-confusion`, `none`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_core::canonical_path;
use palisade_core::config::Config;
use palisade_core::gate::{Decision, DenialKind};
use palisade_core::ratelimit::{limits::Limits, store::MemoryStore};
use palisade_core::sanitize::METHOD_OVERRIDE_HEADERS;
use palisade_core::token::cache::TokenCache;
use palisade_fuzz::{
    assert_claims_hold, demo_config, genuine_contents, minted_tokens, parse_request, Minted,
    DEMO_CONFIG, NOW,
};
use regorus::Value;
use serde_json::Map;
use std::rc::Rc;

type Content = (
    Map<String, serde_json::Value>,
    Map<String, serde_json::Value>,
);

struct Fixtures {
    config: Config,
    tokens: Vec<Minted>,
    genuine: Vec<Content>,
    /// `request_headers.strip_prefixes` of the demo config, plus `x-palisade-`.
    stripped: Vec<String>,
    /// `request_headers.untrusted_edge` of the demo config.
    untrusted_edge: bool,
}

thread_local! {
    static FIXTURES: Fixtures = {
        let tokens = minted_tokens();
        let json: serde_json::Value =
            serde_json::from_slice(DEMO_CONFIG).expect("demo config is JSON");
        let section = &json["request_headers"];
        let mut stripped = vec!["x-palisade-".to_owned()];
        for p in section["strip_prefixes"].as_array().into_iter().flatten() {
            stripped.extend(p.as_str().map(str::to_ascii_lowercase));
        }
        Fixtures {
            config: demo_config(),
            genuine: genuine_contents(&tokens),
            tokens,
            stripped,
            untrusted_edge: section["untrusted_edge"].as_bool().unwrap_or(false),
        }
    };
}

fuzz_target!(|data: &[u8]| {
    FIXTURES.with(|f| {
        let mut request = parse_request(data, &f.tokens).request;
        let scrubbed = match f.config.request_headers.scrub(&mut request) {
            Ok(scrubbed) => scrubbed,
            Err(malformed) => {
                if palisade_fuzz::debug() {
                    eprintln!("refused by the scrub: {malformed:?}");
                }
                assert!(!malformed.reason.is_empty() && !malformed.message.is_empty());
                return;
            }
        };
        let text = |name: &str| request.headers.text(name);
        let path = request.headers.first(":path").unwrap_or_default();
        let method = request.headers.first(":method").unwrap_or_default();
        assert_eq!(canonical_path::check(path, method, false), Ok(()));
        for (name, value) in request.headers.iter() {
            assert!(
                !f.stripped.iter().any(|p| name.starts_with(p.as_str())),
                "{name} survived the scrub"
            );
            assert!(!METHOD_OVERRIDE_HEADERS.contains(&name));
            if f.untrusted_edge && (name.starts_with("x-forwarded-") || name == "forwarded") {
                // untrusted_edge: only the one the scrub set, from :scheme.
                assert_eq!(name, "x-forwarded-proto");
                assert_eq!(value, text(":scheme").as_bytes());
                assert!(scrubbed.set.iter().any(|(n, _)| n == name));
            }
        }

        let limits = Limits::new(&f.config.rate_limits, Rc::new(MemoryStore::default()));
        let mut cache = TokenCache::new(f.config.token_cache_capacity);
        let e = f.config.decide(&request, NOW, &mut cache, &limits);
        if palisade_fuzz::debug() {
            eprintln!("{:?} subject={:?}", e.decision, e.subject());
        }
        assert!(e.enforced);
        assert!(!e.reason().is_empty());
        if let Some(token) = &e.token {
            let content = (token.header.clone(), token.payload.clone());
            assert!(
                f.genuine.contains(&content),
                "decided with a token no trusted key signed: {content:?}"
            );
            assert_claims_hold(token, &f.config.providers[0], NOW);
        }
        match &e.decision {
            // Of the reference policy's grants, only GET ones are reachable
            // with the tokens minted here (none is an admin with fresh MFA,
            // whom it lets DELETE), and /health only without a token:
            // update these if the policy or the tokens change.
            Decision::Allow(_) => {
                assert_eq!(text(":method"), "GET", "allowed a non-GET request");
                if e.token.is_none() {
                    let input = e.input.as_ref().expect("an allowed request has an input");
                    assert_eq!(
                        input["parsed_path"],
                        Value::from(vec![Value::from("health")]),
                        "allowed an anonymous request off /health"
                    );
                }
            }
            Decision::Deny(denial) => match denial.kind {
                DenialKind::InvalidToken(_) | DenialKind::Unauthenticated => {
                    assert!(e.token.is_none())
                }
                _ => {}
            },
        }
    });
});
