//! Compiling Rego once per configuration and evaluating it per request.
//!
//! Two evaluators (`policy.engine`). The default is regorus's tree-walking
//! interpreter. `vm` compiles the policy once more, into bytecode for
//! regorus's register VM (RVM), and reuses one machine per Wasm VM: on the
//! reference policy that is about eight times faster (`cargo bench -p
//! palisade-core --bench decision -- policy_evaluate`). The RVM decides
//! some Rego differently ([`KNOWN_RVM_DIVERGENCES`], each one allowing
//! where the interpreter does not), so it is for policies checked to avoid
//! those constructs. The reference policy is: the golden cases and the
//! `policy_input` fuzz target compare the two engines on it.
//!
//! `regorus` reports a call to a builtin it was built without only when the
//! call is evaluated, which in a gate means a request-time `policy_error`
//! for a subset of requests. [`builtins::check_calls`] walks the compiled
//! modules at load time instead, so such a policy never loads.

pub mod ast;
pub mod builtins;
pub mod opa_jwt;
pub mod remote_bundle;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::{Program, RegoVM};
use regorus::utils::limits::{set_fallback_execution_timer_config, ExecutionTimerConfig};
use regorus::{CompiledPolicy, Engine, PolicyLengthConfig, Value};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Which regorus evaluator runs the policy (`policy.engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// The tree-walking interpreter: the default, because the RVM decides
    /// some policies differently (see [`KNOWN_RVM_DIVERGENCES`]).
    #[default]
    Interpreter,
    /// The RVM, for a policy checked to be free of the known divergences;
    /// a policy it cannot compile fails the load.
    Vm,
}

/// Rego the RVM of regorus 0.14.1 (patched) evaluates differently from its
/// interpreter: each allows where the interpreter errors or leaves the
/// rule undefined. A policy run with `engine: vm` must not rely on them;
/// `tests.rs` checks that each still differs, so an upgrade that fixes
/// one shows here.
pub const KNOWN_RVM_DIVERGENCES: [&str; 5] = [
    "a complete rule whose body yields different values in one loop (`role := r if some r in input.roles`): the RVM keeps the last, the interpreter errors",
    "an object comprehension that yields one key twice with different values: the RVM keeps the last, the interpreter errors",
    "an array comprehension whose term is undefined for some element (`[u.name | some u in input.users]`): the RVM keeps the undefined element, the interpreter skips it",
    "a comprehension without a loop of its own inside a `some … in` loop (`bad := [1 | r.blocked]`): a failed condition in it fails the outer iteration on the RVM",
    "a rule with several definitions of the same constant value: the RVM stops at the first that succeeds (as OPA does), the interpreter evaluates all and errors if one errors",
];

impl EngineChoice {
    /// Parses the config value (`interpreter`, `vm`).
    pub fn parse(name: &str) -> Option<EngineChoice> {
        match name {
            "vm" => Some(EngineChoice::Vm),
            "interpreter" => Some(EngineChoice::Interpreter),
            _ => None,
        }
    }
}

/// The Rego syntax a module is parsed as: OPA 1.0's (`v1`, the default)
/// or the pre-1.0 syntax OPA still reads with `--v0-compatible` (`v0`:
/// `allow { ... }`, `default allow = false`, future keywords by import).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegoVersion {
    V0,
    #[default]
    V1,
}

impl RegoVersion {
    /// Parses the config value (`v0`, `v1`).
    pub fn parse(name: &str) -> Option<RegoVersion> {
        match name {
            "v0" => Some(RegoVersion::V0),
            "v1" => Some(RegoVersion::V1),
            _ => None,
        }
    }
}

/// How a policy is compiled and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOptions {
    /// How long one evaluation may run before it is stopped (and denies).
    pub time_limit: Duration,
    pub engine: EngineChoice,
    /// The syntax of every module not named in `module_versions`.
    pub rego_version: RegoVersion,
    /// Per-module syntax, by module name.
    pub module_versions: BTreeMap<String, RegoVersion>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            time_limit: DEFAULT_TIME_LIMIT,
            engine: EngineChoice::Interpreter,
            rego_version: RegoVersion::V1,
            module_versions: BTreeMap::new(),
        }
    }
}

/// What evaluates a loaded policy, for the load log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineInUse {
    Vm,
    Interpreter,
}

impl EngineInUse {
    /// For the load log.
    pub fn describe(&self) -> &'static str {
        match self {
            EngineInUse::Vm => "regorus RVM",
            EngineInUse::Interpreter => "regorus interpreter",
        }
    }
}

/// A compiled policy with the decision it answers.
#[derive(Debug)]
pub struct Policy {
    compiled: CompiledPolicy,
    /// The RVM program and its machine, when the RVM evaluates this policy.
    vm: Option<VmProgram>,
    /// The time `time.now_ns` and `io.jwt.decode_verify` read.
    clock: opa_jwt::EvalClock,
    /// The rule path queried, e.g. `data.envoy.authz.allow`.
    pub decision: String,
    /// SHA-256 over the modules and data, hex: identifies what decided.
    pub revision: String,
    /// How long one evaluation may run before it is stopped (and denies).
    pub time_limit: Duration,
}

/// The policy as RVM bytecode, with one machine reused by every
/// evaluation on this Wasm VM (a machine resets its state per execution;
/// making one costs about half an evaluation).
#[derive(Debug)]
struct VmProgram {
    program: Arc<Program>,
    data: Value,
    machine: RefCell<RegoVM>,
}

/// The RVM's own instruction cap (25,000 by default) would deny a long but
/// sound policy that the interpreter evaluates: the time limit bounds
/// evaluations instead, as it does on the interpreter.
const VM_MAX_INSTRUCTIONS: usize = usize::MAX;

impl VmProgram {
    fn compile(compiled: &CompiledPolicy, decision: &str, data: Value) -> Result<Self, String> {
        let program =
            Compiler::compile_from_policy(compiled, &[decision]).map_err(|e| e.to_string())?;
        let machine = VmProgram::machine(compiled, &program, &data)?;
        Ok(VmProgram {
            program,
            data,
            machine: RefCell::new(machine),
        })
    }

    fn machine(
        compiled: &CompiledPolicy,
        program: &Arc<Program>,
        data: &Value,
    ) -> Result<RegoVM, String> {
        let mut machine = RegoVM::new_with_policy(compiled.clone());
        machine.load_program(program.clone());
        machine.set_max_instructions(VM_MAX_INSTRUCTIONS);
        // A failing builtin is an error that denies, as on regorus's
        // interpreter, not an undefined value a `not` could turn into an
        // allow. (Strict mode also refuses `<` between values of different
        // types, which the interpreter orders: that too denies, loudly.)
        machine.set_strict_builtin_errors(true);
        machine.set_data(data.clone()).map_err(|e| e.to_string())?;
        Ok(machine)
    }

    fn evaluate(
        &self,
        compiled: &CompiledPolicy,
        input: Value,
        limit: Duration,
    ) -> Result<Value, String> {
        let run = |machine: &mut RegoVM| {
            machine.set_execution_timer_config(Some(ExecutionTimerConfig {
                limit,
                check_interval: CHECK_INTERVAL,
            }));
            machine.set_input(input);
            let result = machine.execute().map_err(|e| vm_error_text(&e.to_string()));
            // The input document is released; values computed from it stay
            // in the machine's caches until the next evaluation resets them.
            machine.set_input(Value::Null);
            result
        };
        match self.machine.try_borrow_mut() {
            Ok(mut machine) => run(&mut machine),
            // Only a re-entrant call finds it busy; it gets its own machine.
            Err(_) => run(&mut VmProgram::machine(
                compiled,
                &self.program,
                &self.data,
            )?),
        }
    }
}

/// Default bound on one evaluation: a policy takes tens of microseconds; a
/// runaway one is stopped well before it starves the worker.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(50);

/// The bound on the load-time smoke evaluation (or the policy's own, if larger).
const LOAD_TIME_LIMIT: Duration = Duration::from_secs(1);

/// Evaluation steps between clock reads (regorus's cooperative timer).
const CHECK_INTERVAL: NonZeroU32 = match NonZeroU32::new(64) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// A compile failure, with the config field it concerns (under `policy.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

fn perr(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        message: message.into(),
    }
}

