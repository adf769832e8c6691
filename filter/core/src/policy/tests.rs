use super::*;
use serde_json::json;

fn modules(rego: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("authz.rego".to_owned(), rego.to_owned())])
}

fn compile(rego: &str) -> Result<Policy, PolicyError> {
    Policy::compile(&modules(rego), None, "data.envoy.authz.allow")
}

#[test]
fn compiles_and_evaluates() {
    let p = compile("package envoy.authz\nallow if input.x == 1").unwrap();
    assert_eq!(
        p.evaluate(Value::from(json!({"x": 1}))),
        Ok(Value::from(true))
    );
    assert_eq!(
        p.evaluate(Value::from(json!({"x": 2}))),
        Ok(Value::Undefined)
    );
}

#[test]
fn data_document_is_visible() {
    let data = json!({"roles": {"alice": "admin"}});
    let p = Policy::compile(
        &modules("package envoy.authz\nallow if data.roles[input.user] == \"admin\""),
        Some(&data),
        "data.envoy.authz.allow",
    )
    .unwrap();
    assert_eq!(
        p.evaluate(Value::from(json!({"user": "alice"}))),
        Ok(Value::from(true))
    );
    let e = Policy::compile(
        &modules("package envoy.authz\nallow := true"),
        Some(&json!([1])),
        "data.envoy.authz.allow",
    )
    .unwrap_err();
    assert_eq!(e.field, "data");
}

#[test]
fn functions_defined_by_a_default_or_a_string_index_load() {
    // Both are valid Rego (OPA's conformance cases `functions/only default`
    // and `function refs and package extent`); the load check used to
    // refuse them as "not a builtin of this build".
    let p = compile(
        "package envoy.authz\ndefault f(_) := true\nfoo[\"bar\"](x) := x\nallow if { f(1); foo.bar(true) }",
    )
    .unwrap();
    assert_eq!(p.evaluate(Value::from(json!({}))), Ok(Value::from(true)));
    // A call to nothing is still refused.
    let e = compile("package envoy.authz\ndefault f(_) := true\nallow if g(1)").unwrap_err();
    assert!(e.message.contains("`g` is not a function"), "{}", e.message);
}

#[test]
fn missing_builtin_fails_the_load() {
    // regorus's `time` builtins are not compiled into this build (only
    // Palisade's host-clock `time.now_ns` is).
    let e = compile("package envoy.authz\nallow if { input.x; time.weekday(0) == \"Monday\" }")
        .unwrap_err();
    assert_eq!(e.field, "modules[\"authz.rego\"]");
    assert!(
        e.message.contains("`time.weekday` is not a function"),
        "{}",
        e.message
    );
    assert!(e.message.starts_with("line 2"), "{}", e.message);
}

#[test]
fn unknown_function_fails_the_load_even_on_an_unreached_branch() {
    let e =
        compile("package envoy.authz\nallow if { input.never == 1; no_such_fn(1) }").unwrap_err();
    assert!(e.message.contains("`no_such_fn`"), "{}", e.message);
}

#[test]
fn builtins_and_user_functions_are_accepted() {
    let rego = r#"package envoy.authz
import data.lib
allow if {
    startswith(input.path, "/api")
    regex.match("^/api/v[0-9]+", input.path)
    glob.match("/api/*", ["/"], input.path)
    count(split(input.path, "/")) > 1
    base64url.encode("x") != ""
    helper(input.path)
    lib.ok(1)
}
helper(p) if contains(p, "api")
"#;
    let lib = "package lib\nok(x) if x == 1\n";
    let mods = BTreeMap::from([
        ("authz.rego".to_owned(), rego.to_owned()),
        ("lib.rego".to_owned(), lib.to_owned()),
    ]);
    let p = Policy::compile(&mods, None, "data.envoy.authz.allow").unwrap();
    assert_eq!(
        p.evaluate(Value::from(json!({"path": "/api/v1"}))),
        Ok(Value::from(true))
    );
}

#[test]
fn missing_decision_rule_fails_the_load() {
    let e = Policy::compile(
        &modules("package envoy.authz\nallow := true"),
        None,
        "data.envoy.authz.nope",
    )
    .unwrap_err();
    assert_eq!(e.field, "decision");
    let e = Policy::compile(
        &modules("package envoy.authz\nallow := true"),
        None,
        "envoy.authz.allow",
    )
    .unwrap_err();
    assert!(e
        .message
        .contains("must be a rule path starting with `data.`"));
}

