//! Reading standard OPA bundles (`.tar.gz`) into a checked, in-memory
//! [`Bundle`], so OPA-Envoy deployments move over unchanged. Pure: bytes
//! in, a bundle or one error out; fetching and polling live in the filter.
//!
//! What a bundle holds (OPA docs "Bundles", `v1/bundle/bundle.go`):
//! `*.rego` modules, `data.json`/`data.yaml`/`data.yml` documents merged at
//! their directory's path, an optional `.manifest` (revision, roots, Rego
//! versions, metadata) and an optional `.signatures.json`. Other files are
//! ignored (with a warning), as in OPA, but a signature must still cover
//! them.
//!
//! Checks, in order: the archive's bounds and paths ([`Limits`],
//! `archive.rs`); the signature, before any content is interpreted
//! (`signature.rs`); the manifest; each module's UTF-8, package and roots;
//! each data file's syntax, path, merge and roots.
//!
//! Signed bundles follow OPA's bundle plugin: with a [`Verifier`], a
//! bundle without `.signatures.json` is refused (OPA ≥ 1.21.3, which
//! requires a signature whenever `signing` is configured); without one, a
//! bundle that carries `.signatures.json` is refused too, as OPA's bundle
//! plugin refuses it ("verification key not provided"): a signed bundle
//! is meant to be verified, and loading it unchecked would hide a missing
//! key in the config. OPA's `--skip-verify` and `exclude_files` have no
//! equivalent: every file of a signed bundle is verified.
//!
//! ```
//! use palisade_core::bundle;
//! use palisade_core::policy::RegoVersion;
//!
//! let tar_gz = bundle::build(&[
//!     ("envoy/authz/policy.rego", b"package envoy.authz\nallow := true\n".as_slice()),
//!     ("envoy/authz/data.json", br#"{"admins": ["alice"]}"#.as_slice()),
//!     (".manifest", br#"{"revision": "r1", "roots": ["envoy"]}"#.as_slice()),
//! ], None).unwrap();
//! let b = bundle::read(&tar_gz, None, RegoVersion::V1).unwrap();
//! assert_eq!(b.revision, "r1");
//! assert!(b.modules.contains_key("envoy/authz/policy.rego"));
//! assert_eq!(b.data["envoy"]["authz"]["admins"][0], "alice");
//! ```

mod archive;
mod data;
mod glob;
mod hash;
mod manifest;
#[cfg(feature = "mint")]
mod pack;
mod rego_package;
mod signature;
#[cfg(test)]
mod testkit;

#[cfg(feature = "mint")]
pub use pack::{build, Signer};
pub use signature::Verifier;

use crate::policy::RegoVersion;
use manifest::Manifest;
use std::collections::BTreeMap;

/// Largest bundle accepted, compressed: 8 MiB.
pub const MAX_COMPRESSED_BYTES: usize = 8 << 20;
/// Most bytes the bundle may unpack to, tar headers and padding included:
/// 32 MiB, so a gzip bomb stops at 32 MiB however well it compresses.
/// (OPA's own default is 1 GiB per file; a bundle lives in every Wasm VM.)
pub const MAX_UNPACKED_BYTES: u64 = 32 << 20;
/// Largest single file: 16 MiB.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Most regular files in a bundle: 4096.
pub const MAX_FILES: usize = 4096;

/// The bounds a bundle is read within. [`Limits::default`] holds the
/// `MAX_*` constants; the filter may lower them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub compressed_bytes: usize,
    pub unpacked_bytes: u64,
    pub file_bytes: u64,
    pub files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            compressed_bytes: MAX_COMPRESSED_BYTES,
            unpacked_bytes: MAX_UNPACKED_BYTES,
            file_bytes: MAX_FILE_BYTES,
            files: MAX_FILES,
        }
    }
}

/// A bundle that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// `.manifest` revision ("" when absent).
    pub revision: String,
    /// The manifest's roots without leading or trailing `/`; `[""]` (the
    /// whole data tree) when the manifest has none, as in OPA.
    pub roots: Vec<String>,
    /// Module path inside the bundle, without a leading `/`
    /// (`envoy/authz/policy.rego`, the name `.signatures.json` uses) →
    /// Rego source.
    pub modules: BTreeMap<String, String>,
    /// The syntax of each module (same keys as `modules`), from the
    /// manifest's `file_rego_versions`, else its `rego_version`, else the
    /// `default_version` given to [`read`].
    pub module_versions: BTreeMap<String, RegoVersion>,
    /// Every data document merged at its directory's path: a JSON object.
    pub data: serde_json::Value,
    /// The manifest's `metadata` (empty when absent).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// True when `.signatures.json` was checked against a configured key.
    pub verified: bool,
    /// What was ignored, for the load log: unknown manifest fields, files
    /// that are neither Rego, data nor manifest.
    pub warnings: Vec<String>,
}

/// Unpacks and checks a bundle within [`Limits::default`]. Errors name
/// the file inside the bundle and the reason.
pub fn read(
    bytes: &[u8],
    verifier: Option<&Verifier>,
    default_version: RegoVersion,
) -> Result<Bundle, String> {
    read_with(bytes, verifier, default_version, &Limits::default())
}

