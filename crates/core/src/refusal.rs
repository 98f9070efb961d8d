//! The response of a request a layer refuses, and `Retry-After`.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

/// A boxed `Send` future, as the stores' methods return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Whole seconds of `wait`, rounded up, at least 1: what `Retry-After` says.
///
/// ```
/// use std::time::Duration;
/// use tower_scale_core::retry_after_secs;
///
/// assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
/// assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
/// assert_eq!(retry_after_secs(Duration::ZERO), 1);
/// ```
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// A `Retry-After` header value for `wait` ([`retry_after_secs`]).
pub fn retry_after_value(wait: Duration) -> HeaderValue {
    HeaderValue::from(retry_after_secs(wait))
}

/// Why a layer refuses a request without calling the inner service: over a rate limit, a
/// circuit open, the service overloaded, a store down.
///
/// It carries the status the layer's config chose, a stable reason, the wait before a retry
/// when the layer knows it, and the layer's own detail (e.g. the rate limit's decision) that a
/// [`Refuse`] closure can read with [`detail`](Self::detail).
pub struct Refusal<'a> {
    status: StatusCode,
    reason: &'static str,
    retry_after: Option<Duration>,
    detail: Option<&'a (dyn Any + Send + Sync)>,
}

impl<'a> Refusal<'a> {
    /// A refusal answered with `status`, for `reason` (a short stable token such as
    /// `"rate-limited"`, `"circuit-open"`, `"overloaded"`, `"store-unavailable"`).
    pub const fn new(status: StatusCode, reason: &'static str) -> Self {
        Self {
            status,
            reason,
            retry_after: None,
            detail: None,
        }
    }

    /// The wait before a retry is worth it.
    #[must_use]
    pub const fn retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// The layer's own detail, for closures that want it.
    #[must_use]
    pub const fn detail(mut self, detail: &'a (dyn Any + Send + Sync)) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The status the layer's config chose.
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    /// Why the request is refused.
    pub const fn reason(&self) -> &'static str {
        self.reason
    }

    /// The wait before a retry, when known.
    pub const fn wait(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The layer's detail, when it is a `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.detail?.downcast_ref()
    }
}

impl fmt::Debug for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refusal")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

/// Builds the response of a refused request. The layer adds its own headers afterwards
/// (`Retry-After` when it knows the wait and the response has none, `RateLimit` fields).
///
/// Implemented by [`DefaultRefusal`] (the status and a short text body, configurable) and by
/// closures `Fn(&Refusal<'_>) -> Response<B>`.
///
/// ```
/// use http::{Response, StatusCode};
/// use tower_scale_core::{Refusal, Refuse};
///
/// let teapot = |r: &Refusal<'_>| {
///     let mut res = Response::new(format!("no: {}", r.reason()));
///     *res.status_mut() = StatusCode::IM_A_TEAPOT;
///     res
/// };
/// let res = teapot.refuse(&Refusal::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited"));
/// assert_eq!(res.status(), StatusCode::IM_A_TEAPOT);
/// assert_eq!(res.body(), "no: rate-limited");
/// ```
pub trait Refuse<B>: Clone + Send + Sync + 'static {
    /// The response for `refusal`.
    fn refuse(&self, refusal: &Refusal<'_>) -> Response<B>;
}

impl<B, F> Refuse<B> for F
where
    F: Fn(&Refusal<'_>) -> Response<B> + Clone + Send + Sync + 'static,
{
    fn refuse(&self, refusal: &Refusal<'_>) -> Response<B> {
        self(refusal)
    }
}

/// The default refusal: the layer's status (or the one set here) and an empty body.
/// [`text`](Self::text) gives a body.
///
/// ```
/// use http::StatusCode;
/// use tower_scale_core::{DefaultRefusal, Refusal, Refuse};
///
/// let refuse = DefaultRefusal::new().status(StatusCode::SERVICE_UNAVAILABLE).text("busy");
/// let res: http::Response<String> =
///     refuse.refuse(&Refusal::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited"));
/// assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(res.body(), "busy");
/// assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRefusal {
    status: Option<StatusCode>,
}

impl DefaultRefusal {
    /// The layer's status and an empty body.
    pub const fn new() -> Self {
        Self { status: None }
    }

    /// Answers with `status` whatever the layer chose.
    #[must_use]
    pub const fn status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Answers with `text` as a `text/plain` body (for bodies made from a `&'static str`,
    /// as axum's, `String` and `Full<Bytes>` are).
    #[must_use]
    pub const fn text(self, text: &'static str) -> TextRefusal {
        TextRefusal {
            status: self.status,
            text,
        }
    }
}

impl<B: Default> Refuse<B> for DefaultRefusal {
    fn refuse(&self, refusal: &Refusal<'_>) -> Response<B> {
        let mut res = Response::new(B::default());
        *res.status_mut() = self.status.unwrap_or(refusal.status);
        res
    }
}

/// A refusal with a `text/plain` body: [`DefaultRefusal::text`].
#[derive(Clone, Copy, Debug)]
pub struct TextRefusal {
    status: Option<StatusCode>,
    text: &'static str,
}

impl<B: From<&'static str>> Refuse<B> for TextRefusal {
    fn refuse(&self, refusal: &Refusal<'_>) -> Response<B> {
        let mut res = Response::new(B::from(self.text));
        *res.status_mut() = self.status.unwrap_or(refusal.status);
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_refusal_and_detail() {
        let res: Response<String> =
            DefaultRefusal::new().refuse(&Refusal::new(StatusCode::TOO_MANY_REQUESTS, "x"));
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(res.body().is_empty() && res.headers().is_empty());
        let n = 7_u32;
        let r = Refusal::new(StatusCode::OK, "y")
            .detail(&n)
            .retry_after(Some(Duration::from_millis(1500)));
        assert_eq!(r.get::<u32>(), Some(&7));
        assert_eq!(r.get::<u64>(), None);
        assert_eq!(retry_after_value(r.wait().unwrap()), "2");
    }
}
