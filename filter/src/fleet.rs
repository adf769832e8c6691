//! Fleet-wide limits in the glue: the calls to the rate limit service one
//! stream makes, and the ones the root context makes for streams that are
//! gone. What to send and how to read the answers is
//! [`palisade_core::ratelimit::global`]; this module only moves the bytes
//! and remembers which call is which.
//!
//! When each call is made:
//!
//! 1. **Request:** once the local limits and the policy allowed a request,
//!    one check per rule with `global` that covers it; the request is held
//!    until all are answered (or time out: at most the configured
//!    `timeout_ms`).
//! 2. **Response end:** the records the response delivered are charged
//!    before its last chunk is let go, so a caller that reads one page after
//!    another has each page counted fleet-wide before it can ask for the
//!    next (in the terms of [`palisade_core::ratelimit::global::bound`],
//!    sequential requests are never in flight together).
//! 3. **Later, from the root context** (on its next tick, within
//!    [`crate::stream::TICK_PERIOD`]): a suspension, and the charge of a
//!    stream that ended without its last chunk (a client that hung up, a
//!    response with trailers). Envoy keeps a stream's calls going after
//!    the stream is gone (they belong to its root context), but the SDK
//!    drops their answers then, and these answers matter: a charge found
//!    over budget suspends, a suspension made raises an alert.
//!
//! One case loses an answer: a client that hangs up while its response's
//! end is held for the charge. The charge is still counted by the service;
//! if it overspent the budget, the suspension that answer would have
//! triggered is not sent (the spent budget still refuses everything).

use crate::host::{Host, LogLevel};
use palisade_core::ratelimit::global::{
    ChargeOutcome, Check, GlobalVerdict, RlsCall, SuspendOutcome,
};
use std::cell::RefCell;
use std::time::Duration;

/// Starts `call` through the host; its token, or `None` if refused.
pub fn dispatch(host: &impl Host, call: &RlsCall) -> Option<u32> {
    let target = String::from_utf8_lossy(&call.grpc_service()).into_owned();
    host.dispatch_grpc(
        &target,
        call.service,
        call.method,
        &call.message,
        call.timeout,
    )
}

/// The status a failed call is read with: one that took its whole
/// `timeout` is a timeout (4, `rls_timeout`), however Envoy ended it. Envoy
/// ends a call that ran out of time as UNAVAILABLE (14: its own timeout is
/// an HTTP 504) or CANCELLED (1: the service gave up at the `grpc-timeout`
/// Envoy sent), which would otherwise hide slowness among outages. "Whole"
/// is nine tenths of it: Envoy's timers and the clock it gives the filter
/// differ by a few milliseconds (a 200 ms timeout was seen ending at 197 ms
/// of the filter's clock), while a refused connection fails within one.
pub fn seen_status(status: u32, sent: Duration, now: Duration, timeout: Duration) -> u32 {
    if status != 0 && now.saturating_sub(sent) >= timeout.mul_f64(0.9) {
        4
    } else {
        status
    }
}

/// Acts on a charge's answer: a budget it overspent suspends the identity
/// (queued in `outbox`, when enforced; true then), a failed charge is
/// counted.
fn after_charge(
    host: &impl Host,
    outbox: &Outbox,
    check: &Check,
    outcome: ChargeOutcome,
    enforced: bool,
    decision_id: &str,
) -> bool {
    match outcome {
        ChargeOutcome::Charged { .. } => false,
        ChargeOutcome::OverBudget { suspend } => {
            let suspend = suspend && enforced;
            if suspend {
                outbox.push(
                    host,
                    Deferred::Suspend(check.clone(), decision_id.to_owned()),
                );
            }
            suspend
        }
        ChargeOutcome::Failed(f) => {
            failed(host, "charge", check.rule(), f.reason());
            false
        }
    }
}

/// Counts a call that gave no usable answer, by reason, and logs it.
pub fn failed(host: &impl Host, what: &str, rule: &str, reason: &str) {
    host.count(&format!("palisade.rls_failures.{reason}"), 1);
    host.log(
        LogLevel::Warn,
        &format!("palisade: rate limit service: {what} under {rule} failed: {reason}"),
    );
}

/// A call the root context makes on behalf of a stream.
#[derive(Debug, Clone)]
pub enum Deferred {
    /// Charge these records (a stream that ended without its last chunk);
    /// enforced (not a dry run): an overspent budget then suspends.
    Charge(Check, u64, bool),
    /// Suspend the identity fleet-wide; the decision that spent the budget.
    Suspend(Check, String),
}

impl Deferred {
    /// The check the call is made for.
    pub fn check(&self) -> &Check {
        match self {
            Deferred::Charge(check, ..) | Deferred::Suspend(check, _) => check,
        }
    }
}

