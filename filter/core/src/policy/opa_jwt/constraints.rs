//! `io.jwt.decode_verify(jwt, constraints)`: OPA's constraint object and
//! claim checks (`v1/topdown/tokens.go`, `builtinJWTDecodeVerify`).
//!
//! The constraints are the policy's, so a bad one is an error, as in OPA:
//! an unknown key, a value of the wrong type, a malformed `cert`, both or
//! neither of `cert` and `secret`, or no `time` when the host gave no
//! clock. The token is the caller's, so nothing about it is an error:
//! whatever is wrong with it, the answer is `[false, {}, {}]`.

use super::jws::{Object, Signed, MAX_NESTING};
use super::keys::{KeyCache, Keys};
use super::EvalClock;
use crate::token::verify::numeric_claim;
use crate::token::TokenError;
use regorus::Value as RegoValue;
use serde_json::Value;

/// A parsed constraint object. As in OPA, an empty `alg`, `iss`, `aud`
/// or `secret` is the same as an absent one.
pub(super) struct Constraints {
    pub(super) keys: Keys,
    pub(super) alg: String,
    pub(super) iss: String,
    pub(super) aud: String,
    /// When `exp` and `nbf` are checked, in seconds since the epoch.
    pub(super) now_secs: f64,
}

impl Constraints {
    /// Reads `constraints`; `time` defaults to `clock`.
    pub(super) fn parse(
        constraints: &RegoValue,
        clock: &EvalClock,
        cache: &KeyCache,
    ) -> Result<Constraints, String> {
        let object = constraints
            .as_object()
            .map_err(|_| "constraints must be an object".to_owned())?;
        let mut cert = None;
        let (mut secret, mut alg, mut iss, mut aud) =
            (String::new(), String::new(), String::new(), String::new());
        let mut time_ns = None;
        for (name, value) in object.iter() {
            let name = name
                .as_string()
                .map_err(|_| "constraint names must be strings".to_owned())?;
            let text = || {
                value
                    .as_string()
                    .map(|s| s.to_string())
                    .map_err(|_| format!("{name} constraint: must be a string"))
            };
            match name.as_ref() {
                "cert" => cert = Some(cache.keys(&text()?)?),
                "secret" => secret = text()?,
                "alg" => alg = text()?,
                "iss" => iss = text()?,
                "aud" => aud = text()?,
                "time" => time_ns = Some(time_constraint(value)?),
                other => return Err(format!("unknown token validation constraint: {other}")),
            }
        }
        let time_ns = match time_ns {
            Some(ns) => ns,
            None => clock
                .now_ns()
                .map(|ns| ns as f64)
                .ok_or("no `time` constraint, and the host gave no clock")?,
        };
        let keys = match (cert, secret.is_empty()) {
            (Some(_), false) => return Err("duplicate key constraints".into()),
            (None, true) => return Err("no key constraint".into()),
            (Some(set), true) => Keys::Set(set),
            (None, false) => Keys::secret(&secret)?,
        };
        Ok(Constraints {
            keys,
            alg,
            iss,
            aud,
            now_secs: time_ns / 1e9,
        })
    }
}

/// The `time` constraint: a non-negative number of nanoseconds.
fn time_constraint(value: &RegoValue) -> Result<f64, String> {
    // regorus's `as_f64` refuses integers above 2^53, and nanosecond
    // timestamps are; as in OPA, precision below a microsecond is moot.
    let ns = value
        .as_u64()
        .map(|ns| ns as f64)
        .or_else(|_| value.as_f64())
        .or_else(|_| value.as_i64().map(|ns| ns as f64))
        .map_err(|_| "token time constraint: must be a number".to_owned())?;
    if ns.is_nan() || ns < 0.0 {
        return Err("token time constraint: must not be negative".into());
    }
    Ok(ns)
}

/// The header and payload of `token` if it verifies under `c`; otherwise
/// why not. A nested token (`cty: JWT`) is verified at every level with
/// the same constraints, and the innermost header and payload answer.
pub(super) fn decode_verify(token: &str, c: &Constraints) -> Result<(Object, Object), TokenError> {
    let mut text = token.to_owned();
    for _ in 0..=MAX_NESTING {
        let signed = Signed::read(text.as_bytes())?;
        if !c.alg.is_empty() && c.alg != signed.alg.name() {
            return Err(TokenError::AlgNotAllowed);
        }
        if !signed.signature_ok(signed.alg, &c.keys) {
            return Err(TokenError::BadSignature);
        }
        if signed.nested {
            text = signed.inner_token()?;
            continue;
        }
        let payload = signed.payload()?;
        check_claims(&payload, c)?;
        return Ok((signed.header, payload));
    }
    Err(TokenError::Malformed("tokens nested too deeply"))
}

/// OPA's claim rules: `iss` equals the constraint if one is given; `aud`
/// (a string, or an array of strings) contains the constraint, and a
/// token with an `aud` needs an `aud` constraint; `exp` is after the
/// time and `nbf` not after it, when present. No leeway, and no other claim
/// is required.
fn check_claims(payload: &Object, c: &Constraints) -> Result<(), TokenError> {
    if !c.iss.is_empty() && payload.get("iss").and_then(Value::as_str) != Some(c.iss.as_str()) {
        return Err(TokenError::BadIssuer);
    }
    let audience_ok = match payload.get("aud") {
        None => c.aud.is_empty(),
        Some(Value::String(aud)) => *aud == c.aud,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(c.aud.as_str())),
        Some(_) => false,
    };
    if !audience_ok {
        return Err(TokenError::BadAudience);
    }
    if let Some(exp) = numeric_claim(payload, "exp", "exp must be a number")? {
        if c.now_secs >= exp {
            return Err(TokenError::Expired);
        }
    }
    if let Some(nbf) = numeric_claim(payload, "nbf", "nbf must be a number")? {
        if c.now_secs < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok(())
}
