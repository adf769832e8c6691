//! Declarative request cases: one YAML file, one request through the gate.
//!
//! A case gives the request (path, headers, and a token to mint at run time)
//! and what must happen (status, reason, whether the upstream was reached).
//! The same files run natively against the core and through real Envoy.
//!
//! ```yaml
//! description: alg none is never accepted
//! request:
//!   path: /api/v1/customers/42
//!   token:
//!     key: rs256
//!     header: {alg: none}
//!     claims: {sub: alice, roles: [customer], customer_id: "42"}
//!     mutate: drop_signature
//! expect:
//!   status: 401
//!   reason: token_alg_not_allowed
//!   upstream: false
//! ```

use crate::tokens;
use base64_url::encode as b64;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub description: String,
    pub request: CaseRequest,
    pub expect: Expect,
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub token: Option<TokenSpec>,
    /// Literal `Authorization` values (one header each); `{token}` is replaced
    /// by the minted token. Default: one `Bearer {token}` when a token is given.
    #[serde(default)]
    pub authorization: Option<Vec<String>>,
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// `rs256`, `es256`, `eddsa`, `attacker`, `rsa-public-as-hmac`.
    pub key: String,
    /// Merged over the key's JOSE header; `null` removes a member.
    #[serde(default)]
    pub header: Option<Value>,
    /// Merged over valid claims; `null` removes; `"now+N"` is relative time.
    #[serde(default)]
    pub claims: Option<Value>,
    /// Payload text used verbatim (for duplicate claims); `{now}` and `{exp}` are substituted.
    #[serde(default)]
    pub raw_payload: Option<String>,
    /// Damage done after signing.
    #[serde(default)]
    pub mutate: Option<Mutation>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mutation {
    FlipSignature,
    TruncateSignature,
    DropSignature,
    TamperPayload,
    Jwe,
    PadToSize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: u16,
    #[serde(default)]
    pub reason: Option<String>,
    /// Whether the request reached the upstream.
    pub upstream: bool,
    /// Prefix the `WWW-Authenticate` header must have.
    #[serde(default)]
    pub www_authenticate: Option<String>,
}

/// All cases under `dir` (recursively), sorted by path.
pub fn load_dir(dir: &Path) -> Vec<Case> {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no case files under {}", dir.display());
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut case: Case =
                yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            case.file = f;
            case
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

impl Case {
    /// The `authorization` header values to send, with tokens minted for `now`.
    pub fn authorization(&self, now: u64) -> Vec<String> {
        let token = self.request.token.as_ref().map(|t| t.mint(now));
        match (&self.request.authorization, token) {
            (Some(values), token) => values
                .iter()
                .map(|v| v.replace("{token}", token.as_deref().unwrap_or("")))
                .collect(),
            (None, Some(token)) => vec![format!("Bearer {token}")],
            (None, None) => vec![],
        }
    }

    /// All request headers (besides the pseudo-headers) for `now`.
    pub fn headers(&self, now: u64) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = self
            .request
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        h.extend(
            self.authorization(now)
                .into_iter()
                .map(|v| ("authorization".to_owned(), v)),
        );
        h
    }

    /// The one command that reruns just this case.
    pub fn repro(&self, test: &str) -> String {
        format!(
            "PALISADE_CASE={} cargo test -p palisade-tests --test {test} -- --nocapture",
            self.file
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default()
        )
    }

    /// True unless `PALISADE_CASE` names another file.
    pub fn selected(&self) -> bool {
        match std::env::var("PALISADE_CASE") {
            Ok(name) => self
                .file
                .file_name()
                .is_some_and(|f| f.to_string_lossy() == name),
            Err(_) => true,
        }
    }
}

impl TokenSpec {
    pub fn mint(&self, now: u64) -> String {
        let key = tokens::key(&self.key);
        let mut header = key.header();
        merge(&mut header, self.header.as_ref(), now);
        let payload = match &self.raw_payload {
            Some(raw) => raw
                .replace("{now}", &now.to_string())
                .replace("{exp}", &(now + 300).to_string()),
            None => tokens::claims(now, self.claims.as_ref().unwrap_or(&Value::Null)).to_string(),
        };
        let token = key.sign_raw(&header.to_string(), &payload).unwrap();
        match self.mutate {
            None => token,
            Some(m) => mutate(&token, m),
        }
    }
}

fn merge(target: &mut Value, changes: Option<&Value>, now: u64) {
    let (Some(obj), Some(changes)) = (target.as_object_mut(), changes.and_then(Value::as_object))
    else {
        return;
    };
    for (k, v) in changes {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), tokens::relative_time(now, v));
        }
    }
}

fn mutate(token: &str, m: Mutation) -> String {
    let (signed, sig) = token.rsplit_once('.').unwrap();
    match m {
        Mutation::FlipSignature => {
            let mut bytes = base64_url::decode(sig).unwrap();
            bytes[0] ^= 0x01;
            format!("{signed}.{}", b64(&bytes))
        }
        Mutation::TruncateSignature => format!("{signed}.{}", &sig[..sig.len() / 2]),
        Mutation::DropSignature => format!("{signed}."),
        Mutation::TamperPayload => {
            let (header, payload) = signed.split_once('.').unwrap();
            let mut claims: Value =
                serde_json::from_slice(&base64_url::decode(payload).unwrap()).unwrap();
            claims["sub"] = Value::from("admin");
            format!("{header}.{}.{sig}", b64(claims.to_string().as_bytes()))
        }
        Mutation::Jwe => format!("{token}.{}.{}", b64(b"iv"), b64(b"tag")),
        Mutation::PadToSize => format!("{token}{}", "A".repeat(8 * 1024)),
    }
}

/// Unpadded base64url helpers (the `base64` crate, as the core uses).
mod base64_url {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    pub fn encode(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
        URL_SAFE_NO_PAD.decode(text)
    }
}

/// What a case observed, to compare with its [`Expect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub status: u16,
    pub reason: Option<String>,
    pub upstream: bool,
    pub www_authenticate: Option<String>,
}

impl Case {
    /// Compares `seen` with the expectation; the error names every difference
    /// and the command that reruns this case alone.
    pub fn check(&self, seen: &Observed, test: &str) -> Result<(), String> {
        let e = &self.expect;
        let mut diffs = Vec::new();
        if seen.status != e.status {
            diffs.push(format!(
                "status: expected {}, got {}",
                e.status, seen.status
            ));
        }
        if seen.upstream != e.upstream {
            diffs.push(format!(
                "upstream reached: expected {}, got {}",
                e.upstream, seen.upstream
            ));
        }
        if let Some(reason) = &e.reason {
            if seen.reason.as_deref() != Some(reason) {
                diffs.push(format!("reason: expected {reason}, got {:?}", seen.reason));
            }
        }
        if let Some(prefix) = &e.www_authenticate {
            if !seen
                .www_authenticate
                .as_deref()
                .is_some_and(|w| w.starts_with(prefix.as_str()))
            {
                diffs.push(format!(
                    "www-authenticate: expected prefix {prefix:?}, got {:?}",
                    seen.www_authenticate
                ));
            }
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} ({}):\n  {}\n  rerun: {}",
                self.file.display(),
                self.description,
                diffs.join("\n  "),
                self.repro(test)
            ))
        }
    }
}

/// The demo plugin configuration the shared cases are written for.
pub fn demo_config() -> Value {
    palisade_demo::sidecar::plugin_config(&crate::repo()).unwrap()
}

/// The shared case files.
pub fn all() -> Vec<Case> {
    load_dir(&crate::repo().join("tests/cases"))
}
