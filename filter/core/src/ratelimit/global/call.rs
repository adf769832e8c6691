//! The bytes of a `ShouldRateLimit` call, and the strict reading of its
//! answer. The glue moves these bytes; it never looks inside them.

use super::config::Service;
use super::failure::RlsFailure;
use palisade_rls_proto::prost::Message;
use palisade_rls_proto::rate_limit_descriptor::Entry;
use palisade_rls_proto::rate_limit_response::rate_limit::Unit;
use palisade_rls_proto::rate_limit_response::Code;
use palisade_rls_proto::{RateLimitDescriptor, RateLimitRequest, RateLimitResponse};
use std::time::Duration;

/// One gRPC call for the glue to make, as proxy-wasm's
/// `dispatch_grpc_call(cluster, service, method, no metadata, Some(&message), timeout)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsCall {
    /// The Envoy cluster of the rate limit service.
    pub cluster: String,
    /// `envoy.service.ratelimit.v3.RateLimitService`.
    pub service: &'static str,
    /// `ShouldRateLimit`.
    pub method: &'static str,
    /// A serialized `RateLimitRequest` (Envoy adds the gRPC framing).
    pub message: Vec<u8>,
    pub timeout: Duration,
}

impl RlsCall {
    /// The call's target as Envoy's `dispatch_grpc_call` takes it: a
    /// serialized `envoy.config.core.v3.GrpcService` whose `envoy_grpc`
    /// names the cluster. (Envoy also takes a bare cluster name, but only
    /// if those bytes do not happen to parse as a `GrpcService`: a name
    /// must never be read as something else.) ASCII for the cluster names
    /// the configuration takes (at most [`super::config::MAX_CLUSTER_LEN`]
    /// ASCII characters): the host call takes it as a string.
    pub fn grpc_service(&self) -> Vec<u8> {
        use palisade_rls_proto::prost::encoding::{encode_key, encode_varint, WireType};
        // EnvoyGrpc { cluster_name = 1 } inside GrpcService { envoy_grpc = 1 }.
        let mut envoy_grpc = Vec::with_capacity(self.cluster.len() + 3);
        encode_key(1, WireType::LengthDelimited, &mut envoy_grpc);
        encode_varint(self.cluster.len() as u64, &mut envoy_grpc);
        envoy_grpc.extend_from_slice(self.cluster.as_bytes());
        let mut service = Vec::with_capacity(envoy_grpc.len() + 3);
        encode_key(1, WireType::LengthDelimited, &mut service);
        encode_varint(envoy_grpc.len() as u64, &mut service);
        service.extend_from_slice(&envoy_grpc);
        service
    }
}

/// What a descriptor counts; its `kind` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request rate: charged 1 per request.
    Requests,
    /// The record budget: checked (0) per request, charged the records
    /// each response returned.
    Records,
    /// The suspension: checked (0) per request, charged 1 to suspend.
    Suspension,
}

impl Kind {
    /// The `kind` entry's value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Records => "records",
            Kind::Suspension => "suspension",
        }
    }
}

/// `[("limit", rule), ("kind", kind), ("identity", pseudonym)]` with its own
/// `hits_addend` (0 included: a check that charges nothing).
pub fn descriptor(rule: &str, kind: Kind, pseudonym: &str, hits: u64) -> RateLimitDescriptor {
    let entry = |key: &str, value: &str| Entry {
        key: key.to_owned(),
        value: value.to_owned(),
    };
    RateLimitDescriptor {
        entries: vec![
            entry("limit", rule),
            entry("kind", kind.as_str()),
            entry("identity", pseudonym),
        ],
        limit: None,
        hits_addend: Some(hits),
        is_negative_hits: false,
    }
}

/// The call carrying `descriptors` to `service`. The request-level
/// `hits_addend` stays unset: every descriptor carries its own.
pub fn call(service: &Service, descriptors: Vec<RateLimitDescriptor>) -> RlsCall {
    let request = RateLimitRequest {
        domain: service.domain.clone(),
        descriptors,
        hits_addend: 0,
    };
    RlsCall {
        cluster: service.cluster.clone(),
        service: palisade_rls_proto::SERVICE_NAME,
        method: palisade_rls_proto::METHOD_NAME,
        message: request.encode_to_vec(),
        timeout: service.timeout,
    }
}

/// One descriptor's answer, once the whole response has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// OVER_LIMIT.
    pub over: bool,
    /// `limit_remaining`: what is left in the window after this call.
    pub remaining: u32,
    /// `duration_until_reset`, when the service sent a valid one.
    pub reset: Option<Duration>,
    /// `current_limit`: its `requests_per_unit`, and its unit as a window
    /// when the unit is a fixed length (not MONTH, YEAR or UNKNOWN).
    pub limit: Option<(u32, Option<Duration>)>,
}

/// Reads the answer to a call of `descriptors` descriptors. Anything but a
/// well-formed answer with one status per descriptor is a failure: the
/// caller then applies `on_failure` rather than guess.
pub fn read(grpc_status: u32, body: &[u8], descriptors: usize) -> Result<Vec<Answer>, RlsFailure> {
    if grpc_status != 0 {
        return Err(RlsFailure::Status(grpc_status));
    }
    let response = RateLimitResponse::decode(body).map_err(|_| RlsFailure::Unparsable)?;
    if response.statuses.len() != descriptors {
        return Err(RlsFailure::Malformed);
    }
    let mut answers = Vec::with_capacity(descriptors);
    for status in &response.statuses {
        let over = match Code::try_from(status.code) {
            Ok(Code::Ok) => false,
            Ok(Code::OverLimit) => true,
            _ => return Err(RlsFailure::Malformed),
        };
        // OVER_LIMIT is a refusal whatever else the status says; an OK
        // must come from a limit the service actually applied.
        if !over && status.current_limit.is_none() {
            return Err(RlsFailure::NoLimit);
        }
        answers.push(Answer {
            over,
            remaining: status.limit_remaining,
            reset: status.duration_until_reset.and_then(|d| {
                let nanos = u32::try_from(d.nanos).ok().filter(|n| *n < 1_000_000_000)?;
                Some(Duration::new(u64::try_from(d.seconds).ok()?, nanos))
            }),
            limit: status
                .current_limit
                .as_ref()
                .map(|l| (l.requests_per_unit, unit_window(l.unit))),
        });
    }
    let over = answers.iter().any(|a| a.over);
    let overall = if over { Code::OverLimit } else { Code::Ok };
    if response.overall_code != overall as i32 {
        return Err(RlsFailure::Malformed);
    }
    Ok(answers)
}

/// The window a fixed-length unit stands for.
fn unit_window(unit: i32) -> Option<Duration> {
    let seconds = match Unit::try_from(unit).ok()? {
        Unit::Second => 1,
        Unit::Minute => 60,
        Unit::Hour => 3_600,
        Unit::Day => 86_400,
        Unit::Week => 604_800,
        Unit::Month | Unit::Year | Unit::Unknown => return None,
    };
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
