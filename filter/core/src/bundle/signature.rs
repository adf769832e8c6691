//! Checking a bundle's `.signatures.json` against a configured key.
//!
//! The format is OPA's (`v1/bundle/verify.go`, docs "Bundles › Signing"):
//! `{"signatures": ["<compact JWS>"]}`, exactly one JWS, whose payload is
//! `{"files": [{"name", "hash", "algorithm"}], "keyid"?, "scope"?, ...}`.
//! Every file of the bundle but `.signatures.json` must be listed with a
//! matching digest, and every listed file must be in the bundle.
//!
//! The JWS is held to the rules of Palisade's token verifier
//! (`token/verify.rs`): the algorithm is the configured key's, never
//! `none` and never chosen by the header; `crit` is refused; duplicate
//! JSON members are refused; the signature is checked before the payload
//! is read.

use super::hash::{file_digest, HashAlg};
use crate::algorithm::Alg;
use crate::jwks::{self, VerificationKey};
use crate::pem_jwk;
use crate::strict_json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A configured bundle verification key: OPA's `keys.<id>` (`key`,
/// `algorithm`, `scope`) with the bundle's `signing` (`keyid`, `scope`).
#[derive(Clone)]
pub struct Verifier {
    alg: Alg,
    key: VerificationKey,
    key_id: Option<String>,
    scope: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("alg", &self.alg)
            .field("key_id", &self.key_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// `key`: a PEM public key or certificate (RS*, PS*, ES256/384, EdDSA)
    /// or the HMAC secret (HS*), as its UTF-8 bytes like OPA. `algorithm`
    /// is `RS256` when empty, as in OPA. The key is held to the rules of
    /// keys in Palisade's config: RSA moduli of at least 2048 bits, HMAC
    /// secrets at least as long as their hash, and no private keys (OPA
    /// accepts a private key PEM here; a filter config must not hold one).
    /// `key_id` and `scope`: see [`Verifier::key_id`] and [`Verifier::scope`].
    pub fn new(
        algorithm: &str,
        key: &str,
        key_id: Option<String>,
        scope: Option<String>,
    ) -> Result<Verifier, String> {
        Verifier::build(algorithm, key, key_id, scope, true)
    }

    /// [`Verifier::new`] without the HMAC secret length rule, for OPA's own
    /// test vectors (signed with the secret `secret`).
    #[cfg(test)]
    pub(crate) fn new_weak_hmac_for_tests(
        algorithm: &str,
        key: &str,
        key_id: Option<String>,
        scope: Option<String>,
    ) -> Result<Verifier, String> {
        Verifier::build(algorithm, key, key_id, scope, false)
    }

    fn build(
        algorithm: &str,
        key: &str,
        key_id: Option<String>,
        scope: Option<String>,
        check_secret_length: bool,
    ) -> Result<Verifier, String> {
        let name = if algorithm.is_empty() {
            "RS256"
        } else {
            algorithm
        };
        let alg = Alg::parse(name).ok_or_else(|| {
            format!(
                "unsupported signing algorithm `{name}`; supported: {}",
                Alg::list(&Alg::ALL)
            )
        })?;
        let pem = key.trim_start().starts_with("-----BEGIN ");
        let jwk = if alg.is_hmac() {
            // A PEM public key used as an HMAC secret is the classic key
            // confusion: anyone holding the public key could sign.
            if pem {
                return Err(format!(
                    "{alg} needs a shared secret, not a PEM key; set the algorithm of the key"
                ));
            }
            if check_secret_length && key.len() < alg.min_secret_bytes() {
                return Err(format!(
                    "{alg} needs a secret of at least {} bytes (RFC 7518 §3.2)",
                    alg.min_secret_bytes()
                ));
            }
            if !check_secret_length {
                let decoding = DecodingKey::from_secret(key.as_bytes())
                    .map_err(|e| format!("bad secret: {e}"))?;
                return Ok(Verifier {
                    alg,
                    key: VerificationKey {
                        kid: None,
                        algorithms: vec![alg],
                        key: decoding,
                    },
                    key_id,
                    scope,
                });
            }
            json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(key.as_bytes())})
        } else {
            if !pem {
                return Err(format!("{alg} needs a PEM public key or certificate"));
            }
            pem_jwk(key.trim(), alg)?
        };
        let (mut keys, _) = jwks::load_keys(std::slice::from_ref(&jwk), &[alg], "key")
            .map_err(|e| e.replacen("key[0]: ", "", 1))?;
        let key = keys.pop().ok_or("the key cannot verify this algorithm")?;
        Ok(Verifier {
            alg,
            key,
            key_id,
            scope,
        })
    }

    pub fn algorithm(&self) -> Alg {
        self.alg
    }

    /// OPA's `signing.keyid`. When set, a JWS that names another key (in
    /// its `kid` header, or the deprecated `keyid` claim) is refused; OPA
    /// would ignore the JWS's choice and verify with this key anyway. When
    /// unset, the JWS's key id is not checked (the one key must verify it).
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// The scope the JWS's `scope` claim must equal; unset means the claim
    /// must be absent or empty, as in OPA.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
}

