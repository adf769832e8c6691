//! The Palisade local harness: a wasmtime-based proxy-wasm host that runs the
//! very same `palisade_filter.wasm` Envoy loads, the declarative request
//! cases it checks, and the `palisade` CLI built on both.

pub mod cases;
pub mod forward;
pub mod host;
pub mod tokens;
