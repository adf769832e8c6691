//! Test support for Palisade's integration and end-to-end tests: real Envoy
//! processes, the demo upstream in-process, a minimal HTTP client, test
//! tokens, and the declarative request cases under `tests/cases/`.
//!
//! This is test code: it panics with a clear message when something it needs
//! is missing (Envoy not installed, the `.wasm` not built).

pub mod cases;
pub mod envoy;
pub mod http;
pub mod tokens;
pub mod upstream;

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
