//! `palisade test`: run the `test_*` rules of Rego files, as `opa test` does,
//! with the same regorus build the filter embeds (so a policy that passes
//! here cannot call a builtin the filter lacks).

use palisade_core::policy::{ast, builtins, opa_jwt};
use regorus::{Engine, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rego files or directories (default: policies/).
    paths: Vec<PathBuf>,
    /// Report covered and uncovered lines per file.
    #[arg(long)]
    coverage: bool,
    /// Only run tests whose name contains this text.
    #[arg(long)]
    run: Option<String>,
    /// Parse the files as pre-1.0 Rego (`allow { … }`), as `opa test
    /// --v0-compatible` does.
    #[arg(long)]
    v0_compatible: bool,
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("policies")]
    } else {
        args.paths.clone()
    };
    let mut files = Vec::new();
    for p in &paths {
        collect(p, &mut files)?;
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("no .rego files in {}", display(&paths)));
    }
    let mut engine = Engine::new();
    engine.set_rego_v0(args.v0_compatible);
    // The filter's `io.jwt.*` and `time.now_ns`, on this machine's clock.
    let clock = opa_jwt::EvalClock::default();
    // The CLI's clock is its own business, not the filter's.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    clock.set(now);
    opa_jwt::register(&mut engine, &clock)?;
    for f in &files {
        let source = super::read(f)?;
        engine
            .add_policy(f.display().to_string(), source)
            .map_err(|e| e.to_string())?;
    }
    builtins::check_calls(&engine).map_err(|e| format!("{}: {}", e.module, e.message))?;
    engine.set_enable_coverage(args.coverage);

    let tests = ast::rules_named(&engine, "test_").ok_or("cannot inspect the policies")?;
    let selected: Vec<&String> = tests
        .iter()
        .filter(|t| args.run.as_deref().is_none_or(|r| t.contains(r)))
        .collect();
    if selected.is_empty() {
        return Err(format!("no test_* rules found in {}", display(&paths)));
    }
    let (mut passed, mut failed) = (0, 0);
    for rule in &selected {
        // Timing a test for its report is the CLI's own business, not the filter's.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let outcome = engine.eval_rule((*rule).clone());
        let took = started.elapsed();
        match outcome {
            Ok(v) if v == Value::from(true) => {
                passed += 1;
                println!("PASS {rule} ({took:.1?})");
            }
            Ok(v) => {
                failed += 1;
                let got = if v == Value::Undefined {
                    "undefined".to_owned()
                } else {
                    v.to_string()
                };
                println!("FAIL {rule} ({took:.1?}): {got}");
            }
            Err(e) => {
                failed += 1;
                println!("ERROR {rule}: {}", one_line(&e.to_string()));
            }
        }
    }
    println!("--------------------------------------------------------------------------------");
    println!("{passed} passed, {failed} failed");
    if args.coverage {
        print_coverage(&engine)?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn display(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in entries.flatten() {
            collect(&entry.path(), out)?;
        }
    } else if path.extension().is_some_and(|e| e == "rego") {
        out.push(path.to_path_buf());
    } else if !path.exists() {
        return Err(format!("{}: no such file or directory", path.display()));
    }
    Ok(())
}

fn print_coverage(engine: &Engine) -> Result<(), String> {
    let report = engine.get_coverage_report().map_err(|e| e.to_string())?;
    println!("\ncoverage:");
    for file in &report.files {
        if file.path.ends_with("_test.rego") {
            continue;
        }
        let covered = file.covered.len();
        let total = covered + file.not_covered.len();
        let pct = if total == 0 {
            100.0
        } else {
            covered as f64 * 100.0 / total as f64
        };
        println!("  {}: {covered}/{total} lines ({pct:.0}%)", file.path);
        if !file.not_covered.is_empty() {
            let lines: Vec<String> = file.not_covered.iter().map(u32::to_string).collect();
            println!("    not covered: lines {}", lines.join(", "));
        }
    }
    Ok(())
}
