//! Same policy, same input, same decision as OPA: every policy of
//! `tests/differential/policies/` is evaluated on seeded random requests
//! by Palisade's decision core and by real OPA 1.x (embedded through the
//! PyPI package `opa-golib-python-bindings`, `tests/differential/opa_oracle.py`).
//!
//! Answers are compared as values (numbers by value: OPA's `1.0` is `1`),
//! undefined against undefined, and an error against an error. Any
//! difference fails the test, printing the policy, the input and both
//! answers. `tests/differential/DEVIATIONS.md` records each deviation
//! found so far and its fix.
//!
//! A second test sends a sample of the same requests, with their claims in
//! real signed tokens, through the built `.wasm` in the harness (the filter
//! Envoy loads) and checks that it lets through exactly the requests OPA
//! allows.
//!
//! ```text
//! cargo test -p palisade-tests --test differential_opa            # CI: fixed seed
//! PALISADE_DIFF_SEED=7 PALISADE_DIFF_INPUTS=500 \
//!   cargo test -p palisade-tests --test differential_opa -- --nocapture  # a longer run
//! ```

use palisade_core::policy::{Policy, PolicyOptions};
use palisade_harness::host::{
    FakeClock, FilterModule, HttpRequest, SharedSpace, UpstreamResponse, Vm,
};
use palisade_harness::tokens;
use palisade_tests::{demo_config, keys, repo, wasm_path};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// The seed CI runs with.
const SEED: u64 = 0x5eed_0009;
/// Inputs per policy in CI.
const INPUTS: usize = 60;
const NOW: Duration = Duration::from_secs(1_700_000_000);

/// splitmix64: a small, fixed PRNG, so a seed names the same inputs on
/// every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One request in the shape the corpus is written against (see
/// `tests/differential/policies/README.md`).
fn input(rng: &mut Rng) -> Value {
    let method = rng.pick(&["GET", "POST", "PUT", "DELETE", "PATCH"]);
    let path = *rng.pick(&[
        "/api/v1/customers",
        "/api/v1/customers/42",
        "/api/v1/customers/7/orders",
        "/api/v1/orders?limit=500",
        "/admin/users",
        "/health",
        "/api/v2/exports/customers.csv",
        "/api/v1/customers/%2e%2e/admin",
        "/Ünïcode/päth",
    ]);
    let (bare, query) = match path.split_once('?') {
        Some((bare, _)) => (bare, json!({"limit": ["500"]})),
        None => (path, json!({})),
    };
    let parsed_path: Vec<&str> = bare.trim_start_matches('/').split('/').collect();
    let mut headers = serde_json::Map::new();
    headers.insert("x-request-id".into(), json!(format!("{:016x}", rng.next())));
    let optional = |rng: &mut Rng, choices: &[&str]| -> Option<String> {
        rng.chance(75).then(|| (*rng.pick(choices)).to_owned())
    };
    for (name, choices) in [
        ("x-tenant", &["acme", "globex", "ACME", ""][..]),
        ("user-agent", &["curl/8.5", "Mozilla/5.0"][..]),
        (
            "x-forwarded-for",
            &["10.0.0.7", "192.168.1.20, 10.0.0.1", "2001:db8::1"][..],
        ),
    ] {
        if let Some(v) = optional(rng, choices) {
            headers.insert(name.into(), json!(v));
        }
    }
    let mut doc = json!({
        "attributes": {"request": {"http": {"method": method, "path": path, "headers": headers}}},
        "parsed_path": parsed_path,
        "parsed_query": query,
        "time": {"now_ns": 1_700_000_000_000_000_000u64},
    });
    if rng.chance(85) {
        doc["token"] = json!({"payload": payload(rng)});
    }
    doc
}

