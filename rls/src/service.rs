//! The gRPC service, routed by hand: one path, decoded and encoded with
//! tonic's `server::Grpc` and `tonic_prost::ProstCodec` (what `tonic-build`
//! would generate, minus the code generator and protoc).

use crate::limiter::RateLimiter;
use crate::proto::{RateLimitRequest, RateLimitResponse, SHOULD_RATE_LIMIT_PATH};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// `envoy.service.ratelimit.v3.RateLimitService` over HTTP/2 (h2c).
#[derive(Clone)]
pub struct RateLimitServiceServer {
    limiter: Arc<RateLimiter>,
}

impl RateLimitServiceServer {
    /// Serves `limiter`.
    pub fn new(limiter: Arc<RateLimiter>) -> Self {
        Self { limiter }
    }
}

impl NamedService for RateLimitServiceServer {
    const NAME: &'static str = crate::proto::SERVICE_NAME;
}

struct ShouldRateLimit(Arc<RateLimiter>);

impl UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<Response<RateLimitResponse>, Status>;

    fn call(&mut self, request: Request<RateLimitRequest>) -> Self::Future {
        let limiter = Arc::clone(&self.0);
        Box::pin(async move {
            limiter
                .should_rate_limit(request.get_ref())
                .await
                .map(Response::new)
        })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for RateLimitServiceServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == SHOULD_RATE_LIMIT_PATH {
            let method = ShouldRateLimit(Arc::clone(&self.limiter));
            Box::pin(async move {
                let mut grpc = Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(method, req).await)
            })
        } else {
            let path = req.uri().path().to_owned();
            Box::pin(
                async move { Ok(Status::unimplemented(format!("no method {path}")).into_http()) },
            )
        }
    }
}
