//! Compiling Rego once per configuration and evaluating it per request.
//!
//! `regorus` reports a call to a builtin it was built without only when the
//! call is evaluated, which in a gate means a request-time `policy_error`
//! for a subset of requests. [`builtins::check_calls`] walks the compiled
//! modules at load time instead, so such a policy never loads.

pub mod ast;
pub mod builtins;

use regorus::utils::limits::{set_fallback_execution_timer_config, ExecutionTimerConfig};
use regorus::{CompiledPolicy, Engine, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

/// A compiled policy with the decision it answers.
#[derive(Debug, Clone)]
pub struct Policy {
    compiled: CompiledPolicy,
    /// The rule path queried, e.g. `data.envoy.authz.allow`.
    pub decision: String,
    /// SHA-256 over the modules and data, hex: identifies what decided.
    pub revision: String,
    /// How long one evaluation may run before it is stopped (and denies).
    pub time_limit: Duration,
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
        Policy::compile_bounded(modules, data, decision, DEFAULT_TIME_LIMIT)
    }

    /// As [`Policy::compile`], with evaluations stopped after `time_limit`.
    pub fn compile_bounded(
        modules: &BTreeMap<String, String>,
        data: Option<&serde_json::Value>,
        decision: &str,
        time_limit: Duration,
    ) -> Result<Policy, PolicyError> {
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
            if let Some(line) = too_deep(source) {
                return Err(perr(
                    format!("modules[{name:?}]"),
                    format!("line {line}: `{{` and `[` nest deeper than {MAX_NESTING}; such a module is refused (the Rego parser's time doubles with each level)"),
                ));
            }
        }
        let mut engine = Engine::new();
        for (name, source) in modules {
            engine
                .add_policy(name.clone(), source.clone())
                .map_err(|e| perr(format!("modules[{name:?}]"), e.to_string()))?;
        }
        if let Some(data) = data {
            if !data.is_object() {
                return Err(perr("data", "must be a JSON object"));
            }
            engine
                .add_data(Value::from(data.clone()))
                .map_err(|e| perr("data", e.to_string()))?;
        }
        builtins::check_all(&engine)
            .map_err(|e| perr(format!("modules[{:?}]", e.module), e.message))?;
        let compiled = engine
            .compile_with_entrypoint(&decision.into())
            .map_err(|e| {
                perr(
                    "decision",
                    format!("`{decision}` cannot be compiled as the entry point: {e}"),
                )
            })?;
        let policy = Policy {
            compiled,
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
    pub fn evaluate(&self, input: Value) -> Result<Value, String> {
        self.evaluate_within(input, self.time_limit)
    }

    /// As [`Policy::evaluate`], stopped after `limit`.
    fn evaluate_within(&self, input: Value, limit: Duration) -> Result<Value, String> {
        // regorus reads the bound from a per-VM setting when it starts an
        // evaluation; several configurations may share the VM, so each
        // evaluation sets its own. The timer reads the WASI monotonic clock.
        set_fallback_execution_timer_config(Some(ExecutionTimerConfig {
            limit,
            check_interval: CHECK_INTERVAL,
        }));
        self.compiled
            .eval_with_input(input)
            .map_err(|e| e.to_string())
    }
}

/// How deep `{` and `[` may nest in a module. Real policies stay well
/// under it; regorus 0.14 takes time that doubles with each level (16
/// levels: 0.15 s, 20: 2 s, 90: hours), so a deeper module would stall
/// the load (found by the `config_load` fuzz target).
pub const MAX_NESTING: usize = 12;

/// The line where `{`/`[` first nest deeper than [`MAX_NESTING`], outside
/// strings and comments.
fn too_deep(source: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '#' => {
                // A comment runs to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
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
            '{' | '[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(line);
                }
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Errors that would happen on every request, whatever it contains.
fn is_load_time_fault(message: &str) -> bool {
    message.contains("could not find function") || is_time_limit(message)
}

/// True if `message` is regorus stopping an evaluation at the time limit.
pub fn is_time_limit(message: &str) -> bool {
    message.contains("execution exceeded time limit")
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
