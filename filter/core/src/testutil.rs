//! Shared fixtures for the core's unit tests: the test-only keys from
//! `envoy/test-keys`, a fixed clock, and config builders.

use crate::algorithm::Alg;
use crate::config::Config;
use crate::mint::SigningKey;
use serde_json::{json, Value};
use std::time::Duration;

pub const JWKS: &str = include_str!("../../../envoy/test-keys/jwks.json");
pub const ATTACKER_JWKS: &str = include_str!("../../../envoy/test-keys/attacker.jwks.json");
pub const WEAK_JWKS: &str = include_str!("../../../envoy/test-keys/weak-rsa1024.jwks.json");
pub const ISSUER: &str = "https://idp.palisade.test";
pub const AUDIENCE: &str = "customer-api";
/// The fixed "now" of every test: 2023-11-14T22:13:20Z.
pub const NOW_SECS: u64 = 1_700_000_000;
pub const NOW: Duration = Duration::from_secs(NOW_SECS);

pub fn rs256() -> SigningKey {
    SigningKey::from_pem(
        Alg::RS256,
        Some("test-rs256"),
        include_bytes!("../../../envoy/test-keys/rs256.key.pem"),
    )
    .unwrap()
}

pub fn es256() -> SigningKey {
    SigningKey::from_pem(
        Alg::ES256,
        Some("test-es256"),
        include_bytes!("../../../envoy/test-keys/es256.key.pem"),
    )
    .unwrap()
}

pub fn eddsa() -> SigningKey {
    SigningKey::from_pem(
        Alg::EdDSA,
        Some("test-eddsa"),
        include_bytes!("../../../envoy/test-keys/eddsa.key.pem"),
    )
    .unwrap()
}

/// An unrelated RSA key that claims the kid `test-rs256`.
pub fn attacker() -> SigningKey {
    SigningKey::from_pem(
        Alg::RS256,
        Some("test-rs256"),
        include_bytes!("../../../envoy/test-keys/attacker-rs256.key.pem"),
    )
    .unwrap()
}

/// Valid claims for the test provider at [`NOW`].
pub fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": NOW_SECS - 10,
        "exp": NOW_SECS + 600,
    })
}

/// `claims()` with `changes` merged in; a `null` value removes the claim.
pub fn claims_with(changes: Value) -> Value {
    let mut c = claims();
    if let (Some(obj), Some(changes)) = (c.as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            if v.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

pub const ALLOW_ALL: &str = "package envoy.authz\ndefault allow := true\n";

/// A provider object for the test issuer, with `changes` merged in.
pub fn provider_json(changes: Value) -> Value {
    let mut p = json!({
        "name": "test",
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "algorithms": ["RS256", "ES256", "EdDSA"],
        "jwks": serde_json::from_str::<Value>(JWKS).unwrap(),
    });
    if let (Some(obj), Some(changes)) = (p.as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            obj.insert(k.clone(), v.clone());
        }
    }
    p
}

/// A full config JSON with one test provider and the given policy module.
pub fn config_json(provider_changes: Value, rego: &str) -> Value {
    json!({
        "providers": [provider_json(provider_changes)],
        "policy": {
            "modules": {"authz.rego": rego},
            "decision": "data.envoy.authz.allow",
        },
    })
}

pub fn config(provider_changes: Value, rego: &str) -> Config {
    Config::from_json(config_json(provider_changes, rego).to_string().as_bytes()).unwrap()
}

pub fn load_err(json: &Value) -> String {
    Config::from_json(json.to_string().as_bytes())
        .err()
        .map(|e| e.0)
        .unwrap_or_else(|| panic!("config loaded but should not: {json}"))
}
