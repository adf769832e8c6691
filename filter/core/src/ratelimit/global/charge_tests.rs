use super::*;
use crate::config::raw::RawRateLimit;
use crate::ratelimit::rule::Rule;
use palisade_rls_proto::prost::Message;
use palisade_rls_proto::rate_limit_response::{Code, DescriptorStatus, RateLimit};
use palisade_rls_proto::{Duration as PbDuration, RateLimitRequest, RateLimitResponse};
use serde_json::json;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: Duration = Duration::from_secs(1_700_000_000);

fn check(suspend_seconds: u64, records: bool) -> Check {
    let mut j = json!({
        "name": "customer-bulk",
        "match": {"path_prefix": "/api/v1/customers"},
        "requests": {"limit": 60, "period_seconds": 60},
        "suspend_seconds": suspend_seconds,
        "global": {"cluster": "palisade_rls", "identity_key": KEY},
    });
    if records {
        j["records"] =
            json!({"limit": 10000, "period_seconds": 300, "count": {"json_array": "/items"}});
    }
    let raw: RawRateLimit = serde_json::from_value(j).unwrap();
    Check::new(&Rule::compile(&raw, "rate_limits[0]").unwrap(), "sub=alice").unwrap()
}

/// The one descriptor of `call`: (kind, hits).
fn one(call: &RlsCall) -> (String, Option<u64>) {
    let req = RateLimitRequest::decode(call.message.as_slice()).unwrap();
    assert_eq!(req.descriptors.len(), 1);
    let d = &req.descriptors[0];
    assert_eq!(d.entries[0].value, "customer-bulk");
    (d.entries[1].value.clone(), d.hits_addend)
}

fn answer(code: Code, remaining: u32, reset: Option<i64>) -> Vec<u8> {
    RateLimitResponse {
        overall_code: code as i32,
        statuses: vec![DescriptorStatus {
            code: code as i32,
            current_limit: Some(RateLimit {
                name: "l".into(),
                ..Default::default()
            }),
            limit_remaining: remaining,
            duration_until_reset: reset.map(|seconds| PbDuration { seconds, nanos: 0 }),
        }],
    }
    .encode_to_vec()
}

#[test]
fn a_response_is_charged_what_it_delivered() {
    let c = check(900, true);
    let call = c.charge_records(137).unwrap();
    assert_eq!(one(&call), ("records".into(), Some(137)));
    assert_eq!(call.cluster, "palisade_rls");
    // Nothing metered, nothing to charge; no budget, nothing to charge.
    assert_eq!(c.charge_records(0), None);
    assert_eq!(check(900, false).charge_records(137), None);
}

#[test]
fn charge_answers() {
    let c = check(900, true);
    assert_eq!(
        c.on_charge_response(0, &answer(Code::Ok, 63, None)),
        ChargeOutcome::Charged { remaining: 63 }
    );
    // Counted past the budget: suspend, if the rule does.
    assert_eq!(
        c.on_charge_response(0, &answer(Code::OverLimit, 0, Some(20))),
        ChargeOutcome::OverBudget { suspend: true }
    );
    assert_eq!(
        check(0, true).on_charge_response(0, &answer(Code::OverLimit, 0, None)),
        ChargeOutcome::OverBudget { suspend: false }
    );
    // Not counted, or not known to be: countable failures.
    assert_eq!(
        c.on_charge_response(14, b""),
        ChargeOutcome::Failed(RlsFailure::Status(14))
    );
    assert_eq!(
        c.on_charge_response(0, b"\x0f"),
        ChargeOutcome::Failed(RlsFailure::Unparsable)
    );
    assert_eq!(
        c.on_charge_response(0, b""),
        ChargeOutcome::Failed(RlsFailure::Malformed)
    );
}

#[test]
fn suspending_charges_the_suspension_once() {
    let c = check(900, true);
    assert_eq!(one(&c.suspend().unwrap()), ("suspension".into(), Some(1)));
    assert_eq!(check(0, true).suspend(), None, "the rule does not suspend");
}

#[test]
fn suspend_answers() {
    let c = check(900, true);
    let suspended = |until| {
        SuspendOutcome::Suspended(Suspension {
            rule: "customer-bulk".into(),
            identity: "sub=alice".into(),
            until,
            cause: "records_budget_spent",
        })
    };
    // The service's window decides how long it lasts.
    assert_eq!(
        c.on_suspend_response(0, &answer(Code::OverLimit, 0, Some(899)), NOW),
        suspended(NOW.as_secs() + 899)
    );
    // Without a reset time: the configured suspension.
    assert_eq!(
        c.on_suspend_response(0, &answer(Code::OverLimit, 0, None), NOW),
        suspended(NOW.as_secs() + 900)
    );
    assert_eq!(
        c.on_suspend_response(0, &answer(Code::Ok, 3, None), NOW),
        SuspendOutcome::Failed(RlsFailure::NotSuspended)
    );
    assert_eq!(
        c.on_suspend_response(4, b"", NOW),
        SuspendOutcome::Failed(RlsFailure::Status(4))
    );
    assert_eq!(RlsFailure::NotSuspended.reason(), "rls_not_suspended");
}

/// The whole life of one request, as the glue would drive it.
#[test]
fn a_request_cut_at_its_lease_spends_the_budget() {
    let c = check(900, true);
    // 120 records left: the check grants them all.
    let statuses = RateLimitResponse {
        overall_code: Code::Ok as i32,
        statuses: [80, 120, 0]
            .iter()
            .map(|&remaining| DescriptorStatus {
                code: Code::Ok as i32,
                current_limit: Some(RateLimit::default()),
                limit_remaining: remaining,
                duration_until_reset: None,
            })
            .collect(),
    };
    let verdict = c.on_check_response(0, &statuses.encode_to_vec(), NOW);
    let lease = verdict.grant().unwrap().lease.unwrap();
    assert_eq!(lease.records, 120);
    // The body wanted more and was cut at 120: that spent the budget.
    let cut_at_lease = true;
    assert!(cut_at_lease && lease.budget_bound);
    assert_eq!(
        one(&c.charge_records(lease.records).unwrap()),
        ("records".into(), Some(120))
    );
    assert!(c.suspend().is_some());
}
