//! [`RateLimit`], the middleware, and its request path.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_scale_core::{DefaultRefusal, Refuse};
use tower_service::Service;

use crate::decide::Policy;
use crate::future::ResponseFuture;
use crate::key::{Key, KeyExtractor, PeerIp};
use crate::policy::{CountAll, CountPolicy, MissingKey};

/// The middleware built by [`RateLimitLayer`](crate::RateLimitLayer).
pub struct RateLimit<S, K = PeerIp, R = DefaultRefusal, C = CountAll> {
    inner: S,
    policy: Arc<Policy>,
    key: K,
    refuse: R,
    count: C,
}

impl<S, K, R, C> RateLimit<S, K, R, C> {
    /// The layer's service (the layer holds the policy).
    pub(crate) fn new(inner: S, policy: Arc<Policy>, key: K, refuse: R, count: C) -> Self {
        Self {
            inner,
            policy,
            key,
            refuse,
            count,
        }
    }

    tower_scale_core::inner_service_accessors!();
}

impl<S: Clone, K: Clone, R: Clone, C: Clone> Clone for RateLimit<S, K, R, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: Arc::clone(&self.policy),
            key: self.key.clone(),
            refuse: self.refuse.clone(),
            count: self.count.clone(),
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug, R, C> fmt::Debug for RateLimit<S, K, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<S, K, R, C, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, K, R, C>
where
    R: Refuse<ResBody>,
    C: CountPolicy,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    K: KeyExtractor,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let policy = &self.policy;
        // The key from the request's head; the request is put back together where it is
        // handed on (moves, no allocation).
        let (parts, body) = req.into_parts();
        let key = match (self.key.extract(&parts), policy.missing_key()) {
            (Some(key), _) => key,
            (None, MissingKey::Shared) => Key::from_static("<keyless>"),
            (None, MissingKey::Reject(status)) => {
                let because = self.key.missing_because(&parts);
                return ResponseFuture::answered(policy.refuse_keyless(
                    &self.refuse,
                    status,
                    because,
                ));
            }
        };
        if let Some(res) = policy.blocked(&self.refuse, &key) {
            return ResponseFuture::answered(res);
        }
        // Decided in this process (memory, a live lease): no boxed future, no clone of the
        // inner service.
        if let Some(d) = policy.decide_local(&key) {
            let decision = match policy.enforce(&self.refuse, &key, d) {
                Ok(decision) => decision,
                Err(res) => return ResponseFuture::answered(res),
            };
            if !policy.headers_on() {
                let fut = self.inner.call(Request::from_parts(parts, body));
                return ResponseFuture::passthrough(fut);
            }
            let headers = policy.headers_for(decision.as_ref());
            let fut = self.inner.call(Request::from_parts(parts, body));
            return ResponseFuture::admitted(fut, headers);
        }
        self.call_store(key, Request::from_parts(parts, body))
    }
}

impl<S, K, R, C> RateLimit<S, K, R, C> {
    /// A request the store decides by I/O (Redis, a spent lease): one boxed future.
    #[inline(never)]
    fn call_store<ReqBody, ResBody>(
        &mut self,
        key: Key,
        req: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        R: Refuse<ResBody>,
        C: CountPolicy,
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
        ReqBody: Send + 'static,
        ResBody: Send + 'static,
    {
        // The service that was polled ready handles this request later; a clone takes its
        // place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = Arc::clone(&self.policy);
        let refuse = self.refuse.clone();
        let count = self.count.clone();
        ResponseFuture::waiting(Box::pin(async move {
            let (op, result, full_key) = policy.ask(&key).await;
            let mut decision = match policy.judge(&refuse, &key, op, result) {
                Ok(decision) => decision,
                Err(res) => return Ok(res),
            };
            let mut res = inner.call(req).await?;
            if let Some(full_key) = &full_key
                && count.counts(res.status())
                && let Some(counted) = policy.consume(full_key).await
            {
                decision = Some(counted);
            }
            policy.add_headers(&mut res, decision.as_ref());
            Ok(res)
        }))
    }
}
