//! A public key read from PEM (a `PUBLIC KEY` or a certificate's
//! SubjectPublicKeyInfo, parsed by `jsonwebtoken`), written back as a JWK,
//! so it passes through [`crate::jwks::load_keys`] and its key rules (RSA
//! size, curves) like every other key. Used by the `io.jwt` builtins'
//! `cert` and by bundle verification keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, DecodingKeyKind};
use serde_json::{json, Value};

/// The RSA key as a JWK; `None` if its DER is malformed.
pub(crate) fn rsa(key: &DecodingKey) -> Option<Value> {
    let (n, e) = rsa_components(raw(key))?;
    Some(json!({"kty": "RSA", "n": b64(n), "e": b64(e)}))
}

/// The EC key as a JWK; `None` for a curve other than P-256 and P-384, or
/// a compressed point.
pub(crate) fn ec(key: &DecodingKey) -> Option<Value> {
    let point = raw(key);
    let (crv, size) = match point.len() {
        65 => ("P-256", 32),
        97 => ("P-384", 48),
        _ => return None,
    };
    let (&tag, xy) = point.split_first()?;
    let (x, y) = (xy.get(..size)?, xy.get(size..)?);
    (tag == 0x04).then(|| json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)}))
}

/// The Ed25519 key as a JWK.
pub(crate) fn ed25519(key: &DecodingKey) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(raw(key))})
}

fn raw(key: &DecodingKey) -> &[u8] {
    match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => bytes,
        DecodingKeyKind::RsaModulusExponent { .. } => &[],
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `n` and `e` of a PKCS#1 `RSAPublicKey` (DER), without leading zeros.
fn rsa_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (sequence, trailing) = der_element(der, 0x30)?;
    let (n, rest) = der_element(sequence, 0x02)?;
    let (e, rest) = der_element(rest, 0x02)?;
    if !trailing.is_empty() || !rest.is_empty() {
        return None;
    }
    Some((unsigned(n), unsigned(e)))
}

/// A DER INTEGER's bytes without the leading zeros of its sign.
fn unsigned(int: &[u8]) -> &[u8] {
    let start = int.iter().position(|b| *b != 0).unwrap_or(int.len());
    int.get(start..).unwrap_or_default()
}

/// The contents of the DER element with `tag` at the start of `input`,
/// and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if found != tag {
        return None;
    }
    let (len, rest) = match first {
        short @ 0..=0x7f => (usize::from(short), rest),
        0x81..=0x83 => {
            let count = usize::from(first & 0x7f);
            let len = rest
                .get(..count)?
                .iter()
                .fold(0usize, |len, b| (len << 8) | usize::from(*b));
            (len, rest.get(count..)?)
        }
        _ => return None,
    };
    Some((rest.get(..len)?, rest.get(len..)?))
}
