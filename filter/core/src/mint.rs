//! Minting test tokens, for the demo, the CLI and the tests.
//!
//! Behind the `mint` feature, never compiled into the filter. `sign_raw` takes
//! header and payload JSON as text, so tests can build hostile tokens
//! (duplicate claims, `crit`, odd types) that a typed encoder would refuse.

use crate::algorithm::Alg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::EncodingKey;

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
