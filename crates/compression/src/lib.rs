//! Response compression that is right by default and stays off the critical path, as a preset
//! over tower-http's `CompressionLayer` and async-compression's encoders, plus bounded request
//! decompression.
//!
//! # Overview
//!
//! [`CompressionLayer`] adds to tower-http what it leaves to the user:
//!
//! - **Negotiation with a server preference order**: `Accept-Encoding` q-values decide, ties go
//!   to the server's order (default zstd, br, gzip, deflate), `*` and `identity;q=0` are
//!   honoured; when nothing is acceptable the body is sent as it is (never `406`).
//! - **A level per algorithm** (default zstd 3, br 4, gzip 6, deflate 6).
//! - **Encoding off the async workers**: a body of known length (`String`, `Vec<u8>`, JSON...)
//!   of at least 64 KiB, or any compressible one at an expensive level (brotli 5 and up, zstd
//!   10 and up), is encoded on a bounded pool ([`Offload`]; by default one rayon pool per process),
//!   so a slow encoder never stalls the other requests of a worker. The headers are those of
//!   the tower-http path, with an exact `Content-Length`. A full pool sends the body
//!   uncompressed rather than queueing without bound. See [`OffloadPolicy`].
//! - **Adaptive levels**: with a load signal (the scheduling lag of
//!   `tower_scale_metrics::RuntimeProbe`, or any [`LoadSignal`]), levels drop while the service
//!   is busy or saturated (brotli 11 → 4 → 1, gzip 6 → 4 → 1). See [`AdaptiveConfig`].
//! - **Streaming**: bodies of unknown length (server-sent events, streams) are encoded by
//!   tower-http chunk by chunk and flushed whenever the body waits, so each event reaches the
//!   client when it is produced.
//! - **Skipped responses**: below a minimum size (default 1 KiB), already-compressed types
//!   (images, video, audio, archives, woff2, gRPC), `Cache-Control: no-transform`, already
//!   encoded bodies, ranges, and `HEAD` requests.
//! - **Headers right**: `Vary: Accept-Encoding` on every response whose body depends on it,
//!   `Content-Length` dropped (streamed) or exact (encoded on the pool), `Accept-Ranges`
//!   dropped, and the `ETag` of an encoded variant made weak.
//!
//! [`RequestDecompressionLayer`] decompresses request bodies with a hard limit on the
//! decompressed size: a zip bomb is answered `413 Payload Too Large` and never allocated past
//! the limit.
//!
//! Place a response cache **outside** this layer: the cache then stores the encoded variant
//! (keyed by `Vary: Accept-Encoding`) and serves it without compressing again. The
//! [guide](https://github.com/tower-scale/tower-scale/blob/main/docs/compression.md) covers the defaults, the layer order, what runs
//! where and the adaptive signal.
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
//!     .route("/report", get(|| async { "report line\n".repeat(10_000) }))
//!     .layer(CompressionLayer::new().level(Encoding::Gzip, 6).level(Encoding::Br, 11));
//! let req = Request::get("/json").header("accept-encoding", "gzip;q=1, br;q=0.5").body(Body::empty()).unwrap();
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["content-encoding"], "gzip");
//! assert_eq!(res.headers()["vary"], "accept-encoding");
//! // brotli 11 is expensive: encoded on the pool, sent with its exact length.
//! let req = Request::get("/report").header("accept-encoding", "br").body(Body::empty()).unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["content-encoding"], "br");
//! assert!(res.headers().contains_key("content-length"));
//! # }
//! ```
//!
//! With adaptive levels driven by the runtime's scheduling lag:
//!
//! ```no_run
//! # async fn run() {
//! use axum::{Router, routing::get};
//! use tower_scale_compression::{CompressionLayer, Encoding};
//! use tower_scale_metrics::RuntimeProbe;
//!
//! let probe = RuntimeProbe::new().spawn();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(CompressionLayer::new().level(Encoding::Br, 11).adapt_to_lag(probe.watch()));
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
// The docs link to items of every feature: broken only in a build without some of them (docs.rs
// and the default build have them all, and check the links).
#![cfg_attr(
    not(all(
        feature = "pool",
        feature = "adaptive",
        feature = "decompression",
        feature = "config",
        feature = "br",
        feature = "zstd"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod adaptive;
mod body;
mod config;
#[cfg(feature = "decompression")]
mod decompression;
#[cfg(feature = "pool")]
mod encode;
mod future;
mod layer;
mod predicate;
mod service;
mod shared;

#[cfg(feature = "adaptive")]
#[cfg_attr(docsrs, doc(cfg(feature = "adaptive")))]
#[doc(inline)]
pub use self::adaptive::LagSignal;
#[cfg(feature = "decompression")]
#[cfg_attr(docsrs, doc(cfg(feature = "decompression")))]
#[doc(inline)]
pub use self::decompression::{RequestDecompression, RequestDecompressionLayer};
#[doc(inline)]
pub use self::{
    adaptive::{Load, LoadSignal},
    body::CompressionBody,
    config::{AdaptiveConfig, CompressionConfig, Encoding, OffloadPolicy},
    future::ResponseFuture,
    layer::CompressionLayer,
    predicate::DefaultPredicate,
    service::{Compression, negotiate},
};

/// The pool the large and expensive bodies are encoded on (re-exported from
/// `tower-scale-offload`).
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub use tower_scale_offload::{Offload, OffloadConfig, PoolKind};

/// Type-erased errors of response bodies, and an invalid [`CompressionConfig`] (naming the
/// field), from `tower-scale-core`.
pub use tower_scale_core::{BoxError, ConfigError};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
