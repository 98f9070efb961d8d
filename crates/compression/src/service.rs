//! The [`Compression`] middleware: per request, the encoding the client prefers among the
//! server's, and the prepared variant that encodes it.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::Lend;
use crate::future::ResponseFuture;
use crate::predicate::negotiate_index;
use crate::shared::Shared;
use crate::{BoxError, CompressionBody, CompressionLayer, Encoding};

/// The middleware built by [`CompressionLayer`].
///
/// It holds the inner service once, as tower-http's `Compression` does (a clone clones the inner
/// service and one `Arc`); each request lends it to the tower-http variant of its encoding and
/// level, so no service is cloned per request.
#[derive(Clone)]
pub struct Compression<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Compression<S> {
    /// Compresses the responses of `inner` with the defaults of [`CompressionConfig`](crate::CompressionConfig).
    pub fn new(inner: S) -> Self {
        CompressionLayer::new().layer(inner)
    }

    /// A [`CompressionLayer`] with the defaults, to change with its setters.
    pub fn layer() -> CompressionLayer {
        CompressionLayer::new()
    }

    /// The middleware of a layer: `inner` and what the layer prepared.
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    tower_scale_core::inner_service_accessors!();
}

impl<S> fmt::Debug for Compression<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt_service("Compression", f)
    }
}

/// The encoding to use for `accept` (an `Accept-Encoding` value), given the server's
/// preference order; `None` means identity.
pub fn negotiate(accept: Option<&str>, preference: &[Encoding]) -> Option<Encoding> {
    negotiate_index(accept, preference).map(|i| preference[i])
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Compression<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<CompressionBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let mut values = req.headers().get_all(header::ACCEPT_ENCODING).iter();
        let accept = values.next().and_then(|v| v.to_str().ok());
        let chosen = if req.method() == Method::HEAD {
            None
        } else {
            negotiate_index(accept, shared.preference())
        };
        let Some(index) = chosen else {
            return ResponseFuture::identity(self.inner.call(req), shared.predicate());
        };
        let variant = shared.variant_index(index);
        let token = shared.preference()[index].token();
        // tower-http negotiates again from this header: the one token leaves it no other choice
        // (already the case when the client sent just that token).
        if accept != Some(token) || values.next().is_some() {
            req.headers_mut()
                .insert(header::ACCEPT_ENCODING, HeaderValue::from_static(token));
        }
        let fut = shared
            .variant(variant)
            .layer(Lend::new(&mut self.inner))
            .call(req);
        ResponseFuture::encoded(fut, Arc::clone(shared), variant)
    }
}