/// The PEM block as a JWK, for [`jwks::load_keys`]'s checks.
fn pem_jwk(text: &str, alg: Alg) -> Result<Value, String> {
    let label = text
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.split_once("-----"))
        .map(|(label, _)| label)
        .ok_or("malformed PEM header")?;
    if label.contains("PRIVATE") {
        return Err("this is a private key; configure the public key".into());
    }
    if !matches!(label, "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE") {
        return Err(format!(
            "a PEM `{label}` block is not supported (use PUBLIC KEY or CERTIFICATE)"
        ));
    }
    if text.matches("-----BEGIN ").count() != 1 {
        return Err("expected exactly one PEM block".into());
    }
    let bytes = text.as_bytes();
    let wrong = || format!("the PEM key does not fit {alg}");
    if alg.is_rsa() {
        let key = DecodingKey::from_rsa_pem(bytes).map_err(|_| wrong())?;
        pem_jwk::rsa(&key).ok_or_else(|| "malformed RSA public key".to_owned())
    } else if alg == Alg::EdDSA {
        let key = DecodingKey::from_ed_pem(bytes).map_err(|_| wrong())?;
        Ok(pem_jwk::ed25519(&key))
    } else {
        let key = DecodingKey::from_ec_pem(bytes).map_err(|_| wrong())?;
        pem_jwk::ec(&key)
            .ok_or_else(|| "the EC key must be an uncompressed point on P-256 or P-384".to_owned())
    }
}

/// One entry of the payload's `files`.
struct Listed {
    hash: String,
    algorithm: String,
}

