//! Palisade as a proxy-wasm HTTP filter: the thin glue between Envoy and
//! [`palisade_core`].
//!
//! - [`host`]: the narrow trait through which the filter reaches its host;
//! - [`stream`]: the per-request flow, written against that trait;
//! - [`reply`]: the only place denials become HTTP statuses;
//! - [`decision_log`]: one JSON line per decision;
//! - `wasm` (wasm32 only): the proxy-wasm contexts and the hostcall-backed host.

pub mod audit_log;
pub mod fleet;
pub mod header_map;
pub mod host;
pub mod metrics;
pub mod reply;
pub mod stream;

#[cfg(test)]
mod mock;

#[cfg(target_arch = "wasm32")]
mod wasm;
