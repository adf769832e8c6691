//! Test tokens from TEST-ONLY keys (by default `envoy/test-keys`).
//!
//! For demos, case files and tests. The keys there are public: a token minted
//! here proves nothing outside this repository. Never point this at a
//! production key.

use palisade_core::algorithm::Alg;
use palisade_core::mint::SigningKey;
use serde_json::{json, Value};
use std::path::Path;

pub const ISSUER: &str = "https://idp.palisade.test";
pub const AUDIENCE: &str = "customer-api";

fn pem(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| format!("cannot read test key {}: {e}", path.display()))
}

/// A signing key by its case-file name, from the keys in `dir`:
/// `rs256`, `es256`, `eddsa`, `attacker` (an unrelated key claiming the
/// trusted kid), `rsa-public-as-hmac` (HS256 keyed with the trusted RSA
/// public key: the key-confusion attack).
pub fn key(dir: &Path, name: &str) -> Result<SigningKey, String> {
    match name {
        "rs256" => {
            SigningKey::from_pem(Alg::RS256, Some("test-rs256"), &pem(dir, "rs256.key.pem")?)
        }
        "es256" => {
            SigningKey::from_pem(Alg::ES256, Some("test-es256"), &pem(dir, "es256.key.pem")?)
        }
        "eddsa" => {
            SigningKey::from_pem(Alg::EdDSA, Some("test-eddsa"), &pem(dir, "eddsa.key.pem")?)
        }
        "attacker" => SigningKey::from_pem(
            Alg::RS256,
            Some("test-rs256"),
            &pem(dir, "attacker-rs256.key.pem")?,
        ),
        "rsa-public-as-hmac" => {
            let jwks: Value = serde_json::from_slice(&pem(dir, "jwks.json")?)
                .map_err(|e| format!("jwks.json: {e}"))?;
            let n = jwks["keys"][0]["n"]
                .as_str()
                .ok_or("jwks.json has no RSA key")?;
            SigningKey::from_secret(Alg::HS256, Some("test-rs256"), n.as_bytes())
        }
        other => Err(format!(
            "unknown test key `{other}` (rs256, es256, eddsa, attacker, rsa-public-as-hmac)"
        )),
    }
}

/// Valid claims of the test issuer at `now` (seconds since the epoch) with
/// `extra` merged over them: `null` removes a claim; `"now"`, `"now+N"` and
/// `"now-N"` become numbers relative to `now`.
pub fn claims(now: u64, extra: &Value) -> Value {
    let mut c = json!({"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300});
    if let (Some(obj), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), relative_time(now, v));
            }
        }
    }
    c
}

/// `"now+60"` → `now + 60`; other values unchanged.
pub fn relative_time(now: u64, v: &Value) -> Value {
    let Some(rest) = v.as_str().and_then(|s| s.strip_prefix("now")) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        assert_eq!(relative_time(100, &json!("now")), json!(100));
        assert_eq!(relative_time(100, &json!("now+5")), json!(105));
        assert_eq!(relative_time(100, &json!("now-5")), json!(95));
        assert_eq!(relative_time(100, &json!("nowhere")), json!("nowhere"));
        assert_eq!(relative_time(100, &json!(7)), json!(7));
    }

    #[test]
    fn claims_merge_and_remove() {
        let c = claims(10, &json!({"sub": "a", "exp": null, "nbf": "now+1"}));
        assert_eq!(
            c,
            json!({"iss": ISSUER, "aud": AUDIENCE, "iat": 10, "sub": "a", "nbf": 11})
        );
    }
}
