//! Audit records in the Envoy log: one JSON line per record, behind a
//! stable prefix, sealed into this VM's hash chain.
//!
//! Gathering the facts of a request is here; what a record holds, how it is
//! masked and chained is the core's (`palisade_core::audit`). Never
//! written: a token, the `Authorization` header or any credential header,
//! cookie values, or secret query values.

use crate::host::{Host, LogLevel};
use palisade_core::audit::config::AuditConfig;
use palisade_core::audit::record::Facts;
use palisade_core::audit::writer::AuditWriter;
use palisade_core::config::Config;
use palisade_core::gate::{Decision, Evaluation};
use palisade_core::request::Request;
use std::cell::RefCell;
use std::time::Duration;

/// Prefix of every audit line, for grepping, shipping and `palisade audit verify`.
pub const PREFIX: &str = "palisade.audit ";

/// The facts of a decided request; the outcome (status, records, latency)
/// is filled in when the stream completes.
pub fn facts(
    decision_id: &str,
    now: Duration,
    request: &Request,
    evaluation: &Evaluation,
    config: &Config,
) -> Facts {
    let (method, path) = method_and_path(request);
    let (decision, detail) = match &evaluation.decision {
        Decision::Allow(_) => ("allow", None),
        Decision::Deny(d) => ("deny", Some(d.detail.clone())),
    };
    let to_json = palisade_core::audit::record::to_json;
    Facts {
        decision_id: decision_id.to_owned(),
        timestamp: rfc3339(now),
        decision_path: opa_path(&config.policy.decision),
        input: evaluation.input.as_ref().and_then(to_json),
        result: evaluation.result.as_ref().and_then(to_json),
        decision,
        reason: evaluation.reason().to_owned(),
        detail,
        http_status: None,
        enforced: evaluation.enforced,
        subject: evaluation.subject().map(str::to_owned),
        provider: evaluation.token.as_ref().map(|t| t.provider.clone()),
        client_principal: request.source_principal.clone(),
        peer: request.source_address.clone(),
        method,
        path,
        policy_revision: config.policy.revision.get(..16).map(str::to_owned),
        records: None,
        truncated: false,
        latency_us: 0,
    }
}

/// The facts of a request refused before any decision (503).
pub fn refusal_facts(
    decision_id: &str,
    now: Duration,
    request: &Request,
    reason: &str,
    status: u16,
) -> Facts {
    let (method, path) = method_and_path(request);
    Facts {
        decision_id: decision_id.to_owned(),
        timestamp: rfc3339(now),
        decision: "deny",
        reason: reason.to_owned(),
        http_status: Some(status),
        enforced: true,
        peer: request.source_address.clone(),
        client_principal: request.source_principal.clone(),
        method,
        path,
        ..Facts::default()
    }
}

/// Writes the record for `facts` if it must be recorded, sealing it into
/// the chain. A writer busy elsewhere (never expected) is logged, not skipped
/// in silence.
pub fn write(
    host: &impl Host,
    writer: &RefCell<AuditWriter>,
    facts: &Facts,
    config: &AuditConfig,
    now: Duration,
) {
    if !facts.must_record(config) {
        return;
    }
    let record = facts.to_record(config);
    let Ok(mut writer) = writer.try_borrow_mut() else {
        host.log(
            LogLevel::Error,
            &format!(
                "palisade: audit writer busy; record {} not chained",
                facts.decision_id
            ),
        );
        return;
    };
    let sealed = writer.write(record, now, &facts.timestamp);
    crate::metrics::audited(host, sealed.len() as u64);
    for record in sealed {
        host.log(LogLevel::Info, &format!("{PREFIX}{record}"));
    }
}

/// `data.envoy.authz.allow` → `envoy/authz/allow`, as OPA logs the path.
fn opa_path(decision: &str) -> String {
    decision
        .strip_prefix("data.")
        .unwrap_or(decision)
        .replace('.', "/")
}

/// The method and the path as received (the core masks its query).
fn method_and_path(request: &Request) -> (Option<String>, Option<String>) {
    let text = |name: &str| {
        request
            .headers
            .first(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    (text(":method"), text(":path"))
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