impl Policy {
    /// Parses `modules` (file name → Rego v1 source), loads `data`, and compiles
    /// the entry point `decision`.
    pub fn compile(
        modules: &BTreeMap<String, String>,
        data: Option<&serde_json::Value>,
        decision: &str,
    ) -> Result<Policy, PolicyError> {
        Policy::compile_with(modules, data, decision, PolicyOptions::default())
    }

    /// As [`Policy::compile`], with `options`.
    pub fn compile_with(
        modules: &BTreeMap<String, String>,
        data: Option<&serde_json::Value>,
        decision: &str,
        options: PolicyOptions,
    ) -> Result<Policy, PolicyError> {
        let time_limit = options.time_limit;
        if modules.is_empty() {
            return Err(perr("modules", "at least one Rego module is required"));
        }
        if !decision.starts_with("data.") {
            return Err(perr(
                "decision",
                format!("`{decision}` must be a rule path starting with `data.`"),
            ));
        }
        for (name, source) in modules {
            match too_complex(source) {
                Some((line, Complexity::Nesting)) => {
                    return Err(perr(
                        format!("modules[{name:?}]"),
                        format!("line {line}: `{{` and `[` nest deeper than {MAX_NESTING}; such a module is refused (the Rego parser's time doubles with each level)"),
                    ));
                }
                Some((line, Complexity::Chain)) => {
                    return Err(perr(
                        format!("modules[{name:?}]"),
                        format!("line {line}: an expression chains more than {MAX_CHAIN} operators (`.`, `[`, `-`, `+`, ...); such a module is refused (the Rego parser and compiler recurse once per operator, and would overflow the stack)"),
                    ));
                }
                None => {}
            }
        }
        let mut engine = Engine::new();
        engine.set_policy_length_config(PolicyLengthConfig {
            max_col: MAX_LINE_CHARS,
            ..PolicyLengthConfig::default()
        });
        let clock = opa_jwt::EvalClock::default();
        opa_jwt::register(&mut engine, &clock).map_err(|e| perr("modules", e))?;
        for (name, source) in modules {
            let version = options
                .module_versions
                .get(name)
                .copied()
                .unwrap_or(options.rego_version);
            engine.set_rego_v0(version == RegoVersion::V0);
            engine
                .add_policy(name.clone(), source.clone())
                .map_err(|e| perr(format!("modules[{name:?}]"), e.to_string()))?;
        }
        let data_value = match data {
            Some(data) if !data.is_object() => {
                return Err(perr("data", "must be a JSON object"));
            }
            Some(data) => Value::from(data.clone()),
            None => Value::new_object(),
        };
        engine
            .add_data(data_value.clone())
            .map_err(|e| perr("data", e.to_string()))?;
        builtins::check_all(&engine)
            .map_err(|e| perr(format!("modules[{:?}]", e.module), e.message))?;
        if options.engine == EngineChoice::Vm {
            // The RVM runs regorus's own builtins only, not extensions.
            if let Some(call) = builtins::first_call_to(&engine, &opa_jwt::NAMES)
                .map_err(|e| perr("modules", e.message))?
            {
                return Err(perr(
                    "engine",
                    format!(
                        "`vm` cannot run {} in module {:?}: Palisade's `io.jwt.*` and `time.now_ns` run on the interpreter only; use `interpreter`",
                        call.message, call.module
                    ),
                ));
            }
        }
        let compiled = engine
            .compile_with_entrypoint(&decision.into())
            .map_err(|e| {
                perr(
                    "decision",
                    format!("`{decision}` cannot be compiled as the entry point: {e}"),
                )
            })?;
        let vm = match options.engine {
            EngineChoice::Interpreter => None,
            // Multi-line compiler messages are joined into one log line by
            // the glue, as every load error is.
            EngineChoice::Vm => Some(
                VmProgram::compile(&compiled, decision, data_value).map_err(|why| {
                    perr(
                        "engine",
                        format!("the policy does not compile for the RVM (`vm`): {why}; use `interpreter`"),
                    )
                })?,
            ),
        };
        let policy = Policy {
            compiled,
            vm,
            clock,
            decision: decision.to_owned(),
            revision: revision(modules, data),
            time_limit,
        };
        // Smoke test: evaluating against an empty input must not fault for
        // reasons that are independent of the request. Its bound is
        // generous, so a busy host does not refuse a sound policy.
        let smoke_limit = time_limit.max(LOAD_TIME_LIMIT);
        if let Err(e) = policy.evaluate_within(Value::new_object(), smoke_limit) {
            if is_load_time_fault(&e) {
                return Err(perr("modules", e));
            }
        }
        Ok(policy)
    }