fn payload(rng: &mut Rng) -> Value {
    let mut p = serde_json::Map::new();
    p.insert(
        "sub".into(),
        json!(rng.pick(&["alice", "bob", "carol", "svc-export", "", "ÄRGER"])),
    );
    let all_roles = ["admin", "customer", "support", "auditor", "export", "Admin"];
    let roles: Vec<&str> = (0..rng.below(4)).map(|_| *rng.pick(&all_roles)).collect();
    p.insert("roles".into(), json!(roles));
    let scopes = [
        "read:customers",
        "write:customers",
        "read:orders",
        "export:customers",
    ];
    let scope: Vec<&str> = scopes.iter().copied().filter(|_| rng.chance(50)).collect();
    p.insert("scope".into(), json!(scope.join(" ")));
    if rng.chance(80) {
        p.insert("tenant".into(), json!(rng.pick(&["acme", "globex"])));
    }
    let levels = [
        json!(0),
        json!(1),
        json!(2),
        json!(2.0),
        json!(2.5),
        json!(-1),
        json!(9_007_199_254_740_993u64),
        json!(0.1),
        json!(1e3),
        json!("3"),
    ];
    if rng.chance(85) {
        p.insert("level".into(), rng.pick(&levels).clone());
    }
    let groups = ["eng", "ops", "sales", "eng/platform"];
    let chosen: Vec<&str> = (0..rng.below(4)).map(|_| *rng.pick(&groups)).collect();
    p.insert("groups".into(), json!(chosen));
    if rng.chance(70) {
        p.insert("mfa".into(), json!(rng.chance(50)));
    }
    if rng.chance(80) {
        p.insert(
            "email".into(),
            json!(rng.pick(&["alice@example.com", "BOB@Example.COM", "carol@evil.com"])),
        );
    }
    p.insert(
        "exp".into(),
        json!(1_700_000_000 + rng.below(7200) as i64 - 3600),
    );
    Value::Object(p)
}

/// The answer of one engine for one input, comparable across engines.
#[derive(Debug, Clone)]
enum Answer {
    Value(Value),
    Undefined,
    Error(String),
}

impl Answer {
    fn agrees(&self, other: &Answer) -> bool {
        match (self, other) {
            (Answer::Value(a), Answer::Value(b)) => same_value(a, b),
            (Answer::Undefined, Answer::Undefined) | (Answer::Error(_), Answer::Error(_)) => true,
            _ => false,
        }
    }
    fn show(&self) -> String {
        match self {
            Answer::Value(v) => v.to_string(),
            Answer::Undefined => "undefined".into(),
            Answer::Error(e) => format!("error: {e}"),
        }
    }
}

/// JSON equality with numbers compared by value (`1.0 == 1`).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

