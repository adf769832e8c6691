//! Why a call to the rate limit service did not give a usable answer.
//!
//! Every failure has a fixed reason string, for a metric label and the
//! audit record: each fallback to local limits and each fail-closed 503 is
//! countable by cause.

/// A call that did not give a usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlsFailure {
    /// The host refused to start the call (`dispatch_grpc_call` failed:
    /// say, the cluster does not exist).
    Dispatch,
    /// The call ended with this gRPC status (not 0): 4 (`DEADLINE_EXCEEDED`)
    /// for a timeout, 14 (`UNAVAILABLE`) for an unreachable service. Envoy
    /// itself ends a timed-out call as 14 or 1; the glue reads a failed
    /// call that lasted its whole timeout as 4 (`filter/src/fleet.rs`).
    Status(u32),
    /// Status 0, but the body is not a `RateLimitResponse`.
    Unparsable,
    /// A `RateLimitResponse` of the wrong shape: not one status per
    /// descriptor, a code other than OK or OVER_LIMIT, or an overall code
    /// that contradicts the statuses.
    Malformed,
    /// The service answered OK for a descriptor without naming a limit it
    /// matched (`current_limit` unset): it has no limit for it, so nothing
    /// was counted. A filter/service configuration mismatch must not
    /// silently switch a fleet-wide budget off.
    NoLimit,
    /// A suspension call was answered OK: the service's suspension limit
    /// allows hits, so the caller is not suspended.
    NotSuspended,
}

impl RlsFailure {
    /// The reason, for metrics and audit records (`rls_timeout`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            RlsFailure::Dispatch => "rls_dispatch_failed",
            RlsFailure::Status(code) => grpc_status_reason(*code),
            RlsFailure::Unparsable => "rls_unparsable",
            RlsFailure::Malformed => "rls_malformed",
            RlsFailure::NoLimit => "rls_no_limit",
            RlsFailure::NotSuspended => "rls_not_suspended",
        }
    }
}

/// One reason per gRPC status code (grpc/doc/statuscodes.md).
fn grpc_status_reason(code: u32) -> &'static str {
    match code {
        1 => "rls_cancelled",
        2 => "rls_unknown_error",
        3 => "rls_invalid_argument",
        4 => "rls_timeout",
        5 => "rls_not_found",
        6 => "rls_already_exists",
        7 => "rls_permission_denied",
        8 => "rls_resource_exhausted",
        9 => "rls_failed_precondition",
        10 => "rls_aborted",
        11 => "rls_out_of_range",
        12 => "rls_unimplemented",
        13 => "rls_internal",
        14 => "rls_unavailable",
        15 => "rls_data_loss",
        16 => "rls_unauthenticated",
        // 0 is not a failure; anything past 16 is not a gRPC status.
        _ => "rls_bad_status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_a_distinct_reason() {
        let mut reasons: Vec<&str> = (0..=17)
            .map(|c| RlsFailure::Status(c).reason())
            .chain(
                [
                    RlsFailure::Dispatch,
                    RlsFailure::Unparsable,
                    RlsFailure::Malformed,
                    RlsFailure::NoLimit,
                    RlsFailure::NotSuspended,
                ]
                .iter()
                .map(RlsFailure::reason),
            )
            .collect();
        assert_eq!(RlsFailure::Status(4).reason(), "rls_timeout");
        assert_eq!(RlsFailure::Status(14).reason(), "rls_unavailable");
        assert!(reasons.iter().all(|r| r.starts_with("rls_")));
        reasons.sort_unstable();
        reasons.dedup();
        // 0, 17 share `rls_bad_status`.
        assert_eq!(reasons.len(), 18 + 5 - 1);
    }
}