    /// Evaluates the decision for `input`. `Ok(Value::Undefined)` when no rule
    /// produced a value; `Err` for runtime errors (conflicts, bad builtin calls, ...).
    /// The policy sees no clock: `time.now_ns` fails (see [`Policy::evaluate_at`]).
    pub fn evaluate(&self, input: Value) -> Result<Value, String> {
        self.evaluate_within(input, self.time_limit)
    }

    /// As [`Policy::evaluate`], at `now` (since the Unix epoch): what
    /// `time.now_ns` returns and `io.jwt.decode_verify` checks lifetimes against.
    pub fn evaluate_at(&self, input: Value, now: Duration) -> Result<Value, String> {
        self.clock.set(now);
        let result = self.evaluate_within(input, self.time_limit);
        self.clock.set(Duration::ZERO);
        result
    }

    /// For logs: `policy revision 1a2b… (data.envoy.authz.allow) on the regorus interpreter`.
    pub fn describe(&self) -> String {
        format!(
            "policy revision {} ({}) on the {}",
            self.revision.get(..16).unwrap_or_default(),
            self.decision,
            self.engine().describe()
        )
    }

    /// What evaluates this policy.
    pub fn engine(&self) -> EngineInUse {
        match &self.vm {
            Some(_) => EngineInUse::Vm,
            None => EngineInUse::Interpreter,
        }
    }

