//! What the rate limit service is told about an identity: a keyed hash,
//! never the identity itself.
//!
//! Identities are personal data (`sub=alice@example.com`, `peer=10.0.0.7`)
//! and can be long or hold anything. Sent as they are, they would sit in
//! Redis keys, the service's logs and the plaintext (h2c) gRPC traffic, in
//! a store nobody audits as holding personal data. A plain hash would not
//! help: an IPv4 address or a guessable e-mail is reversed by trying them
//! all. The local limits' salt ([`crate::ratelimit::salt`]) cannot be used
//! either: it is made per Envoy process, and fleet-wide counters need every
//! sidecar to send the same value for the same caller.
//!
//! So each identity is sent as HMAC-SHA-256 under `global.identity_key`, a
//! secret of at least 32 bytes configured alike on every sidecar, over the
//! rule's name and the identity; the first 16 bytes, in hex (32
//! characters, 128 bits: collisions need about 2^64 identities, and nobody
//! without the key can aim for one). With the rule's name in the input, one
//! caller's counters under two rules cannot be linked in Redis either.
//! Without the key, Redis holds unlinkable random-looking names; with it
//! (an operator answering "why is alice suspended?") the pseudonym is
//! recomputed with [`IdentityKey::pseudonym`], and the audit record of
//! every request checked fleet-wide names both (`subject` or `peer`, and
//! `fleet_pseudonyms` by rule). Changing the key starts every
//! fleet-wide counter afresh, like renaming the rule.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt;

/// Shortest `identity_key`, in bytes: HMAC-SHA-256's full strength.
pub const MIN_KEY_BYTES: usize = 32;

/// Bytes of the MAC kept in a pseudonym.
const PSEUDONYM_BYTES: usize = 16;

/// Separates these MACs from any other use of the same key.
const CONTEXT: &[u8] = b"palisade/rls-identity/v1\0";

/// The secret under which identities are pseudonymized. Its `Debug` output
/// never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityKey(Vec<u8>);

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityKey(<redacted>)")
    }
}

impl IdentityKey {
    /// Reads a base64 key of at least [`MIN_KEY_BYTES`] bytes. Errors never
    /// quote the text (it is a secret).
    pub fn from_base64(text: &str) -> Result<IdentityKey, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| "not base64".to_owned())?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "{} bytes; at least {MIN_KEY_BYTES} (e.g. `openssl rand -base64 32`)",
                bytes.len()
            ));
        }
        Ok(IdentityKey(bytes))
    }

    /// The value sent for `identity` under rule `rule`: 32 lowercase hex
    /// digits. Rule names hold no NUL, so `rule NUL identity` reads one way
    /// only.
    pub fn pseudonym(&self, rule: &str, identity: &str) -> String {
        let mac = hmac_sha256(
            &self.0,
            &[CONTEXT, rule.as_bytes(), b"\0", identity.as_bytes()],
        );
        mac.iter()
            .take(PSEUDONYM_BYTES)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// HMAC-SHA-256 (RFC 2104) of the concatenated `parts`, with the `hmac`
/// crate (0.13, on `sha2` 0.11): both are already in the build, through
/// `jsonwebtoken`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = hmac::Hmac::<sha2_011::Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 4231 test cases 1, 2 and 6 (a key longer than the block).
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], &[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(
                b"Jefe",
                &[b"what do ya ", b"want for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_per_rule() {
        let key = IdentityKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let other = IdentityKey::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        let p = key.pseudonym("bulk", "sub=alice");
        assert_eq!(p.len(), 32);
        assert!(p
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(
            p,
            key.pseudonym("bulk", "sub=alice"),
            "same on every sidecar"
        );
        assert_ne!(p, other.pseudonym("bulk", "sub=alice"), "keyed");
        assert_ne!(
            p,
            key.pseudonym("export", "sub=alice"),
            "unlinkable across rules"
        );
        assert_ne!(p, key.pseudonym("bulk", "sub=alicf"));
        assert!(!p.contains("alice"));
        // Anything at all is a fine identity, and the output stays 32 hex.
        let odd = key.pseudonym("bulk", &format!("sub={}\0\n\u{202e}", "x".repeat(10_000)));
        assert_eq!(odd.len(), 32);
    }

    #[test]
    fn keys_must_be_base64_and_long_enough() {
        assert_eq!(
            IdentityKey::from_base64("not base64!").unwrap_err(),
            "not base64"
        );
        let short = IdentityKey::from_base64(&STANDARD.encode([1u8; 31])).unwrap_err();
        assert!(short.starts_with("31 bytes; at least 32"), "{short}");
        assert!(IdentityKey::from_base64(&format!(" {} ", STANDARD.encode([1u8; 48]))).is_ok());
        let key = IdentityKey::from_base64(&STANDARD.encode([0x5au8; 32])).unwrap();
        assert_eq!(format!("{key:?}"), "IdentityKey(<redacted>)");
    }
}
