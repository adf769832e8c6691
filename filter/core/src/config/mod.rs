//! Loading the plugin configuration: strict parsing, then validation and
//! compilation into one immutable [`Config`].
//!
//! All the expensive, fallible work (key parsing, Rego compilation, the
//! builtin check) happens here, once per configuration. Every error names the
//! field it is about, e.g. `providers[0].algorithms[1]: unknown algorithm "none"`.

pub mod bundle;
pub mod policy;
pub mod raw;

use crate::algorithm::Alg;
use crate::jwks;
use crate::policy::Policy;
use crate::ratelimit::rule::Rule;
use crate::token::cache::DEFAULT_CAPACITY;
use crate::token::extract::HeaderSource;
use crate::token::verify::Provider;
pub use raw::Mode;
use raw::{RawConfig, RawProvider};
use std::fmt;

/// Longest clock skew a provider may tolerate.
pub const MAX_LEEWAY_SECONDS: u64 = 300;
/// Largest token cache a config may ask for.
pub const MAX_TOKEN_CACHE: usize = 100_000;

/// The most of a request body the filter reads (`request_body.max_bytes`).
pub const MAX_REQUEST_BODY: usize = 1 << 20;

/// A validated, compiled configuration. Immutable once built.
#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    pub providers: Vec<Provider>,
    pub policy: PolicySource,
    pub token_cache_capacity: usize,
    /// Per-identity limits, in configuration order.
    pub rate_limits: Vec<Rule>,
    /// What the audit trail records and masks.
    pub audit: crate::audit::config::AuditConfig,
    /// Client-sent headers that are not facts, and identity headers set on allow.
    pub request_headers: crate::sanitize::HeaderPolicy,
    /// Bytes of a request body read for the policy, when asked for.
    pub request_body_max: Option<usize>,
    /// Things that loaded but deserve a log line (e.g. skipped JWKs).
    pub warnings: Vec<String>,
}

/// Where the policy that decides comes from.
// One per configuration, built once and never moved on a request's path:
// the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum PolicySource {
    /// Compiled with the configuration: inline modules, or a bundle given
    /// with it.
    Fixed(Policy),
    /// Polled from a bundle server: each VM holds what it fetched (a
    /// [`crate::policy::remote_bundle::LiveBundle`]).
    Remote(crate::policy::remote_bundle::RemoteBundle),
}

impl PolicySource {
    /// The policy compiled with the configuration, if it has one.
    pub fn fixed(&self) -> Option<&Policy> {
        match self {
            PolicySource::Fixed(policy) => Some(policy),
            PolicySource::Remote(_) => None,
        }
    }

    /// For the load log: what decides.
    pub fn describe(&self) -> String {
        match self {
            PolicySource::Fixed(policy) => policy.describe(),
            PolicySource::Remote(remote) => format!(
                "policy from the bundle server through cluster `{}` ({}), polled every {} s",
                remote.cluster,
                remote.decision,
                remote.poll.as_secs()
            ),
        }
    }

    /// The rule queried, e.g. `data.envoy.authz.allow`.
    pub fn decision(&self) -> &str {
        match self {
            PolicySource::Fixed(policy) => &policy.decision,
            PolicySource::Remote(remote) => &remote.decision,
        }
    }
}

/// Why a configuration was refused. The message starts with the field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err(path: impl fmt::Display, msg: impl fmt::Display) -> ConfigError {
    ConfigError(format!("{path}: {msg}"))
}

