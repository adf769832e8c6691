//! A compiled rate-limit rule: which requests it covers, whom it keys on,
//! and its request, record and page-size limits.

use crate::config::raw::{RawCount, RawRateLimit};
use crate::request::Request;
use crate::token::verify::VerifiedToken;
use std::num::NonZeroU32;
use std::time::Duration;

/// How a response's records are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountSpec {
    JsonArray(String),
    Ndjson,
    /// Trusted only from the upstream's response headers.
    Header(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestQuota {
    pub limit: NonZeroU32,
    pub period: Duration,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBudget {
    pub limit: u64,
    pub period: Duration,
    pub count: CountSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSize {
    pub param: String,
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub path_prefix: String,
    /// Upper-case methods; empty means every method.
    pub methods: Vec<String>,
    pub key_claim: String,
    pub requests: Option<RequestQuota>,
    pub records: Option<RecordBudget>,
    pub page: Option<PageSize>,
    pub suspend: Option<Duration>,
    /// Live identities the rule can track at once; see [`super::table`].
    pub max_identities: u32,
    /// Also counted fleet-wide, in a rate limit service; see [`super::global`].
    pub global: Option<super::global::GlobalLimit>,
}

/// Largest burst a request limit may allow.
pub const MAX_BURST: u32 = 1_000_000;

/// Bounds of `max_identities`: one bucket, and 64 MiB of shared data per rule.
pub const MIN_IDENTITIES: u32 = super::table::SLOTS as u32;
pub const MAX_IDENTITIES: u32 = 1 << 20;

/// Longest period or suspension a rule may ask for (30 days).
pub const MAX_PERIOD_SECONDS: u64 = 30 * 24 * 3600;

impl Rule {
    /// Validates one entry of `rate_limits`; errors name the field under `path`.
    pub fn compile(raw: &RawRateLimit, path: &str) -> Result<Rule, String> {
        let name_ok = !raw.name.is_empty()
            && raw
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!("{path}.name: use letters, digits, '-' and '_'"));
        }
        let prefix = &raw.matcher.path_prefix;
        if !prefix.starts_with('/') || prefix.contains('?') {
            return Err(format!(
                "{path}.match.path_prefix: must start with '/' and hold no query"
            ));
        }
        let mut methods = Vec::new();
        for (i, m) in raw.matcher.methods.iter().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(format!(
                    "{path}.match.methods[{i}]: `{m}` is not an HTTP method"
                ));
            }
            methods.push(m.to_ascii_uppercase());
        }
        if raw.key.is_empty() {
            return Err(format!("{path}.key: must name a claim, e.g. `sub`"));
        }
        let period = |secs: u64, field: &str| {
            if secs == 0 || secs > MAX_PERIOD_SECONDS {
                Err(format!(
                    "{path}.{field}: must be between 1 and {MAX_PERIOD_SECONDS}"
                ))
            } else {
                Ok(Duration::from_secs(secs))
            }
        };
        let requests = match &raw.requests {
            None => None,
            Some(r) if r.burst > MAX_BURST => {
                return Err(format!("{path}.requests.burst: at most {MAX_BURST}"))
            }
            Some(r) => Some(RequestQuota {
                limit: NonZeroU32::new(r.limit)
                    .ok_or_else(|| format!("{path}.requests.limit: must be positive"))?,
                period: period(r.period_seconds, "requests.period_seconds")?,
                burst: r.burst,
            }),
        };
        if let Some(q) = &requests {
            // governor needs at least a nanosecond between two requests.
            if q.period
                .checked_div(q.limit.get())
                .is_none_or(|d| d.is_zero())
            {
                return Err(format!("{path}.requests: limit too high for the period"));
            }
        }
        let records = match &raw.records {
            None => None,
            Some(r) => {
                if r.limit == 0 {
                    return Err(format!("{path}.records.limit: must be positive"));
                }
                let count = match &r.count {
                    RawCount::JsonArray(p) if p.is_empty() || p.starts_with('/') => {
                        CountSpec::JsonArray(p.clone())
                    }
                    RawCount::JsonArray(p) => {
                        return Err(format!(
                            "{path}.records.count.json_array: `{p}` is not a JSON pointer"
                        ))
                    }
                    RawCount::Ndjson(true) => CountSpec::Ndjson,
                    RawCount::Ndjson(false) => {
                        return Err(format!("{path}.records.count.ndjson: must be true"))
                    }
                    RawCount::Header(h) if !h.is_empty() => {
                        CountSpec::Header(h.to_ascii_lowercase())
                    }
                    RawCount::Header(_) => {
                        return Err(format!("{path}.records.count.header: must name a header"))
                    }
                };
                let mode = match &count {
                    CountSpec::JsonArray(p) => {
                        Some(crate::records::CountMode::JsonArray { pointer: p.clone() })
                    }
                    CountSpec::Ndjson => Some(crate::records::CountMode::Ndjson),
                    CountSpec::Header(_) => None,
                };
                if let Some(mode) = mode {
                    crate::records::RecordCounter::new(mode)
                        .map_err(|e| format!("{path}.records.count: {e}"))?;
                }
                Some(RecordBudget {
                    limit: r.limit,
                    period: period(r.period_seconds, "records.period_seconds")?,
                    count,
                })
            }
        };
        let page = match &raw.max_page_size {
            None => None,
            Some(p) if p.param.is_empty() || p.max == 0 => {
                return Err(format!(
                    "{path}.max_page_size: needs a `param` and a positive `max`"
                ))
            }
            Some(p) => Some(PageSize {
                param: p.param.clone(),
                max: p.max,
            }),
        };
        if requests.is_none() && records.is_none() && page.is_none() {
            return Err(format!(
                "{path}: sets no limit (requests, records or max_page_size)"
            ));
        }
        let suspend = match raw.suspend_seconds {
            0 => None,
            s => Some(period(s, "suspend_seconds")?),
        };
        let max_identities = raw
            .max_identities
            .unwrap_or(super::table::DEFAULT_MAX_IDENTITIES);
        if !(MIN_IDENTITIES..=MAX_IDENTITIES).contains(&max_identities) {
            return Err(format!(
                "{path}.max_identities: must be between {MIN_IDENTITIES} and {MAX_IDENTITIES}"
            ));
        }
        let global = match &raw.global {
            None => None,
            Some(g) => Some(super::global::GlobalLimit::compile(
                g,
                &format!("{path}.global"),
                &super::global::LimitShape {
                    requests: requests.is_some(),
                    records: records.is_some(),
                    suspend: suspend.is_some(),
                },
            )?),
        };
        Ok(Rule {
            name: raw.name.clone(),
            path_prefix: prefix.clone(),
            methods,
            key_claim: raw.key.clone(),
            requests,
            records,
            page,
            suspend,
            max_identities,
            global,
        })
    }

    /// True if this rule covers `method` on `path` (query ignored). The
    /// prefix matches whole segments of the canonical path, so
    /// `/api/v1/customers` covers `/api/v1/customers/42`,
    /// `/api/v1//%63ustomers` and `/api/v1/customers;x`, but not
    /// `/api/v1/customersX`. A rule for GET also covers HEAD.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let want = canonical_segments(&self.path_prefix);
        let have = canonical_segments(path);
        let covered = have.len() >= want.len() && want.iter().zip(&have).all(|(w, h)| w == h);
        // HEAD reads what GET reads.
        let method_ok = self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m == method || (m == "GET" && method == "HEAD"));
        covered && method_ok
    }

    /// Whom to count: the configured claim of a verified token, else the
    /// peer's address (without port; an IPv6 peer by its /64).
    pub fn identity(&self, request: &Request, token: Option<&VerifiedToken>) -> String {
        if let Some(value) = token
            .and_then(|t| t.payload.get(&self.key_claim))
            .and_then(|v| v.as_str())
        {
            return format!("{}={value}", self.key_claim);
        }
        peer_identity(request)
    }
}

