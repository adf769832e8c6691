//! The response phase: charging what a response delivered, and suspending
//! an identity fleet-wide. Each is its own call, made after the response
//! (nothing waits for its answer but the counters).

use super::call::{self, Kind, RlsCall};
use super::check::Check;
use super::failure::RlsFailure;
use crate::ratelimit::limits::Suspension;
use std::time::Duration;

/// What the service made of a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Counted, and still within the budget.
    Charged {
        /// Records left in the service's window.
        remaining: u64,
    },
    /// Counted (the service's `charge: "always"`), and the budget is now
    /// overspent: with `suspend`, send [`Check::suspend`] (unless this
    /// response already did, being cut at its lease).
    OverBudget { suspend: bool },
    /// Maybe not counted: the records went out uncharged, and the fleet's
    /// overshoot grows by them (see [`super::bound`]). Count it
    /// (`reason()`).
    Failed(RlsFailure),
}

/// What the service made of a suspension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuspendOutcome {
    /// Suspended fleet-wide: worth an alert. Every sidecar that sees the
    /// budget overspent sends one, so an alert may repeat across sidecars.
    Suspended(Suspension),
    /// Not recorded: the identity stays suspended only where the local
    /// limits suspended it. Count it (`reason()`).
    Failed(RlsFailure),
}

impl Check {
    /// Charges `records`, what the response delivered under this rule (as
    /// the local meter counts them: any 2xx body is at least one). Sent
    /// whatever the request-phase verdict was, a fallback to local limits
    /// included: records that went out are counted if the service can
    /// count them. `None` without a records budget, or for 0 records (an
    /// answer that was not metered).
    pub fn charge_records(&self, records: u64) -> Option<RlsCall> {
        if self.records.is_none() || records == 0 {
            return None;
        }
        let d = call::descriptor(&self.rule, Kind::Records, &self.pseudonym, records);
        Some(call::call(&self.service, vec![d]))
    }

    /// Reads the answer to [`Check::charge_records`].
    pub fn on_charge_response(&self, grpc_status: u32, body: &[u8]) -> ChargeOutcome {
        match call::read(grpc_status, body, 1).map(|a| a.first().copied()) {
            Ok(Some(a)) if a.over => ChargeOutcome::OverBudget {
                suspend: self.suspend.is_some(),
            },
            Ok(Some(a)) => ChargeOutcome::Charged {
                remaining: u64::from(a.remaining),
            },
            Ok(None) => ChargeOutcome::Failed(RlsFailure::Malformed),
            Err(failure) => ChargeOutcome::Failed(failure),
        }
    }

    /// Suspends the identity fleet-wide: charges 1 to its `suspension`
    /// descriptor, whose limit in the service allows none (`max_value` 0
    /// per `suspend_seconds`, `charge: "always"`), so every check of it
    /// answers OVER_LIMIT until the window ends. `None` if the rule does
    /// not suspend.
    pub fn suspend(&self) -> Option<RlsCall> {
        self.suspend?;
        let d = call::descriptor(&self.rule, Kind::Suspension, &self.pseudonym, 1);
        Some(call::call(&self.service, vec![d]))
    }

    /// Reads the answer to [`Check::suspend`].
    pub fn on_suspend_response(
        &self,
        grpc_status: u32,
        body: &[u8],
        now: Duration,
    ) -> SuspendOutcome {
        match call::read(grpc_status, body, 1).map(|a| a.first().copied()) {
            Ok(Some(a)) if a.over => {
                let left = a.reset.or(self.suspend).unwrap_or_default();
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                SuspendOutcome::Suspended(Suspension {
                    rule: self.rule.clone(),
                    identity: self.identity().to_owned(),
                    until: now.as_secs().saturating_add(secs),
                    cause: "records_budget_spent",
                })
            }
            // Counted, yet the limit still admits it: not a suspension.
            Ok(Some(_)) => SuspendOutcome::Failed(RlsFailure::NotSuspended),
            Ok(None) => SuspendOutcome::Failed(RlsFailure::Malformed),
            Err(failure) => SuspendOutcome::Failed(failure),
        }
    }
}

#[cfg(test)]
#[path = "charge_tests.rs"]
mod tests;
