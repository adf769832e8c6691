//! The `policy` section: where the Rego comes from (inline modules or an
//! OPA bundle), which syntax it is in, and which rule decides.

use super::raw::RawPolicy;
use super::{err, ConfigError};
use crate::policy::{EngineChoice, Policy, PolicyOptions, RegoVersion};
use std::collections::BTreeMap;
use std::time::Duration;

/// OPA-Envoy's default decision (its `path` option is `envoy/authz/allow`).
pub const DEFAULT_DECISION: &str = "data.envoy.authz.allow";

/// The decision as a Rego reference: `data.a.b` is taken as is, and
/// OPA-Envoy's path form `a/b` (or `/a/b`) becomes `data.a.b`.
pub fn decision_reference(decision: Option<&str>) -> Result<String, ConfigError> {
    let Some(decision) = decision else {
        return Ok(DEFAULT_DECISION.to_owned());
    };
    if decision.starts_with("data.") {
        return Ok(decision.to_owned());
    }
    let path = decision.strip_prefix('/').unwrap_or(decision);
    let identifier = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if path.contains('/') || identifier(path) {
        if let Some(bad) = path.split('/').find(|s| !identifier(s)) {
            return Err(err(
                "policy.decision",
                format!("`{decision}`: path segment `{bad}` is not a Rego identifier"),
            ));
        }
        return Ok(format!("data.{}", path.replace('/', ".")));
    }
    Err(err(
        "policy.decision",
        format!(
            "`{decision}` must be a rule path: `data.envoy.authz.allow` or `envoy/authz/allow`"
        ),
    ))
}

/// How the policy's modules are compiled: bound, engine, syntax.
pub fn options(raw: &RawPolicy) -> Result<PolicyOptions, ConfigError> {
    let time_limit = match raw.max_eval_ms {
        None => crate::policy::DEFAULT_TIME_LIMIT,
        Some(ms @ 1..=1000) => Duration::from_millis(ms),
        Some(ms) => {
            return Err(err(
                "policy.max_eval_ms",
                format!("{ms} is not between 1 and 1000"),
            ))
        }
    };
    let engine = match raw.engine.as_deref() {
        None => EngineChoice::Interpreter,
        Some(name) => EngineChoice::parse(name).ok_or_else(|| {
            err(
                "policy.engine",
                format!("`{name}` is not one of `interpreter`, `vm`"),
            )
        })?,
    };
    let version = |path: String, name: &str| {
        RegoVersion::parse(name)
            .ok_or_else(|| err(path, format!("`{name}` is not one of `v0`, `v1`")))
    };
    let rego_version = match raw.rego_version.as_deref() {
        None => RegoVersion::V1,
        Some(name) => version("policy.rego_version".into(), name)?,
    };
    let mut module_versions = BTreeMap::new();
    for (module, name) in &raw.module_rego_versions {
        let path = format!("policy.module_rego_versions[{module:?}]");
        if raw.bundle.is_none() && !raw.modules.contains_key(module) {
            return Err(err(path, "names no module of `policy.modules`"));
        }
        module_versions.insert(module.clone(), version(path, name)?);
    }
    Ok(PolicyOptions {
        time_limit,
        engine,
        rego_version,
        module_versions,
    })
}

/// Compiles inline `modules` and `data`.
pub fn compile_modules(
    raw: &RawPolicy,
    decision: &str,
    options: PolicyOptions,
) -> Result<Policy, ConfigError> {
    Policy::compile_with(&raw.modules, raw.data.as_ref(), decision, options)
        .map_err(|e| err(format!("policy.{}", e.field), e.message))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decision_paths_in_both_forms() {
        assert_eq!(decision_reference(None).unwrap(), "data.envoy.authz.allow");
        for (given, expected) in [
            ("data.x.allow", "data.x.allow"),
            ("envoy/authz/allow", "data.envoy.authz.allow"),
            ("/envoy/http/public/allow", "data.envoy.http.public.allow"),
            ("allow", "data.allow"),
        ] {
            assert_eq!(decision_reference(Some(given)).unwrap(), expected);
        }
        for bad in [
            "",
            "envoy//allow",
            "envoy/authz/allow!",
            "9lives/x",
            "envoy.authz.allow",
        ] {
            let e = decision_reference(Some(bad)).unwrap_err();
            assert!(e.0.starts_with("policy.decision: "), "{bad}: {e}");
        }
    }
}
