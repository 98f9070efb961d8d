//! Read/write routing for a primary database and its read replicas, as a tower layer, with
//! **read-your-writes** across instances.
//!
//! # Overview
//!
//! [`ReadWriteLayer`] classifies each request and puts a [`DbRoute`] in its extensions, so the
//! handler picks the primary or a replica pool:
//!
//! - safe methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`) are reads and go to a **replica**;
//! - other methods are writes and go to the **primary**;
//! - after a successful write (2xx or 3xx), the response sets a short-lived signed cookie, and
//!   for the configured [window](ReadWriteLayer::window) that client's reads go to the
//!   **primary** too, so a user never sees their own change vanish on a lagging replica. The
//!   cookie is signed with a key shared by every instance, so it works whichever instance the
//!   next request lands on; a forged or tampered cookie is ignored;
//! - a route can override the decision with [`ForceTargetLayer`] (e.g. a read that must be
//!   fresh).
//!
//! Choose the window longer than the replication lag you tolerate.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{Extension, Router, body::Body, http::Request, routing::get};
//! use tower::ServiceExt;
//! use tower_scale_replica::{DbRoute, ReadWriteLayer, Target};
//!
//! async fn list(Extension(route): Extension<DbRoute>) -> &'static str {
//!     match route.target {
//!         Target::Primary => "from the primary",
//!         Target::Replica => "from a replica",
//!     }
//! }
//!
//! let key = [7u8; 32]; // in production: a secret of 32+ random bytes shared by all instances
//! let app = Router::new()
//!     .route("/items", get(list).post(|| async { "created" }))
//!     .layer(ReadWriteLayer::new(&key).unwrap());
//!
//! let res = app.clone().oneshot(Request::post("/items").body(Body::empty()).unwrap()).await.unwrap();
//! let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
//! // Right after its own write, this client reads from the primary.
//! let req = Request::get("/items").header("cookie", cookie).body(Body::empty()).unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! # use http_body_util::BodyExt;
//! assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"from the primary");
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cookie::{Cookie, CookieJar, Key, SameSite};
use http::{HeaderValue, Method, Request, Response, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// Which database a request should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// The primary (writes, and reads that must see the latest writes).
    Primary,
    /// A read replica.
    Replica,
}

impl Target {
    /// `primary` or `replica`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

/// Counter of routing decisions, labels `target` and `reason`.
pub const REPLICA_ROUTES_TOTAL: &str = "replica_routes_total";

/// Why a request was routed where it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A safe method: a read.
    Read,
    /// An unsafe method: a write.
    Write,
    /// A read by a client that wrote within the window.
    RecentWrite,
    /// Set by [`ForceTargetLayer`].
    Forced,
}

impl Reason {
    /// `read`, `write`, `recent_write` or `forced`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::RecentWrite => "recent_write",
            Self::Forced => "forced",
        }
    }
}

/// The routing decision, in the request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DbRoute {
    /// Where to send the request's queries.
    pub target: Target,
    /// Why.
    pub reason: Reason,
}

/// A wall clock, injectable for tests: the read-your-writes window is wall-clock time because
/// it must mean the same on every instance.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl<F: Fn() -> u64 + Send + Sync + 'static> Clock for F {
    fn now_millis(&self) -> u64 {
        self()
    }
}

/// An error building the layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The signing key is shorter than 32 bytes.
    #[error("the read-your-writes signing key must be at least 32 bytes, got {0}")]
    KeyTooShort(usize),
    /// The cookie name is empty or not a valid token.
    #[error("invalid cookie name {0:?}")]
    CookieName(String),
}

/// Routes reads to replicas and writes to the primary, with read-your-writes through a signed
/// cookie. See the [crate docs](crate).
#[derive(Clone)]
pub struct ReadWriteLayer {
    state: Arc<State>,
}

#[derive(Clone)]
struct State {
    key: Key,
    window: Duration,
    cookie_name: String,
    secure: bool,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for ReadWriteLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadWriteLayer")
            .field("window", &self.state.window)
            .field("cookie_name", &self.state.cookie_name)
            .field("secure", &self.state.secure)
            .finish_non_exhaustive()
    }
}