/// [`read`] within `limits`.
pub fn read_with(
    bytes: &[u8],
    verifier: Option<&Verifier>,
    default_version: RegoVersion,
    limits: &Limits,
) -> Result<Bundle, String> {
    let files = archive::unpack(bytes, limits)?;
    let mut signatures: Option<&[u8]> = None;
    let mut contents: Vec<(&str, &[u8])> = Vec::with_capacity(files.len());
    for file in &files {
        if file.path == SIGNATURES {
            signatures = Some(&file.bytes);
        } else {
            contents.push((&file.path, &file.bytes));
        }
    }
    let verified = match (verifier, signatures) {
        (Some(verifier), Some(sigs)) => {
            signature::verify(sigs, &contents, verifier)?;
            true
        }
        (Some(_), None) => return Err(
            "the bundle is not signed (no .signatures.json) and a verification key is configured"
                .into(),
        ),
        (None, Some(_)) => {
            return Err(
                "the bundle is signed (.signatures.json) but no verification key is configured; \
                 OPA refuses it too (\"verification key not provided\")"
                    .into(),
            )
        }
        (None, None) => false,
    };

    let mut manifest = Manifest::default();
    for (path, bytes) in &contents {
        if *path == MANIFEST {
            manifest = manifest::parse(bytes).map_err(|e| format!("{MANIFEST}: {e}"))?;
        }
    }
    let mut warnings = std::mem::take(&mut manifest.warnings);
    let mut modules = BTreeMap::new();
    let mut module_versions = BTreeMap::new();
    let mut tree = data::DataTree::default();
    for (path, bytes) in &contents {
        match Kind::of(path)? {
            Kind::Manifest => {}
            Kind::Rego => {
                let source = std::str::from_utf8(bytes).map_err(|e| {
                    format!(
                        "{path}: not UTF-8 (invalid byte at offset {})",
                        e.valid_up_to()
                    )
                })?;
                let package =
                    rego_package::package_path(source).map_err(|e| format!("{path}: {e}"))?;
                if !manifest.permits(&package) {
                    return Err(format!(
                        "{path}: package `{}` is outside the manifest roots {}",
                        package.join("."),
                        manifest.roots_list()
                    ));
                }
                let version = manifest
                    .version_of(path, default_version)
                    .map_err(|e| format!("{path}: {e}"))?;
                modules.insert((*path).to_owned(), source.to_owned());
                module_versions.insert((*path).to_owned(), version);
            }
            Kind::Json => {
                let value = data::parse_json(path, bytes)?;
                tree.insert(&data::data_dir(path)?, value, path)?;
            }
            Kind::Yaml => {
                let value = data::parse_yaml(path, bytes)?;
                tree.insert(&data::data_dir(path)?, value, path)?;
            }
            Kind::Other => warnings.push(format!(
                "{path}: ignored (not a .rego, data or .manifest file)"
            )),
        }
    }
    check_data_roots(&tree, tree.root(), &mut Vec::new(), &manifest)?;
    Ok(Bundle {
        revision: manifest.revision,
        roots: manifest.roots,
        modules,
        module_versions,
        data: tree.into_value(),
        metadata: manifest.metadata,
        verified,
        warnings,
    })
}

const SIGNATURES: &str = ".signatures.json";
const MANIFEST: &str = ".manifest";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Manifest,
    Rego,
    Json,
    Yaml,
    Other,
}

impl Kind {
    /// What a (non-signature) file is. OPA also treats any path ending in
    /// `.manifest` as a manifest, any ending in `signatures.json` as the
    /// signatures, and `patch.json` as a delta bundle: such files are
    /// refused rather than read differently from OPA.
    fn of(path: &str) -> Result<Kind, String> {
        let base = path.rsplit('/').next().unwrap_or(path);
        if path == MANIFEST {
            return Ok(Kind::Manifest);
        }
        if path.ends_with(".manifest") {
            return Err(format!(
                "{path}: OPA would read this as the bundle manifest; only the root `.manifest` is one"
            ));
        }
        if path.ends_with("signatures.json") {
            return Err(format!(
                "{path}: OPA would read this as the bundle signatures; only the root `.signatures.json` is one"
            ));
        }
        Ok(match base {
            "patch.json" => {
                return Err(format!(
                    "{path}: delta bundles (patch.json) are not supported; serve a snapshot bundle"
                ))
            }
            "data.json" => Kind::Json,
            "data.yaml" | "data.yml" => Kind::Yaml,
            _ if path.ends_with(".rego") => Kind::Rego,
            _ => Kind::Other,
        })
    }
}

/// OPA's data roots check (`validateAndInjectDefaults`): every value lies
/// under a root, or is an object on the way to one.
fn check_data_roots(
    tree: &data::DataTree,
    node: &serde_json::Map<String, serde_json::Value>,
    at: &mut Vec<String>,
    manifest: &Manifest,
) -> Result<(), String> {
    for (key, value) in node {
        at.push(key.clone());
        if !manifest.permits(at) {
            match value {
                serde_json::Value::Object(map) if manifest.leads_to_root(at) => {
                    check_data_roots(tree, map, at, manifest)?
                }
                _ => {
                    return Err(format!(
                        "{}: data at `/{}` is outside the manifest roots {}",
                        tree.owner(at).unwrap_or("a data file"),
                        at.join("/"),
                        manifest.roots_list()
                    ))
                }
            }
        }
        at.pop();
    }
    Ok(())
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
