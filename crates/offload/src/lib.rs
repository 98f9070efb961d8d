//! Keep the tokio runtime responsive under load.
//!
//! # Overview
//!
//! - [`Offload`]: runs CPU-bound closures on a bounded pool off the async workers (a rayon
//!   pool by default, or tokio's blocking pool), with a queue bound. When it is full, callers
//!   get [`OffloadError::Overloaded`], which answers `503` + `Retry-After` as an axum response.
//! - [`PressureLayer`]: sheds requests with `503` + `Retry-After` while the runtime's
//!   scheduling lag (from [`tower_scale_metrics::RuntimeProbe`]), the requests in flight or the
//!   process's resident memory pass their thresholds (the response is a [`Refuse`] policy); health routes stay served; thresholds and
//!   current values are readable with [`PressureLayer::snapshot`] and the
//!   [`PRESSURE_SHED_TOTAL`] counter.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, extract::State, routing::get};
//! use tower_scale_metrics::RuntimeProbe;
//! use tower_scale_offload::{Offload, OffloadError, PressureLayer};
//!
//! async fn thumbnail(State(offload): State<Offload>) -> Result<String, OffloadError> {
//!     // CPU-heavy work runs off the async workers; a full pool answers 503.
//!     let size = offload.run(|| (0..50_000_000u64).map(|x| x % 7).sum::<u64>()).await?;
//!     Ok(size.to_string())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let probe = RuntimeProbe::new().spawn();
//! let app: Router = Router::new()
//!     .route("/thumbnail", get(thumbnail))
//!     .route("/livez", get(|| async { "ok" }))
//!     .with_state(Offload::builder().build()?)
//!     .layer(PressureLayer::new().lag_from(probe.watch()));
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod config;
mod error;
mod future;
mod layer;
pub mod names;
mod offload;
mod service;
mod state;

#[doc(inline)]
pub use self::{
    config::{OffloadConfig, PoolKind, PressureConfig},
    error::{OffloadError, Overloaded},
    future::ResponseFuture,
    layer::PressureLayer,
    names::{OFFLOAD_REJECTED_TOTAL, PRESSURE_SHED_TOTAL},
    offload::{Offload, OffloadBuilder},
    service::Pressure,
    state::{PressureSnapshot, ShedReason},
};
#[doc(inline)]
pub use tower_scale_core::{ConfigError, DefaultRefusal, Refusal, Refuse};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
