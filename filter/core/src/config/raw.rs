//! The plugin configuration exactly as users write it (public API).
//!
//! Every struct refuses unknown fields: a typo such as `audience` for
//! `audiences` must fail the load rather than silently weaken a check.
//! Validation into the compiled form lives in [`super::compile`].

use serde::Deserialize;
use std::collections::BTreeMap;

/// Top level of the JSON passed as Envoy's plugin `configuration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    pub policy: RawPolicy,
    #[serde(default)]
    pub token_cache: Option<RawTokenCache>,
}

/// `enforce` applies denials; `dry_run` computes and logs them but forwards the request.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

/// One trusted token issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<String>,
    pub jwks: RawJwks,
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_seconds: u64,
    #[serde(default = "default_from_headers")]
    pub from_headers: Vec<RawHeaderSource>,
}

/// An RFC 7517 JWK Set. The keys themselves are parsed by [`crate::jwks`],
/// which follows RFC 7517 §4 in ignoring JWK members it does not know.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwks {
    pub keys: Vec<serde_json::Value>,
}

/// Where a bearer token is read from.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderSource {
    pub name: String,
    #[serde(default)]
    pub value_prefix: String,
}

/// The Rego policy and the decision to query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub modules: BTreeMap<String, String>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    pub decision: String,
}

/// Bounds of the per-VM verified-token cache.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenCache {
    pub max_entries: usize,
}

fn default_leeway() -> u64 {
    30
}

fn default_max_lifetime() -> u64 {
    86_400
}

fn default_from_headers() -> Vec<RawHeaderSource> {
    vec![RawHeaderSource {
        name: "authorization".into(),
        value_prefix: "Bearer ".into(),
    }]
}
