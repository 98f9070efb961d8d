//! [`ForceTargetLayer`]: a route's override of the read/write decision.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::route::{DbRoute, Reason, Target};

/// Forces a route's requests to one target, overriding [`ReadWriteLayer`](crate::ReadWriteLayer)'s decision (apply it
/// with `route_layer`, inside the `ReadWriteLayer`).
#[derive(Clone, Copy, Debug)]
pub struct ForceTargetLayer {
    target: Target,
}

impl ForceTargetLayer {
    /// Every request of the route uses the primary.
    pub const fn primary() -> Self {
        Self {
            target: Target::Primary,
        }
    }

    /// Every request of the route uses a replica (e.g. reports that tolerate lag).
    pub const fn replica() -> Self {
        Self {
            target: Target::Replica,
        }
    }
}

impl<S> Layer<S> for ForceTargetLayer {
    type Service = ForceTarget<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForceTarget {
            inner,
            target: self.target,
        }
    }
}

/// The middleware built by [`ForceTargetLayer`].
#[derive(Clone, Debug)]
pub struct ForceTarget<S> {
    inner: S,
    target: Target,
}

impl<S> ForceTarget<S> {
    tower_scale_core::inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for ForceTarget<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(DbRoute {
            target: self.target,
            reason: Reason::Forced,
        });
        self.inner.call(req)
    }
}
