//! Every decision is a `debug` event, `rate limit decision`, with its `outcome` and the key's
//! kind, never the key: the store's (`allowed`, `rejected`), a keyless request's
//! (`missing_key`), the local share's while Redis fails (`fallback_allowed`,
//! `fallback_rejected`) and a refusal for want of the store (`store_error_refused`). Each test
//! logs into its own subscriber, the default of its current-thread runtime.

use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use tower_scale_ratelimit::{OnStoreError, Quota, RateLimitLayer, RedisStore};
use tower_scale_testkit::RedisServer;

use crate::support::*;

/// The API key the requests send: no event may show it.
const KEY: &str = "k-secret-91c2";

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        log.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// Installs a subscriber logging every `debug` event into a new log, for this thread.
    fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let log = Self::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    /// The `outcome` of each decision event, in order; checks that no line shows the key.
    fn outcomes(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned();
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
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn store_decisions_and_keyless_requests_are_traced() {
    let (log, _guard) = Log::install();
    let app = app(memory(vec![Quota::per_second(2)]));
    for _ in 0..3 {
        hit(&app, Some(KEY)).await;
    }
    assert_eq!(hit(&app, None).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        log.outcomes(),
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
    let (log, _guard) = Log::install();
    let server = RedisServer::start();
    let layer = |on_error| {
        RateLimitLayer::new(
            RedisStore::new(impatient_backend(&server)),
            [Quota::per_minute(1)],
        )
        .unwrap()
        .key_with(api_key())
        .on_store_error(on_error)
    };
    let open = app(layer(OnStoreError::FailOpen));
    let closed = app(layer(OnStoreError::FailClosed));
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
        log.outcomes(),
        [
            "allowed text",
            "fallback_allowed text",
            "fallback_rejected text",
            "store_error_refused text"
        ]
    );
}
