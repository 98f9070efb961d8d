//! Offload keeps cheap requests moving while CPU work runs (`pool`); PressureLayer sheds under
//! lag, in-flight and memory pressure and recovers (`pressure`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_scale_metrics::RuntimeProbe;
use tower_scale_offload::{
    DefaultRefusal, Offload, OffloadError, PoolKind, PressureConfig, PressureLayer, ShedReason,
};

pub(crate) const KINDS: [PoolKind; 2] = [PoolKind::Rayon, PoolKind::TokioBlocking];

pub(crate) async fn get_status(app: &Router, path: &str) -> (StatusCode, Option<String>) {
    let res = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let reason = res
        .headers()
        .get("x-shed-reason")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status(), reason)
}

/// Spins for `ms` milliseconds of wall time (CPU-bound, never yields).
pub(crate) fn spin(ms: u64) {
    let end = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < end {
        std::hint::spin_loop();
    }
}

mod pool;
mod pressure;
