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

mod error;
mod force;
mod future;
mod layer;
pub mod names;
mod route;
mod service;

#[doc(inline)]
pub use self::{
    error::Error,
    force::{ForceTarget, ForceTargetLayer},
    future::ResponseFuture,
    layer::ReadWriteLayer,
    names::REPLICA_ROUTES_TOTAL,
    route::{DbRoute, Reason, Target},
    service::ReadWrite,
};
#[doc(inline)]
pub use tower_scale_core::{Clock, SystemClock};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
