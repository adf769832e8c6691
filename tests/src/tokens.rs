//! Test tokens from the TEST-ONLY keys in `envoy/test-keys`.

use palisade_core::algorithm::Alg;
use palisade_core::mint::SigningKey;
use serde_json::{json, Value};

pub const ISSUER: &str = "https://idp.palisade.test";
pub const AUDIENCE: &str = "customer-api";

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(crate::repo().join("envoy/test-keys").join(name)).unwrap()
}

/// A signing key by its case-file name.
pub fn key(name: &str) -> SigningKey {
    match name {
        "rs256" => SigningKey::from_pem(Alg::RS256, Some("test-rs256"), &pem("rs256.key.pem")),
        "es256" => SigningKey::from_pem(Alg::ES256, Some("test-es256"), &pem("es256.key.pem")),
        "eddsa" => SigningKey::from_pem(Alg::EdDSA, Some("test-eddsa"), &pem("eddsa.key.pem")),
        // An unrelated key that claims the trusted kid.
        "attacker" => SigningKey::from_pem(
            Alg::RS256,
            Some("test-rs256"),
            &pem("attacker-rs256.key.pem"),
        ),
        // Key confusion: HMAC keyed with the trusted RSA public key's modulus.
        "rsa-public-as-hmac" => {
            let jwks: Value = serde_json::from_slice(&pem("jwks.json")).unwrap();
            let n = jwks["keys"][0]["n"].as_str().unwrap().to_owned();
            SigningKey::from_secret(Alg::HS256, Some("test-rs256"), n.as_bytes())
        }
        other => panic!("unknown test key `{other}`"),
    }
    .unwrap()
}

/// Valid claims at `now` (seconds since the epoch) with `extra` merged over
/// them; a `null` removes a claim, and strings `"now"`, `"now+N"`, `"now-N"`
/// become numbers relative to `now`.
pub fn claims(now: u64, extra: &Value) -> Value {
    let mut c = json!({"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300});
    let obj = c.as_object_mut().unwrap();
    for (k, v) in extra.as_object().into_iter().flatten() {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), relative_time(now, v));
        }
    }
    c
}

/// `"now+60"` → `now + 60`; other values unchanged.
pub fn relative_time(now: u64, v: &Value) -> Value {
    let Some(s) = v.as_str() else {
        return v.clone();
    };
    let Some(rest) = s.strip_prefix("now") else {
        return v.clone();
    };
    let offset: i64 = match rest {
        "" => 0,
        _ => match rest.parse() {
            Ok(n) => n,
            Err(_) => return v.clone(),
        },
    };
    json!(now as i64 + offset)
}