impl Config {
    /// Parses, validates and compiles the JSON plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ConfigError(format!("config: {inner}"))
            } else {
                err(path, inner)
            }
        })?;
        // One document, nothing after it: a pasted-twice or truncated config
        // must not load as its first half.
        de.end()
            .map_err(|e| ConfigError(format!("config: after the JSON object: {e}")))?;
        Config::compile(raw)
    }

    fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let mut providers = Vec::with_capacity(raw.providers.len());
        for (i, p) in raw.providers.iter().enumerate() {
            let path = format!("providers[{i}]");
            if providers.iter().any(|q: &Provider| q.name == p.name) {
                return Err(err(
                    format!("{path}.name"),
                    format!("duplicate provider name `{}`", p.name),
                ));
            }
            let provider = compile_provider(p, &path, &mut warnings)?;
            // One header, one way to read it: a second prefix for the same
            // header would be silently ignored.
            for (j, source) in provider.sources.iter().enumerate() {
                let earlier = providers
                    .iter()
                    .flat_map(|q: &Provider| q.sources.iter())
                    .chain(provider.sources.get(..j).unwrap_or_default())
                    .find(|s| s.name == source.name);
                if earlier.is_some_and(|e| e != source) {
                    return Err(err(
                        format!("{path}.from_headers[{j}]"),
                        format!(
                            "header `{}` is already read with another value_prefix",
                            source.name
                        ),
                    ));
                }
            }
            providers.push(provider);
        }
        let policy = compile_policy(&raw.policy)?;
        let token_cache_capacity = match raw.token_cache {
            None => DEFAULT_CAPACITY,
            Some(c) if c.max_entries <= MAX_TOKEN_CACHE => c.max_entries,
            Some(c) => {
                return Err(err(
                    "token_cache.max_entries",
                    format!("{} is over the maximum {MAX_TOKEN_CACHE}", c.max_entries),
                ))
            }
        };
        let mut rate_limits: Vec<Rule> = Vec::new();
        for (i, raw_rule) in raw.rate_limits.iter().enumerate() {
            let path = format!("rate_limits[{i}]");
            let rule = Rule::compile(raw_rule, &path).map_err(ConfigError)?;
            if rate_limits.iter().any(|r| r.name == rule.name) {
                return Err(err(
                    format!("{path}.name"),
                    format!("duplicate rate limit name `{}`", rule.name),
                ));
            }
            rate_limits.push(rule);
        }
        let token_headers: Vec<String> = providers
            .iter()
            .flat_map(|p: &Provider| p.sources.iter().map(|s| s.name.clone()))
            .collect();
        let audit = crate::audit::config::AuditConfig::compile(raw.audit.as_ref(), &token_headers)
            .map_err(ConfigError)?;
        let request_headers = crate::sanitize::HeaderPolicy::compile(raw.request_headers.as_ref())
            .map_err(ConfigError)?;
        let request_body_max = match &raw.request_body {
            None => None,
            Some(b) if (1..=MAX_REQUEST_BODY).contains(&b.max_bytes) => Some(b.max_bytes),
            Some(b) => {
                return Err(err(
                    "request_body.max_bytes",
                    format!("{} is not between 1 and {MAX_REQUEST_BODY}", b.max_bytes),
                ))
            }
        };
        if request_body_max.is_some() {
            warnings.push(
                "request_body: the Envoy Wasm filter must set `allow_on_headers_stop_iteration: true`, or requests with a body wait until Envoy's timeout (never reaching the upstream)".into(),
            );
        }
        Ok(Config {
            request_body_max,
            mode: raw.mode,
            providers,
            policy,
            token_cache_capacity,
            rate_limits,
            audit,
            request_headers,
            warnings,
        })
    }

    /// Every header a provider reads tokens from.
    pub fn token_sources(&self) -> impl Iterator<Item = &HeaderSource> {
        self.providers.iter().flat_map(|p| p.sources.iter())
    }
}

