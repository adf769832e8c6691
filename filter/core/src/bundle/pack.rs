//! Writing bundles, for tests, the demo and the CLI (the `mint` feature;
//! never in the filter). The output is shaped like `opa build`'s: names
//! with a leading `/`, and when signed, a `.signatures.json` in OPA's
//! format (`GenerateSignedToken` in `v1/bundle/sign.go`): one JWS whose
//! header is `{"alg", "kid"?}` and whose payload lists every file with its
//! SHA-256 digest (documents canonicalized as OPA does), plus `keyid` and
//! `scope` claims when set.

use super::hash::{file_digest, HashAlg};
use crate::algorithm::Alg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use flate2::write::GzEncoder;
use flate2::Compression;
use jsonwebtoken::EncodingKey;
use serde_json::{json, Map, Value};

/// A bundle signing key: OPA's `--signing-key`, `--signing-alg`,
/// `--signing-key-id` and the `scope` of `--claims-file`.
pub struct Signer {
    pub alg: Alg,
    key: EncodingKey,
    pub key_id: Option<String>,
    pub scope: Option<String>,
}

impl Signer {
    /// A PKCS#8 PEM private key (RSA, EC or Ed25519) for `alg`.
    pub fn from_pem(
        alg: Alg,
        pem: &[u8],
        key_id: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Signer, String> {
        let key = if alg.is_rsa() {
            EncodingKey::from_rsa_pem(pem)
        } else if alg == Alg::EdDSA {
            EncodingKey::from_ed_pem(pem)
        } else if alg.is_hmac() {
            return Err("an HMAC key is a secret: use Signer::from_secret".into());
        } else {
            EncodingKey::from_ec_pem(pem)
        }
        .map_err(|e| format!("cannot read {alg} key: {e}"))?;
        Ok(Signer::with(alg, key, key_id, scope))
    }

    /// An HMAC secret.
    pub fn from_secret(
        alg: Alg,
        secret: &[u8],
        key_id: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Signer, String> {
        let key = EncodingKey::from_secret(secret).map_err(|e| format!("bad secret: {e}"))?;
        Ok(Signer::with(alg, key, key_id, scope))
    }

    fn with(alg: Alg, key: EncodingKey, key_id: Option<&str>, scope: Option<&str>) -> Signer {
        Signer {
            alg,
            key,
            key_id: key_id.map(str::to_owned),
            scope: scope.map(str::to_owned),
        }
    }

    /// Signs header and payload JSON text as given (tests build hostile
    /// JWSs: duplicate members, `crit`, another `alg`).
    pub fn sign_raw(&self, header: &str, payload: &str) -> Result<String, String> {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.key, self.alg.to_jsonwebtoken())
                .map_err(|e| format!("signing failed: {e}"))?;
        Ok(format!("{input}.{signature}"))
    }

    /// The `.signatures.json` OPA would write for `files`.
    pub fn signatures(&self, files: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
        let mut listed = Vec::with_capacity(files.len());
        for (name, bytes) in files {
            let name = name.trim_start_matches('/');
            let digest = file_digest(name, bytes, HashAlg::Sha256)?;
            let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            listed.push(json!({"name": name, "hash": hash, "algorithm": "SHA-256"}));
        }
        let mut header = Map::new();
        header.insert("alg".into(), self.alg.name().into());
        let mut payload = Map::new();
        payload.insert("files".into(), listed.into());
        if let Some(kid) = &self.key_id {
            header.insert("kid".into(), kid.clone().into());
            payload.insert("keyid".into(), kid.clone().into());
        }
        if let Some(scope) = &self.scope {
            payload.insert("scope".into(), scope.clone().into());
        }
        let token = self.sign_raw(
            &Value::Object(header).to_string(),
            &Value::Object(payload).to_string(),
        )?;
        serde_json::to_vec_pretty(&json!({ "signatures": [token] }))
            .map_err(|e| format!("cannot write .signatures.json: {e}"))
    }
}

/// Packs `files` (path inside the bundle → bytes) into a bundle tar.gz,
/// adding `.signatures.json` when `signer` is given.
pub fn build(files: &[(&str, &[u8])], signer: Option<&Signer>) -> Result<Vec<u8>, String> {
    let signatures = match signer {
        Some(signer) => {
            if files
                .iter()
                .any(|(name, _)| name.trim_start_matches('/') == ".signatures.json")
            {
                return Err("the files already hold a .signatures.json".into());
            }
            Some(signer.signatures(files)?)
        }
        None => None,
    };
    let all = files
        .iter()
        .copied()
        .chain(signatures.as_deref().map(|s| ("/.signatures.json", s)));
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    tar.preserve_absolute(true);
    for (name, bytes) in all {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        let path = format!("/{}", name.trim_start_matches('/'));
        tar.append_data(&mut header, path, bytes)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    let gz = tar.into_inner().map_err(|e| format!("tar: {e}"))?;
    gz.finish().map_err(|e| format!("gzip: {e}"))
}
