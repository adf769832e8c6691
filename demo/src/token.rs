//! `palisade-demo token`: mint a token signed with a TEST-ONLY key.
//!
//! For demos and tests only. The keys in `envoy/test-keys` are public, so a
//! token minted here proves nothing outside this repository.

use palisade_core::algorithm::Alg;
use palisade_core::mint::SigningKey;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What to mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub key_file: String,
    pub alg: String,
    pub kid: String,
    pub ttl_seconds: u64,
    /// Claims merged over the defaults (`iss`, `aud`, `iat`, `exp`); JSON object text.
    pub claims: String,
}

impl Default for TokenRequest {
    fn default() -> Self {
        TokenRequest {
            key_file: "envoy/test-keys/rs256.key.pem".into(),
            alg: "RS256".into(),
            kid: "test-rs256".into(),
            ttl_seconds: 600,
            claims: "{}".into(),
        }
    }
}

/// The demo issuer's default claims at `now`, with `extra` merged over them.
pub fn claims_at(now: Duration, ttl_seconds: u64, extra: &Value) -> Result<Value, String> {
    if !extra.is_object() {
        return Err("claims must be a JSON object".into());
    }
    Ok(palisade_core::mint::claims(
        "https://idp.palisade.test",
        "customer-api",
        now.as_secs(),
        ttl_seconds,
        extra,
    ))
}

/// Mints the token described by `req`, using the wall clock.
pub fn mint(req: &TokenRequest) -> Result<String, String> {
    let alg = Alg::parse(&req.alg).ok_or_else(|| format!("unknown algorithm {}", req.alg))?;
    let pem =
        std::fs::read(&req.key_file).map_err(|e| format!("cannot read {}: {e}", req.key_file))?;
    let key = SigningKey::from_pem(alg, Some(&req.kid), &pem)?;
    let extra: Value =
        serde_json::from_str(&req.claims).map_err(|e| format!("claims are not JSON: {e}"))?;
    // The demo mints for the real Envoy clock, so it reads the real one.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    key.mint(&claims_at(now, req.ttl_seconds, &extra)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_claims_override_defaults() {
        let c = claims_at(
            Duration::from_secs(100),
            60,
            &json!({"sub": "alice", "aud": "x"}),
        )
        .unwrap();
        assert_eq!(
            c,
            json!({"iss": "https://idp.palisade.test", "aud": "x", "sub": "alice", "iat": 100, "exp": 160})
        );
        assert!(claims_at(Duration::ZERO, 1, &json!([1])).is_err());
    }
}
