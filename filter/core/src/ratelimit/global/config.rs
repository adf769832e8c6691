//! A rule's `global` block, validated and compiled once per configuration.

use super::pseudonym::IdentityKey;
use crate::config::raw::RawGlobal;
use std::time::Duration;

/// The longest cluster name taken: the call's target then encodes as
/// ASCII (see [`super::RlsCall::grpc_service`]).
pub const MAX_CLUSTER_LEN: usize = 120;
/// The service's domain when the configuration names none.
pub const DEFAULT_DOMAIN: &str = "palisade";
/// Default wait for the service's answer: Envoy's own rate limit filter's
/// default, short enough to sit on every request's path.
pub const DEFAULT_TIMEOUT_MS: u64 = 20;
/// Longest wait a configuration may ask for.
pub const MAX_TIMEOUT_MS: u64 = 1_000;

/// What a request gets when the service cannot answer it (an error status,
/// no answer in time, an answer that does not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Fail closed: 503 `rate_limit_unavailable`. The default for a rule
    /// with a `records` budget: bulk personal data does not flow unmetered
    /// because a counter is out of reach.
    Deny,
    /// Decide with this process's local limits alone (which keep counting
    /// in every mode). The default for a rule without a records budget: a
    /// request rate is a load guard, and per-process limits still hold one.
    Local,
}

/// Where a rule's calls go. Cloned into every [`super::Check`]; holds no
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The Envoy cluster of the rate limit service.
    pub cluster: String,
    /// `RateLimitRequest.domain`.
    pub domain: String,
    /// The gRPC call's timeout.
    pub timeout: Duration,
}

/// Which limits a rule sets, as far as `global` needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitShape {
    pub requests: bool,
    pub records: bool,
    pub suspend: bool,
}

/// A rule's fleet-wide mode, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalLimit {
    pub service: Service,
    pub on_failure: OnFailure,
    /// Keys the pseudonyms identities are sent as.
    pub identity_key: IdentityKey,
}

impl GlobalLimit {
    /// Validates `raw` (the `global` of a rule shaped `shape`); errors name
    /// the field under `path` (`rate_limits[1].global.timeout_ms: ...`).
    pub fn compile(raw: &RawGlobal, path: &str, shape: &LimitShape) -> Result<GlobalLimit, String> {
        if !(shape.requests || shape.records || shape.suspend) {
            return Err(format!(
                "{path}: the rule has no requests, records or suspend_seconds to count fleet-wide"
            ));
        }
        if raw.cluster.trim().is_empty() || raw.cluster.chars().any(char::is_control) {
            return Err(format!(
                "{path}.cluster: must name the Envoy cluster of the rate limit service"
            ));
        }
        if raw.cluster.len() > MAX_CLUSTER_LEN || !raw.cluster.is_ascii() {
            return Err(format!(
                "{path}.cluster: at most {MAX_CLUSTER_LEN} ASCII characters (Envoy's cluster names are)"
            ));
        }
        let domain = raw.domain.as_deref().unwrap_or(DEFAULT_DOMAIN);
        // Envoy's rate limit services refuse an empty domain; control
        // characters would only ever be a mistake.
        if domain.is_empty() || domain.chars().any(char::is_control) {
            return Err(format!(
                "{path}.domain: must be a non-empty name, e.g. `{DEFAULT_DOMAIN}`"
            ));
        }
        let timeout = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout) {
            return Err(format!(
                "{path}.timeout_ms: {timeout} is not between 1 and {MAX_TIMEOUT_MS}"
            ));
        }
        let on_failure = match raw.on_failure.as_deref() {
            None if shape.records => OnFailure::Deny,
            None => OnFailure::Local,
            Some("deny") => OnFailure::Deny,
            Some("local") => OnFailure::Local,
            Some(other) => {
                return Err(format!(
                    "{path}.on_failure: `{other}` is not `deny` (503) or `local` (this process's limits alone)"
                ))
            }
        };
        let identity_key = IdentityKey::from_base64(&raw.identity_key)
            .map_err(|e| format!("{path}.identity_key: {e}"))?;
        Ok(GlobalLimit {
            service: Service {
                cluster: raw.cluster.clone(),
                domain: domain.to_owned(),
                timeout: Duration::from_millis(timeout),
            },
            on_failure,
            identity_key,
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
