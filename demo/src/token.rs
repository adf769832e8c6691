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
    /// `Some(n)`: mint `n` tokens, one per line, each with its own `jti`
    /// (see [`numbered`]); `None`: one token, with no `jti` added.
    pub count: Option<usize>,
}

impl Default for TokenRequest {
    fn default() -> Self {
        TokenRequest {
            key_file: "envoy/test-keys/rs256.key.pem".into(),
            alg: "RS256".into(),
            kid: "test-rs256".into(),
            ttl_seconds: 600,
            claims: "{}".into(),
            count: None,
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

/// `claims` with `jti` set to `"{prefix}-{n}"`: token `n` of a batch. The
/// prefix is the caller's own `jti` if it gave one (a string), else `run`,
/// so that two batches minted at different times do not share a `jti`.
pub fn numbered(claims: &Value, run: &str, n: usize) -> Value {
    let mut c = claims.clone();
    if let Some(obj) = c.as_object_mut() {
        let prefix = match obj.get("jti") {
            Some(Value::String(own)) => own.clone(),
            _ => run.to_string(),
        };
        obj.insert("jti".into(), Value::String(format!("{prefix}-{n}")));
    }
    c
}

/// Mints the token(s) described by `req`, using the wall clock: one token,
/// or with `count`, that many lines of tokens.
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
    let claims = claims_at(now, req.ttl_seconds, &extra)?;
    let Some(count) = req.count else {
        return key.mint(&claims);
    };
    // One key and one clock reading for the whole batch: signing is the cost.
    let run = format!("{:x}", now.as_nanos());
    let mut out = String::new();
    for n in 0..count {
        out.push_str(&key.mint(&numbered(&claims, &run, n))?);
        out.push('\n');
    }
    Ok(out)
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

    #[test]
    fn numbered_tokens_differ_only_in_jti() {
        let base = json!({"sub": "data-export", "exp": 160});
        let a = numbered(&base, "run1", 0);
        let b = numbered(&base, "run1", 1);
        assert_eq!(
            a,
            json!({"sub": "data-export", "exp": 160, "jti": "run1-0"})
        );
        assert_eq!(b["jti"], "run1-1");
        // The caller's own jti becomes the prefix.
        assert_eq!(
            numbered(&json!({"jti": "bench"}), "run1", 7)["jti"],
            "bench-7"
        );
    }

    /// The claims of a compact JWS (unverified: the tokens' signatures
    /// are checked by the tests that send them).
    fn payload(token: &str) -> Value {
        use base64::Engine as _;
        let text = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn count_mints_one_token_per_line_each_with_its_own_jti() {
        let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let req = TokenRequest {
            key_file: format!("{repo}/envoy/test-keys/es256.key.pem"),
            alg: "ES256".into(),
            kid: "test-es256".into(),
            claims: r#"{"sub":"data-export"}"#.into(),
            count: Some(3),
            ..TokenRequest::default()
        };
        let out = mint(&req).unwrap();
        let jtis: std::collections::BTreeSet<String> = out
            .lines()
            .map(|token| {
                let claims = payload(token);
                assert_eq!(claims["sub"], "data-export");
                assert_eq!(claims["iss"], "https://idp.palisade.test");
                claims["jti"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(out.lines().count(), 3);
        assert_eq!(jtis.len(), 3, "{jtis:?}");
        let zero = mint(&TokenRequest {
            count: Some(0),
            ..req
        });
        assert_eq!(zero.unwrap(), "");
    }
}
