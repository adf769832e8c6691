//! Verifying a compact JWS against a provider's keys and claim rules.
//!
//! `jsonwebtoken` supplies the signature check only (`crypto::verify`). The
//! parsing and every claim rule are Palisade's, because the crate's own
//! `Validation` ignores `crit`, accepts an array `iss` and skips `nbf` unless
//! asked: each rule here has a negative test in `verify_tests.rs`.

use super::extract::HeaderSource;
use super::remote::{RemoteJwks, RemoteKeys, Unavailable};
use super::TokenError;
use crate::algorithm::Alg;
use crate::jwks::VerificationKey;
use crate::strict_json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use std::time::Duration;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A trusted issuer, compiled from the config.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub keys: Vec<VerificationKey>,
    pub leeway_seconds: u64,
    pub max_lifetime_seconds: u64,
    pub sources: Vec<HeaderSource>,
    /// Keys come from this JWKS endpoint (then `keys` is empty), held per
    /// VM in [`RemoteKeys`].
    pub remote: Option<RemoteJwks>,
}

/// A token whose signature and claims checked out.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub provider: String,
    /// The HTTP header it came from.
    pub from_header: String,
    /// The JOSE header (`alg`, `kid`, `typ`, ...).
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    /// `exp`, in seconds since the epoch.
    pub expires_at: f64,
    /// `input.token` as the policy sees it, built once so cache hits reuse it.
    pub document: regorus::Value,
}

impl VerifiedToken {
    /// The `sub` claim, if it is a string.
    pub fn subject(&self) -> Option<&str> {
        self.payload.get("sub").and_then(Value::as_str)
    }
}

/// Verifies `token` (found in header `from_header`) against the providers that
/// read that header and whose issuer matches the token's `iss`.
pub fn verify(
    token: &[u8],
    from_header: &str,
    providers: &[Provider],
    now: Duration,
) -> Result<VerifiedToken, TokenError> {
    verify_with(token, from_header, providers, &RemoteKeys::default(), now)
}

/// As [`verify`], with the keys fetched for remote providers.
pub fn verify_with(
    token: &[u8],
    from_header: &str,
    providers: &[Provider],
    remote: &RemoteKeys,
    now: Duration,
) -> Result<VerifiedToken, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let parts = split_compact(token)?;
    let header = decode_object(parts.header, "header is not a base64url JSON object")?;
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Alg::parse(name).ok_or(TokenError::AlgNotAllowed)?,
        Some(_) => return Err(TokenError::Malformed("alg must be a string")),
        None => return Err(TokenError::Malformed("alg missing")),
    };
    if header.contains_key("crit") {
        return Err(TokenError::Crit);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(TokenError::Malformed("kid must be a string")),
    };
    let payload = decode_object(parts.payload, "payload is not a base64url JSON object")?;
    let issuer = match payload.get("iss") {
        Some(Value::String(iss)) => iss.as_str(),
        Some(_) => return Err(TokenError::ClaimType("iss must be a string")),
        None => return Err(TokenError::BadIssuer),
    };

    let mut first_error = TokenError::BadIssuer;
    let candidates = providers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.issuer == issuer && p.sources.iter().any(|s| s.name == from_header));
    for (i, (index, provider)) in candidates.enumerate() {
        let keys = match &provider.remote {
            None => Some(provider.keys.as_slice()),
            Some(_) => remote.keys(index),
        };
        let outcome = match keys {
            Some(keys) => check_signature(provider, keys, alg, kid, &parts),
            None => Err(TokenError::KeysUnavailable {
                retry: provider
                    .remote
                    .as_ref()
                    .is_some_and(|r| r.when_unavailable == Unavailable::Retry),
            }),
        };
        if outcome == Err(TokenError::UnknownKey) && provider.remote.is_some() {
            // Perhaps a key rotated in: fetch the set again (rate-limited).
            remote.note_unknown_kid(index);
        }
        let outcome = outcome.and_then(|()| check_claims(provider, &payload, now));
        match outcome {
            Ok(expires_at) => {
                let token = VerifiedToken::new(provider, from_header, header, payload, expires_at);
                // The policy must see the token it was verified as, or nothing.
                if token.document == regorus::Value::Undefined {
                    return Err(TokenError::Malformed(
                        "claims cannot be given to the policy",
                    ));
                }
                return Ok(token);
            }
            Err(e) if i == 0 => first_error = e,
            Err(_) => {}
        }
    }
    Err(first_error)
}

impl VerifiedToken {
    fn new(
        provider: &Provider,
        from_header: &str,
        header: Map<String, Value>,
        payload: Map<String, Value>,
        expires_at: f64,
    ) -> Self {
        let document = serde_json::json!({
            "provider": provider.name,
            "from_header": from_header,
            "header": header,
            "payload": payload,
        });
        VerifiedToken {
            provider: provider.name.clone(),
            from_header: from_header.to_owned(),
            header,
            payload,
            expires_at,
            document: regorus::Value::from(document),
        }
    }
}