    /// As [`Policy::evaluate`], always on the interpreter: the reference
    /// the RVM is checked against.
    pub fn evaluate_interpreted(&self, input: Value) -> Result<Value, String> {
        self.interpret_within(input, self.time_limit)
    }

    /// As [`Policy::evaluate_interpreted`], at `now`.
    pub fn evaluate_interpreted_at(&self, input: Value, now: Duration) -> Result<Value, String> {
        self.clock.set(now);
        let result = self.interpret_within(input, self.time_limit);
        self.clock.set(Duration::ZERO);
        result
    }

    /// As [`Policy::evaluate`], stopped after `limit`.
    fn evaluate_within(&self, input: Value, limit: Duration) -> Result<Value, String> {
        match &self.vm {
            Some(vm) => vm.evaluate(&self.compiled, input, limit),
            None => self.interpret_within(input, limit),
        }
    }

    fn interpret_within(&self, input: Value, limit: Duration) -> Result<Value, String> {
        // regorus reads the bound from a per-VM setting when it starts an
        // evaluation; several configurations may share the VM, so each
        // evaluation sets its own. The timer reads the WASI monotonic clock.
        set_fallback_execution_timer_config(Some(ExecutionTimerConfig {
            limit,
            check_interval: CHECK_INTERVAL,
        }));
        self.compiled
            .eval_with_input(input)
            .map_err(|e| error_text(&e.to_string()))
    }
}

/// The longest line a module may have. regorus's default (1,024) refuses
/// a JWKS or certificate pasted into a Rego string, as OPA-Envoy policies
/// do (`io.jwt.decode_verify(t, {"cert": jwks})`); a line costs the lexer
/// time linear in its length, so a long one is no hazard.
const MAX_LINE_CHARS: NonZeroU32 = match NonZeroU32::new(65_536) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// How deep `{` and `[` may nest in a module. Real policies stay well
/// under it; regorus 0.14 takes time that doubles with each level (16
/// levels: 0.15 s, 20: 2 s, 90: hours), so a deeper module would stall
/// the load (found by the `config_load` fuzz target).
pub const MAX_NESTING: usize = 12;

/// How many operators one expression may chain. regorus builds a chain
/// (`input.a.a.a…`, `1+1+1…`, `---1`) as a tree as deep as it is long and
/// walks it recursively, so a long enough one overflows the stack: 5,000
/// `.a` did natively, and a Wasm VM's stack is smaller (found by the
/// `config_load` fuzz target, as a SIGSEGV). Real expressions chain a few
/// dozen at most.
pub const MAX_CHAIN: usize = 100;

