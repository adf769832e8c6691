//! `palisade-rls`: Envoy's rate limit service
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, gRPC over
//! h2c) on Limitador with Redis storage, for budgets shared by every Envoy
//! of a fleet. See README.md for the config format and the semantics.
//!
//! The library re-exports the hand-written protobuf messages ([`proto`],
//! the `palisade-rls-proto` crate the filter uses too) and holds the server
//! pieces the binary wires together.

pub mod config;
pub mod limiter;
pub mod service;

/// The messages (`palisade-rls-proto`, shared with the filter).
pub use palisade_rls_proto as proto;

use std::future::Future;
use std::sync::Arc;

pub use config::{Charge, Config, ConfigError, LimitConfig};
pub use limiter::{RateLimiter, StorageOptions};
pub use service::RateLimitServiceServer;

/// Serves `limiter` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    limiter: Arc<RateLimiter>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(RateLimitServiceServer::new(limiter), incoming, shutdown)
        .await
}
