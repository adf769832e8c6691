//! Signed chain heads: at an interval the writer seals a `chain_head`
//! record carrying an Ed25519 signature over the head before it. A verifier
//! holding only the public key can then tell the chain up to that head is
//! the one the filter wrote — a log rewritten with fresh hashes fails.

use super::canonical;
use super::chain::Head;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A configured signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct Signing {
    seed: [u8; 32],
    pub key_id: String,
    pub interval: Duration,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Signing")
            .field("key_id", &self.key_id)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Reads a base64 Ed25519 key of 32 bytes.
pub fn key_bytes(text: &str) -> Result<[u8; 32], String> {
    // The decoder's message would quote a byte of the key: say less.
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| "not base64".to_owned())?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes; an Ed25519 key is 32", b.len()))
}

impl Signing {
    pub fn new(seed: [u8; 32], key_id: Option<String>, interval: Duration) -> Signing {
        let public = SigningKey::from_bytes(&seed).verifying_key();
        let key_id = key_id.unwrap_or_else(|| {
            Sha256::digest(public.as_bytes())[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        });
        Signing {
            seed,
            key_id,
            interval,
        }
    }

    /// The public key, base64, for `palisade audit verify --public-key`.
    pub fn public_key(&self) -> String {
        STANDARD.encode(
            SigningKey::from_bytes(&self.seed)
                .verifying_key()
                .as_bytes(),
        )
    }

    /// The `chain_head` record for `head`.
    pub fn checkpoint(&self, head: &Head, timestamp: &str) -> Map<String, Value> {
        let signed = head.to_json();
        let signature =
            SigningKey::from_bytes(&self.seed).sign(&signed_bytes(&signed, &self.key_id));
        let mut record = Map::new();
        record.insert("event".into(), "chain_head".into());
        record.insert("timestamp".into(), timestamp.into());
        record.insert("signed".into(), signed);
        record.insert("key_id".into(), self.key_id.clone().into());
        record.insert(
            "signature".into(),
            STANDARD.encode(signature.to_bytes()).into(),
        );
        record
    }
}

/// What a signature covers: a domain tag (a signature made for anything
/// else never passes), the key id, and the head.
fn signed_bytes(head: &Value, key_id: &str) -> Vec<u8> {
    canonical::to_vec(&serde_json::json!({
        "domain": "palisade-chain-head-v1",
        "key_id": key_id,
        "head": head,
    }))
}

/// Checks a `chain_head` record's signature with any of `keys` (several
/// across a key rotation); returns the head it vouches for.
pub fn verify_checkpoint_any(record: &Value, keys: &[[u8; 32]]) -> Result<Head, String> {
    let mut last = "no public key given".to_owned();
    for key in keys {
        match verify_checkpoint(record, key) {
            Ok(head) => return Ok(head),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Checks a `chain_head` record's signature with `public`; returns the head
/// it vouches for.
pub fn verify_checkpoint(record: &Value, public: &[u8; 32]) -> Result<Head, String> {
    let signed = record.get("signed").ok_or("no `signed` head")?;
    let key_id = record
        .get("key_id")
        .and_then(Value::as_str)
        .ok_or("no key_id")?;
    let head = Head::from_json(signed).ok_or("`signed` is not a head")?;
    let signature = record
        .get("signature")
        .and_then(Value::as_str)
        .ok_or("no signature")?;
    let bytes: [u8; 64] = STANDARD
        .decode(signature)
        .map_err(|e| format!("signature not base64: {e}"))?
        .try_into()
        .map_err(|_| "a signature is 64 bytes".to_owned())?;
    let key = VerifyingKey::from_bytes(public).map_err(|e| format!("bad public key: {e}"))?;
    key.verify_strict(
        &signed_bytes(signed, key_id),
        &Signature::from_bytes(&bytes),
    )
    .map_err(|_| "the signature does not verify with this public key".to_owned())?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_head_verifies_with_the_public_key_only() {
        let s = Signing::new([9; 32], Some("k1".into()), Duration::from_secs(60));
        let head = Head {
            chain_id: "c".into(),
            seq: 41,
            hash: "ab".repeat(32),
        };
        let record = Value::Object(s.checkpoint(&head, "t"));
        let public = key_bytes(&s.public_key()).unwrap();
        assert_eq!(verify_checkpoint(&record, &public), Ok(head));
        let mut forged = record.clone();
        forged["signed"]["seq"] = 42.into();
        assert!(verify_checkpoint(&forged, &public).is_err());
        let mut relabelled = record.clone();
        relabelled["key_id"] = "k2".into();
        assert!(
            verify_checkpoint(&relabelled, &public).is_err(),
            "the key id is signed"
        );
        let other = key_bytes(&Signing::new([8; 32], None, Duration::ZERO).public_key()).unwrap();
        assert!(verify_checkpoint(&record, &other).is_err());
        assert!(!format!("{s:?}").contains("9, 9"), "no key in debug output");
    }

    #[test]
    fn keys_made_with_openssl_as_the_readme_says_pair_up() {
        // openssl genpkey -algorithm ed25519 -outform DER | tail -c 32 | base64, and its public half.
        let seed = key_bytes("y0oF9x6kwXrFv5jBgw5/n64u4zzRsLHeJNOb97EZRV0=").unwrap();
        let s = Signing::new(seed, None, Duration::from_secs(60));
        assert_eq!(
            s.public_key(),
            "YxQXPgpOGSh3KRgCDJpX+36dPmpKdbU1tQOxnpuongs="
        );
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(key_bytes("AAAA").unwrap_err().contains("3 bytes"));
        assert!(key_bytes("%%%").is_err());
    }
}