impl ReadWriteLayer {
    /// A layer signing its cookie with a key derived from `secret` (at least 32 bytes; the same
    /// on every instance). Defaults: window 5 s, cookie `ts_rw`, not `Secure`.
    pub fn new(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < 32 {
            return Err(Error::KeyTooShort(secret.len()));
        }
        Ok(Self {
            state: Arc::new(State {
                key: Key::derive_from(secret),
                window: Duration::from_secs(5),
                cookie_name: "ts_rw".to_owned(),
                secure: false,
                clock: Arc::new(SystemClock),
            }),
        })
    }

    fn map(self, f: impl FnOnce(&mut State)) -> Self {
        let mut state = Arc::unwrap_or_clone(self.state);
        f(&mut state);
        Self {
            state: Arc::new(state),
        }
    }

    /// How long after a write the client's reads go to the primary (default 5 s). Choose it
    /// longer than the replication lag you tolerate.
    #[must_use]
    pub fn window(self, window: Duration) -> Self {
        self.map(|s| s.window = window)
    }

    /// The cookie's name (default `ts_rw`).
    pub fn cookie_name(self, name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(Error::CookieName(name));
        }
        Ok(self.map(|s| s.cookie_name = name))
    }

    /// Marks the cookie `Secure` (send it over HTTPS only). Default off.
    #[must_use]
    pub fn secure(self, secure: bool) -> Self {
        self.map(|s| s.secure = secure)
    }

    /// Replaces the wall clock (tests).
    #[must_use]
    pub fn clock(self, clock: impl Clock) -> Self {
        self.map(|s| s.clock = Arc::new(clock))
    }
}

impl State {
    /// The millisecond timestamp until which this request's client reads from the primary.
    fn primary_until<B>(&self, req: &Request<B>) -> Option<u64> {
        let jar = CookieJar::new();
        let signed = jar.signed(&self.key);
        req.headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| Cookie::parse(c.trim().to_owned()).ok())
            .filter(|c| c.name() == self.cookie_name)
            .find_map(|c| signed.verify(c)?.value().parse().ok())
    }

    fn decide<B>(&self, req: &Request<B>) -> DbRoute {
        if !is_safe(req.method()) {
            return DbRoute {
                target: Target::Primary,
                reason: Reason::Write,
            };
        }
        match self.primary_until(req) {
            Some(until) if self.clock.now_millis() < until => DbRoute {
                target: Target::Primary,
                reason: Reason::RecentWrite,
            },
            _ => DbRoute {
                target: Target::Replica,
                reason: Reason::Read,
            },
        }
    }

    fn cookie(&self) -> Option<HeaderValue> {
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let until = self.clock.now_millis().saturating_add(window_ms);
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(
            Cookie::build((self.cookie_name.clone(), until.to_string()))
                .path("/")
                .http_only(true)
                .secure(self.secure)
                .same_site(SameSite::Lax)
                .max_age(cookie::time::Duration::seconds(
                    i64::try_from(self.window.as_secs()).unwrap_or(i64::MAX) + 1,
                )),
        );
        let cookie = jar.delta().next()?;
        HeaderValue::from_str(&cookie.to_string()).ok()
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl<S> Layer<S> for ReadWriteLayer {
    type Service = ReadWrite<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadWrite {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// The middleware built by [`ReadWriteLayer`].
#[derive(Clone)]
pub struct ReadWrite<S> {
    inner: S,
    state: Arc<State>,
}

impl<S: fmt::Debug> fmt::Debug for ReadWrite<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadWrite")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ReadWrite<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let route = self.state.decide(&req);
        metrics::counter!(
            REPLICA_ROUTES_TOTAL,
            "target" => route.target.as_str(),
            "reason" => route.reason.as_str(),
        )
        .increment(1);
        req.extensions_mut().insert(route);
        ResponseFuture {
            inner: self.inner.call(req),
            state: (route.reason == Reason::Write).then(|| Arc::clone(&self.state)),
        }
    }
}

pin_project! {
    /// Response future of [`ReadWrite`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<Arc<State>>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let (Some(state), Ok(res)) = (this.state.take(), &mut result) {
            let status = res.status();
            if (status.is_success() || status.is_redirection())
                && let Some(cookie) = state.cookie()
            {
                res.headers_mut().append(header::SET_COOKIE, cookie);
            }
        }
        Poll::Ready(result)
    }
}

/// Forces a route's requests to one target, overriding [`ReadWriteLayer`]'s decision (apply it
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

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
