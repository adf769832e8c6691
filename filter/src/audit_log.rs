//! One JSON line per decision in the Envoy log, behind a stable prefix.
//!
//! Field names are stable (`decision_id`, `decision`, `reason`, `subject`,
//! ...), so log tooling can rely on them. Never logged: the token, the
//! `Authorization` header, any header value, or the query string (which may
//! carry secrets); only the path is.

use palisade_core::config::Config;
use palisade_core::gate::{Decision, Evaluation};
use palisade_core::request::Request;
use serde_json::{json, Value};
use std::time::Duration;

/// Prefix of every decision line, for grepping and log shipping.
pub const PREFIX: &str = "palisade.decision ";

/// The decision line for one request. `status` is the local reply's status,
/// `None` when the request went upstream.
pub fn line(
    decision_id: &str,
    now: Duration,
    request: &Request,
    evaluation: &Evaluation,
    status: Option<u16>,
    config: &Config,
) -> String {
    let (method, path) = method_and_path(request);
    let (decision, detail) = match &evaluation.decision {
        Decision::Allow(_) => ("allow", Value::Null),
        Decision::Deny(d) => ("deny", Value::from(d.detail.as_str())),
    };
    let mut record = json!({
        "decision_id": decision_id,
        "timestamp": rfc3339(now),
        "decision": decision,
        "reason": evaluation.reason(),
        "enforced": evaluation.enforced,
        "dry_run": !evaluation.enforced,
        "http_status": status,
        "subject": evaluation.subject(),
        "provider": evaluation.token.as_ref().map(|t| t.provider.as_str()),
        "client_principal": request.source_principal,
        "peer": request.source_address,
        "method": method,
        "path": path,
        "policy_revision": config.policy.revision.get(..16),
    });
    if let (Some(obj), false) = (record.as_object_mut(), detail.is_null()) {
        obj.insert("detail".into(), detail);
    }
    format!("{PREFIX}{record}")
}

/// The line recording how many records a response returned under a budget,
/// and whether it was cut there (`truncated`).
pub fn records_line(
    decision_id: &str,
    now: Duration,
    meter: &palisade_core::ratelimit::meter::ResponseMeter,
    status: Option<u16>,
) -> String {
    let record = json!({
        "decision_id": decision_id,
        "timestamp": rfc3339(now),
        "event": "records",
        "rate_limit": meter.rule,
        "identity": meter.identity,
        "records": meter.records(),
        "truncated": meter.truncated(),
        "http_status": status,
    });
    format!("{PREFIX}{record}")
}

/// The line for a request refused before any decision (503): no
/// configuration, or a host failure.
pub fn refusal_line(
    decision_id: &str,
    now: Duration,
    request: &Request,
    reason: &str,
    status: u16,
) -> String {
    let (method, path) = method_and_path(request);
    let record = json!({
        "decision_id": decision_id,
        "timestamp": rfc3339(now),
        "decision": "deny",
        "reason": reason,
        "enforced": true,
        "dry_run": false,
        "http_status": status,
        "peer": request.source_address,
        "method": method,
        "path": path,
    });
    format!("{PREFIX}{record}")
}

/// The method, and the path without its query string (which may carry secrets).
fn method_and_path(request: &Request) -> (Option<String>, Option<String>) {
    let text = |name: &str| {
        request
            .headers
            .first(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let path = text(":path").map(|p| p.split('?').next().unwrap_or_default().to_owned());
    (text(":method"), path)
}

/// `2023-11-14T22:13:20.123Z` from a time since the Unix epoch.
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(
            rfc3339(Duration::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
