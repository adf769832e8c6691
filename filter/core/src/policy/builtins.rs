//! Load-time check that every function a policy calls exists in this build.
//!
//! The filter is built with a chosen subset of regorus's builtins (see the
//! README). Walking the modules' AST finds every call; a call resolves if it
//! names a builtin compiled in, `print`, or a function the modules define.

use super::ast::dotted;
use regorus::Engine;
use serde_json::Value;
use std::collections::BTreeSet;

/// A call to a function that this build does not provide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFunction {
    pub module: String,
    pub message: String,
}

/// Names of the builtins compiled into this build, sorted (regorus's own
/// and Palisade's extensions).
pub fn available() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = regorus::unstable::BUILTINS.keys().copied().collect();
    names.extend(super::opa_jwt::NAMES);
    names.sort_unstable();
    names
}

/// Every load-time check on the compiled modules (calls resolve, and
/// value-sized builtins have literal bounds), over one reading of their AST.
pub fn check_all(engine: &Engine) -> Result<(), MissingFunction> {
    let policies = modules(engine)?;
    calls_resolve(&policies)?;
    calls_bounded(&policies)
}

/// The first call to one of `names` (module, and a message naming the
/// line and function), if any.
pub fn first_call_to(
    engine: &Engine,
    names: &[&str],
) -> Result<Option<MissingFunction>, MissingFunction> {
    let policies = modules(engine)?;
    let found = calls(&policies)
        .find(|call| names.contains(&call.name.as_str()))
        .map(|call| MissingFunction {
            module: call.module,
            message: format!("line {}: `{}`", call.line, call.name),
        });
    Ok(found)
}

/// A call in a module's AST: where, to what, and its node.
struct CallSite<'a> {
    module: String,
    name: String,
    line: u64,
    node: &'a Value,
}

/// Every call of `policies` to a named function, module by module, in
/// document order.
fn calls(policies: &[Value]) -> impl Iterator<Item = CallSite<'_>> {
    policies.iter().flat_map(|policy| {
        let module = policy["source"]["file"].as_str().unwrap_or("?").to_owned();
        let mut nodes = Vec::new();
        collect_call_nodes(&policy["ast"], &mut nodes);
        nodes.into_iter().filter_map(move |node| {
            Some(CallSite {
                module: module.clone(),
                name: dotted(&node["fcn"])?,
                line: node["span"]["line"].as_u64().unwrap_or(0),
                node,
            })
        })
    })
}

/// Every call names a builtin of this build or a function of the policy.
pub fn check_calls(engine: &Engine) -> Result<(), MissingFunction> {
    calls_resolve(&modules(engine)?)
}

fn modules(engine: &Engine) -> Result<Vec<Value>, MissingFunction> {
    super::ast::modules(engine).ok_or_else(|| MissingFunction {
        module: String::new(),
        message: "cannot inspect the policy AST".into(),
    })
}

fn calls_resolve(policies: &[Value]) -> Result<(), MissingFunction> {
    let mut defined = BTreeSet::new();
    for policy in policies {
        let module = &policy["ast"];
        let package = dotted(&module["package"]["refr"]).unwrap_or_default();
        for rule in module["rules"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(name) = dotted(&rule["Spec"]["head"]["Func"]["refr"]) {
                defined.insert(format!("data.{package}.{name}"));
            }
            // A function may be defined by its default alone
            // (`default f(_) := false`): a `Default` rule with arguments.
            let default = &rule["Default"];
            if default["args"].as_array().is_some_and(|a| !a.is_empty()) {
                if let Some(name) = dotted(&default["refr"]) {
                    defined.insert(format!("data.{package}.{name}"));
                }
            }
        }
    }

    for call in calls(policies) {
        let name = call.name.as_str();
        let is_builtin = name == "print"
            || regorus::unstable::BUILTINS.contains_key(name)
            || super::opa_jwt::NAMES.contains(&name);
        let suffix = format!(".{name}");
        let is_defined = defined.iter().any(|d| d == name || d.ends_with(&suffix));
        if !is_builtin && !is_defined {
            return Err(MissingFunction {
                module: call.module,
                message: format!(
                    "line {}: `{name}` is not a function of this policy nor a builtin of this Palisade build (see the README's list of builtins)",
                    call.line
                ),
            });
        }
    }
    Ok(())
}

/// Builtins whose work grows with their arguments' values, not their size:
/// `numbers.range(0, input.n)` allocates `input.n` numbers.
const VALUE_BOUNDED: [&str; 2] = ["numbers.range", "numbers.range_step"];

/// The most elements a range with literal bounds may have.
const MAX_LITERAL_RANGE: f64 = 100_000.0;

/// Refuses calls whose cost a request could choose: a range whose bounds
/// are not number literals (a request value would set its size), or a
/// literal range over [`MAX_LITERAL_RANGE`] elements.
fn calls_bounded(policies: &[Value]) -> Result<(), MissingFunction> {
    for call in calls(policies) {
        if !VALUE_BOUNDED.contains(&call.name.as_str()) {
            continue;
        }
        let bounds: Option<Vec<f64>> = call.node["params"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|p| p["Number"]["value"].as_f64())
            .collect();
        let problem = match bounds.as_deref() {
            Some([lo, hi, ..]) if (hi - lo).abs() <= MAX_LITERAL_RANGE => continue,
            Some([_, _, ..]) => format!("spans more than {MAX_LITERAL_RANGE} numbers"),
            _ => "has bounds that are not number literals, so a request could choose its size; iterate the collection itself (`some i, x in arr`) instead".to_owned(),
        };
        return Err(MissingFunction {
            module: call.module,
            message: format!("line {}: `{}` {problem}", call.line, call.name),
        });
    }
    Ok(())
}

/// Every `Call` node, in document order.
fn collect_call_nodes<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    match node {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "Call" {
                    out.push(child);
                }
                collect_call_nodes(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|c| collect_call_nodes(c, out)),
        _ => {}
    }
}
