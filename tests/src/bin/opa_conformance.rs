//! Runs OPA's own conformance cases through regorus as Palisade configures
//! it, and reports the pass rate.
//!
//! ```sh
//! cargo run -p palisade-tests --release --bin opa-conformance -- \
//!     <opa>/v1/test/cases/testdata/v1 [--json] [--verbose]
//! ```
//!
//! The cases are OPA's YAML files (`cases:`, each with `note`, `modules`,
//! `data`, `input` or `input_term`, `query`, and `want_result` or
//! `want_error`/`want_error_code`); see `tests/differential/README_CONFORMANCE.md`.
//! They are not in this repository: point the runner at an OPA checkout.
//!
//! A case whose query is `data.a.b = x` (or `x = data.a.b`) runs as a gate
//! decision: `palisade_core::policy::Policy` compiles the modules with that
//! rule as the decision and evaluates it (`evaluate_at`, the clock set), as
//! the filter does. Any other query (a package, a call, `with`, several
//! expressions), and a rule `Policy` cannot take as its decision, runs
//! through `regorus::Engine::eval_query`, set up as `Policy::compile` sets
//! up its engine: Rego v1 (v0 with `--rego-v0` or under a `v0` directory),
//! Palisade's `io.jwt.*`/`time.now_ns` extensions with the clock set, the
//! same load-time builtin checks, strict builtin errors (the interpreter's
//! default, which Palisade keeps). OPA runs most cases with strict builtin
//! errors off, so a case that fails only because of that is classed apart
//! ("strict builtin errors").
//!
//! A case is skipped, with its reason, when Palisade cannot run it: it calls
//! a builtin Palisade's regorus build does not include (`http.send`,
//! `time.*`, `walk`, …), sets environment variables, or is refused by
//! Palisade's load-time limits (`numbers.range` bounds, nesting depth).
//! Skips count neither as passes nor failures. A refusal of a function the
//! modules do define is Palisade's mistake and fails the case.
//!
//! Each file runs in a child process of this binary, so a case that panics
//! (the release profile aborts) or overflows the stack fails alone.

use palisade_core::policy::{builtins, opa_jwt, Policy, PolicyOptions, RegoVersion};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, PolicyLengthConfig, Value};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: opa-conformance <dir-with-yaml-cases> [--json] [--verbose] \
[--filter <text>] [--time-limit-ms <n>] [--min-pass-rate <percent>] [--rego-v0]";

/// One OPA case file: `cases:`.
#[derive(Deserialize)]
struct CaseFile {
    #[serde(default)]
    cases: Vec<Case>,
}

/// One OPA test case (`v1/test/cases/cases.go`, `TestCase`).
#[derive(Deserialize, Clone)]
struct Case {
    note: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    modules: Vec<String>,
    data: Option<Json>,
    input: Option<Json>,
    input_term: Option<String>,
    want_result: Option<Vec<Json>>,
    want_error: Option<String>,
    want_error_code: Option<String>,
    want_defined: Option<bool>,
    #[serde(default)]
    sort_bindings: bool,
    #[serde(default)]
    strict_error: bool,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Fields this runner does not act on (`ignore_generated_vars`, …).
    #[serde(flatten)]
    _other: BTreeMap<String, Json>,
}

/// What one evaluation produced.
enum Run {
    /// OPA's result set: one object of bindings per solution.
    Results(Vec<Json>),
    Error(String),
    /// Palisade refuses the modules at load for a reason of its own.
    Refused(String),
}

/// Which of Palisade's ways of evaluating a case ran it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    /// `palisade_core::policy::Policy`, the query's rule as the decision.
    Decision,
    /// `regorus::Engine::eval_query` with Palisade's settings.
    Query,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Decision => "policy",
            Route::Query => "query",
        }
    }
}

enum Outcome {
    Pass {
        route: Route,
        /// For a case that wants an error with a text: whether regorus's
        /// message contains OPA's.
        error_text_matched: Option<bool>,
        /// For a case that wants an error: regorus refused the modules or
        /// the query before evaluating, which may be for another reason
        /// than OPA's error.
        load_error: bool,
    },
    Fail {
        route: Route,
        class: String,
        detail: String,
    },
    Skip {
        reason: String,
    },
}