#[test]
fn rego_v0_syntax_is_refused_by_default() {
    assert!(compile("package envoy.authz\nallow { true }").is_err());
}

#[test]
fn runtime_errors_are_errors_not_values() {
    for engine in BOTH {
        let p = compile_on(
            "package envoy.authz\nallow if to_number(\"abc\") > 1",
            engine,
        )
        .unwrap();
        assert!(p.evaluate(Value::new_object()).is_err(), "{engine:?}");
    }
}

#[test]
fn revision_changes_with_modules_and_data() {
    let a = compile("package envoy.authz\nallow := true").unwrap();
    let b = compile("package envoy.authz\nallow := false").unwrap();
    assert_ne!(a.revision, b.revision);
    assert_eq!(a.revision.len(), 64);
    let c = Policy::compile(
        &modules("package envoy.authz\nallow := true"),
        Some(&json!({"x": 1})),
        "data.envoy.authz.allow",
    )
    .unwrap();
    assert_ne!(a.revision, c.revision);
}

#[test]
fn available_builtins_are_listed() {
    let names = builtins::available();
    for expected in [
        "startswith",
        "regex.match",
        "glob.match",
        "json.unmarshal",
        "net.cidr_contains",
    ] {
        assert!(names.contains(&expected), "{expected}");
    }
    assert!(names.contains(&"time.now_ns"), "Palisade's extension");
    assert!(!names.contains(&"time.weekday"));
    assert!(!names.contains(&"http.send"));
}

#[test]
fn rules_are_found_by_name_prefix() {
    let mut engine = Engine::new();
    engine
        .add_policy(
            "t.rego".into(),
            "package a.b\ntest_one if true\ntest_two := 1\nnot_a_test if true\ntest_one if false\n"
                .into(),
        )
        .unwrap();
    assert_eq!(
        ast::rules_named(&engine, "test_").unwrap(),
        vec![
            "data.a.b.test_one".to_owned(),
            "data.a.b.test_two".to_owned()
        ]
    );
}

/// 4 million steps when `input.slow` is set: seconds of work unbounded.
const RUNAWAY: &str = r#"package envoy.authz
import rego.v1
allow if {
	input.slow
	count([x | some i in numbers.range(1, 2000); some j in numbers.range(1, 2000); x := i * j]) > 0
}
allow if input.fast
"#;

#[test]
fn a_runaway_evaluation_is_stopped_at_the_time_limit() {
    for engine in BOTH {
        runaway_is_stopped(engine);
    }
}

fn runaway_is_stopped(engine: EngineChoice) {
    let limit = Duration::from_millis(20);
    let options = PolicyOptions {
        time_limit: limit,
        engine,
        ..PolicyOptions::default()
    };
    let p =
        Policy::compile_with(&modules(RUNAWAY), None, "data.envoy.authz.allow", options).unwrap();
    // regorus's timer reads the real clock, so the test measures it too.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let e = p.evaluate(Value::from(json!({"slow": true}))).unwrap_err();
    let took = started.elapsed();
    assert!(is_time_limit(&e), "{e}");
    // Stopped near the bound, not after the seconds the work would take.
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // The next evaluation on this VM is not starved: it starts a fresh timer.
    assert_eq!(
        p.evaluate(Value::from(json!({"fast": true}))),
        Ok(Value::from(true))
    );
    let crate::decision::PolicyVerdict::Deny(denial) = crate::decision::interpret(Err(e)) else {
        panic!("a stopped evaluation must deny")
    };
    assert_eq!(denial.reason.code(), "policy_timeout");
}

#[test]
fn a_policy_that_runs_away_on_every_request_fails_the_load() {
    let always = "package envoy.authz\nimport rego.v1\nallow if count([x | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); x := i * j]) > 0\n";
    let options = PolicyOptions {
        time_limit: Duration::from_millis(20),
        ..PolicyOptions::default()
    };
    let e = Policy::compile_with(&modules(always), None, "data.envoy.authz.allow", options)
        .unwrap_err();
    assert_eq!(e.field, "modules");
    assert!(is_time_limit(&e.message), "{}", e.message);
}

