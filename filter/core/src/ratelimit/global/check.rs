//! The request phase: one `ShouldRateLimit` per request and rule, and the
//! verdict read from its answer.

use super::call::{self, Answer, Kind, RlsCall};
use super::config::{OnFailure, Service};
use super::failure::RlsFailure;
use crate::ratelimit::limits::LimitDenial;
use crate::ratelimit::rule::Rule;
use crate::request::Request;
use crate::token::verify::VerifiedToken;
use std::time::Duration;

/// The reason a request refused because the service failed is answered
/// with (503).
pub const UNAVAILABLE_REASON: &str = "rate_limit_unavailable";

/// The fleet-wide check of one request under one rule: the call to make,
/// and all that is needed later to read its answer and to charge the
/// response. Owned (no borrow of the configuration), so the glue can keep
/// it across callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub(super) rule: String,
    identity: String,
    pub(super) pseudonym: String,
    pub(super) service: Service,
    on_failure: OnFailure,
    /// The request-phase descriptors, in the order they are sent.
    kinds: Vec<Kind>,
    /// The rule's local request quota (limit, period): what a refusal
    /// advertises when the service names no fixed-length limit.
    requests: Option<(u32, Duration)>,
    /// The rule's local record period: Retry-After when the service sends
    /// no reset time. `None` without a records budget.
    pub(super) records: Option<Duration>,
    /// `max_page_size.max`: no lease is larger.
    page_max: Option<u64>,
    pub(super) suspend: Option<Duration>,
}

/// The checks a request needs: one per rule with `global` that covers it,
/// in configuration order. Empty when no such rule does.
pub fn checks(rules: &[Rule], request: &Request, token: Option<&VerifiedToken>) -> Vec<Check> {
    let (method, path) = (
        request.headers.text(":method"),
        request.headers.text(":path"),
    );
    rules
        .iter()
        .filter(|r| r.global.is_some() && r.matches(&method, &path))
        .filter_map(|r| Check::new(r, &r.identity(request, token)))
        .collect()
}

impl Check {
    /// The check of `identity` (as [`Rule::identity`] names it) under
    /// `rule`; `None` if the rule has no `global`.
    pub fn new(rule: &Rule, identity: &str) -> Option<Check> {
        let global = rule.global.as_ref()?;
        let mut kinds = Vec::with_capacity(3);
        if rule.requests.is_some() {
            kinds.push(Kind::Requests);
        }
        if rule.records.is_some() {
            kinds.push(Kind::Records);
        }
        if rule.suspend.is_some() {
            kinds.push(Kind::Suspension);
        }
        Some(Check {
            rule: rule.name.clone(),
            identity: identity.to_owned(),
            pseudonym: global.identity_key.pseudonym(&rule.name, identity),
            service: global.service.clone(),
            on_failure: global.on_failure,
            kinds,
            requests: rule.requests.as_ref().map(|q| (q.limit.get(), q.period)),
            records: rule.records.as_ref().map(|b| b.period),
            page_max: rule.page.as_ref().map(|p| p.max),
            suspend: rule.suspend,
        })
    }

    /// The rule's name.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The identity as the local limits key it. It stays in the filter
    /// (audit records, alerts); the service only sees [`Check::pseudonym`].
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// What the service sees as the identity.
    pub fn pseudonym(&self) -> &str {
        &self.pseudonym
    }

    /// How long any call of this check may take (`timeout_ms`).
    pub fn timeout(&self) -> Duration {
        self.service.timeout
    }

    /// The request-phase call: one round trip for all of the rule's
    /// descriptors. `requests` charges 1; `records` and `suspension` charge
    /// 0 (checks: is the budget spent, how much is left; is the identity
    /// suspended).
    pub fn request_check(&self) -> RlsCall {
        let descriptors = self
            .kinds
            .iter()
            .map(|kind| {
                let hits = u64::from(*kind == Kind::Requests);
                call::descriptor(&self.rule, *kind, &self.pseudonym, hits)
            })
            .collect();
        call::call(&self.service, descriptors)
    }

    /// Reads the answer to [`Check::request_check`]: the gRPC status the
    /// call ended with (0 = OK) and the response body (empty if none).
    pub fn on_check_response(&self, grpc_status: u32, body: &[u8], now: Duration) -> GlobalVerdict {
        match call::read(grpc_status, body, self.kinds.len()) {
            Ok(answers) => self.verdict(&answers, now),
            Err(failure) => self.failed(failure),
        }
    }

    /// The verdict when the call could not even be started.
    pub fn on_dispatch_failure(&self) -> GlobalVerdict {
        self.failed(RlsFailure::Dispatch)
    }

    /// What `on_failure` makes of a failed call.
    fn failed(&self, failure: RlsFailure) -> GlobalVerdict {
        let rule = self.rule.clone();
        match self.on_failure {
            OnFailure::Deny => GlobalVerdict::Deny { rule, failure },
            OnFailure::Local => GlobalVerdict::FallBackToLocal { rule, failure },
        }
    }

