//! Test tokens from TEST-ONLY keys (by default `envoy/test-keys`).
//!
//! For demos, case files and tests. The keys there are public: a token minted
//! here proves nothing outside this repository. Never point this at a
//! production key.

use palisade_core::algorithm::Alg;
use palisade_core::mint::{self, SigningKey};
use serde_json::Value;
use std::path::Path;

pub const ISSUER: &str = "https://idp.palisade.test";
pub const AUDIENCE: &str = "customer-api";

fn pem(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| format!("cannot read test key {}: {e}", path.display()))
}

/// A signing key by its case-file name, from the keys in `dir`:
/// `rs256`, `es256`, `eddsa`, `attacker` (an unrelated key claiming the
/// trusted kid), `rsa-public-as-hmac` (HS256 keyed with the trusted RSA
/// public key: the key-confusion attack).
pub fn key(dir: &Path, name: &str) -> Result<SigningKey, String> {
    match name {
        "rs256" => {
            SigningKey::from_pem(Alg::RS256, Some("test-rs256"), &pem(dir, "rs256.key.pem")?)
        }
        "es256" => {
            SigningKey::from_pem(Alg::ES256, Some("test-es256"), &pem(dir, "es256.key.pem")?)
        }
        "eddsa" => {
            SigningKey::from_pem(Alg::EdDSA, Some("test-eddsa"), &pem(dir, "eddsa.key.pem")?)
        }
        "attacker" => SigningKey::from_pem(
            Alg::RS256,
            Some("test-rs256"),
            &pem(dir, "attacker-rs256.key.pem")?,
        ),
        "rsa-public-as-hmac" => {
            let jwks: Value = serde_json::from_slice(&pem(dir, "jwks.json")?)
                .map_err(|e| format!("jwks.json: {e}"))?;
            let n = jwks["keys"][0]["n"]
                .as_str()
                .ok_or("jwks.json has no RSA key")?;
            SigningKey::from_secret(Alg::HS256, Some("test-rs256"), n.as_bytes())
        }
        other => Err(format!(
            "unknown test key `{other}` (rs256, es256, eddsa, attacker, rsa-public-as-hmac)"
        )),
    }
}

/// Valid claims of the test issuer at `now` (seconds since the epoch),
/// living 300 s, with `extra` merged over them (see [`mint::claims`]).
pub fn claims(now: u64, extra: &Value) -> Value {
    mint::claims(ISSUER, AUDIENCE, now, 300, extra)
}

pub use mint::relative_time;
