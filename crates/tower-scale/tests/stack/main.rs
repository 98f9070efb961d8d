//! The stack builder: one test module per section, each building the stack from TOML, sending
//! requests and observing what the section promises; and the layer order.
#![cfg(feature = "stack")]

mod breaker;
mod cache;
mod cluster;
mod compression;
mod metrics;
mod order;
mod pressure;
mod services;
mod session;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_scale_testkit::cookie_pair;

/// Sends a GET of `uri` with `headers`.
pub(crate) async fn send(
    app: &Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> axum::response::Response {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    request(app, req.body(Body::empty()).unwrap()).await
}

/// Sends `req`.
pub(crate) async fn request(app: &Router, req: Request<Body>) -> axum::response::Response {
    app.clone().oneshot(req).await.unwrap()
}

/// The body as text.
pub(crate) async fn body(res: axum::response::Response) -> String {
    String::from_utf8(body_bytes(res).await).unwrap()
}

/// The body's bytes.
pub(crate) async fn body_bytes(res: axum::response::Response) -> Vec<u8> {
    res.into_body().collect().await.unwrap().to_bytes().to_vec()
}

/// The `name=value` pair of a response's `Set-Cookie`.
pub(crate) fn session_cookie(res: &axum::response::Response) -> String {
    cookie_pair(res.headers()["set-cookie"].to_str().unwrap()).to_owned()
}

/// Lets the runtime probe measure one wake-up `lag` late (paused time): the probe sleeps
/// until its next deadline, the clock jumps past it by `lag`.
pub(crate) async fn lag_the_runtime(
    watch: &tower_scale::metrics::LagWatch,
    lag: std::time::Duration,
) {
    // The probe's first poll sets its first deadline, 100 ms ahead.
    tokio::task::yield_now().await;
    let before = watch.samples();
    tokio::time::advance(std::time::Duration::from_millis(100) + lag).await;
    for _ in 0..10_000 {
        if watch.samples() > before {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the runtime probe did not wake up");
}
