//! The main tower-scale example: an axum app on in-memory defaults, Redis when `REDIS_URL`
//! is set. It grows as layers land.
//!
//! Run with
//!
//! ```not_rust
//! cargo run -p example-quickstart
//! curl http://127.0.0.1:3000/hello
//! curl http://127.0.0.1:3000/readyz
//! curl http://127.0.0.1:3000/metrics
//! ```
//!
//! Environment: `PORT` (3000), `HOST` (127.0.0.1), `REDIS_URL` (unset: in-memory), and the
//! other `REDIS_*` variables of `tower_scale::redis::RedisConfig::from_env`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tower_scale::metrics::{MetricsLayer, PrometheusMetrics, RuntimeProbe};
use tower_scale::redis::{RedisBackend, RedisConfig};

/// Shared application state.
#[derive(Clone, Debug, Default)]
struct AppState {
    /// The Redis backend, when `REDIS_URL` is set.
    redis: Option<RedisBackend>,
}

/// Builds the app; `redis` is `None` on in-memory defaults. `metrics` serves `/metrics`.
fn app(redis: Option<RedisBackend>, metrics: &PrometheusMetrics) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(MetricsLayer::new())
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics.handler()))
        .with_state(AppState { redis })
}

/// Ready when the backend (if any) answers a PING.
async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    match &state.redis {
        None => (StatusCode::OK, "ready (in-memory)".to_owned()),
        Some(redis) => match redis.ping().await {
            Ok(rtt) => (StatusCode::OK, format!("ready (redis {rtt:?})")),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
        },
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let metrics = PrometheusMetrics::install()?;
    let _probe = RuntimeProbe::new().spawn();
    let redis = match RedisConfig::from_env()? {
        Some(config) => Some(RedisBackend::new(config)?),
        None => None,
    };
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port: u16 = std::env::var("PORT")
        .ok()
        .map(|p| p.parse())
        .transpose()
        .map_err(|e| format!("PORT: {e}"))?
        .unwrap_or(3000);
    let addr: SocketAddr = format!("{host}:{port}").parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(
        %addr,
        backend = if redis.is_some() { "redis" } else { "in-memory" },
        "listening"
    );
    axum::serve(listener, app(redis, &metrics))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn test_app() -> Router {
        let (recorder, metrics) = PrometheusMetrics::builder().build().unwrap();
        // Tests do not install a global recorder; the layer records into a no-op one.
        drop(recorder);
        app(None, &metrics)
    }

    #[tokio::test]
    async fn hello_and_readyz_on_in_memory_defaults() {
        let res = test_app()
            .oneshot(Request::get("/hello").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            &res.into_body().collect().await.unwrap().to_bytes()[..],
            b"hello"
        );
        let res = test_app()
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