/// The calls the root context makes for streams: queued by streams, sent
/// on the root's tick, answered to the root. One per VM, kept across
/// configuration reloads (a queued call still counts what went out).
#[derive(Default)]
pub struct Outbox {
    queued: RefCell<Vec<Deferred>>,
    /// Calls out: token, the call, when it was sent.
    out: RefCell<Vec<(u32, Deferred, Duration)>>,
}

/// How long past its timeout a call's answer is waited for.
const STALE_AFTER: Duration = Duration::from_secs(10);

/// Calls queued beyond this are dropped (and counted): a VM whose service
/// never answers must not grow without bound.
pub const MAX_QUEUED: usize = 4_096;

impl Outbox {
    /// Queues `call` for the root's next tick.
    pub fn push(&self, host: &impl Host, call: Deferred) {
        let Ok(mut queued) = self.queued.try_borrow_mut() else {
            return;
        };
        if queued.len() >= MAX_QUEUED {
            host.count("palisade.rls_failures.rls_queue_full", 1);
            return;
        }
        queued.push(call);
    }

    /// Sends what is queued (from the root context).
    pub fn send(&self, host: &impl Host) {
        let now = host.now().unwrap_or_default();
        if let Ok(mut out) = self.out.try_borrow_mut() {
            // Envoy ends every call by its timeout; one still listed long
            // after is an answer that will not come (the host lost it).
            out.retain(|(_, d, sent)| {
                now.saturating_sub(*sent) < d.check().timeout() + STALE_AFTER
            });
        }
        let queued = match self.queued.try_borrow_mut() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => return,
        };
        for deferred in queued {
            let (check, call, what) = match &deferred {
                Deferred::Charge(check, n, _) => (check, check.charge_records(*n), "charge"),
                Deferred::Suspend(check, _) => (check, check.suspend(), "suspension"),
            };
            let Some(call) = call else { continue };
            match dispatch(host, &call) {
                Some(token) => {
                    if let Ok(mut out) = self.out.try_borrow_mut() {
                        out.push((token, deferred, now));
                    }
                }
                None => failed(host, what, check.rule(), "rls_dispatch_failed"),
            }
        }
    }

    /// Takes the answer to one of its calls; `None` if `token` is not one.
    /// A charge found over budget queues the suspension (sent at once);
    /// a suspension made is returned, for the alert.
    pub fn answered(
        &self,
        host: &impl Host,
        token: u32,
        status: u32,
        size: usize,
        now: Duration,
    ) -> Option<Option<(palisade_core::ratelimit::limits::Suspension, String)>> {
        let (deferred, sent) = {
            let mut out = self.out.try_borrow_mut().ok()?;
            let at = out.iter().position(|(t, _, _)| *t == token)?;
            let (_, deferred, sent) = out.swap_remove(at);
            (deferred, sent)
        };
        let body = host.grpc_message(size).unwrap_or_default();
        let status = seen_status(status, sent, now, deferred.check().timeout());
        match deferred {
            Deferred::Charge(check, _, enforced) => {
                let outcome = check.on_charge_response(status, &body);
                if after_charge(host, self, &check, outcome, enforced, "") {
                    // This is the root context: the suspension goes at once.
                    self.send(host);
                }
                Some(None)
            }
            Deferred::Suspend(check, decision_id) => {
                match check.on_suspend_response(status, &body, now) {
                    SuspendOutcome::Suspended(s) => Some(Some((s, decision_id))),
                    SuspendOutcome::Failed(f) => {
                        failed(host, "suspension", check.rule(), f.reason());
                        Some(None)
                    }
                }
            }
        }
    }
}

/// One stream's fleet-wide checks and charges.
pub struct StreamFleet {
    checks: Vec<Check>,
    verdicts: Vec<Option<GlobalVerdict>>,
    /// Checks out: (token, index into `checks`).
    awaiting: Vec<(u32, usize)>,
    /// Charges out at the response's end.
    charging: Vec<(u32, usize)>,
    /// When the checks, then the charges, were sent.
    sent: Duration,
    /// The verdicts are enforced (not a dry run): refusals refuse, leases
    /// cut, spent budgets suspend.
    pub enforced: bool,
    /// The response's records were charged (or handed to the root).
    charged: bool,
}

impl StreamFleet {
    /// Starts one check per entry of `checks`; a check the host will not
    /// start is decided at once ([`Check::on_dispatch_failure`]).
    pub fn start(host: &impl Host, checks: Vec<Check>, enforced: bool) -> StreamFleet {
        let sent = host.now().unwrap_or_default();
        let mut verdicts = Vec::with_capacity(checks.len());
        let mut awaiting = Vec::with_capacity(checks.len());
        for (i, check) in checks.iter().enumerate() {
            match dispatch(host, &check.request_check()) {
                Some(token) => {
                    awaiting.push((token, i));
                    verdicts.push(None);
                }
                None => verdicts.push(Some(check.on_dispatch_failure())),
            }
        }
        StreamFleet {
            checks,
            verdicts,
            awaiting,
            charging: Vec::new(),
            sent,
            enforced,
            charged: false,
        }
    }