/// The parts of a compact JWS; shared with the `io.jwt` Rego builtins
/// (`policy::opa_jwt`), so both read tokens the same way.
pub(crate) struct CompactParts<'a> {
    pub(crate) header: &'a [u8],
    pub(crate) payload: &'a [u8],
    pub(crate) signature: &'a str,
    /// `header.payload`, the signed bytes.
    pub(crate) signing_input: &'a [u8],
}

pub(crate) fn split_compact(token: &[u8]) -> Result<CompactParts<'_>, TokenError> {
    if token.first() == Some(&b'{') {
        return Err(TokenError::Unsupported); // JWS JSON serialization
    }
    let dots: Vec<usize> = token
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'.')
        .map(|(i, _)| i)
        .collect();
    let (first, second) = match dots.as_slice() {
        [a, b] => (*a, *b),
        [_, _, _, _] => return Err(TokenError::Unsupported), // JWE compact
        _ => return Err(TokenError::Malformed("token must have three parts")),
    };
    let part = |from: usize, to: usize| token.get(from..to).unwrap_or_default();
    let header = part(0, first);
    let payload = part(first + 1, second);
    let signature = part(second + 1, token.len());
    // An empty signature is well-formed (`alg: none` tokens have one); it
    // then fails the algorithm or signature check with a precise reason.
    let base64url = |p: &[u8]| {
        p.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    };
    if header.is_empty()
        || payload.is_empty()
        || ![header, payload, signature].into_iter().all(base64url)
    {
        return Err(TokenError::Malformed(
            "token parts must be unpadded base64url",
        ));
    }
    let signature = std::str::from_utf8(signature)
        .map_err(|_| TokenError::Malformed("bad signature encoding"))?;
    Ok(CompactParts {
        header,
        payload,
        signature,
        signing_input: part(0, second),
    })
}

pub(crate) fn decode_object(
    part: &[u8],
    what: &'static str,
) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))?;
    match strict_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TokenError::Malformed(what)),
        Err(e) if strict_json::is_duplicate_key(&e) => Err(TokenError::DuplicateName),
        Err(_) => Err(TokenError::Malformed(what)),
    }
}

fn check_signature(
    provider: &Provider,
    keys: &[VerificationKey],
    alg: Alg,
    kid: Option<&str>,
    parts: &CompactParts<'_>,
) -> Result<(), TokenError> {
    if !provider.algorithms.contains(&alg) {
        return Err(TokenError::AlgNotAllowed);
    }
    let candidates: Vec<&VerificationKey> = match kid {
        Some(kid) => {
            let key = keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or(TokenError::UnknownKey)?;
            if !key.algorithms.contains(&alg) {
                return Err(TokenError::KeyMismatch);
            }
            vec![key]
        }
        None => keys
            .iter()
            .filter(|k| k.algorithms.contains(&alg))
            .collect(),
    };
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey);
    }
    let verified = candidates.iter().any(|k| {
        jsonwebtoken::crypto::verify(
            parts.signature,
            parts.signing_input,
            &k.key,
            alg.to_jsonwebtoken(),
        )
        .unwrap_or(false)
    });
    if verified {
        Ok(())
    } else {
        Err(TokenError::BadSignature)
    }
}

/// Checks the registered claims; returns `exp`.
fn check_claims(
    provider: &Provider,
    payload: &Map<String, Value>,
    now: Duration,
) -> Result<f64, TokenError> {
    match payload.get("aud") {
        Some(Value::String(aud)) if provider.audiences.contains(aud) => {}
        Some(Value::String(_)) | None => return Err(TokenError::BadAudience),
        Some(Value::Array(items)) => {
            let mut accepted = false;
            for item in items {
                let aud = item.as_str().ok_or(TokenError::ClaimType(
                    "aud must be a string or an array of strings",
                ))?;
                accepted |= provider.audiences.iter().any(|a| a == aud);
            }
            if !accepted {
                return Err(TokenError::BadAudience);
            }
        }
        Some(_) => {
            return Err(TokenError::ClaimType(
                "aud must be a string or an array of strings",
            ))
        }
    }
    if let Some(sub) = payload.get("sub") {
        if !sub.is_string() {
            return Err(TokenError::ClaimType("sub must be a string"));
        }
    }
    let exp =
        numeric_claim(payload, "exp", "exp must be a number")?.ok_or(TokenError::MissingExp)?;
    let nbf = numeric_claim(payload, "nbf", "nbf must be a number")?;
    let iat = numeric_claim(payload, "iat", "iat must be a number")?;

    let now = now.as_secs_f64();
    let leeway = provider.leeway_seconds as f64;
    if now >= exp + leeway {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now + leeway) {
        return Err(TokenError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now + leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    // Without `iat`, the token may not claim to live longer from now on.
    let issued = iat.unwrap_or(now);
    if exp - issued > provider.max_lifetime_seconds as f64 {
        return Err(TokenError::LifetimeTooLong);
    }
    Ok(exp)
}

/// A registered time claim (`exp`, `nbf`, `iat`): absent, or a number.
pub(crate) fn numeric_claim(
    payload: &Map<String, Value>,
    name: &str,
    type_error: &'static str,
) -> Result<Option<f64>, TokenError> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or(TokenError::ClaimType(type_error)),
        Some(_) => Err(TokenError::ClaimType(type_error)),
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
