//! Every decision is a `debug` event, `rate limit decision`, with its `outcome` and the key's
//! kind, never the key: the store's (`allowed`, `rejected`), a keyless request's
//! (`missing_key`), the local share's while Redis fails (`fallback_allowed`,
//! `fallback_rejected`) and a refusal for want of the store (`store_error_refused`). Each test
//! logs into its own subscriber, the default of its current-thread runtime.

use axum::http::StatusCode;
use tower_scale_ratelimit::{OnStoreError, Quota};
use tower_scale_testkit::RedisServer;

use crate::support::*;

/// The API key the requests send: no event may show it.
const KEY: &str = "k-secret-91c2";

/// The `outcome` and key kind of each decision event in `log`, in order; checks that no line
/// shows the key.
fn outcomes(log: &Log) -> Vec<String> {
    let text = log.text();
    assert!(!text.contains(KEY), "the key was logged: {text}");
    text.lines()
        .filter(|l| l.contains("rate limit decision"))
        .map(|l| {
            let field = |name: &str| {
                let start = l.find(&format!("{name}=")).unwrap_or_else(|| panic!("{l}"));
                let value = &l[start + name.len() + 1..];
                value[..value.find(' ').unwrap_or(value.len())].trim_matches('"')
            };
            assert_eq!(field("policy"), "default", "{l}");
            format!("{} {}", field("outcome"), field("key_kind"))
        })
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn store_decisions_and_keyless_requests_are_traced() {
    let (log, _guard) = Log::install(tracing::Level::DEBUG);
    let app = app(memory(vec![Quota::per_second(2)]));
    for _ in 0..3 {
        hit(&app, Some(KEY)).await;
    }
    assert_eq!(hit(&app, None).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        outcomes(&log),
        [
            "allowed text",
            "allowed text",
            "rejected text",
            "missing_key none"
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn decisions_while_redis_fails_are_traced_apart() {
    let (log, _guard) = Log::install(tracing::Level::DEBUG);
    let server = RedisServer::start();
    let open = app(per_minute_on_redis(&server, OnStoreError::FailOpen));
    let closed = app(per_minute_on_redis(&server, OnStoreError::FailClosed));
    assert_eq!(hit(&open, Some(KEY)).await.status(), StatusCode::OK);
    server.pause();
    assert_eq!(hit(&open, Some(KEY)).await.status(), StatusCode::OK);
    assert_eq!(
        hit(&open, Some(KEY)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        hit(&closed, Some(KEY)).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.resume();
    assert_eq!(
        outcomes(&log),
        [
            "allowed text",
            "fallback_allowed text",
            "fallback_rejected text",
            "store_error_refused text"
        ]
    );
}
