//! Palisade's counters and histograms, as Envoy stats.
//!
//! Names follow Envoy's conventions: dot-separated, lowercase, the variable
//! parts (decision, reason) as name segments that the shipped Envoy config
//! turns into Prometheus tags (`stats_tags` in `envoy/sidecar.yaml`). Every
//! variable part is a stable reason code, so the set of names is bounded.

use crate::host::Host;
use palisade_core::gate::{Decision, DenialKind, Evaluation};

/// Counts one decided request, by decision and reason, plus the counter of
/// its kind (token failure, policy error, rate limit, suspension, dry run),
/// and records how long verification and evaluation took.
pub fn decided(host: &impl Host, evaluation: &Evaluation) {
    let reason = evaluation.reason();
    match &evaluation.decision {
        Decision::Allow(_) => host.count(&format!("palisade.requests.allow.{reason}"), 1),
        Decision::Deny(denial) => {
            host.count(&format!("palisade.requests.deny.{reason}"), 1);
            if !evaluation.enforced {
                host.count(&format!("palisade.dry_run_denials.{reason}"), 1);
            }
            match &denial.kind {
                DenialKind::InvalidToken(_) => {
                    host.count(&format!("palisade.token_failures.{reason}"), 1);
                }
                DenialKind::Limited(_) if reason == "suspended" => {
                    host.count("palisade.suspended", 1)
                }
                DenialKind::Limited(_) if reason != "page_size" => {
                    host.count(&format!("palisade.rate_limited.{reason}"), 1);
                }
                _ if reason.starts_with("policy_") && reason != "policy_denied" => {
                    host.count(&format!("palisade.policy_errors.{reason}"), 1);
                }
                _ => {}
            }
        }
    }
    if let Some(t) = evaluation.timings.verify {
        host.record("palisade.verification_us", micros(t));
    }
    if let Some(t) = evaluation.timings.evaluate {
        host.record("palisade.evaluation_us", micros(t));
    }
}

/// Counts a request refused before any decision (503).
pub fn refused(host: &impl Host, reason: &str) {
    host.count(&format!("palisade.requests.deny.{reason}"), 1);
}

/// Counts a response refused because its reported records are over budget.
pub fn records_refused(host: &impl Host) {
    host.count("palisade.rate_limited.records_exhausted", 1);
}

/// Counts the records a completed response returned, and whether it was cut.
pub fn returned(host: &impl Host, records: u64, truncated: bool) {
    host.count("palisade.records_returned", records);
    if truncated {
        host.count("palisade.responses_truncated", 1);
    }
}

/// Counts audit records written.
pub fn audited(host: &impl Host, n: u64) {
    host.count("palisade.audit_records", n);
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
