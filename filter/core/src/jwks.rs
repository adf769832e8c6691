//! Turning an RFC 7517 JWK Set into verification keys, refusing weak or
//! ambiguous ones at config time.
//!
//! JWK members this module does not know are ignored, as RFC 7517 §4 requires
//! (IdPs add their own, such as Azure's `issuer`). Everything Palisade relies on
//! is checked: the key type fits an allowed algorithm, RSA moduli have at least
//! 2048 bits, HMAC secrets are at least as long as their hash, `kid`s are
//! unique, and no private key material is present.

use crate::algorithm::Alg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use serde_json::Value;

/// Smallest RSA modulus accepted, in bits (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// A public key (or HMAC secret) ready to verify signatures.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: Option<String>,
    /// The algorithms this key may verify: those allowed by the provider that
    /// fit the key's type and curve, narrowed to the key's own `alg` if declared.
    pub algorithms: Vec<Alg>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// Parses and validates every key. `path` prefixes error messages (e.g. `providers[0].jwks.keys`).
/// Returns the usable keys and human-readable warnings for keys that were skipped.
pub fn load_keys(
    keys: &[Value],
    allowed: &[Alg],
    path: &str,
) -> Result<(Vec<VerificationKey>, Vec<String>), String> {
    let mut out: Vec<VerificationKey> = Vec::new();
    let mut warnings = Vec::new();
    for (i, jwk) in keys.iter().enumerate() {
        let here = format!("{path}[{i}]");
        match load_key(jwk, allowed).map_err(|e| format!("{here}: {e}"))? {
            Some(key) => {
                if let Some(kid) = &key.kid {
                    if out.iter().any(|k| k.kid.as_deref() == Some(kid)) {
                        return Err(format!("{here}: duplicate kid `{kid}`"));
                    }
                }
                out.push(key);
            }
            None => warnings.push(format!(
                "{here}: skipped, it is not a signing key for any allowed algorithm"
            )),
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{path}: no usable key for the allowed algorithms {}",
            Alg::list(allowed)
        ));
    }
    Ok((out, warnings))
}

/// One key: `Ok(None)` means "valid, but not for signing with an allowed algorithm".
fn load_key(jwk: &Value, allowed: &[Alg]) -> Result<Option<VerificationKey>, String> {
    let obj = jwk.as_object().ok_or("a JWK must be a JSON object")?;
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        if obj.contains_key(private) {
            return Err(format!(
                "contains private key member `{private}`; configure public keys only"
            ));
        }
    }
    let kty = str_member(jwk, "kty")?.ok_or("missing `kty`")?;
    let kid = str_member(jwk, "kid")?.map(str::to_owned);
    if let Some(usage) = str_member(jwk, "use")? {
        if usage != "sig" {
            return Ok(None);
        }
    }
    let declared = match str_member(jwk, "alg")? {
        Some(name) => Some(Alg::parse(name).ok_or_else(|| format!("unsupported `alg` `{name}`"))?),
        None => None,
    };

    let (fits, key): (Vec<Alg>, DecodingKey) = match kty {
        "RSA" => {
            let n = b64_member(jwk, "n")?;
            let e = b64_member(jwk, "e")?;
            let bits = bit_length(&n);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
                ));
            }
            // The checks the verifier makes on every request (odd modulus,
            // sane exponent, size limits), made once here instead.
            rsa::PublicKey::new(
                rsa::BoxedUint::from_be_slice_vartime(&n),
                rsa::BoxedUint::from_be_slice_vartime(&e),
            )
            .map_err(|e| format!("invalid RSA key: {e}"))?;
            let fits = Alg::ALL.iter().copied().filter(|a| a.is_rsa()).collect();
            (fits, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" => {
            let crv = str_member(jwk, "crv")?.ok_or("missing `crv`")?;
            let alg = match crv {
                "P-256" => Alg::ES256,
                "P-384" => Alg::ES384,
                other => return Err(format!("unsupported EC curve `{other}`")),
            };
            let x = str_member(jwk, "x")?.ok_or("missing `x`")?;
            let y = str_member(jwk, "y")?.ok_or("missing `y`")?;
            let key = DecodingKey::from_ec_components(x, y)
                .map_err(|e| format!("invalid EC key: {e}"))?;
            (vec![alg], key)
        }
        "OKP" => {
            let crv = str_member(jwk, "crv")?.ok_or("missing `crv`")?;
            if crv != "Ed25519" {
                return Err(format!("unsupported OKP curve `{crv}`"));
            }
            let x = b64_member(jwk, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key must be 32 bytes".into());
            }
            (vec![Alg::EdDSA], DecodingKey::from_ed_der(&x))
        }
        "oct" => {
            if !allowed.iter().any(|a| a.is_hmac()) {
                return Err(
                    "`oct` (shared secret) key given, but no HS algorithm is allowed".into(),
                );
            }
            let k = b64_member(jwk, "k")?;
            let fits = Alg::ALL
                .iter()
                .copied()
                .filter(|a| a.is_hmac() && k.len() >= a.min_secret_bytes())
                .collect::<Vec<_>>();
            if fits.is_empty() {
                return Err(format!(
                    "`oct` key has {} bytes; HS256 needs at least 32",
                    k.len()
                ));
            }
            let key = DecodingKey::from_secret(&k).map_err(|e| format!("invalid secret: {e}"))?;
            (fits, key)
        }
        other => return Err(format!("unsupported `kty` `{other}`")),
    };

    // EC points and Ed25519 keys are parsed when a verifier is built: build
    // one now, so a key that could never verify fails the load, not every request.
    if let Some(alg) = fits.first().filter(|a| !a.is_rsa() && !a.is_hmac()) {
        if jsonwebtoken::crypto::verify("AA", b"probe", &key, alg.to_jsonwebtoken()).is_err() {
            return Err(format!("invalid {kty} key: not a valid point for {alg}"));
        }
    }
    if let Some(alg) = declared {
        if !fits.contains(&alg) {
            return Err(format!("declared `alg` {alg} does not fit `kty` {kty}"));
        }
    }
    let algorithms: Vec<Alg> = fits
        .into_iter()
        .filter(|a| allowed.contains(a) && declared.is_none_or(|d| d == *a))
        .collect();
    if algorithms.is_empty() {
        return Ok(None);
    }
    Ok(Some(VerificationKey {
        kid,
        algorithms,
        key,
    }))
}

fn str_member<'a>(jwk: &'a Value, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{name}` must be a string")),
    }
}

fn b64_member(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    let text = str_member(jwk, name)?.ok_or_else(|| format!("missing `{name}`"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| format!("`{name}` is not unpadded base64url"))?;
    if bytes.is_empty() {
        return Err(format!("`{name}` is empty"));
    }
    Ok(bytes)
}

/// Bit length of a big-endian unsigned integer.
fn bit_length(be: &[u8]) -> usize {
    let trimmed: &[u8] = match be.iter().position(|b| *b != 0) {
        Some(i) => be.get(i..).unwrap_or_default(),
        None => return 0,
    };
    match trimmed.first() {
        Some(first) => trimmed.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
