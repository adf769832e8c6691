//! The key argument of the `io.jwt` builtins: an HMAC secret, or a `cert`
//! string (a PEM certificate, a PEM public key, or a JWK or JWK Set as
//! JSON), read into Palisade's [`VerificationKey`]s.
//!
//! Every asymmetric key goes through [`jwks::load_keys`], so a key from a
//! policy is held to the rules of a key from the config: RSA moduli of at
//! least 2048 bits, EC points on their curve, `oct` secrets as long as
//! their hash, no private members, and each key verifies only the
//! algorithms that fit its type (narrowed to its own `alg`). That last
//! rule is what defeats key confusion: an RSA public key never verifies
//! an `HS256` MAC.
//!
//! Text that is neither PEM nor JSON of a JWK (set) is an error, as in OPA.
//! A key that is well formed but that Palisade refuses (a 1024-bit RSA
//! key, a P-521 key, a private key) is dropped instead: no token verifies
//! against it, so the builtins answer "not valid".

use crate::algorithm::Alg;
use crate::jwks::{self, VerificationKey};
use crate::pem_jwk;
use crate::strict_json;
use jsonwebtoken::DecodingKey;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// What a signature is checked against.
#[derive(Clone)]
pub(super) enum Keys {
    /// A shared secret (the `secret` constraint, the `verify_hs*` argument):
    /// HS256/384/512 only, any length, as OPA accepts (`"secret"` in OPA's
    /// Envoy primer).
    Secret(DecodingKey),
    /// The usable keys of a `cert` argument, possibly none.
    Set(Arc<[VerificationKey]>),
}

impl Keys {
    /// An HMAC secret, taken as its UTF-8 bytes (as OPA does).
    pub(super) fn secret(secret: &str) -> Result<Keys, String> {
        // jsonwebtoken refuses an empty HMAC key; so does Palisade: an empty
        // secret is a policy bug, and OPA would accept MACs under it.
        DecodingKey::from_secret(secret.as_bytes())
            .map(Keys::Secret)
            .map_err(|_| "the secret must not be empty".to_owned())
    }
}

/// Parsed `cert` arguments kept per policy, so a policy that passes the
/// same JWKS on every request parses and checks it once.
const CACHE_ENTRIES: usize = 16;

/// A small cache of parsed `cert` arguments, keyed by the SHA-256 of the
/// text, least recently used first. Clones share one cache (regorus clones
/// extensions with the engine).
#[derive(Clone, Default)]
pub(super) struct KeyCache(Arc<Mutex<VecDeque<CacheEntry>>>);

/// The SHA-256 of a `cert` text, and its usable keys.
type CacheEntry = ([u8; 32], Arc<[VerificationKey]>);

impl KeyCache {
    /// The usable keys of `cert`, parsed on a miss. Parse errors are not
    /// cached (nothing a token does can fix them, and they are rare).
    pub(super) fn keys(&self, cert: &str) -> Result<Arc<[VerificationKey]>, String> {
        let digest: [u8; 32] = Sha256::digest(cert.as_bytes()).into();
        // A poisoned lock (a panic elsewhere, impossible under the filter's
        // `panic = "abort"`) only costs the cache.
        if let Ok(mut entries) = self.0.lock() {
            if let Some(i) = entries.iter().position(|(d, _)| *d == digest) {
                if let Some(entry) = entries.remove(i) {
                    let keys = entry.1.clone();
                    entries.push_back(entry);
                    return Ok(keys);
                }
            }
        }
        let keys: Arc<[VerificationKey]> = parse_cert(cert)?.into();
        if let Ok(mut entries) = self.0.lock() {
            while entries.len() >= CACHE_ENTRIES {
                entries.pop_front();
            }
            entries.push_back((digest, keys.clone()));
        }
        Ok(keys)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.lock().map(|e| e.len()).unwrap_or(0)
    }
}

/// Reads a `cert` argument: one PEM block (`CERTIFICATE` or `PUBLIC KEY`,
/// as OPA takes), else a JWK Set or a single JWK as JSON.
pub(super) fn parse_cert(cert: &str) -> Result<Vec<VerificationKey>, String> {
    let text = cert.trim();
    if text.starts_with("-----BEGIN ") {
        return parse_pem(text).map(|key| key.into_iter().collect());
    }
    let json = strict_json::from_str(text)
        .map_err(|e| format!("cert is neither a PEM block nor a JWK (set): {e}"))?;
    let jwks: Vec<Value> = match json {
        Value::Object(mut set) if set.contains_key("keys") => match set.remove("keys") {
            Some(Value::Array(keys)) => keys,
            _ => return Err("cert: `keys` must be an array of JWKs".into()),
        },
        jwk @ Value::Object(_) if jwk.get("kty").is_some() => vec![jwk],
        _ => return Err("cert must be a PEM block, a JWK or a JWK Set".into()),
    };
    Ok(jwks.iter().filter_map(usable).collect())
}

/// One JWK as Palisade would load it from the config, or `None` if it
/// refuses the key or the key signs nothing.
fn usable(jwk: &Value) -> Option<VerificationKey> {
    jwks::load_keys(std::slice::from_ref(jwk), &Alg::ALL, "cert")
        .ok()
        .and_then(|(mut keys, _)| keys.pop())
}

/// The key in a single PEM block; `Ok(None)` for a well-formed key that
/// Palisade refuses.
fn parse_pem(text: &str) -> Result<Option<VerificationKey>, String> {
    let label = text
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.split_once("-----"))
        .map(|(label, _)| label)
        .ok_or("cert: malformed PEM header")?;
    if !matches!(label, "CERTIFICATE" | "PUBLIC KEY") {
        return Err(format!(
            "cert: a PEM `{label}` block is not supported (use CERTIFICATE or PUBLIC KEY)"
        ));
    }
    let end = format!("-----END {label}-----");
    let after_end = text
        .find(&end)
        .map(|at| at + end.len())
        .ok_or("cert: PEM block has no end line")?;
    let trailing = text.get(after_end..).unwrap_or_default();
    if text.matches("-----BEGIN ").count() != 1 || !trailing.trim().is_empty() {
        return Err("cert: extra data after the PEM block".into());
    }
    let bytes = text.as_bytes();
    // jsonwebtoken reads the key type from the SubjectPublicKeyInfo (of
    // the certificate, for a CERTIFICATE block); exactly one of these fits.
    let jwk = if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        pem_jwk::rsa(&key).ok_or("cert: malformed RSA public key")?
    } else if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        match pem_jwk::ec(&key) {
            Some(jwk) => jwk,
            None => return Ok(None), // another curve, or a compressed point
        }
    } else if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        pem_jwk::ed25519(&key)
    } else {
        return Err("cert: the PEM block holds no RSA, EC or Ed25519 public key".into());
    };
    Ok(usable(&jwk))
}