#[test]
fn ranges_a_request_could_size_are_refused_at_load() {
    let e = compile(
        "package envoy.authz\nimport rego.v1\nallow if count(numbers.range(1, input.n)) > 3\n",
    )
    .unwrap_err();
    assert_eq!(e.field, "modules[\"authz.rego\"]");
    assert!(
        e.message
            .starts_with("line 3: `numbers.range` has bounds that are not number literals"),
        "{}",
        e.message
    );
    let e = compile(
        "package envoy.authz\nimport rego.v1\nallow if count(numbers.range(0, 1000000)) > 3\n",
    )
    .unwrap_err();
    assert!(e.message.contains("spans more than"), "{}", e.message);
    let e = compile("package envoy.authz\nimport rego.v1\nallow if count(numbers.range_step(0, input.n, 1)) > 3\n")
        .unwrap_err();
    assert!(e.message.contains("numbers.range_step"), "{}", e.message);
    assert!(
        compile("package envoy.authz\nimport rego.v1\nallow if 3 in numbers.range(1, 10)\n")
            .is_ok()
    );
}

#[test]
fn deeply_nested_modules_are_refused_before_the_parser_sees_them() {
    // 90 levels: regorus would take hours.
    let deep = format!("package envoy.authz\nx := {}1\n", "{".repeat(90));
    let e = compile(&deep).unwrap_err();
    assert_eq!(e.field, "modules[\"authz.rego\"]");
    assert!(
        e.message
            .starts_with("line 2: `{` and `[` nest deeper than 12"),
        "{}",
        e.message
    );
    let arrays = format!(
        "package envoy.authz\nallow if {{\n  x := {}1{}\n}}\n",
        "[".repeat(20),
        "]".repeat(20)
    );
    assert!(compile(&arrays).unwrap_err().message.starts_with("line 3:"));
    // Brackets in strings and comments do not count; real nesting does up to the bound.
    let fine = format!(
        "package envoy.authz\n# {}\nallow if {{\n  s := \"{}\\\"\"\n  r := `{}`\n  x := {}1{}\n  count(x) > 0\n}}\n",
        "{".repeat(40),
        "[".repeat(40),
        "{".repeat(40),
        "[".repeat(10),
        "]".repeat(10)
    );
    assert!(compile(&fine).is_ok(), "{:?}", compile(&fine).err());
}

fn compile_on(rego: &str, engine: EngineChoice) -> Result<Policy, PolicyError> {
    let options = PolicyOptions {
        engine,
        ..PolicyOptions::default()
    };
    Policy::compile_with(&modules(rego), None, "data.envoy.authz.allow", options)
}

const BOTH: [EngineChoice; 2] = [EngineChoice::Vm, EngineChoice::Interpreter];

#[test]
fn policies_run_on_the_interpreter_unless_vm_is_configured() {
    let rego = "package envoy.authz\nimport rego.v1\nallow if input.x == 1\n";
    assert_eq!(compile(rego).unwrap().engine(), EngineInUse::Interpreter);
    assert_eq!(
        compile_on(rego, EngineChoice::Vm).unwrap().engine(),
        EngineInUse::Vm
    );
}