struct Options {
    dir: PathBuf,
    json: bool,
    verbose: bool,
    filter: Option<String>,
    time_limit: Duration,
    min_pass_rate: Option<f64>,
    /// Parse modules as Rego v0 (`--rego-v0`, or a directory named `v0`).
    rego_v0: bool,
    /// Internal: run one file's cases from an index (see [`run_file_isolated`]).
    child: Option<(PathBuf, usize)>,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut opts = Options {
        dir: PathBuf::new(),
        json: false,
        verbose: false,
        filter: None,
        time_limit: Duration::from_secs(2),
        min_pass_rate: None,
        rego_v0: false,
        child: None,
    };
    let mut from = 0;
    let mut dir = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--json" => opts.json = true,
            "--rego-v0" => opts.rego_v0 = true,
            "--verbose" | "-v" => opts.verbose = true,
            "--filter" => opts.filter = Some(value("--filter")?),
            "--time-limit-ms" => {
                let ms = value("--time-limit-ms")?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("bad --time-limit-ms {ms}"))?;
                opts.time_limit = Duration::from_millis(ms);
            }
            "--min-pass-rate" => {
                let p = value("--min-pass-rate")?;
                opts.min_pass_rate =
                    Some(p.parse().map_err(|_| format!("bad --min-pass-rate {p}"))?);
            }
            "--child" => opts.child = Some((PathBuf::from(value("--child")?), 0)),
            "--from" => {
                let n = value("--from")?;
                from = n.parse().map_err(|_| format!("bad --from {n}"))?;
            }
            "--help" | "-h" => return Err(USAGE.into()),
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}\n{USAGE}")),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return Err(format!("one directory only\n{USAGE}")),
        }
    }
    if let Some((_, start)) = &mut opts.child {
        *start = from;
        return Ok(opts);
    }
    let dir = dir.ok_or(USAGE)?;
    // OPA keeps its v0 cases under `testdata/v0`.
    opts.rego_v0 |= dir.components().any(|c| c.as_os_str() == "v0");
    opts.dir = dir;
    Ok(opts)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some((file, from)) = &opts.child {
        return child_main(file, *from, &opts);
    }
    let mut files = Vec::new();
    if let Err(e) = collect_yaml(&opts.dir, &mut files) {
        eprintln!("cannot read {}: {e}", opts.dir.display());
        return ExitCode::from(2);
    }
    files.sort();
    if files.is_empty() {
        eprintln!("no .yaml/.yml files under {}", opts.dir.display());
        return ExitCode::from(2);
    }

    let mut report = Report::default();
    for file in &files {
        let rel = file.strip_prefix(&opts.dir).unwrap_or(file);
        let topic = rel
            .parent()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| ".".into());
        let file_name = rel.to_string_lossy().replace('\\', "/");
        report.topics.entry(topic.clone()).or_default().files += 1;
        let cases = match read_cases(file) {
            Ok(cases) => cases,
            Err(e) => {
                report.unreadable.push(format!("{file_name}: {e}"));
                continue;
            }
        };
        for (case, outcome) in run_file_isolated(file, &cases, &opts) {
            report.record(&topic, &file_name, case, outcome);
        }
    }

    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
        );
    } else {
        print!("{}", report.to_text(opts.verbose));
    }
    match opts.min_pass_rate {
        Some(min) if report.pass_rate() < min => {
            eprintln!(
                "pass rate {:.1}% is under --min-pass-rate {min}%",
                report.pass_rate()
            );
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn read_cases(file: &Path) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    yaml_serde::from_str::<CaseFile>(&text)
        .map(|f| f.cases)
        .map_err(|e| e.to_string())
}

fn selected(case: &Case, file: &Path, opts: &Options) -> bool {
    opts.filter.as_ref().is_none_or(|f| {
        case.note.contains(f.as_str()) || file.to_string_lossy().contains(f.as_str())
    })
}

/// Runs a file's cases in a child process of this binary, one JSON line a
/// case: regorus can panic (and the release profile aborts on panic) or
/// overflow its stack on some cases, which must not end the run. A case
/// that ends the child is a failure, and a new child resumes after it.
fn run_file_isolated<'a>(
    file: &Path,
    cases: &'a [Case],
    opts: &Options,
) -> Vec<(&'a Case, Outcome)> {
    let mut outcomes = Vec::new();
    let mut from = 0;
    while from < cases.len() {
        let (lines, crash) = spawn_child(file, from, opts);
        for line in &lines {
            let Some(index) = line["index"].as_u64().map(|i| i as usize) else {
                continue;
            };
            if let Some(case) = cases.get(index) {
                outcomes.push((case, outcome_from_json(line)));
                from = index + 1;
            }
        }
        if let Some(why) = crash {
            // The child ended inside the first case it did not report.
            let next = (from..cases.len()).find(|&i| selected(&cases[i], file, opts));
            let Some(index) = next else { break };
            outcomes.push((
                &cases[index],
                Outcome::Fail {
                    route: Route::Query,
                    class: "the evaluation crashed (panic, abort or stack overflow)".into(),
                    detail: why,
                },
            ));
            from = index + 1;
        } else {
            break;
        }
    }
    outcomes
}

