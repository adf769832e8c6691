//! The demo around Palisade: a customer-data API to protect, test tokens,
//! and the rendered Envoy sidecar config. Used by `palisade-demo`, the demo
//! script and the end-to-end tests.

pub mod api;
pub mod data;
pub mod server;
pub mod sidecar;
pub mod token;