struct Oracle {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Oracle {
    fn start() -> Oracle {
        let python = std::env::var("PALISADE_PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = Command::new(&python)
            .args(["-c", "import opa_bindings"])
            .status();
        assert!(
            probe.is_ok_and(|s| s.success()),
            "{python} cannot import opa_bindings; install it with scripts/setup.sh (PyPI opa-golib-python-bindings)"
        );
        let mut child = Command::new(&python)
            .arg(repo().join("tests/differential/opa_oracle.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Oracle {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(
        &mut self,
        module: (&str, &str),
        data: &Value,
        query: &str,
        inputs: &[Value],
    ) -> Vec<Answer> {
        self.ask_modules(&[module], data, query, inputs)
    }

    fn ask_modules(
        &mut self,
        modules: &[(&str, &str)],
        data: &Value,
        query: &str,
        inputs: &[Value],
    ) -> Vec<Answer> {
        let modules: serde_json::Map<String, Value> = modules
            .iter()
            .map(|(name, source)| ((*name).to_owned(), json!(source)))
            .collect();
        let request = json!({
            "modules": modules,
            "data": data,
            "query": query,
            "inputs": inputs,
        });
        writeln!(self.stdin, "{request}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let reply: Value = serde_json::from_str(&line).unwrap();
        if let Some(e) = reply.get("load_error") {
            panic!(
                "OPA does not load {:?}: {e}",
                request["modules"]
                    .as_object()
                    .map(|m| m.keys().collect::<Vec<_>>())
            );
        }
        reply["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                if let Some(v) = r.get("value") {
                    Answer::Value(v.clone())
                } else if r.get("undefined").is_some() {
                    Answer::Undefined
                } else {
                    Answer::Error(r["error"].as_str().unwrap_or_default().to_owned())
                }
            })
            .collect()
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn palisade(policy: &Policy, input: &Value) -> Answer {
    match policy.evaluate_at(regorus::Value::from(input.clone()), NOW) {
        Ok(regorus::Value::Undefined) => Answer::Undefined,
        Ok(v) => Answer::Value(serde_json::from_str(&v.to_json_str().unwrap()).unwrap()),
        Err(e) => Answer::Error(e),
    }
}

/// The corpus: its `data.json`, and its policy files in name order.
fn corpus() -> (Value, Vec<PathBuf>) {
    let dir = repo().join("tests/differential/policies");
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("data.json")).unwrap()).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rego"))
        .collect();
    files.sort();
    (data, files)
}

/// `package diff.rbac` → `diff.rbac`.
fn package(source: &str) -> String {
    source
        .lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .expect("a package line")
        .trim()
        .to_owned()
}

#[test]
fn palisade_decides_as_opa_on_the_corpus() {
    let seed = std::env::var("PALISADE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let per_policy = std::env::var("PALISADE_DIFF_INPUTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(INPUTS);
    let (data, files) = corpus();
    assert!(files.len() >= 8, "the corpus has {} policies", files.len());

    let mut oracle = Oracle::start();
    let mut rng = Rng(seed);
    let (mut decisions, mut agreed) = (0usize, 0usize);
    // file → (decisions, agreeing, the differences shown)
    let mut per_file: BTreeMap<String, (usize, usize, Vec<String>)> = BTreeMap::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(file).unwrap();
        let query = format!("{}.decision", package(&source));
        let modules = BTreeMap::from([(name.clone(), source.clone())]);
        // Semantics, not speed: a generous time limit, so that a loaded CI
        // machine cannot turn a slow answer into a difference.
        let options = PolicyOptions {
            time_limit: Duration::from_secs(5),
            ..PolicyOptions::default()
        };
        let policy = Policy::compile_with(&modules, Some(&data), &format!("data.{query}"), options)
            .unwrap_or_else(|e| {
                panic!("Palisade does not load {name}: {}: {}", e.field, e.message)
            });
        let inputs: Vec<Value> = (0..per_policy).map(|_| input(&mut rng)).collect();
        let theirs = oracle.ask((&name, &source), &data, &query, &inputs);
        let entry = per_file.entry(name.clone()).or_default();
        for (input, opa) in inputs.iter().zip(theirs) {
            let ours = palisade(&policy, input);
            decisions += 1;
            entry.0 += 1;
            if ours.agrees(&opa) {
                agreed += 1;
                entry.1 += 1;
            } else {
                entry.2.push(format!(
                    "  input:    {input}\n  OPA:      {}\n  Palisade: {}",
                    opa.show(),
                    ours.show()
                ));
            }
        }
    }
    println!(
        "differential (seed {seed:#x}): {agreed} of {decisions} decisions agree ({:.1}%) over {} policies",
        100.0 * agreed as f64 / decisions.max(1) as f64,
        files.len()
    );
    let mut differences = Vec::new();
    for (file, (n, ok, shown)) in &per_file {
        println!("  {file}: {ok}/{n}");
        differences.extend(shown.iter().map(|s| format!("  {file}\n{s}")));
    }
    assert!(
        differences.is_empty(),
        "{} decision(s) differ from OPA:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// The corpus policy `source` as the filter's gate: allowed when its
/// `decision.allow` is `true`, for OPA and the filter alike.
fn gate_module(source: &str) -> String {
    format!(
        "package palisade_diff\n\ndefault allow := false\n\nallow if data.{}.decision.allow == true\n",
        package(source)
    )
}

/// The filter's view of a generated request: the token's claims are real
/// signed claims (valid for the test issuer at `NOW`), so the filter
/// verifies it and hands the payload to the policy.
fn as_request(doc: &Value) -> Option<(HttpRequest, Value)> {
    let payload = doc.get("token")?.get("payload")?;
    let mut extra = payload.clone();
    extra.as_object_mut()?.remove("exp");
    let claims = tokens::claims(NOW.as_secs(), &extra);
    let token = tokens::key(&keys(), "rs256").ok()?.mint(&claims).ok()?;
    let http = &doc["attributes"]["request"]["http"];
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = http["headers"]
        .as_object()?
        .iter()
        .map(|(k, v)| {
            (
                k.as_bytes().to_vec(),
                v.as_str().unwrap_or_default().as_bytes().to_vec(),
            )
        })
        .collect();
    headers.push((
        b"authorization".to_vec(),
        format!("Bearer {token}").into_bytes(),
    ));
    let request = HttpRequest {
        method: http["method"].as_str()?.to_owned(),
        path: http["path"].as_str()?.to_owned(),
        authority: "customers.internal".into(),
        scheme: "http".into(),
        headers,
        peer: "10.0.0.9:4000".into(),
        ..HttpRequest::default()
    };
    // What OPA sees: the same request with the verified claims.
    let mut opa_input = doc.clone();
    opa_input["token"] = json!({"payload": claims});
    opa_input["attributes"]["request"]["http"]["headers"]["authorization"] =
        json!(format!("Bearer {token}"));
    Some((request, opa_input))
}

#[test]
fn the_wasm_filter_lets_through_exactly_what_opa_allows() {
    let module = FilterModule::load(&wasm_path()).unwrap();
    let (data, files) = corpus();
    let provider = demo_config()["providers"][0].clone();
    let mut oracle = Oracle::start();
    // Its own seed: a sample of requests like the main test's.
    let mut rng = Rng(SEED ^ 0x0a5d);
    let (mut sent, mut allowed, mut differ) = (0usize, 0usize, Vec::new());
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(file).unwrap();
        let gate = gate_module(&source);
        let config = json!({
            "mode": "enforce",
            "providers": [provider],
            "policy": {
                "modules": {name.clone(): source, "palisade_diff.rego": gate},
                "data": data,
                "decision": "data.palisade_diff.allow",
                // The most the config allows: a loaded machine must not turn
                // a slow answer into a denial.
                "max_eval_ms": 1000,
            },
        });
        let mut vm = Vm::start(
            &module,
            config.to_string().as_bytes(),
            FakeClock::at(NOW),
            SharedSpace::new(),
        )
        .unwrap_or_else(|e| panic!("the filter rejects the config for {name}: {e:?}"));
        let sample: Vec<(HttpRequest, Value)> = std::iter::repeat_with(|| input(&mut rng))
            .filter_map(|doc| as_request(&doc))
            .take(8)
            .collect();
        let inputs: Vec<Value> = sample.iter().map(|(_, i)| i.clone()).collect();
        let modules = [
            (name.as_str(), source.as_str()),
            ("palisade_diff.rego", gate.as_str()),
        ];
        let theirs = oracle.ask_modules(&modules, &data, "palisade_diff.allow", &inputs);
        for ((request, opa_input), opa) in sample.iter().zip(theirs) {
            let mut reached = false;
            let exchange = vm.handle(request, &mut |_| {
                reached = true;
                UpstreamResponse::default()
            });
            // The gate refuses a `.`/`..` segment, encoded or not, before
            // any policy runs (stricter than OPA-Envoy on purpose): not a
            // policy decision to compare.
            if request.path.to_ascii_lowercase().contains("%2e") {
                assert_eq!(exchange.status, 400, "{name}: {}", request.path);
                assert!(!reached);
                continue;
            }
            let opa_allows = matches!(opa, Answer::Value(Value::Bool(true)));
            sent += 1;
            allowed += usize::from(opa_allows);
            if reached != opa_allows {
                differ.push(format!(
                    "  {name}\n  input:  {opa_input}\n  OPA:    {}\n  filter: status {} (upstream reached: {reached})\n  logs:   {:?}",
                    opa.show(),
                    exchange.status,
                    exchange.logs
                ));
            }
        }
    }
    println!(
        "wasm sample: {sent} requests, OPA allows {allowed}, {} differ",
        differ.len()
    );
    assert!(
        allowed > 0 && allowed < sent,
        "the sample must hit both branches"
    );
    assert!(
        differ.is_empty(),
        "the .wasm decides differently from OPA:\n{}",
        differ.join("\n")
    );
}
