//! The client address behind proxies ([`ClientIp`]): which header is read and which of its
//! entries are trusted, through the layer.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt;
use tower_scale_ratelimit::{
    ClientIp, ForwardedHeader, MemoryStore, Quota, RateLimitConfig, RateLimitLayer,
};

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

async fn statuses_of(app: &Router, requests: impl IntoIterator<Item = Request<Body>>) -> Vec<u16> {
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
    let statuses = statuses_of(&app, requests).await;
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

/// The same attack behind a CDN trusted by its address ranges, writing `Forwarded`: a client's
/// `X-Forwarded-For`, or `Forwarded` elements left of the CDN's, never pick the bucket.
#[tokio::test(start_paused = true)]
async fn spoofed_entries_left_of_the_trusted_ranges_cannot_pick_the_bucket() {
    let cdn = ClientIp::trusting(["10.0.0.0/8", "192.0.2.0/24"])
        .unwrap()
        .header(ForwardedHeader::Forwarded);
    let app = limited(cdn, Quota::per_second(1));
    let requests = (0..100).map(|i| {
        let forwarded = format!("for=198.51.100.{i}, for=203.0.113.9, for=192.0.2.1");
        let xff = format!("198.51.100.{i}");
        request(
            "10.0.0.1:5000",
            &[("x-forwarded-for", &xff), ("forwarded", &forwarded)],
        )
    });
    let statuses = statuses_of(&app, requests).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    // A client talking to the service directly (an untrusted peer) is keyed by its own
    // address, whatever it writes.
    let direct = (0..3).map(|i| {
        let forwarded = format!("for=203.0.113.{i}");
        request("198.51.100.77:5000", &[("forwarded", &forwarded)])
    });
    assert_eq!(statuses_of(&app, direct).await, [200, 429, 429]);
}

/// The config names the header (required) and either a hop count or the proxies' ranges;
/// a typo in either is an error naming it, never a silently trusted header.
#[tokio::test(start_paused = true)]
async fn client_ip_config_names_its_header_and_its_trusted_proxies() {
    let parse = |key: &str| {
        serde_json::from_str::<RateLimitConfig>(&format!(
            r#"{{"quotas": [{{"count": 1, "period": "1s"}}], "key": {key}}}"#
        ))
    };
    let build = |key: &str| {
        RateLimitLayer::from_config(MemoryStore::new(100), &parse(key).unwrap()).map(|_| ())
    };
    let config =
        parse(r#"{"type": "client_ip", "header": "forwarded", "trusted_proxies": ["10.0.0.0/8"]}"#)
            .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::from_config(MemoryStore::new(100), &config).unwrap());
    let requests = (0..3).map(|i| {
        let xff = format!("198.51.100.{i}");
        request(
            "10.0.0.1:5000",
            &[("x-forwarded-for", &xff), ("forwarded", "for=203.0.113.9")],
        )
    });
    assert_eq!(statuses_of(&app, requests).await, [200, 429, 429]);
    build(r#"{"type": "client_ip", "header": "x-real-ip", "trusted_hops": 1}"#).unwrap();
    build(r#"{"type": "client_ip", "header": {"custom": "CF-Connecting-IP"}, "trusted_hops": 1}"#)
        .unwrap();

    let err = parse(r#"{"type": "client_ip", "trusted_hops": 1}"#).unwrap_err();
    assert!(err.to_string().contains("missing field `header`"), "{err}");
    let err = parse(r#"{"type": "client_ip", "header": "x-forwared-for", "trusted_hops": 1}"#)
        .unwrap_err();
    assert!(err.to_string().contains("x-forwared-for"), "{err}");
    let err =
        parse(r#"{"type": "client_ip", "header": "forwarded", "trusted_hop": 1}"#).unwrap_err();
    assert!(err.to_string().contains("trusted_hop"), "{err}");
    let err = build(
        r#"{"type": "client_ip", "header": "forwarded", "trusted_proxies": ["10.0.0.0/8", "10.1.0.0/40"]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"10.1.0.0/40\""), "{err}");
    let err =
        build(r#"{"type": "client_ip", "header": {"custom": "bad header"}, "trusted_hops": 1}"#)
            .unwrap_err();
    assert!(err.to_string().contains("bad header"), "{err}");
    for both_or_neither in [
        r#"{"type": "client_ip", "header": "forwarded"}"#,
        r#"{"type": "client_ip", "header": "forwarded", "trusted_hops": 1, "trusted_proxies": ["10.0.0.1"]}"#,
    ] {
        let err = build(both_or_neither).unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
    }
}
