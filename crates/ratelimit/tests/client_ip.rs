//! The client address behind proxies ([`ClientIp`]): which header is read and which of its
//! entries are trusted, through the layer.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use tower::ServiceExt;
use tower_scale_ratelimit::{ClientIp, MemoryStore, Quota, RateLimitLayer};

/// A request from `peer` with these header lines.
fn request(peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::get("/");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

fn limited(key: ClientIp, quota: Quota) -> Router {
    Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::new(MemoryStore::new(10_000), [quota])
            .unwrap()
            .key_with(key),
    )
}

async fn statuses(app: &Router, requests: impl IntoIterator<Item = Request<Body>>) -> Vec<u16> {
    let mut out = Vec::new();
    for req in requests {
        out.push(app.clone().oneshot(req).await.unwrap().status().as_u16());
    }
    out
}

/// nginx (`proxy_add_x_forwarded_for`) appends to `X-Forwarded-For` and passes the client's own
/// `Forwarded` through: a fresh `Forwarded: for=` per request must not be a fresh bucket.
#[tokio::test(start_paused = true)]
async fn forwarded_header_from_client_cannot_pick_the_bucket() {
    let app = limited(ClientIp::new(1), Quota::per_second(1));
    let requests = (0..100).map(|i| {
        let forwarded = format!("for=198.51.100.{i}");
        request(
            "10.0.0.1:5000",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("forwarded", forwarded.as_str()),
            ],
        )
    });
    let statuses = statuses(&app, requests).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        99,
        "{statuses:?}"
    );
    assert_eq!(statuses[0], 200);
}
