//! The compiled `audit` section: which routes hold personal data, how
//! allows elsewhere are sampled, what is masked, and extra labels.

use super::outbox::Endpoint;
use crate::config::raw::{RawAudit, RawCollector, RawSigning, RawWebhook};
use crate::ratelimit::rule::canonical_segments;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Headers whose values never enter a record.
pub const ALWAYS_ERASED_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// Query parameters whose values are masked unless the config says more.
pub const DEFAULT_SECRET_PARAMS: [&str; 15] = [
    "code",
    "access_token",
    "id_token",
    "refresh_token",
    "token",
    "jwt",
    "api_key",
    "apikey",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "signature",
    "sig",
];

/// A route whose decisions are always recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalRoute {
    pub path_prefix: String,
    prefix_segments: Vec<String>,
    /// Upper case; empty means every method.
    pub methods: Vec<String>,
    pub category: String,
}

impl PersonalRoute {
    /// True if the route covers `method` on `path` (whole canonical segments).
    pub fn covers(&self, method: &str, path: &str) -> bool {
        let have = canonical_segments(path);
        let covered = have.len() >= self.prefix_segments.len()
            && self.prefix_segments.iter().zip(&have).all(|(w, h)| w == h);
        covered && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

/// Request bodies are payload, not access: a record says a body was
/// there (the erased pointers are listed) but never holds it.
pub const ALWAYS_ERASED_PATHS: [&str; 2] =
    ["/input/attributes/request/http/body", "/input/parsed_body"];

/// What the audit trail records and keeps out.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    pub personal_data: Vec<PersonalRoute>,
    /// Share in [0, 1] of allows on other routes that are recorded.
    pub sample_allows: f64,
    /// Lowercase header names erased from the input.
    pub erased_headers: BTreeSet<String>,
    /// Lowercase query parameter names whose values are masked.
    pub secret_params: BTreeSet<String>,
    /// Record pointers (`/input/...`) erased as configured.
    pub erased_paths: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Where records are shipped, if anywhere but the Envoy log.
    pub collector: Option<Endpoint>,
    /// Where alerts go, if anywhere but the audit trail.
    pub alerts: Option<Endpoint>,
    /// Signs the chain head at an interval.
    pub signing: Option<super::sign::Signing>,
    /// Alert when one identity is denied this often.
    pub denial_spike: Option<super::spike::DenialSpikes>,
}

/// Compiles an endpoint; errors name the field under `path`.
fn endpoint(
    path: &str,
    cluster: &str,
    url_path: Option<&str>,
    authority: Option<&str>,
    timeout_ms: Option<u64>,
    default_path: &str,
) -> Result<Endpoint, String> {
    if cluster.is_empty() {
        return Err(format!("{path}.cluster: must name an Envoy cluster"));
    }
    let url_path = url_path.unwrap_or(default_path);
    if !url_path.starts_with('/') {
        return Err(format!("{path}.path: must start with '/'"));
    }
    let timeout_ms = timeout_ms.unwrap_or(2_000);
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(format!("{path}.timeout_ms: must be between 1 and 60000"));
    }
    Ok(Endpoint {
        cluster: cluster.to_owned(),
        path: url_path.to_owned(),
        authority: authority.unwrap_or(cluster).to_owned(),
        timeout_ms,
        batch_max: 100,
        required: false,
    })
}

fn collector(raw: &RawCollector) -> Result<Endpoint, String> {
    let mut e = endpoint(
        "audit.collector",
        &raw.cluster,
        raw.path.as_deref(),
        raw.authority.as_deref(),
        raw.timeout_ms,
        "/logs",
    )?;
    e.batch_max = raw.batch_max.unwrap_or(100);
    if !(1..=10_000).contains(&e.batch_max) {
        return Err("audit.collector.batch_max: must be between 1 and 10000".into());
    }
    e.required = raw.required;
    Ok(e)
}

fn signing(raw: &RawSigning) -> Result<super::sign::Signing, String> {
    let seed = super::sign::key_bytes(&raw.private_key)
        .map_err(|e| format!("audit.signing.private_key: {e}"))?;
    let interval = raw.interval_seconds.unwrap_or(60);
    if !(1..=86_400).contains(&interval) {
        return Err("audit.signing.interval_seconds: must be between 1 and 86400".into());
    }
    if raw.key_id.as_deref() == Some("") {
        return Err("audit.signing.key_id: must not be empty".into());
    }
    Ok(super::sign::Signing::new(
        seed,
        raw.key_id.clone(),
        std::time::Duration::from_secs(interval),
    ))
}

