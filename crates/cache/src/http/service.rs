//! `ResponseCache<S>`, the middleware: which path a request takes.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::ResponseBody;
use super::bypass::bypass;
use super::future::ResponseFuture;
use super::key::{DefaultKey, MakeCacheKey};
use super::layer::{ResponseCacheLayer, Shared};
use super::lookup::handle;
use super::purge::unsafe_method;
use crate::{BoxError, Cache};

/// The response cache middleware; see [`ResponseCacheLayer`].
pub struct ResponseCache<S, K = DefaultKey> {
    inner: S,
    shared: Arc<Shared<K>>,
}

impl<S: Clone, K> Clone for ResponseCache<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug, K> std::fmt::Debug for ResponseCache<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("inner", &self.inner)
            .field("cache", self.shared.cache())
            .finish_non_exhaustive()
    }
}

impl<S> ResponseCache<S> {
    /// A [`ResponseCacheLayer`] storing in `cache`, with the default settings.
    pub fn layer(cache: Cache) -> ResponseCacheLayer {
        ResponseCacheLayer::new(cache)
    }
}

impl<S, K> ResponseCache<S, K> {
    /// The middleware around `inner`, with a layer's shared state.
    pub(super) fn from_shared(inner: S, shared: Arc<Shared<K>>) -> Self {
        Self { inner, shared }
    }

    /// The cache entries are read from and stored in.
    pub fn cache(&self) -> &Cache {
        self.shared.cache()
    }

    tower_scale_core::inner_service_accessors!();
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCache<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    K: MakeCacheKey,
    ReqBody: Default + Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The ready service goes with this request; a clone stays for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        // Which path the request takes is decided here, before any future exists: each path
        // is a future of its own, so that a lookup's (allocated for every request) holds only
        // what a hit needs.
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return ResponseFuture::new(Box::pin(unsafe_method(shared, inner, req)));
        }
        if let Some(detail) = shared.settings().bypass(req.headers()) {
            return ResponseFuture::new(Box::pin(bypass(shared, inner, req, detail)));
        }
        let (parts, body) = req.into_parts();
        let key = shared.key().make_cache_key(&parts);
        let refused = match &key {
            None => Some("fwd=bypass; detail=key"),
            Some(key) => shared
                .settings()
                .key_refusal(key.as_str().len(), parts.uri.query()),
        };
        let (Some(key), None) = (key, refused) else {
            let req = Request::from_parts(parts, body);
            let detail = refused.unwrap_or("fwd=bypass; detail=key");
            return ResponseFuture::new(Box::pin(bypass(shared, inner, req, detail)));
        };
        ResponseFuture::new(Box::pin(handle(shared, inner, parts, body, key)))
    }
}
