//! Reading regorus's AST (as JSON) for load-time checks and test discovery.
//!
//! The JSON form is regorus's public, serialisable view of parsed modules; a
//! generic walk over it survives new expression kinds better than matching
//! the `unstable` AST types.

use regorus::Engine;
use serde_json::Value;

/// One entry per module: `{"source": {"file", ...}, "ast": {"package", "rules", ...}}`.
pub fn modules(engine: &Engine) -> Option<Vec<Value>> {
    let ast = engine.get_ast_as_json().ok()?;
    match serde_json::from_str(&ast).ok()? {
        Value::Array(modules) => Some(modules),
        _ => None,
    }
}

/// `a.b.c` from a `Var`/`RefDot` chain, where a string index counts as a
/// field (`a["b"]` is `a.b`, as in Rego); `None` for anything dynamic.
pub fn dotted(expr: &Value) -> Option<String> {
    if let Some(var) = expr.get("Var") {
        return var["value"].as_str().map(str::to_owned);
    }
    if let Some(brack) = expr.get("RefBrack") {
        let field = brack["index"]["String"]["value"].as_str()?;
        return Some(format!("{}.{field}", dotted(&brack["refr"])?));
    }
    let dot = expr.get("RefDot")?;
    let field = dot["field"].get(1)?.as_str()?;
    Some(format!("{}.{field}", dotted(&dot["refr"])?))
}

/// `data.<package>.<rule>` of every rule whose name starts with `prefix`
/// (e.g. `test_`), in module order, without duplicates.
pub fn rules_named(engine: &Engine, prefix: &str) -> Option<Vec<String>> {
    let mut found = Vec::new();
    for policy in modules(engine)? {
        let module = &policy["ast"];
        let Some(package) = dotted(&module["package"]["refr"]) else {
            continue;
        };
        for rule in module["rules"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            // The head is one of {"Compr": ..}, {"Set": ..}, {"Func": ..}, each with a `refr`.
            let name = rule["Spec"]["head"]
                .as_object()
                .and_then(|h| h.values().next())
                .and_then(|inner| dotted(&inner["refr"]));
            if let Some(name) = name.filter(|n| n.starts_with(prefix)) {
                let path = format!("data.{package}.{name}");
                if !found.contains(&path) {
                    found.push(path);
                }
            }
        }
    }
    Some(found)
}