fn webhook(raw: &RawWebhook) -> Result<Endpoint, String> {
    let mut e = endpoint(
        "audit.alerts",
        &raw.cluster,
        raw.path.as_deref(),
        raw.authority.as_deref(),
        raw.timeout_ms,
        "/alerts",
    )?;
    e.batch_max = 1; // one alert per call
    Ok(e)
}

impl AuditConfig {
    /// The defaults (no `audit` section, no providers): record everything,
    /// mask what is always masked. For requests refused before a
    /// configuration loaded.
    pub fn defaults() -> AuditConfig {
        AuditConfig {
            personal_data: Vec::new(),
            sample_allows: 1.0,
            erased_headers: ALWAYS_ERASED_HEADERS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            secret_params: DEFAULT_SECRET_PARAMS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            erased_paths: ALWAYS_ERASED_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            labels: BTreeMap::new(),
            collector: None,
            alerts: None,
            signing: None,
            denial_spike: None,
        }
    }

    /// Compiles the section; `token_headers` are the headers tokens are read
    /// from, which are always erased. Errors name the field.
    pub fn compile(
        raw: Option<&RawAudit>,
        token_headers: &[String],
    ) -> Result<AuditConfig, String> {
        let default = RawAudit::default();
        let raw = raw.unwrap_or(&default);
        let mut personal_data = Vec::new();
        for (i, r) in raw.personal_data.iter().enumerate() {
            let path = format!("audit.personal_data[{i}]");
            if !r.path_prefix.starts_with('/') || r.path_prefix.contains('?') {
                return Err(format!(
                    "{path}.path_prefix: must start with '/' and hold no query"
                ));
            }
            if r.category.is_empty() {
                return Err(format!("{path}.category: must name the data category"));
            }
            let mut methods = Vec::new();
            for (j, m) in r.methods.iter().enumerate() {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(format!("{path}.methods[{j}]: `{m}` is not an HTTP method"));
                }
                methods.push(m.to_ascii_uppercase());
            }
            personal_data.push(PersonalRoute {
                prefix_segments: canonical_segments(&r.path_prefix),
                path_prefix: r.path_prefix.clone(),
                methods,
                category: r.category.clone(),
            });
        }
        let sample_allows = raw.sample_allows.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_allows) {
            return Err("audit.sample_allows: must be between 0 and 1".into());
        }
        let mut erased_headers: BTreeSet<String> = ALWAYS_ERASED_HEADERS
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        erased_headers.extend(token_headers.iter().map(|h| h.to_ascii_lowercase()));
        for (i, h) in raw.mask.headers.iter().enumerate() {
            if h.is_empty() {
                return Err(format!("audit.mask.headers[{i}]: must name a header"));
            }
            erased_headers.insert(h.to_ascii_lowercase());
        }
        let mut secret_params: BTreeSet<String> = DEFAULT_SECRET_PARAMS
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        for (i, p) in raw.mask.query_params.iter().enumerate() {
            if p.is_empty() {
                return Err(format!(
                    "audit.mask.query_params[{i}]: must name a parameter"
                ));
            }
            secret_params.insert(p.to_ascii_lowercase());
        }
        for (i, p) in raw.mask.paths.iter().enumerate() {
            if !(p.starts_with("/input/") || p.starts_with("/result/")) {
                return Err(format!(
                    "audit.mask.paths[{i}]: `{p}` must be a JSON pointer under /input/ or /result/"
                ));
            }
        }
        for k in raw.labels.keys() {
            if RESERVED_LABELS.contains(&k.as_str()) {
                return Err(format!("audit.labels.{k}: reserved for Palisade"));
            }
        }
        Ok(AuditConfig {
            personal_data,
            sample_allows,
            erased_headers,
            secret_params,
            erased_paths: ALWAYS_ERASED_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .chain(raw.mask.paths.iter().cloned())
                .collect(),
            labels: raw.labels.clone(),
            collector: raw.collector.as_ref().map(collector).transpose()?,
            alerts: raw.alerts.as_ref().map(webhook).transpose()?,
            signing: raw.signing.as_ref().map(signing).transpose()?,
            denial_spike: match raw.alerts.as_ref().and_then(|a| a.denial_spike.as_ref()) {
                None => None,
                Some(d) if d.count == 0 || d.period_seconds == 0 || d.period_seconds > 86_400 => {
                    return Err("audit.alerts.denial_spike: needs a positive count and period_seconds of at most 86400".into())
                }
                Some(d) => Some(super::spike::DenialSpikes::new(d.count, d.period_seconds)),
            },
        })
    }

    /// The personal-data route covering the request, if any.
    pub fn personal_route(&self, method: &str, path: &str) -> Option<&PersonalRoute> {
        self.personal_data.iter().find(|r| r.covers(method, path))
    }

    /// Whether an allow outside personal-data routes is recorded: a
    /// deterministic share of decision ids, so every worker agrees.
    pub fn sampled(&self, decision_id: &str) -> bool {
        if self.sample_allows >= 1.0 {
            return true;
        }
        let digest = Sha256::digest(decision_id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) as f64) < self.sample_allows * (u64::MAX as f64)
    }
}

