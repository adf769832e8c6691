//! Declarative request cases: one YAML file, one request through the gate.
//!
//! The same files run natively against the core, through the real `.wasm` in
//! this harness (`palisade check`), and through real Envoy (the tests).
//!
//! ```yaml
//! description: alg none is never accepted
//! clock: 1700000000          # optional; the harness's clock (Envoy runs use the wall clock)
//! request:
//!   method: GET              # default GET
//!   path: /api/v1/customers/42
//!   headers: {x-team: data}
//!   body: ''                 # optional
//!   peer: 10.1.2.3:40000     # optional source address
//!   principal: spiffe://corp/ns/a/sa/b   # optional mTLS URI SAN
//!   token:                   # minted at run time from a TEST-ONLY key
//!     key: rs256             # rs256 es256 eddsa attacker rsa-public-as-hmac
//!     header: {alg: none}    # merged over the JOSE header (null removes)
//!     claims: {sub: alice}   # merged over valid claims; "now+N" is relative time
//!     raw_payload: '...'     # or the payload text verbatim ({now}, {exp} substituted)
//!     mutate: drop_signature # flip_signature truncate_signature drop_signature tamper_payload jwe pad_to_size
//!   authorization: ["Bearer {token}"]    # literal values instead of the default
//! upstream: {status: 200, headers: {}, body: '{}'}   # optional scripted upstream answer
//! expect:
//!   status: 401
//!   reason: token_alg_not_allowed        # from the decision log
//!   upstream: false                      # whether the upstream was reached
//!   www_authenticate: 'Bearer error="invalid_token"'   # prefix
//!   headers: {x-palisade-decision-id: null}            # response headers (null: must be absent)
//!   upstream_headers: {x-subject: alice}               # headers the upstream saw
//! ```

