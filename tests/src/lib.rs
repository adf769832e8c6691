//! Test support for Palisade's integration and end-to-end tests: real Envoy
//! processes, the demo upstream in-process, Redis and the fleet-wide rate
//! limit service (`palisade-rls`), a minimal HTTP client, test tokens, and
//! the declarative request cases under `tests/cases/`.
//!
//! This is test code: it panics with a clear message when something it needs
//! is missing (Envoy not installed, the `.wasm` not built).

pub mod bundle_server;
pub mod collector;
pub mod envoy;
pub mod fleet;
pub mod http;
pub mod jwks_server;
pub mod rls;
pub mod upstream;

pub use palisade_harness::{cases, tokens};

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The built filter. Panics with the build command when it is missing.
pub fn wasm_path() -> PathBuf {
    let path = repo().join("target/wasm32-wasip1/release/palisade_filter.wasm");
    assert!(
        path.exists(),
        "{} is missing; build it first:\n  cargo build -p palisade-filter --target wasm32-wasip1 --release",
        path.display()
    );
    path
}

/// The TEST-ONLY keys the case files mint tokens with.
pub fn keys() -> PathBuf {
    repo().join("envoy/test-keys")
}

/// The demo plugin configuration the shared cases are written for.
pub fn demo_config() -> serde_json::Value {
    palisade_demo::sidecar::plugin_config(&repo()).unwrap()
}

/// The shared case files under `tests/cases/`, or only the one named by
/// `PALISADE_CASE` (a file name) when that is set.
pub fn all_cases() -> Vec<cases::Case> {
    let all = cases::load_all(&[repo().join("tests/cases")]).unwrap();
    match std::env::var("PALISADE_CASE") {
        Ok(name) => all.into_iter().filter(|c| c.file_name() == name).collect(),
        Err(_) => all,
    }
}

/// The command that reruns one case in test `test`.
pub fn repro(case: &cases::Case, test: &str) -> String {
    format!(
        "PALISADE_CASE={} cargo test -p palisade-tests --test {test}",
        case.file_name()
    )
}

/// `Bearer <token>` from the test issuer for `claims` (merged over valid
/// ones), minted on the wall clock that Envoy verifies against.
pub fn bearer(claims: serde_json::Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = tokens::key(&keys(), "rs256").unwrap();
    format!(
        "Bearer {}",
        key.mint(&tokens::claims(now, &claims)).unwrap()
    )
}
