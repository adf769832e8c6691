//! Palisade's decision core.
//!
//! Everything that decides lives here, in plain Rust with no proxy-wasm calls,
//! so it is unit-tested natively and shared by the filter and the harness:
//!
//! - [`config`]: strict parsing and one-time compilation of the plugin config;
//! - [`token`]: finding, verifying and caching bearer tokens;
//! - [`input`]: the OPA-Envoy-compatible policy input;
//! - [`policy`] and [`decision`]: Rego evaluation and strict reading of its result;
//! - [`gate`]: the per-request pipeline, returning an [`gate::Evaluation`];
//! - [`bundle`]: reading and verifying standard OPA bundles (`.tar.gz`).
//!
//! Time is always passed in (`now`, since the Unix epoch): the core never
//! reads a clock.
//!
//! ```
//! use palisade_core::{config::Config, request::{Headers, Request}, token::cache::TokenCache};
//! use palisade_core::ratelimit::{limits::Limits, store::MemoryStore};
//! use std::{rc::Rc, time::Duration};
//!
//! let config = Config::from_json(br#"{
//!   "policy": {
//!     "modules": {"authz.rego": "package envoy.authz\ndefault allow := false\nallow if input.attributes.request.http.method == \"GET\""},
//!     "decision": "data.envoy.authz.allow"
//!   }
//! }"#).unwrap();
//! let request = Request {
//!     headers: Headers::from_pairs([(b":method".to_vec(), b"GET".to_vec()), (b":path".to_vec(), b"/health".to_vec())]),
//!     ..Request::default()
//! };
//! let mut cache = TokenCache::new(16);
//! let limits = Limits::new(&config.rate_limits, Rc::new(MemoryStore::default()));
//! let evaluation = config.decide(&request, Duration::from_secs(1_700_000_000), &mut cache, &limits);
//! assert_eq!(evaluation.reason(), "allowed");
//! ```
#![forbid(unsafe_code)]

pub mod algorithm;
pub mod audit;
pub mod bundle;
pub mod canonical_path;
pub mod config;
pub mod decision;
pub mod gate;
pub mod input;
pub mod jwks;
#[cfg(feature = "mint")]
pub mod mint;
mod pem_jwk;
pub mod policy;
pub mod ratelimit;
pub mod records;
pub mod request;
pub mod sanitize;
pub mod strict_json;
#[cfg(test)]
mod testutil;
pub mod token;
