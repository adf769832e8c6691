//! Arithmetic decides as in OPA (vendored regorus, patch 3): each case of
//! `opa_arithmetic.json` is a Rego expression and what real OPA answers for
//! it, recorded from OPA itself.

use super::*;

fn eval(rego: &str) -> Value {
    let modules = BTreeMap::from([("t.rego".to_owned(), format!("package t\nx := {rego}\n"))]);
    let policy = Policy::compile(&modules, None, "data.t.x")
        .unwrap_or_else(|e| panic!("{rego}: {}", e.message));
    policy
        .evaluate(Value::from(serde_json::json!({})))
        .unwrap_or_else(|e| panic!("{rego}: {e}"))
}

#[test]
fn arithmetic_answers_as_opa_does() {
    let doc: serde_json::Value = serde_json::from_str(include_str!("opa_arithmetic.json")).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() > 30);
    let mut wrong = Vec::new();
    for case in cases {
        let rego = case["rego"].as_str().unwrap();
        let opa = case["opa"].as_str().unwrap();
        // A number as OPA's digits (JSON would round big integers to f64).
        let want = Value::from_numeric_string(opa)
            .or_else(|_| Value::from_json_str(opa))
            .unwrap();
        let got = eval(rego);
        if got != want {
            wrong.push(format!("{rego}: OPA {opa}, Palisade {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_computed_score_meets_its_threshold_as_in_opa() {
    // With f64 arithmetic, 0.1 + 0.2 is 0.30000000000000004 and this
    // comparison (a threshold on a computed score) flipped.
    let modules = BTreeMap::from([(
        "t.rego".to_owned(),
        "package t\nallow if input.level * 0.1 + 0.2 >= 0.3\n".to_owned(),
    )]);
    let policy = Policy::compile(&modules, None, "data.t.allow").unwrap();
    assert_eq!(
        policy.evaluate(Value::from(serde_json::json!({"level": 1}))),
        Ok(Value::from(true))
    );
    assert_eq!(
        policy.evaluate(Value::from(serde_json::json!({"level": 0.99}))),
        Ok(Value::Undefined)
    );
}

#[test]
fn results_f64_cannot_hold_are_errors_not_other_numbers() {
    let modules = BTreeMap::from([(
        "t.rego".to_owned(),
        "package t\nx := input.a * input.b\n".to_owned(),
    )]);
    let policy = Policy::compile(&modules, None, "data.t.x").unwrap();
    let tiny = policy.evaluate(Value::from(serde_json::json!({"a": 1e-300, "b": 1e-300})));
    assert!(tiny.is_err(), "{tiny:?}");
    let huge = policy.evaluate(Value::from(serde_json::json!({"a": 1.5e300, "b": 1e300})));
    // 1.5e600 is an integer: OPA keeps all its digits, and so does
    // Palisade, as a big integer.
    match huge {
        Ok(Value::Number(n)) => assert_eq!(n.format_decimal().len(), 601),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_product_too_wide_to_compute_quickly_is_an_error() {
    // OPA would compute it; a builtin call is not interrupted by the time
    // limit, so past 4096 bits a product is an overflow error (a denial),
    // not seconds of work.
    let modules = BTreeMap::from([(
        "t.rego".to_owned(),
        "package t\nx := product(input.a)\ny := input.a[0] * input.a[1] * input.a[2] * input.a[3] * input.a[4]\n"
            .to_owned(),
    )]);
    let input = serde_json::json!({"a": vec![1e308; 4000]});
    for rule in ["x", "y"] {
        let policy = Policy::compile(&modules, None, &format!("data.t.{rule}")).unwrap();
        let r = policy.evaluate(Value::from(input.clone()));
        assert!(
            r.as_ref().is_err_and(|e| e.contains("overflow")),
            "{rule}: {r:?}"
        );
    }
    // Three of them still multiply exactly (3,072 bits).
    let three = BTreeMap::from([(
        "t.rego".to_owned(),
        "package t\nx := product([input.a[0], input.a[1], input.a[2]])\n".to_owned(),
    )]);
    let policy = Policy::compile(&three, None, "data.t.x").unwrap();
    assert!(policy.evaluate(Value::from(input)).is_ok());
}

#[test]
fn numbers_keep_one_order_past_2_to_the_53() {
    // An f64 counts as its shortest decimal against an integer too, so
    // equality, order and arithmetic agree: 1152921504606846976.0 prints as
    // 1152921504606847000, which is 24 more than the integer.
    let modules = BTreeMap::from([(
        "t.rego".to_owned(),
        "package t\nx := [input.f == input.u, input.f - input.u, input.f > input.u, sort([input.f, input.u + 0.5, input.u])]\n".to_owned(),
    )]);
    let policy = Policy::compile(&modules, None, "data.t.x").unwrap();
    let input = serde_json::json!({"f": 1152921504606846976.0_f64, "u": 1152921504606846976_u64});
    let got = policy.evaluate(Value::from(input)).unwrap();
    let want = Value::from_json_str(
        "[false, 24, true, [1152921504606846976, 1152921504606846976.5, 1152921504606847000]]",
    )
    .unwrap();
    assert_eq!(got[0], want[0]);
    assert_eq!(got[1], want[1]);
    assert_eq!(got[2], want[2]);
    let sorted: Vec<Value> = got[3].as_array().unwrap().iter().cloned().collect();
    assert!(sorted.windows(2).all(|w| w[0] < w[1]), "{sorted:?}");
}