/// Labels Palisade sets itself.
pub const RESERVED_LABELS: [&str; 3] = ["app", "version", "id"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::{RawMask, RawPersonalData};

    fn raw() -> RawAudit {
        RawAudit {
            personal_data: vec![RawPersonalData {
                path_prefix: "/api/v1/customers".into(),
                methods: vec![],
                category: "customer_pii".into(),
            }],
            sample_allows: Some(0.25),
            mask: RawMask {
                headers: vec!["X-Session".into()],
                query_params: vec!["ssn".into()],
                paths: vec!["/input/token/payload/email".into()],
            },
            labels: BTreeMap::new(),
            collector: None,
            alerts: None,
            signing: None,
        }
    }

    #[test]
    fn routes_cover_whole_segments_and_secrets_are_always_masked() {
        let c = AuditConfig::compile(Some(&raw()), &["x-jwt".into()]).unwrap();
        assert_eq!(
            c.personal_route("GET", "/api/v1/%63ustomers/42?x=1")
                .map(|r| r.category.as_str()),
            Some("customer_pii")
        );
        assert!(c.personal_route("GET", "/api/v1/customersX").is_none());
        for h in ["authorization", "cookie", "x-jwt", "x-session"] {
            assert!(c.erased_headers.contains(h), "{h}");
        }
        assert!(c.secret_params.contains("ssn") && c.secret_params.contains("access_token"));
    }

    #[test]
    fn sampling_is_a_stable_share_of_decision_ids() {
        let c = AuditConfig::compile(Some(&raw()), &[]).unwrap();
        let kept = (0..4000).filter(|i| c.sampled(&format!("id-{i}"))).count();
        assert!((800..1200).contains(&kept), "{kept}");
        assert_eq!(c.sampled("id-7"), c.sampled("id-7"));
        assert!(AuditConfig::compile(None, &[]).unwrap().sampled("anything"));
        assert_eq!(
            AuditConfig::compile(None, &[]).unwrap(),
            AuditConfig::defaults()
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let mut r = raw();
        r.sample_allows = Some(1.5);
        assert!(AuditConfig::compile(Some(&r), &[])
            .unwrap_err()
            .starts_with("audit.sample_allows"));
        let mut r = raw();
        r.mask.paths = vec!["/token".into()];
        assert!(AuditConfig::compile(Some(&r), &[])
            .unwrap_err()
            .starts_with("audit.mask.paths[0]"));
        let mut r = raw();
        r.personal_data[0].category = String::new();
        assert!(AuditConfig::compile(Some(&r), &[])
            .unwrap_err()
            .starts_with("audit.personal_data[0].category"));
        let mut r = raw();
        r.collector = Some(RawCollector {
            cluster: "c".into(),
            path: Some("logs".into()),
            authority: None,
            timeout_ms: None,
            batch_max: None,
            required: true,
        });
        assert!(AuditConfig::compile(Some(&r), &[])
            .unwrap_err()
            .starts_with("audit.collector.path"));
        let mut r = raw();
        r.labels.insert("app".into(), "x".into());
        assert!(AuditConfig::compile(Some(&r), &[])
            .unwrap_err()
            .starts_with("audit.labels.app"));
    }
}
