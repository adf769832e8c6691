//! Reading a compact JWS and checking its signature, for the `io.jwt`
//! builtins, with the parser of Palisade's own verifier
//! ([`split_compact`], [`decode_object`]) and its refusals: oversized
//! tokens, JWE and the JSON serialization, duplicate member names, `crit`,
//! and any `alg` outside [`Alg`] (so `none`, in any casing, never verifies).

use super::keys::Keys;
use crate::algorithm::Alg;
use crate::token::verify::{decode_object, split_compact, CompactParts, MAX_TOKEN_BYTES};
use crate::token::TokenError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

/// A JSON object: a JOSE header or a claim set.
pub(super) type Object = Map<String, Value>;

/// How many envelopes of a nested JWT (`cty: JWT`) are opened; OPA sets
/// no bound, but a token of at most `MAX_TOKEN_BYTES` holds few anyway.
pub(super) const MAX_NESTING: usize = 4;

/// A compact JWS whose JOSE header passed Palisade's checks; its
/// signature is not checked yet.
pub(super) struct Signed<'a> {
    pub(super) parts: CompactParts<'a>,
    pub(super) header: Object,
    pub(super) alg: Alg,
    /// The payload is itself a token (`cty` is `JWT`, in any casing, as
    /// OPA's `decode_verify` reads it).
    pub(super) nested: bool,
}

impl<'a> Signed<'a> {
    /// Splits `token` and reads its header.
    pub(super) fn read(token: &'a [u8]) -> Result<Signed<'a>, TokenError> {
        let parts = read_parts(token)?;
        let header = read_header(&parts)?;
        if header.contains_key("crit") {
            return Err(TokenError::Crit);
        }
        let alg = match header.get("alg") {
            Some(Value::String(name)) => Alg::parse(name).ok_or(TokenError::AlgNotAllowed)?,
            Some(_) => return Err(TokenError::Malformed("alg must be a string")),
            None => return Err(TokenError::Malformed("alg missing")),
        };
        // OPA refuses non-string values of the headers it reads.
        for name in ["kid", "typ", "cty"] {
            if header.get(name).is_some_and(|v| !v.is_string()) {
                return Err(TokenError::Malformed("kid, typ and cty must be strings"));
            }
        }
        let nested = header
            .get("cty")
            .and_then(Value::as_str)
            .is_some_and(|cty| cty.eq_ignore_ascii_case("JWT"));
        Ok(Signed {
            parts,
            header,
            alg,
            nested,
        })
    }

    /// The `kid` header, unless absent or empty (OPA ignores an empty one).
    fn kid(&self) -> Option<&str> {
        self.header
            .get("kid")
            .and_then(Value::as_str)
            .filter(|kid| !kid.is_empty())
    }

    /// True if the signature verifies as `alg` under `keys`. With a key
    /// set, as OPA: the key named by `kid` if there is one, else every
    /// key; here only keys whose type (and own `alg`) fit `alg` are used.
    pub(super) fn signature_ok(&self, alg: Alg, keys: &Keys) -> bool {
        let check = |key| {
            jsonwebtoken::crypto::verify(
                self.parts.signature,
                self.parts.signing_input,
                key,
                alg.to_jsonwebtoken(),
            )
            .unwrap_or(false)
        };
        match keys {
            Keys::Secret(secret) => alg.is_hmac() && check(secret),
            Keys::Set(set) => {
                let named = self
                    .kid()
                    .and_then(|kid| set.iter().find(|k| k.kid.as_deref() == Some(kid)));
                match named {
                    Some(key) => key.algorithms.contains(&alg) && check(&key.key),
                    None => set
                        .iter()
                        .filter(|k| k.algorithms.contains(&alg))
                        .any(|k| check(&k.key)),
                }
            }
        }
    }

    /// The payload as a JSON object, refusing duplicate member names.
    pub(super) fn payload(&self) -> Result<Object, TokenError> {
        decode_object(self.parts.payload, "payload is not a base64url JSON object")
    }

    /// The payload as the text of the next token in a nested JWT.
    pub(super) fn inner_token(&self) -> Result<String, TokenError> {
        inner_token(self.parts.payload)
    }
}

/// A nested token: the payload's base64url-decoded text.
fn inner_token(payload: &[u8]) -> Result<String, TokenError> {
    URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(TokenError::Malformed("nested token is not base64url text"))
}

/// The size limit, then the compact-serialization split.
fn read_parts(token: &[u8]) -> Result<CompactParts<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    split_compact(token)
}

/// The JOSE header; a JWE header (`enc`, in a token of three parts) is refused.
fn read_header(parts: &CompactParts<'_>) -> Result<Object, TokenError> {
    let header = decode_object(parts.header, "header is not a base64url JSON object")?;
    if header.contains_key("enc") {
        return Err(TokenError::Unsupported);
    }
    Ok(header)
}

/// `io.jwt.verify_<alg>`: the signature verifies as `alg` (which the
/// header must name: Palisade never lets the function and the token
/// disagree), and the payload is a JSON object without duplicate names
/// (or a nested token).
pub(super) fn verify_as(token: &[u8], alg: Alg, keys: &Keys) -> Result<(), TokenError> {
    let signed = Signed::read(token)?;
    if signed.alg != alg {
        return Err(TokenError::AlgNotAllowed);
    }
    if !signed.nested {
        signed.payload()?;
    }
    if signed.signature_ok(alg, keys) {
        Ok(())
    } else {
        Err(TokenError::BadSignature)
    }
}

/// `io.jwt.decode`: header, payload and the signature in hex, without
/// verifying anything; a nested token (`cty` exactly `JWT`) is decoded
/// instead of its envelope, as OPA does. Errors describe the bad token.
pub(super) fn decode(token: &str) -> Result<(Object, Object, String), TokenError> {
    let mut text = token.to_owned();
    for _ in 0..=MAX_NESTING {
        let parts = read_parts(text.as_bytes())?;
        let header = read_header(&parts)?;
        if header.get("cty").and_then(Value::as_str) == Some("JWT") {
            let inner = inner_token(parts.payload)?;
            // jwt.io quotes a nested token; OPA strips the quotes.
            text = inner.trim_matches(['"', '\'']).to_owned();
            continue;
        }
        let payload = decode_object(parts.payload, "payload is not a base64url JSON object")?;
        let signature = URL_SAFE_NO_PAD
            .decode(parts.signature)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let hex = signature.iter().map(|b| format!("{b:02x}")).collect();
        return Ok((header, payload, hex));
    }
    Err(TokenError::Malformed("tokens nested too deeply"))
}
