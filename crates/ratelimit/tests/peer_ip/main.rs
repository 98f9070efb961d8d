//! The default key, `PeerIp`, on a server that does not give the peer address
//! (`axum::serve(listener, app)` without `into_make_service_with_connect_info`): every request
//! is refused, so the layer says why in the body and logs the cause once.

#[path = "../support/mod.rs"]
mod support;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::{Router, routing::get};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_scale_ratelimit::{MemoryStore, Quota, RateLimitLayer};

fn app() -> Router {
    let limit = RateLimitLayer::new(MemoryStore::new(1_000), [Quota::per_second(100)]).unwrap();
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(limit)
}

// One thread: the subscriber set below is this thread's default.
#[tokio::test(flavor = "current_thread")]
async fn without_connect_info_the_refusal_says_why_and_the_cause_is_logged_once() {
    let (log, _default) = support::Log::install(tracing::Level::INFO);

    let app = app();
    for _ in 0..3 {
        let res = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(
            body.contains("no peer address")
                && body.contains("into_make_service_with_connect_info"),
            "{body}"
        );
    }
    let logged = log.text();
    assert_eq!(logged.matches("ERROR").count(), 1, "{logged}");
    assert!(
        logged.contains("into_make_service_with_connect_info"),
        "{logged}"
    );

    // Served with the peer address, the same layer admits.
    let peer: std::net::SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::OK);
    assert_eq!(log.text().matches("ERROR").count(), 1);
    a_custom_refusal_reads_the_reason().await;
}

// Run after the logging test, in it: tracing caches a call site's interest process-wide, so a
// test hitting the same `error!` on another thread without a subscriber could leave it off.
async fn a_custom_refusal_reads_the_reason() {
    let limit = RateLimitLayer::new(MemoryStore::new(1_000), [Quota::per_second(100)])
        .unwrap()
        .refuse_with(|r: &tower_scale_ratelimit::Refusal<'_>| {
            let mut res = axum::response::Response::new(Body::from(r.reason()));
            *res.status_mut() = r.status();
            res
        });
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(limit);
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"missing-peer-address");
}
