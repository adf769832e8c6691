//! The `palisade` binary, run as a user would from the repository root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Output};

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(support::repo())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn test_runs_the_reference_policy_tests() {
    let o = palisade(&["test", "--coverage", "policies/"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("PASS data.envoy.authz_test.test_customer_reads_own_record"),
        "{out}"
    );
    assert!(out.contains(" passed, 0 failed"), "{out}");
    assert!(
        out.contains("policies/customer_data.rego: "),
        "coverage report: {out}"
    );
}

#[test]
fn test_fails_on_a_failing_test() {
    let dir = std::env::temp_dir().join(format!("palisade-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.rego"),
        "package p\nimport rego.v1\nallow if input.x == 1\ntest_allows if allow with input as {\"x\": 1}\ntest_wrong if allow with input as {\"x\": 2}\n",
    )
    .unwrap();
    let o = palisade(&["test", dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("FAIL data.p.test_wrong"), "{}", text(&o));
    assert!(text(&o).contains("1 passed, 1 failed"), "{}", text(&o));
}

#[test]
fn check_runs_the_shared_cases_on_the_real_wasm() {
    let o = palisade(&["check", "--config", "envoy/demo-config.json", "tests/cases"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(" passed, 0 failed"));
}

#[test]
fn check_reports_a_difference_with_the_command_to_rerun_it() {
    let open = std::env::temp_dir().join(format!("open-{}.rego", std::process::id()));
    std::fs::write(&open, "package envoy.authz\ndecision := true\n").unwrap();
    let o = palisade(&[
        "check",
        "--config",
        "envoy/demo-config.json",
        "--policy",
        open.to_str().unwrap(),
        "tests/cases/policy/admin-cannot-list.yaml",
    ]);
    std::fs::remove_file(&open).ok();
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o);
    assert!(out.contains("status: expected 403, got 200"), "{out}");
    assert!(
        out.contains("upstream reached: expected false, got true"),
        "{out}"
    );
    assert!(
        out.contains("rerun: palisade check --config envoy/demo-config.json --policy"),
        "{out}"
    );
}

#[test]
fn eval_prints_the_decision_and_reason() {
    let input = std::env::temp_dir().join(format!("input-{}.json", std::process::id()));
    std::fs::write(
        &input,
        r#"{"attributes":{"request":{"http":{"method":"GET"}}},"parsed_path":["api","v1","customers"],
            "token":{"payload":{"sub":"root","roles":["admin"]}}}"#,
    )
    .unwrap();
    let o = palisade(&[
        "eval",
        "--config",
        "envoy/demo-config.json",
        "--input",
        input.to_str().unwrap(),
    ]);
    std::fs::remove_file(&input).ok();
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str()),
        (Some("deny"), Some("policy_denied"))
    );
}

#[test]
fn token_mints_what_the_demo_config_accepts() {
    let o = palisade(&[
        "token",
        r#"{"sub":"alice","roles":["customer"],"customer_id":"42"}"#,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let token = String::from_utf8(o.stdout).unwrap();
    assert_eq!(token.trim().split('.').count(), 3);
}

#[test]
fn user_errors_are_named_never_panics() {
    for (args, needle) in [
        (
            vec![
                "check",
                "--config",
                "envoy/demo-config.json",
                "--wasm",
                "/nope.wasm",
                "tests/cases",
            ],
            "cannot read /nope.wasm",
        ),
        (
            vec!["check", "--config", "/nope.json", "tests/cases"],
            "cannot read /nope.json",
        ),
        (
            vec!["check", "--config", "envoy/demo-config.json", "/nope.yaml"],
            "/nope.yaml: no such file",
        ),
        (
            vec![
                "eval",
                "--config",
                "envoy/demo-config.json",
                "--input",
                "README.md",
            ],
            "not JSON",
        ),
        (vec!["token", "--alg", "none"], "unknown algorithm `none`"),
        (vec!["test", "/nope"], "/nope: no such file"),
    ] {
        let o = palisade(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(needle), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{args:?}");
    }
}

#[test]
fn serve_proxies_through_the_real_wasm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let app = std::sync::Arc::new(palisade_demo::api::App::new(
        palisade_demo::data::Dataset::generate(),
    ));
    let upstream = palisade_demo::server::start("127.0.0.1:0", app.clone(), 2).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "serve",
            "--config",
            "envoy/demo-config.json",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
        ])
        .arg(format!("http://{}", upstream.addr()))
        .current_dir(support::repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("listening on http://")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let get = |auth: Option<&str>| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let auth = auth
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /api/v1/customers/42 HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let token = String::from_utf8(
        palisade(&[
            "token",
            r#"{"sub":"alice","roles":["customer"],"customer_id":"42"}"#,
        ])
        .stdout,
    )
    .unwrap();
    let before = app.hits_total();
    let denied = get(None);
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    assert_eq!(
        app.hits_total(),
        before,
        "a denied request must not reach the upstream"
    );
    let allowed = get(Some(token.trim()));
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(allowed.contains("customer42@example.test"), "{allowed}");
    child.kill().ok();
    child.wait().ok();
}

#[test]
fn a_bundle_file_named_in_the_config_is_read_relative_to_it() {
    use palisade_core::bundle::build;
    let dir = std::env::temp_dir().join(format!("palisade-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files: [(&str, &[u8]); 2] = [
        ("/.manifest", br#"{"revision": "r9", "rego_version": 0}"#),
        (
            "/envoy/authz/policy.rego",
            b"package envoy.authz\ndefault allow = false\nallow { input.attributes.request.http.method == \"GET\" }\n",
        ),
    ];
    std::fs::write(dir.join("bundle.tar.gz"), build(&files, None).unwrap()).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        r#"{"policy": {"bundle": {"file": "bundle.tar.gz"}}}"#,
    )
    .unwrap();
    let eval = |method: &str| {
        let input = dir.join("input.json");
        let doc = format!(r#"{{"attributes":{{"request":{{"http":{{"method":"{method}"}}}}}}}}"#);
        std::fs::write(&input, doc).unwrap();
        let o = palisade(&[
            "eval",
            "--config",
            config.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["decision"].as_str().unwrap().to_owned()
    };
    assert_eq!(eval("GET"), "allow");
    assert_eq!(eval("POST"), "deny");

    std::fs::write(
        &config,
        r#"{"policy": {"bundle": {"file": "missing.tar.gz"}}}"#,
    )
    .unwrap();
    let o = palisade(&[
        "eval",
        "--config",
        config.to_str().unwrap(),
        "--input",
        "/dev/null",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("policy.bundle.file: ") && text(&o).contains("missing.tar.gz"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}