    /// True while a request-phase check is unanswered (the request is held).
    pub fn checking(&self) -> bool {
        !self.awaiting.is_empty()
    }

    /// True while a call of this stream is unanswered.
    pub fn waiting(&self) -> bool {
        !self.awaiting.is_empty() || !self.charging.is_empty()
    }

    /// Takes a check's answer; false if `token` is not one of them.
    pub fn check_answered(
        &mut self,
        host: &impl Host,
        token: u32,
        status: u32,
        size: usize,
        now: Duration,
    ) -> bool {
        let Some(at) = self.awaiting.iter().position(|(t, _)| *t == token) else {
            return false;
        };
        let (_, i) = self.awaiting.swap_remove(at);
        let body = host.grpc_message(size).unwrap_or_default();
        if let (Some(check), Some(slot)) = (self.checks.get(i), self.verdicts.get_mut(i)) {
            let status = seen_status(status, self.sent, now, check.timeout());
            *slot = Some(check.on_check_response(status, &body, now));
        }
        true
    }

    /// The checks and their verdicts, once all are answered.
    pub fn verdicts(&self) -> Vec<(&Check, &GlobalVerdict)> {
        self.checks
            .iter()
            .zip(&self.verdicts)
            .filter_map(|(c, v)| Some((c, v.as_ref()?)))
            .collect()
    }

    /// Queues the suspensions the verdicts call for (a budget found
    /// overspent at the request).
    pub fn suspend_overspent(&self, host: &impl Host, outbox: &Outbox, decision_id: &str) {
        if !self.enforced {
            return;
        }
        for (check, verdict) in self.verdicts() {
            if let GlobalVerdict::Limited { suspend: true, .. } = verdict {
                outbox.push(
                    host,
                    Deferred::Suspend(check.clone(), decision_id.to_owned()),
                );
            }
        }
    }

    /// The response is complete: charges what it delivered under each
    /// rule (`records(rule)`) and queues a suspension where it was cut at
    /// a lease that was the rest of the budget (`lease_spent(rule)`).
    /// True if charges are out (hold the response's end until answered).
    pub fn charge(
        &mut self,
        host: &impl Host,
        outbox: &Outbox,
        decision_id: &str,
        records: impl Fn(&str) -> u64,
        lease_spent: impl Fn(&str) -> bool,
    ) -> bool {
        if self.charged {
            return false;
        }
        self.charged = true;
        self.sent = host.now().unwrap_or_default();
        for (i, check) in self.checks.iter().enumerate() {
            if self.enforced && lease_spent(check.rule()) {
                outbox.push(
                    host,
                    Deferred::Suspend(check.clone(), decision_id.to_owned()),
                );
            }
            let Some(call) = check.charge_records(records(check.rule())) else {
                continue;
            };
            match dispatch(host, &call) {
                Some(token) => self.charging.push((token, i)),
                None => failed(host, "charge", check.rule(), "rls_dispatch_failed"),
            }
        }
        !self.charging.is_empty()
    }

    /// Takes a charge's answer; `None` if `token` is not one of them, else
    /// whether charges are still out.
    pub fn charge_answered(
        &mut self,
        host: &impl Host,
        outbox: &Outbox,
        decision_id: &str,
        token: u32,
        status: u32,
        size: usize,
    ) -> Option<bool> {
        let at = self.charging.iter().position(|(t, _)| *t == token)?;
        let (_, i) = self.charging.swap_remove(at);
        let body = host.grpc_message(size).unwrap_or_default();
        let now = host.now().unwrap_or_default();
        if let Some(check) = self.checks.get(i) {
            let status = seen_status(status, self.sent, now, check.timeout());
            let outcome = check.on_charge_response(status, &body);
            after_charge(host, outbox, check, outcome, self.enforced, decision_id);
        }
        Some(!self.charging.is_empty())
    }

    /// The stream ends before its charges were made (no last chunk: the
    /// client hung up, or trailers ended it): the root charges for it.
    pub fn hand_over(
        &mut self,
        host: &impl Host,
        outbox: &Outbox,
        decision_id: &str,
        records: impl Fn(&str) -> u64,
        lease_spent: impl Fn(&str) -> bool,
    ) {
        if self.charged {
            return;
        }
        self.charged = true;
        for check in &self.checks {
            if self.enforced && lease_spent(check.rule()) {
                outbox.push(
                    host,
                    Deferred::Suspend(check.clone(), decision_id.to_owned()),
                );
            }
            let n = records(check.rule());
            if check.charge_records(n).is_some() {
                outbox.push(host, Deferred::Charge(check.clone(), n, self.enforced));
            }
        }
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