use crate::host::{self, Exchange, HttpRequest, UpstreamResponse, Vm};
use crate::tokens;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub description: String,
    #[serde(default)]
    pub clock: Option<u64>,
    pub request: CaseRequest,
    #[serde(default)]
    pub upstream: Option<ScriptedUpstream>,
    pub expect: Expect,
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub peer: Option<String>,
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default)]
    pub token: Option<TokenSpec>,
    /// Literal `Authorization` values (one header each); `{token}` is the
    /// minted token. Default: one `Bearer {token}` when a token is given.
    #[serde(default)]
    pub authorization: Option<Vec<String>>,
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    pub key: String,
    #[serde(default)]
    pub header: Option<Value>,
    #[serde(default)]
    pub claims: Option<Value>,
    #[serde(default)]
    pub raw_payload: Option<String>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedUpstream {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

fn ok() -> u16 {
    200
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: u16,
    #[serde(default)]
    pub reason: Option<String>,
    pub upstream: bool,
    #[serde(default)]
    pub www_authenticate: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, Option<String>>,
}

/// Reads one case file.
pub fn load(path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut case: Case =
        yaml_serde::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    case.file = path.to_path_buf();
    Ok(case)
}

/// Every `*.yaml` case under each path (files or directories), sorted.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Case>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            collect(p, &mut files)?;
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    files.sort();
    if files.is_empty() {
        return Err("no case files (*.yaml) found".into());
    }
    files.iter().map(|f| load(f)).collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

impl Case {
    /// The `authorization` values to send, with tokens minted for `now`.
    pub fn authorization(&self, keys: &Path, now: u64) -> Result<Vec<String>, String> {
        let token = match &self.request.token {
            Some(t) => Some(t.mint(keys, now)?),
            None => None,
        };
        Ok(match (&self.request.authorization, token) {
            (Some(values), token) => values
                .iter()
                .map(|v| v.replace("{token}", token.as_deref().unwrap_or("")))
                .collect(),
            (None, Some(token)) => vec![format!("Bearer {token}")],
            (None, None) => vec![],
        })
    }

    /// All request headers besides the pseudo-headers, for `now`.
    pub fn headers(&self, keys: &Path, now: u64) -> Result<Vec<(String, String)>, String> {
        let mut h: Vec<(String, String)> = self
            .request
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        h.extend(
            self.authorization(keys, now)?
                .into_iter()
                .map(|v| ("authorization".to_owned(), v)),
        );
        Ok(h)
    }

    /// The scripted upstream answer (200 `{}` by default).
    pub fn upstream_response(&self) -> UpstreamResponse {
        match &self.upstream {
            None => UpstreamResponse::default(),
            Some(u) => UpstreamResponse {
                status: u.status,
                headers: u
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect(),
                body: u.body.clone().into_bytes(),
            },
        }
    }

    /// Runs this case through a harness VM at `now`.
    pub fn run(&self, vm: &mut Vm, keys: &Path, now: u64) -> Result<Observed, String> {
        let request = HttpRequest {
            method: self.request.method.clone(),
            path: self.request.path.clone(),
            authority: "customers.internal".into(),
            scheme: "http".into(),
            headers: self
                .headers(keys, now)?
                .into_iter()
                .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
                .collect(),
            body: self.request.body.clone().into_bytes(),
            trailers: Vec::new(),
            peer: self
                .request
                .peer
                .clone()
                .unwrap_or_else(|| "127.0.0.1:40000".into()),
            principal: self.request.principal.clone(),
            id: Some(format!("case-{}", self.file_name())),
        };
        let answer = self.upstream_response();
        let exchange = vm.handle(&request, &mut |_| answer.clone());
        Ok(Observed::from_exchange(&exchange))
    }

    pub fn file_name(&self) -> String {
        self.file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Compares what was `seen` with the expectation. The error lists every
    /// difference and ends with `repro`, the command that reruns this case.
    pub fn check(&self, seen: &Observed, repro: &str) -> Result<(), String> {
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
            if seen.reason.as_deref() != Some(reason.as_str()) {
                diffs.push(format!("reason: expected {reason}, got {:?}", seen.reason));
            }
        }
        if let Some(prefix) = &e.www_authenticate {
            let actual = find(&seen.headers, "www-authenticate");
            if !actual
                .as_deref()
                .is_some_and(|w| w.starts_with(prefix.as_str()))
            {
                diffs.push(format!(
                    "www-authenticate: expected prefix {prefix:?}, got {actual:?}"
                ));
            }
        }
        for (what, expected, actual) in [
            ("response header", &e.headers, &seen.headers),
            (
                "upstream header",
                &e.upstream_headers,
                &seen.upstream_headers,
            ),
        ] {
            for (name, want) in expected {
                let got = find(actual, name);
                if &got != want {
                    diffs.push(format!("{what} {name}: expected {want:?}, got {got:?}"));
                }
            }
        }
        if let Some(trap) = &seen.trap {
            diffs.push(format!("the filter trapped: {trap}"));
        }
        if diffs.is_empty() {
            return Ok(());
        }
        Err(format!(
            "FAIL {} ({}):\n  {}\n  rerun: {repro}",
            self.file.display(),
            self.description,
            diffs.join("\n  ")
        ))
    }
}

fn find(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// What a run observed, in the terms of [`Expect`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub status: u16,
    /// The decision log's reason.
    pub reason: Option<String>,
    pub upstream: bool,
    /// Response headers, lowercased names.
    pub headers: Vec<(String, String)>,
    /// Headers the upstream received (empty if not reached).
    pub upstream_headers: Vec<(String, String)>,
    pub trap: Option<String>,
}

fn text_pairs(pairs: &host::HeaderPairs) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).to_ascii_lowercase(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

impl Observed {
    pub fn from_exchange(x: &Exchange) -> Observed {
        Observed {
            status: x.status,
            reason: x
                .decision()
                .and_then(|d| d["reason"].as_str().map(str::to_owned)),
            upstream: x.upstream_request.is_some(),
            headers: text_pairs(&x.headers),
            upstream_headers: x
                .upstream_request
                .as_ref()
                .map(|u| text_pairs(&u.headers))
                .unwrap_or_default(),
            trap: x.trap.clone(),
        }
    }
}

impl TokenSpec {
    /// Mints the token for `now` with the TEST-ONLY keys in `keys`.
    pub fn mint(&self, keys: &Path, now: u64) -> Result<String, String> {
        let key = tokens::key(keys, &self.key)?;
        let mut header = key.header();
        if let (Some(obj), Some(changes)) = (
            header.as_object_mut(),
            self.header.as_ref().and_then(Value::as_object),
        ) {
            for (k, v) in changes {
                if v.is_null() {
                    obj.remove(k);
                } else {
                    obj.insert(k.clone(), tokens::relative_time(now, v));
                }
            }
        }
        let payload = match &self.raw_payload {
            Some(raw) => raw
                .replace("{now}", &now.to_string())
                .replace("{exp}", &(now + 300).to_string()),
            None => tokens::claims(now, self.claims.as_ref().unwrap_or(&Value::Null)).to_string(),
        };
        let token = key.sign_raw(&header.to_string(), &payload)?;
        Ok(match self.mutate {
            None => token,
            Some(m) => mutate(&token, m)?,
        })
    }
}

fn mutate(token: &str, m: Mutation) -> Result<String, String> {
    let (signed, sig) = token
        .rsplit_once('.')
        .ok_or("token without signature part")?;
    Ok(match m {
        Mutation::FlipSignature => {
            let mut bytes = B64.decode(sig).map_err(|e| e.to_string())?;
            if let Some(first) = bytes.first_mut() {
                *first ^= 0x01;
            }
            format!("{signed}.{}", B64.encode(&bytes))
        }
        Mutation::TruncateSignature => {
            format!("{signed}.{}", sig.get(..sig.len() / 2).unwrap_or(""))
        }
        Mutation::DropSignature => format!("{signed}."),
        Mutation::TamperPayload => {
            let (header, payload) = signed.split_once('.').ok_or("token without payload")?;
            let bytes = B64.decode(payload).map_err(|e| e.to_string())?;
            let mut claims: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            claims["sub"] = Value::from("admin");
            format!(
                "{header}.{}.{sig}",
                B64.encode(claims.to_string().as_bytes())
            )
        }
        Mutation::Jwe => format!("{token}.{}.{}", B64.encode(b"iv"), B64.encode(b"tag")),
        Mutation::PadToSize => format!("{token}{}", "A".repeat(8 * 1024)),
    })
}
