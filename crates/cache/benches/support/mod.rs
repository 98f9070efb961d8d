//! What the cache benches share: settings from the environment, the bench contract's
//! `/cached/{id}` document and origin, and the Rust peer's cache-aside handler.
#![allow(dead_code, missing_docs)]

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::routing::get;
use tower_scale_redis::{RedisBackend, redis};

/// A number from the environment, or `default`.
pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `/cached/{id}` origin document of the bench contract: exactly 1024 bytes.
pub(crate) fn origin_doc(id: &str) -> String {
    let head = format!(
        "{{\"id\":\"{id}\",\"name\":\"item {id}\",\"source\":\"origin\",\"description\":\""
    );
    let tail = "\"}";
    let filler = "lorem ipsum dolor sit amet consectetur adipiscing elit ";
    let need = 1024 - head.len() - tail.len();
    let mut desc = filler.repeat(need / filler.len() + 1);
    desc.truncate(need);
    format!("{head}{desc}{tail}")
}

/// The contract's origin without a delay, as a handler of its own (to wrap with
/// `Handler::layer`).
pub(crate) async fn origin_handler(Path(id): Path<String>) -> impl axum::response::IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        origin_doc(&id),
    )
}

/// The contract's origin: a 5 ms "query" (`delay`; zero for none), then the document.
pub(crate) fn origin(delay: Duration) -> Router {
    Router::new().route(
        "/cached/{id}",
        get(move |Path(id): Path<String>| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            (
                [(header::CONTENT_TYPE, "application/json")],
                origin_doc(&id),
            )
        }),
    )
}

/// The Rust peer's hit: `GET raw:cached:{id}` through `backend` → the bytes, as JSON. Its
/// entries are written by [`store_raw`].
pub(crate) fn raw_get_app(backend: RedisBackend) -> Router {
    Router::new()
        .route(
            "/cached/{id}",
            get(
                |State(b): State<RedisBackend>, Path(id): Path<String>| async move {
                    let body: Vec<u8> = b
                        .query(redis::cmd("GET").arg(format!("raw:cached:{id}")))
                        .await
                        .unwrap();
                    ([(header::CONTENT_TYPE, "application/json")], body)
                },
            ),
        )
        .with_state(backend)
}

/// The peer's handler on the peer's connection: the same `GET` as [`raw_get_app`] on a bare
/// redis-rs `MultiplexedConnection`, without `RedisBackend`.
pub(crate) fn redis_rs_get_app(conn: redis::aio::MultiplexedConnection) -> Router {
    Router::new()
        .route(
            "/cached/{id}",
            get(
                |State(mut c): State<redis::aio::MultiplexedConnection>, Path(id): Path<String>| async move {
                    let body: Vec<u8> = redis::cmd("GET")
                        .arg(format!("raw:cached:{id}"))
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    ([(header::CONTENT_TYPE, "application/json")], body)
                },
            ),
        )
        .with_state(conn)
}

/// The peer's handler on tower-scale's typed API: `cache.get_or_fetch_bytes("cached:{id}")`,
/// the origin on a miss, the bytes as JSON.
pub(crate) fn fetch_bytes_app(cache: tower_scale_cache::Cache) -> Router {
    Router::new()
        .route(
            "/cached/{id}",
            get(
                |State(cache): State<tower_scale_cache::Cache>, Path(id): Path<String>| async move {
                    let body = cache
                        .get_or_fetch_bytes(
                            &format!("cached:{id}"),
                            Duration::from_secs(60),
                            || async {
                                Ok::<_, std::convert::Infallible>(bytes::Bytes::from(origin_doc(
                                    &id,
                                )))
                            },
                        )
                        .await
                        .unwrap();
                    ([(header::CONTENT_TYPE, "application/json")], body)
                },
            ),
        )
        .with_state(cache)
}

/// Stores the document of `id` for [`raw_get_app`].
pub(crate) async fn store_raw(backend: &RedisBackend, id: &str) {
    backend
        .query::<()>(
            redis::cmd("SET")
                .arg(format!("raw:cached:{id}"))
                .arg(origin_doc(id)),
        )
        .await
        .unwrap();
}

/// One `GET uri` through a clone of `app`, as a server would call it; the body's length.
pub(crate) async fn call(app: &Router, uri: &str) -> usize {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let res = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(res.status().is_success(), "{uri}: {}", res.status());
    res.into_body().collect().await.unwrap().to_bytes().len()
}