    /// Refusals in the local limits' order: suspended, then over the
    /// request rate, then the record budget spent.
    fn verdict(&self, answers: &[Answer], now: Duration) -> GlobalVerdict {
        let answer = |kind: Kind| {
            let i = self.kinds.iter().position(|k| *k == kind)?;
            answers.get(i)
        };
        let rule = || self.rule.clone();
        let requests = answer(Kind::Requests);
        let records = answer(Kind::Records);
        // Over the budget (a response crossed it): suspend, as the local
        // limits do when a response is cut at the budget.
        let suspend = records.is_some_and(|a| a.over) && self.suspend.is_some();
        if let Some(a) = answer(Kind::Suspension).filter(|a| a.over) {
            let left = a.reset.or(self.suspend).unwrap_or_default();
            return GlobalVerdict::Limited {
                denial: LimitDenial::Suspended {
                    rule: rule(),
                    until: now.as_secs().saturating_add(ceil_secs(left)),
                },
                // Already suspended: charging again would not extend it.
                suspend: false,
            };
        }
        if let (Some(a), Some((local_limit, local_period))) =
            (requests.filter(|a| a.over), self.requests)
        {
            // The service's limit is the one that refused: advertise it
            // when its window is a fixed length, else the local one.
            let (limit, period) = match a.limit {
                Some((limit, Some(window))) if limit > 0 => (limit, window),
                _ => (local_limit, local_period),
            };
            return GlobalVerdict::Limited {
                denial: LimitDenial::RateLimited {
                    rule: rule(),
                    retry_after: a.reset.unwrap_or(period),
                    limit,
                    period,
                },
                suspend,
            };
        }
        if let Some(a) = records.filter(|a| a.over || a.remaining == 0) {
            // Nothing left: not even the one record any 2xx body costs.
            return GlobalVerdict::Limited {
                denial: LimitDenial::RecordsExhausted {
                    rule: rule(),
                    retry_after: a.reset.or(self.records).unwrap_or_default(),
                },
                suspend,
            };
        }
        let records_remaining = records.map(|a| u64::from(a.remaining));
        GlobalVerdict::Allowed(Grant {
            rule: rule(),
            requests_remaining: requests.map(|a| a.remaining),
            records_remaining,
            lease: records_remaining.map(|r| Lease::new(r, self.page_max)),
        })
    }
}

/// Whole seconds, rounded up: a suspension is never reported shorter than
/// it is.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What the service decided for one request under one rule. Denial is a
/// value: the glue maps it to HTTP, [`LimitDenial`]s exactly as the local
/// limits' (so one refusal reads the same in either mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalVerdict {
    /// Under every fleet-wide limit of the rule.
    Allowed(Grant),
    /// Over a fleet-wide limit. With `suspend`, the record budget was
    /// overspent: the glue also sends [`Check::suspend`] (the refusal does
    /// not wait for it).
    Limited { denial: LimitDenial, suspend: bool },
    /// The service failed and `on_failure` is `deny`: refuse the request,
    /// 503 [`UNAVAILABLE_REASON`]. `failure.reason()` is for the metric
    /// and the audit record.
    Deny { rule: String, failure: RlsFailure },
    /// The service failed and `on_failure` is `local`: the local limits
    /// alone decide. Count it (`failure.reason()`).
    FallBackToLocal { rule: String, failure: RlsFailure },
}

impl GlobalVerdict {
    /// The reason a refused request is answered with; `None` if it may go on.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        match self {
            GlobalVerdict::Limited { denial, .. } => Some(denial.reason()),
            GlobalVerdict::Deny { .. } => Some(UNAVAILABLE_REASON),
            GlobalVerdict::Allowed(_) | GlobalVerdict::FallBackToLocal { .. } => None,
        }
    }

    /// Why the service gave no usable answer, for a metric label and the
    /// audit record; `None` when it did.
    pub fn failure_reason(&self) -> Option<&'static str> {
        match self {
            GlobalVerdict::Deny { failure, .. }
            | GlobalVerdict::FallBackToLocal { failure, .. } => Some(failure.reason()),
            GlobalVerdict::Allowed(_) | GlobalVerdict::Limited { .. } => None,
        }
    }

    /// The grant, when allowed.
    pub fn grant(&self) -> Option<&Grant> {
        match self {
            GlobalVerdict::Allowed(grant) => Some(grant),
            _ => None,
        }
    }
}

/// The verdict that decides a request checked under several rules: the
/// first refusal in configuration order, if any. (Every `Limited` verdict's
/// `suspend` still applies, not only this one's.)
pub fn first_refusal(verdicts: &[GlobalVerdict]) -> Option<&GlobalVerdict> {
    verdicts.iter().find(|v| v.refusal_reason().is_some())
}

/// What a request under fleet-wide rules was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub rule: String,
    /// Requests left in the service's window, after this one.
    pub requests_remaining: Option<u32>,
    /// Records left in the service's window (`limit_remaining`).
    pub records_remaining: Option<u64>,
    /// At most what the response may deliver under this rule (rules
    /// without a records budget have none).
    pub lease: Option<Lease>,
}

/// A per-response lease on the fleet-wide record budget: the glue cuts the
/// response body after `records` records, as it cuts it at a local budget.
/// Leases are what bounds the fleet's overshoot (see [`super::bound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub records: u64,
    /// The lease is what was left of the budget (not the page-size cap):
    /// a response cut at it spent the budget, and suspends the identity
    /// (send [`Check::suspend`]), as a cut at a local budget does.
    pub budget_bound: bool,
}

impl Lease {
    /// `remaining` records left fleet-wide, capped at the page size: a
    /// response never holds more than `max_page_size.max` records in
    /// global mode, even from an upstream that ignores the page parameter,
    /// so that concurrent responses overshoot the budget by at most a page
    /// each.
    pub fn new(remaining: u64, page_max: Option<u64>) -> Lease {
        match page_max {
            Some(max) if max < remaining => Lease {
                records: max,
                budget_bound: false,
            },
            _ => Lease {
                records: remaining,
                budget_bound: true,
            },
        }
    }
}

/// The smallest lease of `verdicts` (one body, cut at the first budget it
/// reaches); `None` if no rule set one.
pub fn lease(verdicts: &[GlobalVerdict]) -> Option<u64> {
    verdicts
        .iter()
        .filter_map(|v| v.grant()?.lease.map(|l| l.records))
        .min()
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
