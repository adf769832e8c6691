//! Decisions that follow OPA where upstream regorus does not (vendored
//! regorus, `vendor/regorus/PALISADE.md`): the order of values of different
//! types, `not` over an expression whose operands are undefined, and the
//! text of evaluation errors. Each expected answer was recorded from real
//! OPA (v1.20) and is checked on both engines.

use super::*;

/// Both engines, or the interpreter only (the RVM compiles no `with`).
fn engines(rego: &str) -> Vec<EngineChoice> {
    if rego.contains(" with ") {
        vec![EngineChoice::Interpreter]
    } else {
        vec![EngineChoice::Interpreter, EngineChoice::Vm]
    }
}

fn eval_on(rego: &str, rule: &str, input: serde_json::Value, engine: EngineChoice) -> Value {
    let modules = BTreeMap::from([("t.rego".to_owned(), rego.to_owned())]);
    let options = PolicyOptions {
        engine,
        ..PolicyOptions::default()
    };
    let policy = Policy::compile_with(&modules, None, &format!("data.t.{rule}"), options)
        .unwrap_or_else(|e| panic!("{engine:?}: {rego}: {}", e.message));
    policy
        .evaluate(Value::from(input))
        .unwrap_or_else(|e| panic!("{engine:?}: {rego}: {e}"))
}

/// The JSON text of a value, as OPA returns it (a set as a sorted array).
fn json(v: &Value) -> String {
    let text = v.to_json_str().unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .map(|v| v.to_string())
        .unwrap_or(text)
}