/// Runs `--child file --from n`; its JSON lines, and why it ended if it did
/// not exit cleanly.
fn spawn_child(file: &Path, from: usize, opts: &Options) -> (Vec<Json>, Option<String>) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return (vec![], Some(format!("cannot find own executable: {e}"))),
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--child")
        .arg(file)
        .arg("--from")
        .arg(from.to_string())
        .arg("--time-limit-ms")
        .arg(opts.time_limit.as_millis().to_string());
    if let Some(f) = &opts.filter {
        cmd.arg("--filter").arg(f);
    }
    if opts.rego_v0 {
        cmd.arg("--rego-v0");
    }
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) => return (vec![], Some(format!("cannot run the child: {e}"))),
    };
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .collect();
    if output.status.success() {
        (lines, None)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let err_lines: Vec<&str> = stderr.lines().collect();
        // A panic's location and message; else the end of stderr.
        let why: Vec<&str> = match err_lines.iter().position(|l| l.contains("panicked at")) {
            Some(i) => err_lines.iter().skip(i).take(2).copied().collect(),
            None => err_lines.iter().rev().take(3).rev().copied().collect(),
        };
        (lines, Some(format!("{}: {}", output.status, why.join(" "))))
    }
}

/// The child: runs the cases of `file` from index `from`, printing each
/// outcome as soon as it is known.
fn child_main(file: &Path, from: usize, opts: &Options) -> ExitCode {
    let cases = match read_cases(file) {
        Ok(cases) => cases,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    for (index, case) in cases.iter().enumerate().skip(from) {
        if !selected(case, file, opts) {
            continue;
        }
        let outcome = run_case(case, opts);
        let mut line = outcome_to_json(&outcome);
        line["index"] = json!(index);
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
    ExitCode::SUCCESS
}

fn outcome_to_json(outcome: &Outcome) -> Json {
    match outcome {
        Outcome::Pass {
            route,
            error_text_matched,
            load_error,
        } => {
            json!({"kind": "pass", "route": route.name(), "matched": error_text_matched, "load_error": load_error})
        }
        Outcome::Fail {
            route,
            class,
            detail,
        } => json!({"kind": "fail", "route": route.name(), "class": class, "detail": detail}),
        Outcome::Skip { reason } => json!({"kind": "skip", "reason": reason}),
    }
}

fn outcome_from_json(line: &Json) -> Outcome {
    let route = match line["route"].as_str() {
        Some("policy") => Route::Decision,
        _ => Route::Query,
    };
    let text = |key: &str| line[key].as_str().unwrap_or_default().to_owned();
    match line["kind"].as_str() {
        Some("pass") => Outcome::Pass {
            route,
            error_text_matched: line["matched"].as_bool(),
            load_error: line["load_error"].as_bool().unwrap_or(false),
        },
        Some("skip") => Outcome::Skip {
            reason: text("reason"),
        },
        _ => Outcome::Fail {
            route,
            class: text("class"),
            detail: text("detail"),
        },
    }
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Runs one case and judges it against its expectation.
fn run_case(case: &Case, opts: &Options) -> Outcome {
    if !case.env.is_empty() {
        let vars: Vec<&str> = case.env.keys().map(String::as_str).collect();
        return Outcome::Skip {
            reason: format!(
                "sets environment variables ({}): opa.runtime is not in Palisade's build",
                vars.join(", ")
            ),
        };
    }
    if case.want_result.is_none()
        && case.want_error.is_none()
        && case.want_error_code.is_none()
        && case.want_defined.is_none()
    {
        return Outcome::Skip {
            reason: "no expectation (want_result, want_error or want_error_code)".into(),
        };
    }
    let input = match resolve_input(case) {
        Ok(input) => input,
        Err(e) => {
            return Outcome::Fail {
                route: Route::Query,
                class: "input_term not evaluated".into(),
                detail: e,
            }
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();

    let decision = decision_of(&case.query).filter(|_| !case.modules.is_empty());
    let (route, run) =
        match decision.and_then(|(rule, var)| run_decision(case, &input, &rule, &var, now, opts)) {
            Some(run) => (Route::Decision, run),
            None => (Route::Query, run_query(case, &input, true, now, opts)),
        };
    let verdict = judge(case, &run);
    let load_error = matches!(&run, Run::Error(e) if is_load_error(e));
    let (class, detail) = match (run, verdict) {
        (Run::Refused(reason), _) => return Outcome::Skip { reason },
        (_, Ok(error_text_matched)) => {
            return Outcome::Pass {
                route,
                error_text_matched,
                load_error,
            }
        }
        (_, Err(failure)) => failure,
    };

    // Is the failure Palisade's choice rather than regorus's? OPA runs this
    // case with strict builtin errors off; Palisade never does.
    if !case.strict_error && judge(case, &run_query(case, &input, false, now, opts)).is_ok() {
        return Outcome::Fail {
            route,
            class:
                "strict builtin errors: an error where OPA's default (non-strict) mode is undefined"
                    .into(),
            detail,
        };
    }
    // Does only the decision route fail it?
    if route == Route::Decision && judge(case, &run_query(case, &input, true, now, opts)).is_ok() {
        return Outcome::Fail {
            route,
            class: format!("decision route only (Engine::eval_query passes): {class}"),
            detail,
        };
    }
    Outcome::Fail {
        route,
        class,
        detail,
    }
}

/// The input document: `input`, or `input_term` evaluated as Rego.
fn resolve_input(case: &Case) -> Result<Value, String> {
    if let Some(term) = &case.input_term {
        let mut engine = Engine::new();
        let results = engine
            .eval_query(term.clone(), false)
            .map_err(|e| e.to_string())?;
        return results
            .result
            .first()
            .and_then(|r| r.expressions.last())
            .map(|e| e.value.clone())
            .ok_or_else(|| format!("input_term `{term}` has no value"));
    }
    Ok(case
        .input
        .clone()
        .map(Value::from)
        .unwrap_or(Value::Undefined))
}

/// `data.a.b = x` or `x = data.a.b` (also `:=`): the rule path and the
/// variable, when the query asks for one rule's value.
fn decision_of(query: &str) -> Option<(String, String)> {
    let (lhs, rhs) = query
        .split_once(":=")
        .or_else(|| query.split_once('='))
        .filter(|(l, r)| !l.ends_with(['=', '!', '<', '>']) && !r.starts_with('='))?;
    let (lhs, rhs) = (lhs.trim(), rhs.trim());
    let is_var = |s: &str| {
        !matches!(s, "_" | "input" | "data")
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let is_rule = |s: &str| {
        s.strip_prefix("data.")
            .is_some_and(|rest| !rest.is_empty() && rest.split('.').all(&is_var))
    };
    if is_rule(lhs) && is_var(rhs) {
        Some((lhs.into(), rhs.into()))
    } else if is_var(lhs) && is_rule(rhs) {
        Some((rhs.into(), lhs.into()))
    } else {
        None
    }
}

fn modules_of(case: &Case) -> BTreeMap<String, String> {
    case.modules
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("test-{i}.rego"), m.clone()))
        .collect()
}

/// The case as a gate decision. `None` when Palisade cannot take the rule
/// as a decision (a package, base data, a function): the query route runs it.
fn run_decision(
    case: &Case,
    input: &Value,
    rule: &str,
    var: &str,
    now: Duration,
    opts: &Options,
) -> Option<Run> {
    let options = PolicyOptions {
        time_limit: opts.time_limit,
        rego_version: if opts.rego_v0 {
            RegoVersion::V0
        } else {
            RegoVersion::V1
        },
        ..PolicyOptions::default()
    };
    let data = case.data.clone().unwrap_or_else(|| json!({}));
    let policy = match Policy::compile_with(&modules_of(case), Some(&data), rule, options) {
        Ok(policy) => policy,
        Err(e) if e.field == "decision" => return None,
        Err(e) => {
            return Some(match refused(&e.message, case) {
                Some(Ok(reason)) => Run::Refused(reason),
                Some(Err(error)) => Run::Error(error),
                None => Run::Error(format!("load: {}: {}", e.field, e.message)),
            })
        }
    };
    Some(match policy.evaluate_at(input.clone(), now) {
        Ok(Value::Undefined) => Run::Results(vec![]),
        Ok(value) => Run::Results(vec![json!({ var: to_json(&value) })]),
        Err(e) => Run::Error(e),
    })
}

/// The case as a query, on an engine set up as `Policy::compile` sets up
/// its own.
fn run_query(case: &Case, input: &Value, strict: bool, now: Duration, opts: &Options) -> Run {
    let mut engine = Engine::new();
    // As `Policy::compile` (its MAX_LINE_CHARS).
    engine.set_policy_length_config(PolicyLengthConfig {
        max_col: NonZeroU32::new(65_536).unwrap_or(NonZeroU32::MIN),
        ..PolicyLengthConfig::default()
    });
    let clock = opa_jwt::EvalClock::default();
    clock.set(now);
    if let Err(e) = opa_jwt::register(&mut engine, &clock) {
        return Run::Error(format!("extensions: {e}"));
    }
    engine.set_rego_v0(opts.rego_v0);
    for (name, source) in modules_of(case) {
        if let Err(e) = engine.add_policy(name, source) {
            return Run::Error(format!("load: {e}"));
        }
    }
    let data = case.data.clone().unwrap_or_else(|| json!({}));
    if let Err(e) = engine.add_data(Value::from(data)) {
        return Run::Error(format!("data: {e}"));
    }
    if let Err(e) = builtins::check_all(&engine) {
        return match refused(&e.message, case) {
            Some(Ok(reason)) => Run::Refused(reason),
            Some(Err(error)) => Run::Error(error),
            None => Run::Error(format!("load: {}", e.message)),
        };
    }
    engine.set_strict_builtin_errors(strict);
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: opts.time_limit,
        check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
    });
    engine.set_input(input.clone());
    match engine.eval_query(case.query.clone(), false) {
        Ok(results) => Run::Results(
            results
                .result
                .iter()
                // OPA's result set holds the solutions: an expression that
                // is `false` (or undefined) is no solution.
                .filter(|r| {
                    r.expressions
                        .iter()
                        .all(|e| !matches!(e.value, Value::Bool(false) | Value::Undefined))
                })
                .map(|r| to_json(&r.bindings))
                .map(|b| if b.is_object() { b } else { json!({}) })
                .collect(),
        ),
        Err(e) => {
            let text = format!("{e:#}");
            // A builtin the query itself calls is checked only here.
            match refused(&text, case) {
                Some(Ok(reason)) => Run::Refused(reason),
                Some(Err(error)) => Run::Error(error),
                None => Run::Error(text),
            }
        }
    }
}

/// Palisade's own load-time refusals: a skip reason, or `Err` with the
/// error to report when the refusal is Palisade's mistake (a call to a
/// function the modules do define, e.g. only as `default f(x) := …`).
fn refused(message: &str, case: &Case) -> Option<Result<String, String>> {
    let reason = refusal(message)?;
    match missing_name(message) {
        Some(name) if defines_function(case, &name) => Some(Err(format!(
            "Palisade's load check refuses a call to `{name}`, which the modules define: {message}"
        ))),
        _ => Some(Ok(reason)),
    }
}

/// The function a missing-builtin refusal names.
fn missing_name(message: &str) -> Option<String> {
    if !message.contains("nor a builtin of this Palisade build") {
        return None;
    }
    message.split('`').nth(1).map(str::to_owned)
}

/// Whether a module has a function head for `name`: an unindented line
/// `f(…`, `default f(…` or `a["b"](…`, its head (brackets as dots) equal
/// to `name` or to a suffix of it.
fn defines_function(case: &Case, name: &str) -> bool {
    case.modules.iter().any(|m| {
        // Rule heads start a line; body lines are indented.
        m.lines().any(|line| {
            if line.starts_with(char::is_whitespace) {
                return false;
            }
            let line = line.strip_prefix("default ").unwrap_or(line);
            let Some((head, _)) = line.split_once('(') else {
                return false;
            };
            let head = head.trim().replace("[\"", ".").replace("\"]", "");
            let is_ref = !head.is_empty()
                && head
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            is_ref && (head == name || name.ends_with(&format!(".{head}")))
        })
    })
}

/// Palisade's own load-time refusals, as a skip reason.
fn refusal(message: &str) -> Option<String> {
    if message.contains("nor a builtin of this Palisade build")
        || message.contains("could not find function")
    {
        let name = message
            .split('`')
            .nth(1)
            .map(str::to_owned)
            .or_else(|| {
                message
                    .split("could not find function ")
                    .nth(1)
                    .map(|s| s.split_whitespace().next().unwrap_or(s).to_owned())
            })
            .unwrap_or_default();
        return Some(format!(
            "builtin `{name}` is not in Palisade's regorus build"
        ));
    }
    if message.contains("bounds that are not number literals")
        || message.contains("spans more than")
    {
        return Some(
            "Palisade refuses numbers.range/range_step without literal, bounded bounds".into(),
        );
    }
    if message.contains("nest deeper than") {
        return Some("Palisade refuses modules nesting `{`/`[` this deep".into());
    }
    None
}

/// `Ok(error text matched)` when `run` meets the case's expectation, else
/// `Err((class, detail))`.
#[allow(clippy::type_complexity)]
fn judge(case: &Case, run: &Run) -> Result<Option<bool>, (String, String)> {
    let wants_error = case.want_error.is_some() || case.want_error_code.is_some();
    match run {
        Run::Refused(reason) => Err(("refused".into(), reason.clone())),
        Run::Error(e) if wants_error => {
            Ok(case.want_error.as_ref().map(|w| e.contains(w.as_str())))
        }
        Run::Error(e) => Err((error_class(e), format!("error: {e}"))),
        Run::Results(got) if wants_error => Err((
            "no error where OPA errors".into(),
            format!(
                "want error {:?}{}\ngot {}",
                case.want_error.as_deref().unwrap_or(""),
                case.want_error_code
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default(),
                Json::Array(got.clone())
            ),
        )),
        Run::Results(got) => {
            if let Some(defined) = case.want_defined {
                if defined == got.is_empty() {
                    return Err((
                        "wrong result".into(),
                        format!("want defined = {defined}, got {}", Json::Array(got.clone())),
                    ));
                }
            }
            match &case.want_result {
                Some(want) if !same_results(want, got, case.sort_bindings) => Err((
                    if got.is_empty() {
                        "undefined where OPA has a result".into()
                    } else if want.is_empty() {
                        "a result where OPA is undefined".into()
                    } else {
                        "wrong result".into()
                    },
                    format!(
                        "want {}\ngot  {}",
                        Json::Array(want.clone()),
                        Json::Array(got.clone())
                    ),
                )),
                _ => Ok(None),
            }
        }
    }
}

/// Whether an error came before evaluation: a module or query that does
/// not parse or compile (regorus's messages; Palisade's `load:` prefix).
fn is_load_error(message: &str) -> bool {
    message.starts_with("load:")
        || [
            "is unsafe",
            "unexpected keyword",
            "invalid character",
            "expecting ",
            "undefined rule",
        ]
        .iter()
        .any(|m| message.contains(m))
}

/// A short class for an unexpected error: regorus's message without the
/// source excerpt and positions.
fn error_class(message: &str) -> String {
    if message.starts_with("Palisade's load check refuses") {
        return "Palisade's load check refuses a call to a function the modules define".into();
    }
    // regorus's own line is the last `error: …` (after the source excerpt),
    // or `test-0.rego:4:9: error: …`; else the first line.
    let line = message
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .or_else(|| {
            message
                .lines()
                .find_map(|l| l.split_once(": error: ").map(|(_, rest)| rest))
        })
        .unwrap_or_else(|| message.lines().next().unwrap_or(message));
    let text = line.trim();
    let mut class: String = text.chars().take(90).collect();
    if text.chars().count() > 90 {
        class.push('…');
    }
    format!("unexpected error: {class}")
}

/// regorus's value as OPA's JSON: sets as arrays, non-string keys as text.
fn to_json(value: &Value) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// OPA compares result sets as sets of binding objects; `sort_bindings`
/// sorts each array binding first.
fn same_results(want: &[Json], got: &[Json], sort_bindings: bool) -> bool {
    let canon_set = |rows: &[Json]| {
        let mut rows: Vec<String> = rows
            .iter()
            .map(|row| {
                let row = match (sort_bindings, row) {
                    (true, Json::Object(map)) => {
                        Json::Object(map.iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
                    }
                    _ => row.clone(),
                };
                canon(&row)
            })
            .collect();
        rows.sort();
        rows.dedup();
        rows
    };
    canon_set(want) == canon_set(got)
}

fn sorted(value: &Json) -> Json {
    match value {
        Json::Array(items) => {
            let mut items = items.clone();
            items.sort_by_cached_key(canon);
            Json::Array(items)
        }
        other => other.clone(),
    }
}

/// A canonical text for comparing values: keys sorted, numbers by value
/// (`1`, `1.0` and `1e0` are one number to OPA).
fn canon(value: &Json) -> String {
    let mut out = String::new();
    write_canon(value, &mut out);
    out
}

fn write_canon(value: &Json, out: &mut String) {
    match value {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() < 1e18 {
                    let _ = write!(out, "{f:.0}");
                } else {
                    let _ = write!(out, "{f:e}");
                }
            }
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canon(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String(key.clone()).to_string());
                out.push(':');
                write_canon(&map[key], out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[derive(Default)]
struct TopicStats {
    files: usize,
    cases: usize,
    pass: usize,
    fail: usize,
    skip: usize,
}

struct Failure {
    topic: String,
    file: String,
    note: String,
    route: Route,
    class: String,
    detail: String,
}

#[derive(Default)]
struct Report {
    topics: BTreeMap<String, TopicStats>,
    failures: Vec<Failure>,
    /// Skip reason → notes.
    skips: BTreeMap<String, Vec<String>>,
    unreadable: Vec<String>,
    /// Passes by route.
    routes: BTreeMap<&'static str, usize>,
    /// Of the passing cases that want an error text: how many matched it.
    error_texts: (usize, usize),
    /// Passing cases that want an error and got one before evaluation.
    passes_on_load_error: Vec<String>,
}

impl Report {
    fn record(&mut self, topic: &str, file: &str, case: &Case, outcome: Outcome) {
        let stats = self.topics.entry(topic.to_owned()).or_default();
        stats.cases += 1;
        match outcome {
            Outcome::Pass {
                route,
                error_text_matched,
                load_error,
            } => {
                stats.pass += 1;
                *self.routes.entry(route.name()).or_default() += 1;
                if load_error {
                    self.passes_on_load_error.push(case.note.clone());
                }
                if let Some(matched) = error_text_matched {
                    self.error_texts.1 += 1;
                    if matched {
                        self.error_texts.0 += 1;
                    }
                }
            }
            Outcome::Fail {
                route,
                class,
                detail,
            } => {
                stats.fail += 1;
                self.failures.push(Failure {
                    topic: topic.to_owned(),
                    file: file.to_owned(),
                    note: case.note.clone(),
                    route,
                    class,
                    detail,
                });
            }
            Outcome::Skip { reason } => {
                stats.skip += 1;
                self.skips
                    .entry(reason)
                    .or_default()
                    .push(case.note.clone());
            }
        }
    }

    fn totals(&self) -> TopicStats {
        let mut t = TopicStats::default();
        for s in self.topics.values() {
            t.files += s.files;
            t.cases += s.cases;
            t.pass += s.pass;
            t.fail += s.fail;
            t.skip += s.skip;
        }
        t
    }

    /// Passes over the cases run (passes and failures), in percent.
    fn pass_rate(&self) -> f64 {
        let t = self.totals();
        percent(t.pass, t.pass + t.fail)
    }

    fn classes(&self) -> Vec<(String, Vec<&Failure>)> {
        let mut by_class: BTreeMap<&str, Vec<&Failure>> = BTreeMap::new();
        for f in &self.failures {
            by_class.entry(&f.class).or_default().push(f);
        }
        let mut classes: Vec<(String, Vec<&Failure>)> = by_class
            .into_iter()
            .map(|(c, fs)| (c.to_owned(), fs))
            .collect();
        classes.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        classes
    }

    fn to_text(&self, verbose: bool) -> String {
        let mut out = String::new();
        let t = self.totals();
        let _ = writeln!(
            out,
            "{:<32} {:>5} {:>6} {:>5} {:>5} {:>5} {:>7}",
            "TOPIC", "FILES", "CASES", "PASS", "FAIL", "SKIP", "PASS%"
        );
        for (topic, s) in &self.topics {
            let _ = writeln!(
                out,
                "{:<32} {:>5} {:>6} {:>5} {:>5} {:>5} {:>7}",
                topic,
                s.files,
                s.cases,
                s.pass,
                s.fail,
                s.skip,
                rate_text(s.pass, s.pass + s.fail)
            );
        }
        let _ = writeln!(
            out,
            "{:<32} {:>5} {:>6} {:>5} {:>5} {:>5} {:>7}",
            "TOTAL",
            t.files,
            t.cases,
            t.pass,
            t.fail,
            t.skip,
            rate_text(t.pass, t.pass + t.fail)
        );
        let by_design: usize = self
            .failures
            .iter()
            .filter(|f| f.class.starts_with("strict builtin errors"))
            .count();
        let _ = writeln!(
            out,
            "\npass rate: {:.1}% of the {} cases run ({} passed, {} failed; {} skipped, not counted)",
            self.pass_rate(),
            t.pass + t.fail,
            t.pass,
            t.fail,
            t.skip
        );
        let _ = writeln!(
            out,
            "without the {by_design} failures that are Palisade's strict builtin errors: {:.1}%",
            percent(t.pass, t.pass + t.fail - by_design)
        );
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|(r, n)| format!("{n} via {r}"))
            .collect();
        let _ = writeln!(out, "passes: {}", routes.join(", "));
        let _ = writeln!(
            out,
            "error cases passed whose OPA error text regorus's message contains: {} of {}",
            self.error_texts.0, self.error_texts.1
        );
        let _ = writeln!(
            out,
            "error cases passed on a parse/compile error, so possibly for another reason than OPA's: {}",
            self.passes_on_load_error.len()
        );

        let _ = writeln!(out, "\nFAILURE CLASSES");
        for (class, fs) in self.classes() {
            let _ = writeln!(out, "{:>5}  {class}", fs.len());
        }
        let _ = writeln!(out, "\nSKIP REASONS");
        let mut skips: Vec<_> = self.skips.iter().collect();
        skips.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        for (reason, notes) in skips {
            let _ = writeln!(out, "{:>5}  {reason}", notes.len());
        }
        let _ = writeln!(out, "\nFAILING CASES");
        for f in &self.failures {
            let _ = writeln!(
                out,
                "  {} [{}] ({}, {}) {}",
                f.note,
                f.file,
                f.route.name(),
                f.topic,
                f.class
            );
            if verbose {
                for line in f.detail.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
        if !self.unreadable.is_empty() {
            let _ = writeln!(out, "\nUNREADABLE FILES");
            for u in &self.unreadable {
                let _ = writeln!(out, "  {u}");
            }
        }
        out
    }

    fn to_json(&self) -> Json {
        let t = self.totals();
        let topics: serde_json::Map<String, Json> = self
            .topics
            .iter()
            .map(|(name, s)| {
                (
                    name.clone(),
                    json!({"files": s.files, "cases": s.cases, "pass": s.pass, "fail": s.fail, "skip": s.skip}),
                )
            })
            .collect();
        json!({
            "files": t.files,
            "cases": t.cases,
            "pass": t.pass,
            "fail": t.fail,
            "skip": t.skip,
            "pass_rate_percent": self.pass_rate(),
            "passes_by_route": self.routes,
            "error_texts_matched": {"matched": self.error_texts.0, "of": self.error_texts.1},
            "passes_on_load_error": self.passes_on_load_error,
            "topics": topics,
            "failure_classes": self.classes().iter().map(|(c, fs)| json!({"class": c, "count": fs.len(), "notes": fs.iter().map(|f| f.note.clone()).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "skips": self.skips,
            "failures": self.failures.iter().map(|f| json!({"topic": f.topic, "file": f.file, "note": f.note, "route": f.route.name(), "class": f.class, "detail": f.detail})).collect::<Vec<_>>(),
            "unreadable": self.unreadable,
        })
    }
}

fn percent(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 * 100.0 / of as f64
    }
}

fn rate_text(n: usize, of: usize) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.1}", percent(n, of))
    }
}
