//! Audit records in the Envoy log: one JSON line per record, behind a
//! stable prefix, sealed into this VM's hash chain.
//!
//! Gathering the facts of a request is here; what a record holds, how it is
//! masked and chained is the core's (`palisade_core::audit`). Never
//! written: a token, the `Authorization` header or any credential header,
//! cookie values, or secret query values.

use crate::host::{Host, LogLevel};
use palisade_core::audit::chain::Sealed;
use palisade_core::audit::config::AuditConfig;
use palisade_core::audit::outbox::{gzip_json, Endpoint, Outbox};
use palisade_core::audit::record::Facts;
use palisade_core::audit::writer::AuditWriter;
use palisade_core::config::Config;
use palisade_core::gate::{Decision, Evaluation};
use palisade_core::ratelimit::limits::Suspension;
use palisade_core::ratelimit::store::SharedStore;
use palisade_core::request::Request;
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Records one VM holds for the collector before it drops (and counts) more.
pub const COLLECTOR_BACKLOG: usize = 10_000;

/// Alerts one VM holds for the webhook.
pub const ALERT_BACKLOG: usize = 1_000;

/// This VM's audit trail: its chain, and what waits for the collector and
/// the alert webhook. One per VM, kept across configuration reloads.
pub struct Trail {
    pub writer: RefCell<AuditWriter>,
    pub collector: RefCell<Outbox>,
    pub alerts: RefCell<Outbox>,
}

