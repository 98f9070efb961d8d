//! Response compression that is right by default, as a preset over tower-http's
//! `CompressionLayer` (which does the encoding), plus bounded request decompression.
//!
//! # Overview
//!
//! [`CompressionLayer`] adds to tower-http what it leaves to the user:
//!
//! - **Negotiation with a server preference order**: `Accept-Encoding` q-values decide, ties go
//!   to the server's order (default zstd, br, gzip, deflate), `*` and `identity;q=0` are
//!   honoured.
//! - **A level per algorithm** (e.g. brotli 4 and gzip 6), where tower-http has one for all.
//! - **Skipped responses**: below a minimum size (default 1 KiB), already-compressed types
//!   (images, video, audio, archives, woff2), server-sent events, `Cache-Control:
//!   no-transform`, already encoded bodies, and `HEAD` requests.
//! - **Headers right**: `Vary: Accept-Encoding` on every response whose body depends on it,
//!   `Content-Length` dropped when the body is encoded (tower-http), and the `ETag` of an
//!   encoded variant made weak.
//!
//! [`RequestDecompressionLayer`] decompresses request bodies with a hard limit on the
//! decompressed size: a zip bomb is answered `413 Payload Too Large` and never allocated past
//! the limit.
//!
//! Place a response cache **outside** this layer: the cache then stores the encoded variant
//! (keyed by `Vary: Accept-Encoding`) and serves it without compressing again.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{Router, body::Body, http::Request, routing::get};
//! use tower::ServiceExt;
//! use tower_scale_compression::{CompressionLayer, Encoding};
//!
//! let app = Router::new()
//!     .route("/json", get(|| async { "{\"data\":\"".to_owned() + &"x".repeat(4096) + "\"}" }))
//!     .layer(CompressionLayer::new().level(Encoding::Gzip, 6));
//! let req = Request::get("/json").header("accept-encoding", "gzip;q=1, br;q=0.5").body(Body::empty()).unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["content-encoding"], "gzip");
//! assert_eq!(res.headers()["vary"], "accept-encoding");
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod adaptive;
mod body;
mod config;
mod decompression;
mod encode;
mod future;
mod layer;
mod predicate;

#[doc(inline)]
pub use self::{
    adaptive::{LagSignal, Load, LoadSignal},
    body::CompressionBody,
    config::{AdaptiveConfig, CompressionConfig, Encoding, OffloadPolicy},
    decompression::{RequestDecompression, RequestDecompressionLayer},
    future::ResponseFuture,
    layer::{Compression, CompressionLayer, negotiate},
    predicate::DefaultPredicate,
};

/// The pool the large and expensive bodies are encoded on (re-exported from
/// `tower-scale-offload`).
pub use tower_scale_offload::{Offload, OffloadConfig, PoolKind};

/// Type-erased errors of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An invalid [`CompressionConfig`]; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("invalid compression config: {0}")]
pub struct ConfigError(pub(crate) String);

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