/// Checks `.signatures.json` (`signatures`) against the bundle's other
/// `files` (path without leading `/`, bytes).
pub(crate) fn verify(
    signatures: &[u8],
    files: &[(&str, &[u8])],
    verifier: &Verifier,
) -> Result<(), String> {
    let token = single_jws(signatures).map_err(|e| format!(".signatures.json: {e}"))?;
    let payload = check_jws(&token, verifier).map_err(|e| format!(".signatures.json: {e}"))?;
    let mut listed = listed_files(&payload).map_err(|e| format!(".signatures.json: {e}"))?;
    for (path, bytes) in files {
        let entry = listed
            .remove(*path)
            .ok_or_else(|| format!("{path}: not listed in the bundle signature"))?;
        let alg = HashAlg::parse(&entry.algorithm).map_err(|e| format!("{path}: {e}"))?;
        let want = hex(&entry.hash)
            .ok_or_else(|| format!("{path}: the signature's hash `{}` is not hex", entry.hash))?;
        let got = file_digest(path, bytes, alg).map_err(|e| format!("{path}: {e}"))?;
        if want != got {
            return Err(format!(
                "{path}: the file does not match the bundle signature (digest mismatch)"
            ));
        }
    }
    if !listed.is_empty() {
        let missing: Vec<&str> = listed.keys().map(String::as_str).collect();
        return Err(format!(
            "the bundle signature lists files that are not in the bundle: {}",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// The one JWS of `{"signatures": [...]}`.
fn single_jws(bytes: &[u8]) -> Result<String, String> {
    let value = strict_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("must be a JSON object".into());
    };
    match fields.get("plugin") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) if p.is_empty() => {}
        Some(p) => {
            return Err(format!(
                "signature plugin {p} is not supported; Palisade verifies OPA's default JWS format"
            ))
        }
    }
    let Some(Value::Array(list)) = fields.get("signatures") else {
        return Err("`signatures` must be an array".into());
    };
    match list.as_slice() {
        [Value::String(token)] => Ok(token.clone()),
        [] => Err("missing JWT (expected exactly one)".into()),
        [_] => Err("`signatures` must hold strings".into()),
        _ => Err("multiple JWTs are not supported (expected exactly one)".into()),
    }
}

/// Checks the JWS's header and signature and returns its payload.
fn check_jws(token: &str, verifier: &Verifier) -> Result<Map<String, Value>, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the signature is not a compact JWS (three `.`-separated parts)".into());
    };
    let header = decode_object(header, "JWS header")?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        _ => return Err("the JWS header has no `alg` string".into()),
    };
    if alg != verifier.alg.name() {
        return Err(format!(
            "the bundle is signed with `{alg}`; the configured key verifies {}",
            verifier.alg
        ));
    }
    if header.contains_key("crit") {
        return Err("the JWS header has `crit`, which is not supported".into());
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("the JWS `kid` must be a string".into()),
    };
    let signing_input = token
        .get(..header_and_payload_len(token))
        .ok_or("malformed JWS")?;
    let valid = jsonwebtoken::crypto::verify(
        signature,
        signing_input.as_bytes(),
        &verifier.key.key,
        verifier.alg.to_jsonwebtoken(),
    )
    .unwrap_or(false);
    if !valid {
        return Err("the signature does not verify with the configured key".into());
    }
    let payload = decode_object(payload, "JWS payload")?;
    // OPA's precedence: the header's `kid`, else the deprecated `keyid` claim.
    let named = match (kid, payload.get("keyid")) {
        (Some(kid), _) => Some(kid),
        (None, None | Some(Value::Null)) => None,
        (None, Some(Value::String(keyid))) => Some(keyid.clone()),
        (None, Some(_)) => return Err("the `keyid` claim must be a string".into()),
    };
    if let (Some(want), Some(named)) = (verifier.key_id(), named.as_deref()) {
        if named != want && !named.is_empty() {
            return Err(format!(
                "the bundle is signed with key id `{named}`; the configured key id is `{want}`"
            ));
        }
    }
    let scope = match payload.get("scope") {
        None | Some(Value::Null) => "",
        Some(Value::String(scope)) => scope.as_str(),
        Some(_) => return Err("the `scope` claim must be a string".into()),
    };
    let want = verifier.scope().unwrap_or("");
    if scope != want {
        return Err(format!(
            "scope mismatch: the bundle is signed for scope `{scope}`, the configured scope is `{want}`"
        ));
    }
    Ok(payload)
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| format!("the {what} is not unpadded base64url"))?;
    match strict_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("the {what} is not a JSON object")),
        Err(e) if strict_json::is_duplicate_key(&e) => {
            Err(format!("the {what} has a duplicate member: {e}"))
        }
        Err(e) => Err(format!("the {what} is not valid JSON: {e}")),
    }
}

/// The payload's `files`, by name.
fn listed_files(payload: &Map<String, Value>) -> Result<BTreeMap<String, Listed>, String> {
    let Some(Value::Array(items)) = payload.get("files") else {
        return Err("the JWS payload has no `files` array".into());
    };
    let mut out = BTreeMap::new();
    for item in items {
        let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_owned);
        let (Some(name), Some(hash)) = (text("name"), text("hash")) else {
            return Err("each entry of `files` needs a string `name` and `hash`".into());
        };
        let listed = Listed {
            hash,
            algorithm: text("algorithm").unwrap_or_default(),
        };
        if out.insert(name.clone(), listed).is_some() {
            return Err(format!("`files` lists `{name}` twice"));
        }
    }
    Ok(out)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    let nibble = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => Some((nibble(*high)? << 4) | nibble(*low)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
