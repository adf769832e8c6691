//! The bundle's `.manifest`, as OPA defines it (`Manifest` in
//! `v1/bundle/bundle.go`): `revision`, `roots`, `rego_version`,
//! `file_rego_versions`, `metadata` and `wasm`.
//!
//! Unknown fields are ignored, with a warning, where Palisade's own config
//! refuses them. The manifest is OPA's format, written by `opa build` and
//! by bundle servers, and OPA ignores fields it does not know (Go's JSON
//! decoder): `rego_version` was added that way, and an OPA-built bundle
//! must not stop loading when OPA adds the next field. The fields that
//! change what Palisade loads are all known, and held to their types.

use super::glob::Glob;
use crate::policy::RegoVersion;
use crate::strict_json;
use serde_json::{Map, Value};

/// The manifest as Palisade uses it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Manifest {
    pub revision: String,
    /// Without leading or trailing `/`; `[""]` (everything) when absent.
    pub roots: Vec<String>,
    pub rego_version: Option<RegoVersion>,
    /// Glob pattern → syntax, in the manifest's order.
    pub file_rego_versions: Vec<(Glob, RegoVersion)>,
    pub metadata: Map<String, Value>,
    pub warnings: Vec<String>,
}

impl Default for Manifest {
    /// A bundle without `.manifest`: OPA's defaults.
    fn default() -> Self {
        Manifest {
            revision: String::new(),
            roots: vec![String::new()],
            rego_version: None,
            file_rego_versions: Vec::new(),
            metadata: Map::new(),
            warnings: Vec::new(),
        }
    }
}

/// Parses `.manifest`; errors are prefixed by the caller.
pub(crate) fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    let value = strict_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("must be a JSON object".into());
    };
    let mut manifest = Manifest::default();
    for (name, value) in fields {
        // `null` is absence, as for Go's decoder.
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            "revision" => {
                manifest.revision = value.as_str().ok_or("`revision` must be a string")?.into();
            }
            "roots" => manifest.roots = roots(&value)?,
            "rego_version" => manifest.rego_version = Some(version(&value, "`rego_version`")?),
            "file_rego_versions" => {
                let Value::Object(map) = value else {
                    return Err("`file_rego_versions` must be an object".into());
                };
                for (pattern, v) in map {
                    let what = format!("`file_rego_versions` entry `{pattern}`");
                    let glob = Glob::new(&pattern).map_err(|e| format!("{what}: {e}"))?;
                    manifest
                        .file_rego_versions
                        .push((glob, version(&v, &what)?));
                }
            }
            "metadata" => {
                let Value::Object(map) = value else {
                    return Err("`metadata` must be an object".into());
                };
                manifest.metadata = map;
            }
            "wasm" => match value {
                Value::Array(modules) if modules.is_empty() => {}
                Value::Array(_) => {
                    return Err(
                        "lists compiled Wasm modules (`wasm`): Palisade evaluates Rego, \
                                not OPA's Wasm compilation; build the bundle without `-t wasm`"
                            .into(),
                    )
                }
                _ => return Err("`wasm` must be an array".into()),
            },
            _ => manifest.warnings.push(format!(
                "`.manifest`: unknown field `{name}` ignored (OPA ignores it too)"
            )),
        }
    }
    Ok(manifest)
}

/// `0` or `1`, as OPA writes them.
fn version(value: &Value, what: &str) -> Result<RegoVersion, String> {
    match value.as_u64() {
        Some(0) => Ok(RegoVersion::V0),
        Some(1) => Ok(RegoVersion::V1),
        _ => Err(format!("{what} must be 0 or 1, not {value}")),
    }
}

/// The most roots a manifest may name.
pub const MAX_ROOTS: usize = 1024;

/// The roots, trimmed of `/` as OPA does, and checked not to overlap.
fn roots(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err("`roots` must be an array of strings".into());
    };
    // The overlap check and every module's and data path's root check
    // compare against each root: an unsigned manifest with a million
    // roots would stall the worker that reads it.
    if items.len() > MAX_ROOTS {
        return Err(format!(
            "`roots` has {} entries, over the {MAX_ROOTS} accepted",
            items.len()
        ));
    }
    let mut roots: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let root = item.as_str().ok_or("`roots` must be an array of strings")?;
        roots.push(root.trim_matches('/').to_owned());
    }
    for (i, a) in roots.iter().enumerate() {
        for b in roots.iter().skip(i + 1) {
            if root_contains(a, &segments(b)) || root_contains(b, &segments(a)) {
                return Err(format!("roots `{a}` and `{b}` overlap"));
            }
        }
    }
    Ok(roots)
}

impl Manifest {
    /// The syntax of the module at `path` (no leading `/`): the first
    /// `file_rego_versions` pattern that matches, else `rego_version`, else
    /// `default`. OPA matches patterns against the archive name, which has
    /// a leading `/` in `opa build` bundles; both spellings are tried. OPA
    /// picks among several matching patterns in Go's random map order;
    /// Palisade refuses patterns that match one file with different versions.
    pub fn version_of(&self, path: &str, default: RegoVersion) -> Result<RegoVersion, String> {
        let rooted = format!("/{path}");
        let mut found: Option<(&Glob, RegoVersion)> = None;
        for (glob, version) in &self.file_rego_versions {
            if !(glob.matches(path) || glob.matches(&rooted)) {
                continue;
            }
            match found {
                Some((first, v)) if v != *version => {
                    return Err(format!(
                        "`.manifest`: `file_rego_versions` patterns `{}` and `{}` both match and disagree",
                        first.pattern(),
                        glob.pattern()
                    ))
                }
                Some(_) => {}
                None => found = Some((glob, *version)),
            }
        }
        Ok(found
            .map(|(_, v)| v)
            .or(self.rego_version)
            .unwrap_or(default))
    }

    /// True when the data or package at `path` (segments) lies under a root.
    pub fn permits(&self, path: &[String]) -> bool {
        self.roots.iter().any(|root| root_contains(root, path))
    }

    /// True when `path` is a strict ancestor of some root: data there may
    /// hold objects that lead to a root, but nothing else.
    pub fn leads_to_root(&self, path: &[String]) -> bool {
        self.roots.iter().any(|root| {
            let root = segments(root);
            root.len() > path.len() && root.iter().zip(path).all(|(r, p)| r == p)
        })
    }

    /// `[a, b/c]` for messages.
    pub fn roots_list(&self) -> String {
        let quoted: Vec<String> = self.roots.iter().map(|r| format!("`{r}`")).collect();
        format!("[{}]", quoted.join(", "))
    }
}

/// OPA's `rootContains`: the empty root holds everything; otherwise the
/// root's segments must prefix the path's.
fn root_contains(root: &str, path: &[String]) -> bool {
    if root.is_empty() {
        return true;
    }
    let root = segments(root);
    root.len() <= path.len() && root.iter().zip(path).all(|(r, p)| r == p)
}

fn segments(path: &str) -> Vec<String> {
    path.split('/').map(str::to_owned).collect()
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