impl Trail {
    pub fn new(store: Rc<dyn SharedStore>) -> Trail {
        Trail {
            writer: RefCell::new(AuditWriter::new(store)),
            collector: RefCell::new(Outbox::new(COLLECTOR_BACKLOG)),
            alerts: RefCell::new(Outbox::new(ALERT_BACKLOG)),
        }
    }
}

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
    Facts {
        decision_id: decision_id.to_owned(),
        timestamp: rfc3339(now),
        decision_path: opa_path(config.policy.decision()),
        input: evaluation.input.clone(),
        result: evaluation.result.clone(),
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
        policy_revision: evaluation.policy_revision.clone(),
        records: None,
        truncated: false,
        latency_us: 0,
        fleet_failures: Vec::new(),
        fleet_pseudonyms: Vec::new(),
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

/// Writes the record for `facts` if it must be recorded.
pub fn write(host: &impl Host, trail: &Trail, facts: Facts, config: &AuditConfig, now: Duration) {
    if facts.must_record(config) {
        let timestamp = facts.timestamp.clone();
        seal(
            host,
            trail,
            facts.into_record(config),
            config,
            now,
            &timestamp,
        );
    }
}

/// Raises an alert for a suspension. Each suspension is reported once (by
/// the worker whose compare-and-swap made it), so alerts are deduplicated
/// per identity and suspension period.
pub fn alert(
    host: &impl Host,
    trail: &Trail,
    s: &Suspension,
    decision_id: &str,
    config: &AuditConfig,
    now: Duration,
) {
    let until = rfc3339(Duration::from_secs(s.until));
    let fields =
        json!({"rule": s.rule, "identity": s.identity, "cause": s.cause, "suspended_until": until});
    let line = format!(
        "{} suspended under {} until {until} ({})",
        s.identity, s.rule, s.cause
    );
    raise(
        host,
        trail,
        "identity_suspended",
        fields,
        &line,
        decision_id,
        config,
        now,
    );
}

/// Raises an alert for an identity denied `count` times within a period.
pub fn denial_spike_alert(
    host: &impl Host,
    trail: &Trail,
    identity: &str,
    spike: &palisade_core::audit::spike::DenialSpikes,
    decision_id: &str,
    config: &AuditConfig,
    now: Duration,
) {
    let fields = json!({"identity": identity, "denials": spike.count, "period_seconds": spike.period_seconds});
    let line = format!(
        "{identity} denied {} times within {} s",
        spike.count, spike.period_seconds
    );
    raise(
        host,
        trail,
        "denial_spike",
        fields,
        &line,
        decision_id,
        config,
        now,
    );
}

/// One alert: a warning line, a counter, a record in the chain, and a call
/// to the webhook when one is configured.
#[allow(clippy::too_many_arguments)]
fn raise(
    host: &impl Host,
    trail: &Trail,
    kind: &str,
    fields: Value,
    line: &str,
    decision_id: &str,
    config: &AuditConfig,
    now: Duration,
) {
    let timestamp = rfc3339(now);
    let mut event = json!({
        "event": "alert",
        "kind": kind,
        "timestamp": timestamp,
        "decision_id": decision_id,
        "labels": {"app": "palisade"},
    });
    if let (Some(obj), Value::Object(extra)) = (event.as_object_mut(), fields) {
        obj.extend(extra);
    }
    host.log(LogLevel::Warn, &format!("palisade: alert: {line}"));
    host.count(&format!("palisade.alerts.{kind}"), 1);
    if let Value::Object(record) = event.clone() {
        seal(host, trail, record, config, now, &timestamp);
    }
    if config.alerts.is_some() {
        queue(host, &trail.alerts, event.to_string(), "alert");
    }
}

/// The plugin is going away: signs the chain's tail (when signing is
/// configured), ends the chain and gives its slot up.
pub fn release(host: &impl Host, trail: &Trail, config: &AuditConfig, now: Duration) {
    let Ok(mut writer) = trail.writer.try_borrow_mut() else {
        return;
    };
    let sealed = writer.release(config.signing.as_ref(), &rfc3339(now));
    drop(writer);
    emit(host, trail, sealed, config);
}

/// On the tick: a signed head, when one is due (see `audit.signing`).
pub fn checkpoint(
    host: &impl Host,
    trail: &Trail,
    signing: &palisade_core::audit::sign::Signing,
    config: &AuditConfig,
    now: Duration,
) {
    let Ok(mut writer) = trail.writer.try_borrow_mut() else {
        return;
    };
    let sealed = writer.checkpoint(signing, now, &rfc3339(now));
    drop(writer);
    emit(host, trail, sealed, config);
}

/// Seals one record into the chain, logs it, and queues it for the collector.
fn seal(
    host: &impl Host,
    trail: &Trail,
    record: Map<String, Value>,
    config: &AuditConfig,
    now: Duration,
    timestamp: &str,
) {
    let Ok(mut writer) = trail.writer.try_borrow_mut() else {
        host.log(
            LogLevel::Error,
            "palisade: audit writer busy; a record was not chained",
        );
        return;
    };
    let sealed = writer.write(record, now, timestamp);
    drop(writer);
    emit(host, trail, sealed, config);
}

/// Logs sealed records and queues them for the collector.
fn emit(host: &impl Host, trail: &Trail, sealed: Vec<Sealed>, config: &AuditConfig) {
    crate::metrics::audited(host, sealed.len() as u64);
    for record in sealed {
        // The canonical bytes, exactly what the hash covers (plus `hash`).
        host.log(LogLevel::Audit, &format!("{PREFIX}{}", record.line));
        if config.collector.is_some() {
            queue(host, &trail.collector, record.line, "audit record");
        }
    }
}

fn queue(host: &impl Host, outbox: &RefCell<Outbox>, record: String, what: &str) {
    let queued = outbox.try_borrow_mut().map(|mut o| o.push(record));
    if !matches!(queued, Ok(true)) {
        host.count("palisade.audit_dropped", 1);
        host.log(
            LogLevel::Error,
            &format!(
                "palisade: {what} not queued for shipping (backlog full); it is in the Envoy log"
            ),
        );
    }
}

/// True if the collector is required and its last upload failed: requests
/// on personal-data routes must then be refused.
pub fn collector_down(trail: &Trail, config: &AuditConfig) -> bool {
    config.collector.as_ref().is_some_and(|c| c.required)
        && trail.collector.try_borrow().map_or(true, |o| !o.healthy())
}

/// On the tick: sends one batch to the collector and one alert to the
/// webhook, if any wait and none is in flight.
pub fn pump(host: &impl Host, trail: &Trail, config: &AuditConfig) {
    if let Some(endpoint) = &config.collector {
        send(host, &trail.collector, endpoint, true);
    }
    if let Some(endpoint) = &config.alerts {
        send(host, &trail.alerts, endpoint, false);
    }
}

fn send(host: &impl Host, outbox: &RefCell<Outbox>, endpoint: &Endpoint, batched: bool) {
    let Ok(mut outbox) = outbox.try_borrow_mut() else {
        return;
    };
    let Some(batch) = outbox.next_batch(endpoint.batch_max) else {
        return;
    };
    let (body, encoding) = if batched {
        (gzip_json(&batch), Some("gzip"))
    } else {
        (
            batch.first().cloned().unwrap_or_default().into_bytes(),
            None,
        )
    };
    let mut headers = vec![
        (":method", "POST"),
        (":path", endpoint.path.as_str()),
        (":authority", endpoint.authority.as_str()),
        ("content-type", "application/json"),
        ("user-agent", "palisade"),
    ];
    if let Some(e) = encoding {
        headers.push(("content-encoding", e));
    }
    let timeout = Duration::from_millis(endpoint.timeout_ms);
    match host.dispatch(&endpoint.cluster, &headers, &body, timeout) {
        Some(token) => outbox.sent(token, batch),
        None => {
            outbox.not_sent(batch, "the host refused to dispatch the call");
            host.log(
                LogLevel::Error,
                &format!(
                    "palisade: cannot call cluster {}: is it defined?",
                    endpoint.cluster
                ),
            );
        }
    }
}

/// An HTTP call came back (root context): settles the upload it carried.
pub fn answered(host: &impl Host, trail: &Trail, token: u32) {
    let status = host.call_status();
    for (outbox, what) in [
        (&trail.collector, "audit collector"),
        (&trail.alerts, "alert webhook"),
    ] {
        let Ok(mut o) = outbox.try_borrow_mut() else {
            continue;
        };
        let was_healthy = o.healthy();
        if o.answered(token, status) {
            if !o.healthy() {
                host.count(&format!("palisade.{}_failures", what.replace(' ', "_")), 1);
                if was_healthy {
                    host.log(
                        LogLevel::Error,
                        &format!(
                            "palisade: {what} unreachable ({}); {} record(s) held for retry",
                            o.last_error().unwrap_or("?"),
                            o.len()
                        ),
                    );
                }
            } else if !was_healthy {
                host.log(LogLevel::Info, &format!("palisade: {what} reachable again"));
            }
            return;
        }
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
