//! The HTTP layer: classification, fast rejection with Retry-After, fallbacks, keyed breakers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use axum::routing::get;
use tower::ServiceExt;
use tower_scale_breaker::{
    BreakerConfig, BreakerLayer, CircuitBreaker, KeyedBreakers, Outcome, SlidingWindow, State,
};

fn config() -> BreakerConfig {
    let mut config = BreakerConfig::default();
    config.sliding_window = SlidingWindow::Count { size: 4 };
    config.minimum_calls = 4;
    config.wait_in_open = Duration::from_secs(20);
    config.permitted_calls_in_half_open = 1;
    config
}

async fn get_path(app: &Router, path: &str) -> Response<Body> {
    app.clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// A downstream answering 500 while `failing` is set, counting its calls.
fn flaky(failing: Arc<AtomicUsize>, calls: Arc<AtomicUsize>) -> Router {
    Router::new().route(
        "/down",
        get(move || {
            let failing = Arc::clone(&failing);
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if failing.load(Ordering::SeqCst) > 0 {
                    (StatusCode::INTERNAL_SERVER_ERROR, [("retry-after", "7")]).into_response()
                } else {
                    "up".into_response()
                }
            }
        }),
    )
}

use axum::response::IntoResponse;

#[tokio::test(start_paused = true)]
async fn server_errors_open_the_breaker_and_it_answers_503_fast() {
    let failing = Arc::new(AtomicUsize::new(1));
    let calls = Arc::new(AtomicUsize::new(0));
    let breaker = CircuitBreaker::new(config()).unwrap();
    let app =
        flaky(Arc::clone(&failing), Arc::clone(&calls)).layer(BreakerLayer::new(breaker.clone()));
    for _ in 0..4 {
        assert_eq!(
            get_path(&app, "/down").await.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(breaker.state(), State::Open);
    let res = get_path(&app, "/down").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The downstream's Retry-After (7 s) set the open period.
    assert_eq!(res.headers()["retry-after"], "7");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "rejected calls never reach the service"
    );
    // Recovery: after the wait a probe goes through and closes the breaker.
    failing.store(0, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(7)).await;
    assert_eq!(get_path(&app, "/down").await.status(), StatusCode::OK);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_successes_and_classifiers_are_pluggable() {
    let breaker = CircuitBreaker::new(config()).unwrap();
    let app = Router::new()
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route("/limited", get(|| async { StatusCode::TOO_MANY_REQUESTS }))
        .layer(BreakerLayer::new(breaker.clone()));
    for _ in 0..10 {
        get_path(&app, "/missing").await;
    }
    assert_eq!(
        breaker.state(),
        State::Closed,
        "404s say nothing bad about the service"
    );

    // A classifier that counts 429 as failure and ignores 404.
    let breaker = CircuitBreaker::new(config()).unwrap();
    let app = Router::new()
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route("/limited", get(|| async { StatusCode::TOO_MANY_REQUESTS }))
        .layer(BreakerLayer::new(breaker.clone()).classify_with(
            |status: StatusCode, _: &HeaderMap| match status {
                StatusCode::NOT_FOUND => Outcome::Ignored,
                s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => Outcome::FAILURE,
                _ => Outcome::Success,
            },
        ));
    for _ in 0..10 {
        get_path(&app, "/missing").await;
    }
    assert_eq!(
        breaker.snapshot().calls,
        0,
        "ignored outcomes are not recorded"
    );
    for _ in 0..4 {
        get_path(&app, "/limited").await;
    }
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test]
async fn fallback_and_status_are_configurable() {
    let breaker = CircuitBreaker::new(config()).unwrap();
    breaker.force_open();
    let app = Router::new().route("/x", get(|| async { "x" })).layer(
        BreakerLayer::new(breaker.clone()).refuse_with(|r: &tower_scale_breaker::Refusal<'_>| {
            let r = r.get::<tower_scale_breaker::Rejected>().unwrap();
            Response::builder()
                .status(StatusCode::OK)
                .body(Body::from(format!(
                    "cached answer ({})",
                    r.state().as_str()
                )))
                .unwrap()
        }),
    );
    let res = get_path(&app, "/x").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"cached answer (forced_open)");

    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(BreakerLayer::new(breaker).status(StatusCode::BAD_GATEWAY));
    let res = get_path(&app, "/x").await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(
        res.headers().get("retry-after").is_none(),
        "forced open has no known end"
    );
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_isolate_routes_and_stay_bounded() {
    let breakers = KeyedBreakers::new(config(), 2).unwrap();
    let app = Router::new()
        .route("/a", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/b", get(|| async { "b" }))
        .route("/c/{n}", get(|| async { "c" }))
        .layer(BreakerLayer::keyed(breakers.clone(), |uri, _| {
            uri.path().to_owned()
        }));
    for _ in 0..4 {
        get_path(&app, "/a").await;
    }
    assert_eq!(
        get_path(&app, "/a").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get_path(&app, "/b").await.status(),
        StatusCode::OK,
        "/b has its own breaker"
    );
    assert_eq!(breakers.get("/a").state(), State::Open);
    for n in 0..50 {
        get_path(&app, &format!("/c/{n}")).await;
    }
    assert!(breakers.len() <= 2, "{} keys held", breakers.len());
    assert!(KeyedBreakers::new(config(), 0).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_layer_from_config_refuses_through_a_closure_with_retry_after() {
    let failing = Arc::new(AtomicUsize::new(1));
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = BreakerLayer::from_config(&config()).unwrap().refuse_with(
        |r: &tower_scale_breaker::Refusal<'_>| {
            let rejected = r.get::<tower_scale_breaker::Rejected>().unwrap();
            (
                r.status(),
                format!("{} ({})", r.reason(), rejected.state().as_str()),
            )
                .into_response()
        },
    );
    let app = flaky(Arc::clone(&failing), Arc::clone(&calls)).layer(layer);
    for _ in 0..4 {
        get_path(&app, "/down").await;
    }
    let res = get_path(&app, "/down").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The layer adds the wait the closure did not set.
    assert_eq!(res.headers()["retry-after"], "7");
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"circuit-open (open)");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let mut bad = config();
    bad.minimum_calls = 0;
    assert_eq!(
        BreakerLayer::from_config(&bad).unwrap_err().field(),
        "minimum_calls"
    );
}