#[test]
fn a_policy_the_vm_cannot_compile_fails_the_load_when_vm_is_configured() {
    // The RVM does not read `data` whole.
    let rego = "package envoy.authz\nimport rego.v1\nallow if object.get(data, [\"flags\", \"open\"], false)\n";
    assert_eq!(
        compile(rego).unwrap().evaluate(Value::new_object()),
        Ok(Value::Undefined)
    );
    let e = compile_on(rego, EngineChoice::Vm).unwrap_err();
    assert_eq!(e.field, "engine");
    assert!(
        e.message.contains("does not compile for the RVM"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("Direct access to 'data' root"),
        "{}",
        e.message
    );
}

#[test]
fn an_error_under_not_denies_on_both_engines() {
    // Left undefined, the failing `deny` would make `not deny` true: an
    // allow. On both engines it is an error, and an error denies.
    let rego = "package envoy.authz\nimport rego.v1\ndeny if to_number(input.limit) > 100\nallow if not deny\n";
    for engine in BOTH {
        let p = compile_on(rego, engine).unwrap();
        let e = p.evaluate(Value::from(json!({"limit": "many"})));
        assert!(e.is_err(), "{engine:?}: {e:?}");
        assert_eq!(
            p.evaluate(Value::from(json!({"limit": "5"}))),
            Ok(Value::from(true)),
            "{engine:?}"
        );
        assert_eq!(
            p.evaluate(Value::from(json!({"limit": "500"}))),
            Ok(Value::Undefined),
            "{engine:?}"
        );
    }
}

#[test]
fn conflicting_values_are_an_error_on_both_engines() {
    let rego = "package envoy.authz\nimport rego.v1\nallow := true if input.a\nallow := false if input.b\n";
    for engine in BOTH {
        let p = compile_on(rego, engine).unwrap();
        let e = p.evaluate(Value::from(json!({"a": true, "b": true})));
        assert!(e.is_err(), "{engine:?}: {e:?}");
        assert_eq!(
            p.evaluate(Value::from(json!({"a": true}))),
            Ok(Value::from(true))
        );
    }
}

#[test]
fn one_vm_serves_evaluations_one_after_another_without_leaking_state() {
    let rego = "package envoy.authz\nimport rego.v1\nallow if input.user in {\"alice\", \"bob\"}\n";
    let p = compile_on(rego, EngineChoice::Vm).unwrap();
    for _ in 0..3 {
        for (user, expected) in [("alice", Value::from(true)), ("eve", Value::Undefined)] {
            assert_eq!(p.evaluate(Value::from(json!({"user": user}))), Ok(expected));
        }
    }
}

#[test]
fn a_destructuring_mismatch_is_a_failed_body_not_an_error_on_both_engines() {
    let rego = "package envoy.authz\nimport rego.v1\nsum([a, b]) := a + b\nsum({\"x\": x}) := x\nallow if sum(input.v) == 3\n";
    for engine in BOTH {
        let p = compile_on(rego, engine).unwrap();
        for (v, expected) in [
            (json!([1, 2]), Value::from(true)),
            (json!({"x": 3}), Value::from(true)),
            (json!([1, 2, 3]), Value::Undefined),
            (json!("three"), Value::Undefined),
        ] {
            assert_eq!(
                p.evaluate(Value::from(json!({"v": v}))),
                Ok(expected),
                "{engine:?} {v}"
            );
        }
    }
}

#[test]
fn each_known_rvm_divergence_still_diverges() {
    // One policy per entry of KNOWN_RVM_DIVERGENCES, in order, with an
    // input on which the RVM allows and the interpreter does not. When a
    // regorus upgrade fixes one, this fails: drop it from the list and
    // from the README.
    let cases: [(&str, serde_json::Value); 5] = [
        ("role := r if some r in input.roles\nallow if role == \"admin\"", json!({"roles": ["user", "admin"]})),
        ("o := {\"a\": v | some v in input.vals}\nallow if o.a == 2", json!({"vals": [1, 2]})),
        ("allow if count([u.name | some u in input.users]) == 2", json!({"users": [{"name": "a"}, {}]})),
        ("deny if { some r in input.items; bad := [1 | r.blocked]; count(bad) == 0 }\nallow if not deny", json!({"items": [{"blocked": false}]})),
        ("allow if input.user == \"alice\"\nallow if to_number(input.limit) > 1", json!({"user": "alice", "limit": "x"})),
    ];
    assert_eq!(cases.len(), KNOWN_RVM_DIVERGENCES.len());
    for ((body, input), known) in cases.iter().zip(KNOWN_RVM_DIVERGENCES) {
        let rego = format!("package envoy.authz\nimport rego.v1\n{body}\n");
        let p = compile_on(&rego, EngineChoice::Vm).unwrap();
        let vm = p.evaluate(Value::from(input.clone()));
        let interpreted = p.evaluate_interpreted(Value::from(input.clone()));
        assert_eq!(vm, Ok(Value::from(true)), "{known}");
        assert_ne!(interpreted, Ok(Value::from(true)), "{known}: now agrees");
        // The default engine decides as the interpreter.
        assert_eq!(
            compile(&rego).unwrap().evaluate(Value::from(input.clone())),
            interpreted
        );
    }
}

#[test]
fn rvm_errors_name_their_kind_not_the_values_involved() {
    let rego = "package envoy.authz\nimport rego.v1\nallow if input.secret < 3\n";
    let p = compile_on(rego, EngineChoice::Vm).unwrap();
    let e = p
        .evaluate(Value::from(json!({"secret": "hunter2"})))
        .unwrap_err();
    assert!(!e.contains("hunter2"), "{e}");
    assert!(e.starts_with("RVM: "), "{e}");
}

#[test]
fn the_vm_refuses_palisades_extensions_by_name() {
    let options = PolicyOptions {
        engine: EngineChoice::Vm,
        ..PolicyOptions::default()
    };
    let rego = "package envoy.authz\nallow if {\n  time.now_ns() > 0\n}\n";
    let e = Policy::compile_with(
        &modules(rego),
        None,
        "data.envoy.authz.allow",
        options.clone(),
    )
    .unwrap_err();
    assert_eq!(e.field, "engine");
    assert!(e.message.contains("line 3: `time.now_ns`"), "{}", e.message);
    assert!(e.message.contains("use `interpreter`"), "{}", e.message);
    // The interpreter runs it.
    let p = Policy::compile(&modules(rego), None, "data.envoy.authz.allow").unwrap();
    let now = Duration::from_secs(1_700_000_000);
    assert_eq!(
        p.evaluate_at(Value::new_object(), now),
        Ok(Value::Bool(true))
    );
}

#[test]
fn a_jwks_pasted_into_a_one_line_string_loads() {
    // Four RSA keys' worth of JWKS on one line: over regorus's default
    // 1,024 columns, as embedded key sets are.
    let long = "k".repeat(6000);
    let rego = format!("package envoy.authz\njwks := \"{long}\"\nallow if count(jwks) == 6000\n");
    let p = compile(&rego).unwrap();
    assert_eq!(p.evaluate(Value::new_object()), Ok(Value::Bool(true)));
}

/// regorus 0.14.1 failed every rule value computed under `with` when the
/// policy was evaluated as a compiled policy (vendor/regorus/PALISADE.md,
/// patch 2); OPA evaluates these.
#[test]
fn with_modifiers_evaluate_under_a_compiled_policy() {
    let rego = r#"package envoy.authz
writes := {"POST", "PUT"}
blocked if input.method in data.blocked
would_block_get if blocked with input.method as "GET"
post_allowed_if_unblocked if not blocked with data.blocked as []
is_write if input.method in writes
default get_is_write := false
get_is_write if is_write with input.method as "GET"
allow := {
    "would_block_get": would_block_get,
    "post_allowed_if_unblocked": post_allowed_if_unblocked,
    "get_is_write": get_is_write,
}
"#;
    let data = json!({"blocked": ["GET", "POST"]});
    let p = Policy::compile(&modules(rego), Some(&data), "data.envoy.authz.allow").unwrap();
    let v = p
        .evaluate(Value::from(json!({"method": "POST"})))
        .unwrap_or_else(|e| panic!("evaluation failed: {e}"));
    assert_eq!(
        v,
        Value::from(json!({
            "would_block_get": true,
            "post_allowed_if_unblocked": true,
            "get_is_write": false,
        }))
    );
}

#[test]
fn long_operator_chains_are_refused_before_they_overflow_the_stack() {
    // Each of these overflowed an 8 MiB stack natively (a SIGSEGV in the
    // `config_load` fuzz target), at 5,000 to 8,000 operators.
    for (shape, src) in [
        (
            "unary minus",
            format!("package envoy.authz\nx := {}1\n", "-".repeat(8000)),
        ),
        (
            "dots",
            format!("package envoy.authz\nx := input{}\n", ".a".repeat(5000)),
        ),
        (
            "indexes",
            format!("package envoy.authz\nx := input{}\n", "[0]".repeat(5000)),
        ),
        (
            "sums",
            format!("package envoy.authz\nx := 1{}\n", "+1".repeat(5000)),
        ),
        (
            "a sum over lines in parentheses",
            format!("package envoy.authz\nx := (1\n{})\n", "+ 1\n".repeat(5000)),
        ),
    ] {
        let e = compile(&src).unwrap_err();
        assert!(
            e.message.starts_with("line ")
                && e.message
                    .contains(": an expression chains more than 100 operators"),
            "{shape}: {}",
            e.message
        );
    }
    // Long modules are fine: the count is per expression.
    let many = format!(
        "package envoy.authz\nallow if {{\n{}}}\n",
        "  input.attributes.request.http.method == \"GET\"\n".repeat(500)
    );
    assert!(compile(&many).is_ok(), "{:?}", compile(&many).err());
    let data = format!(
        "package envoy.authz\nallow := true\nids := [{}]\n",
        vec!["-1"; 2000].join(", ")
    );
    assert!(compile(&data).is_ok(), "{:?}", compile(&data).err());
}
