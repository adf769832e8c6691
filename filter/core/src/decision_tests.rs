use super::*;
use serde_json::json;

fn v(j: serde_json::Value) -> Result<Value, String> {
    Ok(Value::from(j))
}

fn reason(verdict: PolicyVerdict) -> DenyReason {
    match verdict {
        PolicyVerdict::Deny(d) => d.reason,
        PolicyVerdict::Allow(a) => panic!("allowed: {a:?}"),
    }
}

#[test]
fn only_true_allows() {
    assert_eq!(
        interpret(v(json!(true))),
        PolicyVerdict::Allow(AllowDirectives::default())
    );
    assert!(matches!(
        interpret(v(json!({"allowed": true}))),
        PolicyVerdict::Allow(_)
    ));
}

#[test]
fn everything_else_denies_with_its_reason() {
    assert_eq!(reason(interpret(v(json!(false)))), DenyReason::Denied);
    assert_eq!(
        reason(interpret(Ok(Value::Undefined))),
        DenyReason::Undefined
    );
    assert_eq!(reason(interpret(Err("boom".into()))), DenyReason::Error);
    for bad in [
        json!("true"),
        json!(1),
        json!(null),
        json!([true]),
        json!({"allowed": "true"}),
        json!({"allowed": 1}),
        json!({"allow": true}),
        json!({}),
    ] {
        assert_eq!(
            reason(interpret(v(bad.clone()))),
            DenyReason::InvalidResult,
            "{bad}"
        );
    }
}

#[test]
fn allow_object_carries_directives() {
    let r = interpret(v(json!({
        "allowed": true,
        "headers": {"X-Subject": "alice", "x-multi": ["a", "b"]},
        "request_headers_to_remove": ["X-Debug"],
        "response_headers_to_add": {"x-policy": "v1"},
    })));
    assert_eq!(
        r,
        PolicyVerdict::Allow(AllowDirectives {
            request_headers_to_add: vec![
                ("x-subject".into(), "alice".into()),
                ("x-multi".into(), "a".into()),
                ("x-multi".into(), "b".into()),
            ],
            request_headers_to_remove: vec!["x-debug".into()],
            response_headers_to_add: vec![("x-policy".into(), "v1".into())],
        })
    );
}

#[test]
fn malformed_allow_directives_deny() {
    for bad in [
        json!({"allowed": true, "headers": {"x": 1}}),
        json!({"allowed": true, "headers": {"x": "a\r\nInjected: 1"}}),
        json!({"allowed": true, "headers": {"bad name": "a"}}),
        json!({"allowed": true, "headers": "x"}),
        json!({"allowed": true, "request_headers_to_remove": "x"}),
    ] {
        assert_eq!(
            reason(interpret(v(bad.clone()))),
            DenyReason::InvalidResult,
            "{bad}"
        );
    }
}

#[test]
fn deny_object_shapes_the_reply() {
    let r = interpret(v(
        json!({"allowed": false, "http_status": 451, "body": "no", "headers": {"x-why": "legal"}}),
    ));
    let PolicyVerdict::Deny(d) = r else { panic!() };
    assert_eq!(d.reason, DenyReason::Denied);
    assert_eq!(
        d.response,
        ReplyOverrides {
            http_status: Some(451),
            body: Some("no".into()),
            headers: vec![("x-why".into(), "legal".into())],
        }
    );
}

#[test]
fn bad_reply_fields_are_dropped_but_still_deny() {
    let r = interpret(v(json!({"allowed": false, "http_status": 99, "body": 5})));
    let PolicyVerdict::Deny(d) = r else { panic!() };
    assert_eq!(d.reason, DenyReason::Denied);
    assert_eq!(d.response, ReplyOverrides::default());
    assert!(d.detail.contains("http_status 99"), "{}", d.detail);
}

#[test]
fn step_up_is_a_denial_that_asks_for_stronger_authentication() {
    let verdict = interpret(v(json!({
        "allowed": false,
        "step_up": {"acr_values": "mfa", "max_age": 300}
    })));
    let PolicyVerdict::Deny(d) = verdict else {
        panic!("step-up must deny")
    };
    assert_eq!(d.reason, DenyReason::StepUp);
    assert_eq!(
        d.step_up,
        Some(StepUp {
            acr_values: Some("mfa".into()),
            max_age: Some(300)
        })
    );
    // `allowed: true` beside a step_up still allows: step_up is read on denials only.
    assert!(matches!(
        interpret(v(json!({"allowed": true, "step_up": {"max_age": 1}}))),
        PolicyVerdict::Allow(_)
    ));
}

#[test]
fn a_malformed_step_up_is_a_plain_denial_that_says_why() {
    for bad in [
        json!("mfa"),
        json!({}),
        json!({"acr_values": "a\"b"}),
        json!({"acr_values": ""}),
        json!({"max_age": -1}),
        json!({"max_age": 1.5}),
        json!({"max_age": "300"}),
    ] {
        let verdict = interpret(v(json!({"allowed": false, "step_up": bad.clone()})));
        let PolicyVerdict::Deny(d) = verdict else {
            panic!("{bad} must deny")
        };
        assert_eq!((d.reason, d.step_up), (DenyReason::Denied, None), "{bad}");
        assert!(d.detail.contains("step_up"), "{bad}: {}", d.detail);
    }
}

#[test]
fn an_allow_with_query_parameter_changes_palisade_cannot_apply_is_refused() {
    for field in ["query_parameters_to_set", "query_parameters_to_remove"] {
        let verdict = interpret(v(json!({"allowed": true, field: ["token"]})));
        assert_eq!(reason(verdict), DenyReason::InvalidResult, "{field}");
    }
    // Dynamic metadata is for other Envoy filters: ignored, still allowed.
    assert!(matches!(
        interpret(v(json!({"allowed": true, "dynamic_metadata": {"a": 1}}))),
        PolicyVerdict::Allow(_)
    ));
}
