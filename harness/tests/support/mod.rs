//! Shared setup for the harness tests: the built `.wasm` and the demo config.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use palisade_harness::host::FilterModule;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The filter, compiled once per test binary.
pub fn module() -> &'static FilterModule {
    static MODULE: OnceLock<FilterModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        FilterModule::load(&repo().join("target/wasm32-wasip1/release/palisade_filter.wasm"))
            .unwrap_or_else(|e| panic!("{e}"))
    })
}

pub fn demo_config() -> serde_json::Value {
    palisade_demo::sidecar::plugin_config(&repo()).unwrap()
}
