//! Minting test tokens, for the demo, the CLI and the tests.
//!
//! Behind the `mint` feature, never compiled into the filter. `sign_raw` takes
//! header and payload JSON as text, so tests can build hostile tokens
//! (duplicate claims, `crit`, odd types) that a typed encoder would refuse.

use crate::algorithm::Alg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};

/// A private key with the algorithm and `kid` it signs for.
pub struct SigningKey {
    pub alg: Alg,
    pub kid: Option<String>,
    key: EncodingKey,
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key (RSA, EC or Ed25519) for `alg`.
    pub fn from_pem(alg: Alg, kid: Option<&str>, pem: &[u8]) -> Result<Self, String> {
        let key = if alg.is_rsa() {
            EncodingKey::from_rsa_pem(pem)
        } else if alg == Alg::EdDSA {
            EncodingKey::from_ed_pem(pem)
        } else if alg.is_hmac() {
            EncodingKey::from_secret(pem)
        } else {
            EncodingKey::from_ec_pem(pem)
        }
        .map_err(|e| format!("cannot read {alg} key: {e}"))?;
        Ok(SigningKey {
            alg,
            kid: kid.map(str::to_owned),
            key,
        })
    }

    /// An HMAC key from raw secret bytes.
    pub fn from_secret(alg: Alg, kid: Option<&str>, secret: &[u8]) -> Result<Self, String> {
        Ok(SigningKey {
            alg,
            kid: kid.map(str::to_owned),
            key: EncodingKey::from_secret(secret).map_err(|e| format!("bad secret: {e}"))?,
        })
    }

    /// The standard JOSE header for this key: `alg`, `typ: JWT` and `kid` if set.
    pub fn header(&self) -> serde_json::Value {
        let mut h = serde_json::json!({"alg": self.alg.name(), "typ": "JWT"});
        if let (Some(kid), Some(obj)) = (&self.kid, h.as_object_mut()) {
            obj.insert("kid".into(), kid.clone().into());
        }
        h
    }

    /// Signs `claims` under [`SigningKey::header`].
    pub fn mint(&self, claims: &serde_json::Value) -> Result<String, String> {
        self.sign_raw(&self.header().to_string(), &claims.to_string())
    }

    /// Signs arbitrary header and payload text with this key's algorithm.
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> Result<String, String> {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header_json),
            URL_SAFE_NO_PAD.encode(payload_json)
        );
        let sig = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &self.key,
            self.alg.to_jsonwebtoken(),
        )
        .map_err(|e| format!("signing failed: {e}"))?;
        Ok(format!("{signing_input}.{sig}"))
    }
}

/// A token with the given header and payload text and no signature (`alg: none` attacks).
pub fn unsigned(header_json: &str, payload_json: &str) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(payload_json)
    )
}

/// Claims for a test token: `iss`, `aud`, `iat = now` and `exp = now + ttl`,
/// with `extra` merged over them. In `extra`, `null` removes a claim and the
/// strings `"now"`, `"now+N"`, `"now-N"` become times relative to `now`.
pub fn claims(issuer: &str, audience: &str, now: u64, ttl: u64, extra: &Value) -> Value {
    let mut c = json!({"iss": issuer, "aud": audience, "iat": now, "exp": now.saturating_add(ttl)});
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

/// `"now+60"` → `now + 60`; any other value unchanged.
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
    json!((now as i64).saturating_add(offset))
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
        let c = claims(
            "i",
            "a",
            10,
            300,
            &json!({"sub": "s", "exp": null, "nbf": "now+1"}),
        );
        assert_eq!(
            c,
            json!({"iss": "i", "aud": "a", "iat": 10, "sub": "s", "nbf": 11})
        );
    }
}
