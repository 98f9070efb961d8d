//! Graceful shutdown for tower/axum services, so a deploy's restarts drop no request.
//!
//! # Overview
//!
//! [`Shutdown`] catches SIGTERM / SIGINT (a second signal forces the exit) or a programmatic
//! [`trigger`](Shutdown::trigger), then runs its [`Phase`]s in order, each logged and exported
//! as the `shutdown_phase` gauge:
//!
//! 1. readiness flips (`/readyz` answers 503, `/livez` stays 200) and the service keeps serving
//!    for a pre-stop delay, so the load balancer takes it out of rotation; from now on responses
//!    carry `Connection: close` ([`InFlightLayer`]), so pooled keep-alive connections move away
//!    while the listener still accepts;
//! 2. the listener stops accepting. [`Shutdown::serve`] (the accept loop, feature `serve`)
//!    closes no connection a client may be sending a request on: an idle keep-alive connection
//!    stays open until its next request, answered with `Connection: close`, or until the client
//!    closes it; HTTP/2 connections get `GOAWAY` and finish their streams; the listener's
//!    accept backlog is served, not reset ([`close_listener`]). With
//!    `axum::serve(..).with_graceful_shutdown(shutdown.stop_accepting())` instead, idle
//!    keep-alive connections close at once, which loses requests a proxy was sending on them;
//! 3. in-flight requests drain up to a deadline; long-lived connections (WebSocket, SSE) watch
//!    [`Shutdown::requested`] to close, and run in [`Shutdown::tracker`] to be awaited;
//! 4. background tasks (tokio-util's `TaskTracker` / `CancellationToken`) are cancelled and
//!    awaited up to a deadline;
//! 5. cleanup hooks run, each with its own timeout;
//! 6. [`Report::exit_code`] says whether it all finished in time.
//!
//! For restarts of a single host without a refused connection, [`listener`] takes the socket
//! from systemd socket activation, or binds with `SO_REUSEPORT`.
//!
//! See [`Shutdown`] for a full example.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

#[cfg(feature = "serve")]
mod connection;
mod coordinator;
#[cfg(feature = "axum")]
mod health;
mod layer;
mod listener;
pub mod names;
#[cfg(feature = "serve")]
mod serve;

#[doc(inline)]
pub use self::{
    coordinator::{Phase, Report, Shutdown, ShutdownConfig},
    layer::{CountConnections, Counted, InFlight, InFlightLayer, ResponseFuture},
    listener::{close_listener, listener},
};

#[cfg(feature = "serve")]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
#[doc(inline)]
pub use self::{
    connection::{BoxError, HttpService},
    serve::Serve,
};

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[doc(inline)]
pub use self::health::HealthRoutes;

pub use tokio_util::sync::CancellationToken;
pub use tokio_util::task::TaskTracker;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
