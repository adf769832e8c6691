//! Runs the Rego unit tests of `policies/` (every `test_*` rule must be
//! true), as `opa test` would, with the same regorus the filter embeds.

use regorus::{Engine, Value};
use std::path::PathBuf;

fn rego_files() -> Vec<PathBuf> {
    let dir = palisade_tests::repo().join("policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rego"))
        .collect();
    files.sort();
    files
}

/// `(package, rule)` of every `test_*` rule, read from the sources.
fn test_rules(files: &[PathBuf]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let package = text
            .lines()
            .find_map(|l| l.strip_prefix("package "))
            .unwrap()
            .trim()
            .to_owned();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("test_") {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push((package.clone(), format!("test_{name}")));
            }
        }
    }
    out
}

#[test]
fn reference_policy_tests_pass() {
    let files = rego_files();
    let mut engine = Engine::new();
    for f in &files {
        engine.add_policy_from_file(f).unwrap();
    }
    let rules = test_rules(&files);
    assert!(
        rules.len() >= 15,
        "expected the reference policy's tests, found {}",
        rules.len()
    );
    let mut failed = Vec::new();
    for (package, rule) in &rules {
        let path = format!("data.{package}.{rule}");
        match engine.eval_rule(path.clone()) {
            Ok(v) if v == Value::from(true) => println!("PASS {path}"),
            other => failed.push(format!("FAIL {path}: {other:?}")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