/// An anonymous caller's identity: its peer address without the port, an
/// IPv6 peer by its /64 (one host usually holds a whole /64: counting each
/// address apart would hand it 2^64 budgets), an IPv4-mapped one as IPv4.
pub fn peer_identity(request: &Request) -> String {
    let peer = request.source_address.as_deref().unwrap_or("unknown");
    let ip = match peer.rsplit_once(':') {
        Some((ip, port)) if port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => peer,
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    match ip.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("peer={v4}"),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("peer={net}/64")
            }
        },
        Err(_) => format!("peer={ip}"),
    }
}

/// The path's segments as an upstream would most liberally read them:
/// query dropped, percent-decoded, `;params` removed, empty and `.` segments
/// dropped, `..` applied, ASCII case kept.
pub fn canonical_segments(path: &str) -> Vec<String> {
    let path = path.split('?').next().unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let decoded = crate::input::percent_decode(raw, false).unwrap_or_else(|| raw.to_owned());
        // A decoded segment may hold further separators (`%2F`); split them too.
        for seg in decoded.split(['/', '\\']) {
            let seg = seg.split(';').next().unwrap_or_default();
            match seg {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s.to_owned()),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::{RawMatch, RawPageSize, RawRequests};

    fn raw() -> RawRateLimit {
        RawRateLimit {
            name: "bulk".into(),
            matcher: RawMatch {
                path_prefix: "/api/v1/customers".into(),
                methods: vec!["get".into()],
            },
            key: "sub".into(),
            requests: Some(RawRequests {
                limit: 60,
                period_seconds: 60,
                burst: 10,
            }),
            records: None,
            max_page_size: Some(RawPageSize {
                param: "limit".into(),
                max: 500,
            }),
            suspend_seconds: 900,
            max_identities: None,
            global: None,
        }
    }

    #[test]
    fn matches_whole_segments_and_methods() {
        let r = Rule::compile(&raw(), "rate_limits[0]").unwrap();
        assert!(r.matches("GET", "/api/v1/customers"));
        assert!(r.matches("GET", "/api/v1/customers/42?x=1"));
        assert!(r.matches("GET", "/api/v1/customers?limit=5"));
        assert!(!r.matches("GET", "/api/v1/customersX"));
        assert!(!r.matches("POST", "/api/v1/customers"));
        assert!(!r.matches("GET", "/api/v1/orders"));
        for sneaky in [
            "/api/v1//customers",
            "/api/v1/%63ustomers",
            "/api/v1/customers;x=1",
            "/api/v1/./customers/",
            "/api/v2/../v1/customers",
            "/api%2Fv1%2Fcustomers",
        ] {
            assert!(r.matches("GET", sneaky), "{sneaky}");
        }
        assert!(
            r.matches("HEAD", "/api/v1/customers/42"),
            "HEAD reads what GET reads"
        );
    }

    #[test]
    fn invalid_rules_name_their_field() {
        let mut r = raw();
        r.requests = Some(RawRequests {
            limit: 0,
            period_seconds: 60,
            burst: 0,
        });
        assert!(Rule::compile(&r, "rate_limits[0]")
            .unwrap_err()
            .starts_with("rate_limits[0].requests.limit"));
        let mut r = raw();
        r.matcher.path_prefix = "api".into();
        assert!(Rule::compile(&r, "rate_limits[0]")
            .unwrap_err()
            .starts_with("rate_limits[0].match.path_prefix"));
        let mut r = raw();
        r.requests = None;
        r.max_page_size = None;
        assert!(Rule::compile(&r, "rate_limits[0]")
            .unwrap_err()
            .contains("sets no limit"));
    }

    #[test]
    fn identity_is_the_claim_or_the_peer() {
        let r = Rule::compile(&raw(), "r").unwrap();
        let req = Request {
            source_address: Some("10.0.0.7:5555".into()),
            ..Request::default()
        };
        assert_eq!(r.identity(&req, None), "peer=10.0.0.7");
        let req6 = Request {
            source_address: Some("[::1]:5555".into()),
            ..Request::default()
        };
        assert_eq!(r.identity(&req6, None), "peer=::/64");
        let a = Request {
            source_address: Some("[2001:db8:1:2:aaaa::1]:443".into()),
            ..Request::default()
        };
        let b = Request {
            source_address: Some("[2001:db8:1:2:ffff::9]:80".into()),
            ..Request::default()
        };
        assert_eq!(r.identity(&a, None), "peer=2001:db8:1:2::/64");
        assert_eq!(
            r.identity(&a, None),
            r.identity(&b, None),
            "one /64, one budget"
        );
        let mapped = Request {
            source_address: Some("[::ffff:10.0.0.7]:1".into()),
            ..Request::default()
        };
        assert_eq!(r.identity(&mapped, None), "peer=10.0.0.7");
    }
}