/// What makes a module too complex to hand to the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Complexity {
    /// `{` and `[` nest deeper than [`MAX_NESTING`].
    Nesting,
    /// One expression chains more than [`MAX_CHAIN`] operators.
    Chain,
}

/// The line where `source` first gets too complex, outside strings and
/// comments, and how. Nesting counts `{` and `[`. The chain is an
/// over-count, on purpose: every operator character counts (`==` twice),
/// and an expression is everything between `,`, `;` and the newlines
/// outside `(` (inside parentheses an expression may go on over lines).
fn too_complex(source: &str) -> Option<(usize, Complexity)> {
    let (mut depth, mut parens, mut ops, mut line) = (0usize, 0usize, 0usize, 1usize);
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                line += 1;
                if parens == 0 {
                    ops = 0;
                }
            }
            ',' | ';' => ops = 0,
            '(' => parens += 1,
            ')' => parens = parens.saturating_sub(1),
            '#' => {
                // A comment runs to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        if parens == 0 {
                            ops = 0;
                        }
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        '\n' => {
                            line += 1;
                            escaped = false;
                        }
                        _ => escaped = false,
                    }
                }
            }
            '`' => {
                for c in chars.by_ref() {
                    match c {
                        '`' => break,
                        '\n' => line += 1,
                        _ => {}
                    }
                }
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if matches!(c, '{' | '[') {
            depth += 1;
            if depth > MAX_NESTING {
                return Some((line, Complexity::Nesting));
            }
        }
        if matches!(
            c,
            '.' | '[' | '-' | '+' | '*' | '/' | '%' | '&' | '|' | '<' | '>' | '=' | '!'
        ) {
            ops += 1;
            if ops > MAX_CHAIN {
                return Some((line, Complexity::Chain));
            }
        }
    }
    None
}

/// Errors that would happen on every request, whatever it contains.
fn is_load_time_fault(message: &str) -> bool {
    message.contains("could not find function") || is_time_limit(message)
}

/// A regorus error as the gate reports it, its reason on the first line.
/// regorus's errors at a place in the source start with an empty line
/// (`\n--> authz.rego:3:9`, the quoted line, a caret, and only then
/// `error: what`), so whatever shows the first line (a log, the audit
/// `detail` in a one-line view) showed nothing. The reason now leads, and
/// the location and the quoted source follow:
/// `what\n--> authz.rego:3:9\n…`. Never empty.
fn error_text(message: &str) -> String {
    let message = message.trim();
    if let Some(at) = message.find("\nerror: ") {
        if message.starts_with("--> ") {
            let what = message
                .get(at + "\nerror: ".len()..)
                .unwrap_or_default()
                .trim();
            let place = message.get(..at).unwrap_or_default().trim_end();
            if !what.is_empty() {
                return format!("{what}\n{place}");
            }
        }
    }
    if message.is_empty() {
        "regorus reported an error without a message".to_owned()
    } else {
        message.to_owned()
    }
}

/// An RVM error as the gate reports it: the kind of error only. The RVM's
/// messages print the values involved (a header, a claim), and the text
/// reaches the audit record's `detail`; the interpreter's quote the policy
/// source instead. `Arithmetic error: …(pc=3)` becomes `Arithmetic error`.
fn vm_error_text(message: &str) -> String {
    let message = error_text(message);
    let message = message.as_str();
    let cut = [": ", " (", "\n"]
        .iter()
        .filter_map(|sep| message.find(sep))
        .min()
        .unwrap_or(message.len());
    format!("RVM: {}", message.get(..cut).unwrap_or(message).trim())
}

/// True if `message` is regorus stopping an evaluation at the time limit.
pub fn is_time_limit(message: &str) -> bool {
    // The interpreter says `execution exceeded…`, the RVM `Execution exceeded…`.
    message.contains("xecution exceeded time limit")
}

fn revision(modules: &BTreeMap<String, String>, data: Option<&serde_json::Value>) -> String {
    let mut h = Sha256::new();
    for (name, source) in modules {
        for part in [name.as_bytes(), source.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    if let Some(data) = data {
        h.update(data.to_string().as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
mod opa_compat_order_tests;

#[cfg(test)]
mod opa_compat_numbers_tests;

#[cfg(test)]
mod opa_compat_strings_tests;
