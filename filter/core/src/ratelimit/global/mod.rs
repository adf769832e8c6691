//! Fleet-wide budgets: a rule's limits counted across every sidecar by an
//! Envoy rate limit service (`envoy.service.ratelimit.v3.RateLimitService/
//! ShouldRateLimit`, gRPC), such as `palisade-rls` (Limitador on Redis).
//!
//! The local limits ([`super::limits`]) are exact per Envoy process, so
//! with 50 replicas a budget is 50 budgets. A rule with `global` is also
//! counted by the service. This module is the pure half: the config, the
//! messages, what to send when, how to read the answers, what to decide
//! when the service fails. The glue only moves bytes: it dispatches each
//! [`RlsCall`] and hands the gRPC status and body back.
//!
//! **The local limits keep working as configured**, in every mode: they
//! keep counting and refusing per process, and `global` adds the fleet-wide
//! check on top. So `on_failure: "local"` means exactly "the local limits
//! alone decide", with counters that are up to date. The local limits are
//! asked first: a request they refuse costs no round trip. In `dry_run`
//! the request-phase checks are made and counted alike (a would-be refusal
//! is recorded), but nothing is enforced: no body is cut at a lease, no
//! identity suspended, and, as dry run meters no response, no records are
//! charged.
//!
//! # What is sent when
//!
//! For a request that a rule with `global` covers (after the local limits
//! let it through), one call per rule ([`checks`], [`Check::request_check`])
//! carries, in the service's `domain`, with `identity` the caller's
//! pseudonym (see [`pseudonym`]):
//!
//! | descriptor entries | `hits_addend` | sent when the rule has |
//! | --- | --- | --- |
//! | `limit`=name, `kind`=`requests`, `identity` | 1 | `requests` |
//! | `limit`=name, `kind`=`records`, `identity` | 0: a check | `records` |
//! | `limit`=name, `kind`=`suspension`, `identity` | 0: a check | `suspend_seconds` |
//!
//! Its answer ([`Check::on_check_response`]) is a [`GlobalVerdict`]:
//! suspension over its limit refuses as `suspended`; else requests over
//! theirs as `rate_limited` (Retry-After from `duration_until_reset`);
//! else records over the budget, or none left, as `records_exhausted`, and
//! an overspent budget (OVER_LIMIT, not merely 0 left) also suspends. The
//! refusals are the local limits' own [`LimitDenial`](super::limits::LimitDenial)s,
//! so the glue answers them alike. Otherwise the request is allowed with a
//! [`Lease`]: the response body is cut after that many records.
//!
//! After a metered response, a second call charges the records it
//! delivered ([`Check::charge_records`], `hits_addend` = records; the glue
//! holds the response's last chunk until it is answered, so a caller's
//! sequential requests are never in flight together); if that
//! answer is OVER_LIMIT, or the body was cut at a lease that was the rest
//! of the budget, a third suspends the identity ([`Check::suspend`]:
//! `suspension`, `hits_addend` 1).
//!
//! # What the service must be configured with
//!
//! Per rule (`palisade-rls` syntax; `identity` names the counter's entry):
//!
//! - `{"match": {"limit": NAME, "kind": "requests"}, "identity": "identity",
//!   "max_value": N, "seconds": S}`: the fleet's request rate;
//! - `{"match": {"limit": NAME, "kind": "records"}, ..., "charge": "always"}`:
//!   records already delivered are counted even past the budget;
//! - `{"match": {"limit": NAME, "kind": "suspension"}, ..., "max_value": 0,
//!   "seconds": SUSPEND_SECONDS, "charge": "always"}`: one hit suspends.
//!
//! The service must honour descriptor-level `hits_addend` (0 included) and
//! answer one status per descriptor naming the limit it applied: an OK for
//! a descriptor it has no limit for is a failure ([`RlsFailure::NoLimit`]),
//! so a service missing a limit cannot switch a budget off unnoticed.
//! Limitador's own server (no per-descriptor statuses) therefore fails
//! every call. A suspension lasts until the service's suspension window
//! ends; that it is `suspend_seconds` from the suspension needs a service
//! whose 0-hit checks do not start a window.
//!
//! # When the service fails
//!
//! A gRPC status other than 0 (a timeout is 4), a body that is not a
//! `RateLimitResponse`, a response of the wrong shape, or a call the host
//! would not start: `on_failure` decides, [`GlobalVerdict::Deny`] (503
//! `rate_limit_unavailable`, the default with a records budget) or
//! [`GlobalVerdict::FallBackToLocal`]; both carry an [`RlsFailure`] whose
//! `reason()` labels the metric and the audit record. A failed charge or
//! suspension is counted the same way ([`ChargeOutcome::Failed`],
//! [`SuspendOutcome::Failed`]).
//!
//! # How far the fleet can overshoot
//!
//! By at most `(k − 1) · min(max_page_size, budget)` records per window,
//! `k` being the most requests of one identity in flight at once across the
//! fleet: see [`bound`], which proves it and says what it assumes.
//!
//! ```
//! use palisade_core::ratelimit::global::{Check, GlobalVerdict};
//! use palisade_core::ratelimit::rule::Rule;
//! use palisade_rls_proto::prost::Message;
//! use palisade_rls_proto::rate_limit_response::{Code, DescriptorStatus, RateLimit};
//! use palisade_rls_proto::RateLimitResponse;
//! use std::time::Duration;
//!
//! let raw = serde_json::from_value(serde_json::json!({
//!     "name": "customer-bulk",
//!     "match": {"path_prefix": "/api/v1/customers"},
//!     "records": {"limit": 10000, "period_seconds": 300, "count": {"json_array": "/items"}},
//!     "max_page_size": {"param": "limit", "max": 500},
//!     "global": {"cluster": "palisade_rls",
//!                "identity_key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
//! })).unwrap();
//! let rule = Rule::compile(&raw, "rate_limits[0]").unwrap();
//! let check = Check::new(&rule, "sub=alice").unwrap();
//! let call = check.request_check(); // dispatch_grpc_call(call.cluster, ...)
//! assert_eq!((call.cluster.as_str(), call.timeout), ("palisade_rls", Duration::from_millis(20)));
//!
//! // The service's answer: 7,200 records left.
//! let answer = RateLimitResponse {
//!     overall_code: Code::Ok as i32,
//!     statuses: vec![DescriptorStatus {
//!         code: Code::Ok as i32,
//!         current_limit: Some(RateLimit { name: "customer-bulk-records".into(), ..Default::default() }),
//!         limit_remaining: 7_200,
//!         duration_until_reset: None,
//!     }],
//! };
//! let now = Duration::from_secs(1_700_000_000);
//! let verdict = check.on_check_response(0, &answer.encode_to_vec(), now);
//! let lease = verdict.grant().and_then(|g| g.lease).unwrap();
//! assert_eq!(lease.records, 500, "a page at most");
//!
//! // The service does not answer in time: records fail closed.
//! let verdict = check.on_check_response(4, &[], now);
//! assert_eq!(verdict.refusal_reason(), Some("rate_limit_unavailable"));
//! assert_eq!(verdict.failure_reason(), Some("rls_timeout"));
//! ```

pub mod bound;
pub mod call;
pub mod charge;
pub mod check;
pub mod config;
pub mod failure;
pub mod pseudonym;

pub use bound::{max_delivered, max_overshoot};
pub use call::{Kind, RlsCall};
pub use charge::{ChargeOutcome, SuspendOutcome};
pub use check::UNAVAILABLE_REASON;
pub use check::{checks, first_refusal, lease, Check, GlobalVerdict, Grant, Lease};
pub use config::{GlobalLimit, LimitShape, OnFailure, Service};
pub use failure::RlsFailure;
pub use pseudonym::IdentityKey;

/// The test rules' shape: a bulk rule with every limit (requests, records
/// in pages of 500, suspension), shared by the config and check tests.
#[cfg(test)]
pub(crate) fn bulk_rule_json() -> serde_json::Value {
    serde_json::json!({
        "name": "customer-bulk",
        "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
        "requests": {"limit": 60, "period_seconds": 60, "burst": 10},
        "records": {"limit": 10000, "period_seconds": 300, "count": {"json_array": "/items"}},
        "max_page_size": {"param": "limit", "max": 500},
        "suspend_seconds": 900,
    })
}