fn compile_provider(
    p: &RawProvider,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Provider, ConfigError> {
    if p.name.trim().is_empty() {
        return Err(err(format!("{path}.name"), "must not be empty"));
    }
    if p.issuer.is_empty() {
        return Err(err(format!("{path}.issuer"), "must not be empty"));
    }
    if p.audiences.is_empty() {
        return Err(err(
            format!("{path}.audiences"),
            "at least one audience is required; tokens for other services must not be accepted",
        ));
    }
    if let Some(i) = p.audiences.iter().position(String::is_empty) {
        return Err(err(format!("{path}.audiences[{i}]"), "must not be empty"));
    }
    if p.algorithms.is_empty() {
        return Err(err(
            format!("{path}.algorithms"),
            "at least one algorithm is required",
        ));
    }
    let mut algorithms = Vec::new();
    for (i, name) in p.algorithms.iter().enumerate() {
        let alg = Alg::parse(name).ok_or_else(|| {
            err(
                format!("{path}.algorithms[{i}]"),
                format!(
                    "unknown algorithm `{name}`; supported: {}",
                    Alg::list(&Alg::ALL)
                ),
            )
        })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if p.leeway_seconds > MAX_LEEWAY_SECONDS {
        return Err(err(
            format!("{path}.leeway_seconds"),
            format!(
                "{} is over the maximum {MAX_LEEWAY_SECONDS}",
                p.leeway_seconds
            ),
        ));
    }
    if p.max_lifetime_seconds == 0 {
        return Err(err(
            format!("{path}.max_lifetime_seconds"),
            "must be positive",
        ));
    }
    if p.from_headers.is_empty() {
        return Err(err(
            format!("{path}.from_headers"),
            "at least one header is required",
        ));
    }
    let mut sources = Vec::new();
    for (i, h) in p.from_headers.iter().enumerate() {
        let valid_name = !h.name.is_empty()
            && h.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(err(
                format!("{path}.from_headers[{i}].name"),
                format!("`{}` is not a valid header name", h.name),
            ));
        }
        let source = HeaderSource::new(&h.name, &h.value_prefix);
        if source
            .scheme
            .as_deref()
            .is_some_and(|scheme| scheme.contains(char::is_whitespace))
        {
            return Err(err(
                format!("{path}.from_headers[{i}].value_prefix"),
                "an auth scheme prefix must be one word followed by a space, e.g. `Bearer `",
            ));
        }
        sources.push(source);
    }
    let (keys, remote) = match (&p.jwks, &p.remote_jwks) {
        (Some(inline), None) => {
            let (keys, skipped) =
                jwks::load_keys(&inline.keys, &algorithms, &format!("{path}.jwks.keys"))
                    .map_err(ConfigError)?;
            warnings.extend(skipped);
            (keys, None)
        }
        (None, Some(remote)) => (Vec::new(), Some(compile_remote(remote, path)?)),
        (Some(_), Some(_)) => {
            return Err(err(
                format!("{path}.remote_jwks"),
                "give `jwks` or `remote_jwks`, not both",
            ))
        }
        (None, None) => {
            return Err(err(
                format!("{path}.jwks"),
                "keys are required: `jwks` (inline) or `remote_jwks`",
            ))
        }
    };
    Ok(Provider {
        name: p.name.clone(),
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        algorithms,
        keys,
        leeway_seconds: p.leeway_seconds,
        max_lifetime_seconds: p.max_lifetime_seconds,
        sources,
        remote,
    })
}

/// The policy: inline modules, or a bundle.
fn compile_policy(raw: &raw::RawPolicy) -> Result<PolicySource, ConfigError> {
    let decision = policy::decision_reference(raw.decision.as_deref())?;
    let options = policy::options(raw)?;
    if let Some(source) = &raw.bundle {
        return bundle::compile(raw, source, decision, options);
    }
    policy::compile_modules(raw, &decision, options).map(PolicySource::Fixed)
}

/// Bounds of `remote_jwks.cache_seconds`: often enough to pick up a
/// rotation, rarely enough not to load the IdP.
const CACHE_SECONDS: std::ops::RangeInclusive<u64> = 30..=86_400;

fn compile_remote(
    r: &crate::config::raw::RawRemoteJwks,
    path: &str,
) -> Result<crate::token::remote::RemoteJwks, ConfigError> {
    use crate::token::remote::{RemoteJwks, Unavailable};
    let here = format!("{path}.remote_jwks");
    if r.cluster.is_empty() {
        return Err(err(format!("{here}.cluster"), "must name an Envoy cluster"));
    }
    if !r.path.starts_with('/') {
        return Err(err(format!("{here}.path"), "must start with /"));
    }
    let refresh = r.cache_seconds.unwrap_or(300);
    if !CACHE_SECONDS.contains(&refresh) {
        return Err(err(
            format!("{here}.cache_seconds"),
            format!("{refresh} is not between 30 and 86400"),
        ));
    }
    let timeout = r.timeout_ms.unwrap_or(5_000);
    if !(100..=30_000).contains(&timeout) {
        return Err(err(
            format!("{here}.timeout_ms"),
            format!("{timeout} is not between 100 and 30000"),
        ));
    }
    let when_unavailable = match r.when_unavailable.as_deref() {
        None | Some("unavailable") => Unavailable::Retry,
        Some("deny") => Unavailable::Deny,
        Some(other) => {
            return Err(err(
                format!("{here}.when_unavailable"),
                format!("`{other}` is not `unavailable` (503) or `deny` (401)"),
            ))
        }
    };
    Ok(RemoteJwks {
        cluster: r.cluster.clone(),
        path: r.path.clone(),
        authority: r.authority.clone().unwrap_or_else(|| r.cluster.clone()),
        refresh: std::time::Duration::from_secs(refresh),
        timeout: std::time::Duration::from_millis(timeout),
        when_unavailable,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