#[test]
fn values_of_different_types_are_ordered_as_in_opa() {
    // OPA's total order (ast.Compare): null < boolean < number < string <
    // array < object < set. Upstream regorus put sets before objects.
    // Within a type the orders already agreed (last three cases).
    let cases = [
        (
            r#"sort([{1}, {"a": 1}, [1], "s", 1, true, null])"#,
            r#"[null,true,1,"s",[1],{"a":1},[1]]"#,
        ),
        (r#"sort([{1}, {"a": 1}]) == [{"a": 1}, {1}]"#, "true"),
        (r#"max([{1}, {"a": 1}, [1]]) == {1}"#, "true"),
        (r#"min([{1}, {"a": 1}, [1]]) == [1]"#, "true"),
        (r#"max({{1}, {"a": 1}}) == {1}"#, "true"),
        // A set's elements, and so its JSON, come in this order too.
        (
            r#"[v | some v in {{1}, {"a": 1}, [1]}]"#,
            r#"[[1],{"a":1},[1]]"#,
        ),
        (
            r#"{v | some v in [{1}, {"a": 1}, [1], "s", 1, true, null]}"#,
            r#"[null,true,1,"s",[1],{"a":1},[1]]"#,
        ),
        (
            r#"sort([{"b": 0}, {"a": 1}, {"a": 1, "b": 0}, {"a": 0, "z": 9}, {}])"#,
            r#"[{},{"a":0,"z":9},{"a":1},{"a":1,"b":0},{"b":0}]"#,
        ),
        (
            r#"sort([{1, 3}, {1, 2}, {1}, {1, 2, 3}, {3}, set()])"#,
            "[[],[1],[1,2],[1,2,3],[1,3],[3]]",
        ),
        (
            r#"[{"a": 1} < {"b": 0}, {"a": 2} < {"a": 1, "b": 0}, {"a": 1, "b": 0} < {"a": 1}, {1, 2} < {1, 3}, {1} < {1, 2}, {3} < {1, 2}, [1] < [1, 0]]"#,
            "[true,false,false,true,true,false,true]",
        ),
    ];
    // `<` across types: the RVM, in strict mode, refuses to compare values
    // of different types (an error, so a denial), where OPA compares them.
    let interpreter_only = [(
        r#"[{"a": 1} < {1}, {1} < {"a": 1}, {1} > {"a": 1}, {} < set(), set() <= {}, [9] < {"a": 1}, "z" < [0], 1 < "a", null < false]"#,
        "[true,false,true,true,false,true,true,true,true]",
    )];
    let mut wrong = Vec::new();
    let runs = cases
        .iter()
        .flat_map(|case| [(case, EngineChoice::Interpreter), (case, EngineChoice::Vm)])
        .chain(
            interpreter_only
                .iter()
                .map(|case| (case, EngineChoice::Interpreter)),
        );
    for (&(expr, opa), engine) in runs {
        let rego = format!("package t\nx := {expr}\n");
        let got = json(&eval_on(&rego, "x", serde_json::json!({}), engine));
        if got != opa {
            wrong.push(format!("{engine:?}: {expr}: OPA {opa}, Palisade {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn not_fails_when_a_term_opa_evaluates_first_is_undefined() {
    // OPA evaluates a call's arguments that are references or calls
    // (and those inside literals or a reference's index) before the
    // negation: if one is undefined, `not` fails. A reference at the top of
    // a term or of a side of `==`/`=` stays inside and `not` succeeds.
    // Input: {"obj": {"a": 1}}; `u` is undefined.
    let prelude = r#"package t
u := input.nothing
g(x) := true if x == 1
f(x) := y if { x == 1; y := input.nothing }
m := {"k": 1, 0: 1}
s := {"a", "b"}
"#;
    // (body, whether OPA's `x := "x" if { body }` is defined)
    let cases = [
        (r#"not u in {"a", "b"}"#, false),
        (r#"not "a" in u"#, false),
        (r#"not startswith(u, "a")"#, false),
        (r#"not g(u)"#, false),
        (r#"not u != 1"#, false),
        (r#"not u < 1"#, false),
        (r#"not u + 1 > 0"#, false),
        (r#"not u & s"#, false),
        (r#"not count(u) == 0"#, false),
        (r#"not f(1) == 1"#, false),
        (r#"not [u] == [1]"#, false),
        (r#"not {"k": u} == {}"#, false),
        (r#"not m[u]"#, false),
        (r#"not m[u] == 1"#, false),
        (r#"not [u, 1][1] == 2"#, false),
        (r#"not "k", 2 in {"k": u}"#, false),
        (r#"not g(u) with input as {}"#, false),
        (r#"x := input.obj; not x.b in s"#, false),
        (r#"not u"#, true),
        (r#"not u == 1"#, true),
        (r#"not 1 == u"#, true),
        (r#"not u = 1"#, true),
        (r#"not f(1)"#, true),
        (r#"not g(2)"#, true),
        (r#"not [x | x := u] == [1]"#, true),
        (r#"not g(u) with input as {"nothing": 2}"#, true),
        (r#"x := 5; not x in s"#, true),
        (r#"x := input.obj; not x.b == 1"#, true),
    ];
    let mut wrong = Vec::new();
    for (body, opa) in cases {
        let rego = format!("{prelude}x := \"x\" if {{ {body} }}\n");
        for engine in engines(&rego) {
            let got = eval_on(&rego, "x", serde_json::json!({"obj": {"a": 1}}), engine);
            if (got != Value::Undefined) != opa {
                wrong.push(format!(
                    "{engine:?}: {body}: OPA defined: {opa}, Palisade {got:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn under_the_not_keyword_not_negates_the_whole_expression_as_in_opa() {
    // With `import future.keywords.not`, or all of `future.keywords`, OPA
    // 1.x negates the whole expression: every case below is defined in OPA
    // (recorded with OPA 1.20.2), where without the import the ones with an
    // undefined operand are not. A `deny if not …` rule must deny here.
    let cases = [
        r#"not u in {"a", "b"}"#,
        r#"not startswith(u, "a")"#,
        r#"not g(u)"#,
        r#"not u + 1 > 0"#,
        r#"not count(u) == 0"#,
        r#"not m[u]"#,
        r#"not [u] == [1]"#,
        r#"not u"#,
        r#"not u == 1"#,
        r#"not f(1)"#,
        r#"not input.x + input.y == input.z"#,
    ];
    let mut wrong = Vec::new();
    for import in ["import future.keywords.not", "import future.keywords"] {
        for body in cases {
            let rego = format!(
                "package t\n{import}\nu := input.nothing\ng(x) := true if x == 1\nf(x) := y if {{ x == 1; y := input.nothing }}\nm := {{\"k\": 1, 0: 1}}\nx := \"x\" if {{ {body} }}\n"
            );
            for engine in engines(&rego) {
                let got = eval_on(&rego, "x", serde_json::json!({"obj": {"a": 1}}), engine);
                if got == Value::Undefined {
                    wrong.push(format!(
                        "{engine:?}: {import}: {body}: OPA defined, Palisade undefined"
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_else_chain_over_an_undefined_rule_answers_as_opa_does() {
    // tests/differential/policies/10_data_joins.rego, narrowed: `view_role`
    // is undefined for a caller with none of its roles who is not the owner,
    // so `not view_role in {...}` fails and the chain reaches its last value.
    let rego = r#"package t
roles := {r | some r in input.roles}
view_role := "admin" if "admin" in roles
else := "owner" if input.owner == input.sub
reason := "another tenant" if {
	input.tenant != "t1"
	not view_role in {"admin", "auditor"}
} else := "no access"
"#;
    let cases = [
        (
            r#"{"roles": ["export"], "owner": "a", "sub": "b", "tenant": "t2"}"#,
            "no access",
        ),
        (
            r#"{"roles": ["export"], "owner": "a", "sub": "a", "tenant": "t2"}"#,
            "another tenant",
        ),
        (
            r#"{"roles": ["admin"], "owner": "a", "sub": "b", "tenant": "t2"}"#,
            "no access",
        ),
    ];
    for (input, opa) in cases {
        for engine in engines(rego) {
            let input = serde_json::from_str(input).unwrap();
            assert_eq!(
                eval_on(rego, "reason", input, engine),
                Value::from(opa),
                "{engine:?}"
            );
        }
    }
}

#[test]
fn an_evaluation_error_gives_its_reason_on_the_first_line() {
    // regorus's message starts with an empty line: the reason came last.
    let raw = "\n--> t.rego:2:22\n  |\n2 | x := to_number(input.s)\n  |                      ^\nerror: could not parse string as number";
    assert_eq!(
        error_text(raw),
        "could not parse string as number\n--> t.rego:2:22\n  |\n2 | x := to_number(input.s)\n  |                      ^"
    );
    assert_eq!(error_text("plain"), "plain");
    assert_eq!(
        error_text("\n \n"),
        "regorus reported an error without a message"
    );
    assert_eq!(
        vm_error_text("\n"),
        "RVM: regorus reported an error without a message"
    );

    let modules = BTreeMap::from([(
        "t.rego".to_owned(),
        "package t\nx := to_number(input.s)\n".to_owned(),
    )]);
    let policy = Policy::compile(&modules, None, "data.t.x").unwrap();
    let e = policy
        .evaluate(Value::from(serde_json::json!({"s": "abc"})))
        .unwrap_err();
    let first = e.lines().next().unwrap_or_default();
    assert_eq!(first, "could not parse string as number", "{e}");
    assert!(e.contains("--> t.rego:2:"), "{e}");
}

#[test]
fn imports_opa_refuses_are_refused_at_load() {
    // OPA 1.20.2: `invalid import `rego.v2`, must be `rego.v1`` and
    // `unexpected keyword, must be one of [and contains every if in not or]`.
    // Loading them would give a policy `opa` never runs.
    for (import, says) in [
        ("import rego.v2", "must be `rego.v1`"),
        ("import rego", "must be `rego.v1`"),
        ("import future.keywords.foo", "unexpected keyword"),
    ] {
        let modules = BTreeMap::from([(
            "t.rego".to_owned(),
            format!("package t\n{import}\nx := 1\n"),
        )]);
        let e = Policy::compile(&modules, None, "data.t.x").unwrap_err();
        assert!(e.message.contains(says), "{import}: {}", e.message);
    }
    for import in [
        "import rego.v1",
        "import future.keywords.not",
        "import future.keywords",
    ] {
        let modules = BTreeMap::from([(
            "t.rego".to_owned(),
            format!("package t\n{import}\nx := 1\n"),
        )]);
        assert!(
            Policy::compile(&modules, None, "data.t.x").is_ok(),
            "{import}"
        );
    }
}

#[test]
fn a_wildcard_under_not_is_evaluated_not_an_error() {
    // `not input.arr[_] == 1`: its wildcard term stays inside the negation
    // (evaluated ahead of it, alone, it would be unsafe on every request).
    // Both engines answer, and alike.
    let rego = "package t\nx := \"x\" if { not input.arr[_] == 1 }\n";
    let input = serde_json::json!({"arr": [1, 2]});
    let answers: Vec<Value> = engines(rego)
        .into_iter()
        .map(|engine| eval_on(rego, "x", input.clone(), engine))
        .collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
}
