//! The response: `RateLimit` fields and the refusal's body.

use axum::Router;
use axum::body::Body;
use axum::http::{Response, StatusCode};
use axum::routing::get;
use tower_scale_ratelimit::Quota;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn headers_on_every_response() {
    let app = app(memory(vec![Quota::per_minute(3)]));
    let res = hit(&app, Some("h")).await;
    assert_eq!(res.headers()["ratelimit-policy"], r#""default";q=3;w=60"#);
    assert_eq!(res.headers()["ratelimit"], r#""default";r=2;t=20"#);
    let app2 = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(memory(vec![Quota::per_minute(3)]).headers(false));
    let res = hit(&app2, Some("h")).await;
    assert!(res.headers().get("ratelimit").is_none());
}

#[tokio::test(start_paused = true)]
async fn the_rejection_body_is_customisable() {
    use tower_scale_ratelimit::{Decision, Refusal};
    let layer = memory(vec![Quota::per_minute(1)]).refuse_with(|refusal: &Refusal<'_>| {
        let wait = refusal
            .get::<Decision>()
            .map_or(0, |d| d.retry_after.as_secs());
        Response::builder()
            .status(refusal.status())
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"error":"slow down","retry_in_s":{wait}}}"#
            )))
            .unwrap()
    });
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    hit(&app, Some("j")).await;
    let res = hit(&app, Some("j")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["retry-after"], "60");
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], br#"{"error":"slow down","retry_in_s":60}"#);
}
