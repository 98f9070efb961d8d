//! The shutdown phases with paused time (`phases`), and drains over real sockets (`socket`).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use tokio::time::{advance, sleep};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_scale_shutdown::{Phase, Shutdown, ShutdownConfig};

pub(crate) fn config() -> ShutdownConfig {
    timings(
        Duration::from_secs(5),
        Duration::from_secs(30),
        Duration::from_secs(10),
    )
}

pub(crate) fn timings(
    pre_stop_delay: Duration,
    drain_timeout: Duration,
    tasks_timeout: Duration,
) -> ShutdownConfig {
    let mut config = ShutdownConfig::default();
    config.pre_stop_delay = pre_stop_delay;
    config.drain_timeout = drain_timeout;
    config.tasks_timeout = tasks_timeout;
    config
}

/// A stand-in for `axum::serve(..).with_graceful_shutdown(..)`: stops when told to and once
/// no request is in flight.
pub(crate) fn serve(
    shutdown: &Shutdown,
) -> impl Future<Output = Result<(), String>> + Send + 'static {
    let stop = shutdown.stop_accepting();
    let s = shutdown.clone();
    async move {
        stop.await;
        while s.in_flight() > 0 {
            sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// A request through the in-flight layer to a handler that takes `secs`.
pub(crate) fn slow_request(
    shutdown: &Shutdown,
    secs: u64,
) -> tokio::task::JoinHandle<Response<Body>> {
    let mut svc = ServiceBuilder::new().layer(shutdown.layer()).service_fn(
        move |_req: Request<Body>| async move {
            sleep(Duration::from_secs(secs)).await;
            Ok::<_, Infallible>(Response::new(Body::from("done")))
        },
    );
    tokio::spawn(async move {
        let svc = svc.ready().await.unwrap();
        svc.call(Request::new(Body::empty())).await.unwrap()
    })
}

/// An app with `/` (answers at once) and `/slow` (answers once `release` says so).
pub(crate) fn slow_app(release: tokio::sync::watch::Receiver<bool>) -> axum::Router {
    axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route(
            "/slow",
            axum::routing::get(move || {
                let mut release = release.clone();
                async move {
                    let _ = release.wait_for(|r| *r).await;
                    "slow done"
                }
            }),
        )
}

mod phases;
mod serve;
mod socket;
