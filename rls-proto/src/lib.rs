//! The messages of Envoy's rate limit service, `ShouldRateLimit`, written
//! by hand with `prost` derives (no protoc, no generated tree), for the two
//! ends Palisade owns: the filter, which asks (`palisade-core`), and the
//! rate limit server, which answers (`rls/`). One definition, so the two
//! cannot drift apart.
//!
//! Field numbers and types follow Envoy's
//! `api/envoy/service/ratelimit/v3/rls.proto` (`RateLimitRequest`,
//! `RateLimitResponse`) and
//! `api/envoy/extensions/common/ratelimit/v3/ratelimit.proto`
//! (`RateLimitDescriptor`; its `hits_addend` = 3 and `is_negative_hits` = 4
//! are the newer fields, checked against go-control-plane's generated
//! marshalling code). Fields neither end reads or writes (response
//! headers, raw body, dynamic metadata, quotas, `unit_multiplier`) are left
//! out: a protobuf decoder skips fields it does not know, so a peer that
//! sends them still decodes, and a peer that reads them sees them unset.
//!
//! The module layout and names are the ones `prost-build` would generate
//! (`rate_limit_descriptor::Entry`, `rate_limit_response::Code`, ...), so
//! code written against generated types reads the same.
//!
//! ```
//! use palisade_rls_proto::{rate_limit_descriptor::Entry, RateLimitDescriptor, RateLimitRequest};
//! use prost::Message;
//!
//! let request = RateLimitRequest {
//!     domain: "palisade".into(),
//!     descriptors: vec![RateLimitDescriptor {
//!         entries: vec![Entry { key: "limit".into(), value: "bulk".into() }],
//!         hits_addend: Some(0),
//!         ..Default::default()
//!     }],
//!     hits_addend: 0,
//! };
//! let bytes = request.encode_to_vec();
//! assert_eq!(RateLimitRequest::decode(bytes.as_slice()).ok(), Some(request));
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// The `prost` these types are built with: users call `Message::encode_to_vec`
/// and `Message::decode` through it, so their prost is always this one.
pub use prost;

use alloc::string::String;
use alloc::vec::Vec;

/// The gRPC service, as `dispatch_grpc_call` names it.
pub const SERVICE_NAME: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// The one method.
pub const METHOD_NAME: &str = "ShouldRateLimit";
/// The HTTP/2 path of the method, as a gRPC server routes it.
pub const SHOULD_RATE_LIMIT_PATH: &str =
    "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RateLimitRequest {
    /// The configuration domain the descriptors belong to.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`s; the
    /// request is over limit if any one of them is.
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// Hits for every descriptor that does not set its own; 0 (unset)
    /// means 1.
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RateLimitDescriptor {
    /// The key/value pairs that pick the limit (and the counter).
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<rate_limit_descriptor::Entry>,
    /// A caller-supplied override of the configured limit. Palisade never
    /// sends one, and its server refuses one: a caller must not set its own
    /// budget.
    #[prost(message, optional, tag = "2")]
    pub limit: Option<rate_limit_descriptor::RateLimitOverride>,
    /// `google.protobuf.UInt64Value` (prost implements `Message` for `u64`
    /// as exactly that wrapper: one field, `value` = 1). When set, it
    /// replaces the request's `hits_addend` for this descriptor, 0 included:
    /// `Some(0)` is a check that charges nothing, `None` charges the
    /// request's hits.
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<u64>,
    /// The hits are a refund (newer Envoy). Never sent by Palisade; its
    /// server refuses it.
    #[prost(bool, tag = "4")]
    pub is_negative_hits: bool,
}

/// Nested messages of [`RateLimitDescriptor`].
pub mod rate_limit_descriptor {
    use alloc::string::String;

    /// `RateLimitDescriptor.Entry`. Envoy's validation wants both strings
    /// non-empty.
    #[derive(Clone, PartialEq, Eq, Hash, ::prost::Message)]
    pub struct Entry {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `RateLimitDescriptor.RateLimitOverride`. `unit` is
    /// `envoy.type.v3.RateLimitUnit`, numbered as
    /// [`super::rate_limit_response::rate_limit::Unit`].
    #[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
    pub struct RateLimitOverride {
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        #[prost(int32, tag = "2")]
        pub unit: i32,
    }
}

/// `google.protobuf.Duration`, declared here rather than taken from
/// `prost-types` (which would bring every descriptor type with it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// 0 to 999,999,999 for a positive duration.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse` (the fields Palisade uses).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RateLimitResponse {
    /// OVER_LIMIT if any descriptor is over its limit, else OK.
    #[prost(enumeration = "rate_limit_response::Code", tag = "1")]
    pub overall_code: i32,
    /// One status per request descriptor, in the same order.
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<rate_limit_response::DescriptorStatus>,
}

/// Nested messages and enums of [`RateLimitResponse`].
pub mod rate_limit_response {
    use alloc::string::String;

    /// `RateLimitResponse.RateLimit`: the limit a descriptor matched.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct RateLimit {
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        #[prost(enumeration = "rate_limit::Unit", tag = "2")]
        pub unit: i32,
    }

    /// Nested enum of [`RateLimit`].
    pub mod rate_limit {
        /// `RateLimitResponse.RateLimit.Unit`.
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration,
        )]
        #[repr(i32)]
        pub enum Unit {
            Unknown = 0,
            Second = 1,
            Minute = 2,
            Hour = 3,
            Day = 4,
            Month = 5,
            Year = 6,
            /// Newer Envoy versions only (not in every `rls.proto`).
            Week = 7,
        }
    }

    /// `RateLimitResponse.DescriptorStatus`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct DescriptorStatus {
        #[prost(enumeration = "Code", tag = "1")]
        pub code: i32,
        /// The limit that matched; unset when none did.
        #[prost(message, optional, tag = "2")]
        pub current_limit: Option<RateLimit>,
        /// Hits left in the current window after this request.
        #[prost(uint32, tag = "3")]
        pub limit_remaining: u32,
        /// Time until the current window ends.
        #[prost(message, optional, tag = "4")]
        pub duration_until_reset: Option<super::Duration>,
    }

    /// `RateLimitResponse.Code`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum Code {
        Unknown = 0,
        Ok = 1,
        OverLimit = 2,
    }
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
