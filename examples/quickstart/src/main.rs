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
//! curl http://127.0.0.1:3000/heavy                 # CPU work off the async workers
//! curl -sI -H 'accept-encoding: br, gzip' http://127.0.0.1:3000/report   # content-encoding: br
//! for i in $(seq 6); do curl -s -o /dev/null -w '%{http_code} ' \
//!   'http://127.0.0.1:3000/downstream?fail=1'; done   # 500 500 500 500 503 503: the breaker opened
//! curl -i http://127.0.0.1:3000/downstream        # 503 + Retry-After until the breaker probes again
//! for i in $(seq 4); do curl -s -o /dev/null -w '%{http_code} ' \
//!   -H 'x-api-key: demo' http://127.0.0.1:3000/limited; done   # 200 200 200 429
//! ```
//!
//! Sessions (in memory, or in Redis with `REDIS_URL`, so every instance knows the user):
//!
//! ```not_rust
//! curl -c jar -X POST 'http://127.0.0.1:3000/login?user=alice'   # Set-Cookie: sid=...
//! curl -b jar http://127.0.0.1:3000/counter                       # 1, 2, 3, ...
//! curl -b jar http://127.0.0.1:3000/me                            # alice
//! curl -b jar -X POST http://127.0.0.1:3000/logout                # the session is gone
//! curl -i http://127.0.0.1:3000/slow/42   # 200 ms the first time, then a cache hit:
//!                                         # Cache-Status: tower-scale; hit, and an Age header
//! curl -X DELETE http://127.0.0.1:3000/slow/42   # purges it (on every instance with Redis)
//! ```
//!
//! `/limited` allows 3 requests per 10 s per `x-api-key`, in memory, or across every instance
//! when `REDIS_URL` is set. `/slow/{id}` is a slow origin (a 200 ms query) cached for 30 s, in
//! memory or in Redis.
//!
//! Environment: `HOST` (127.0.0.1) and `PORT` (3000), as every example; `REDIS_URL` (unset:
//! in-memory; when set, the example exits at start-up if Redis does not answer), the other
//! `REDIS_*` variables and any field of the stack config as `TOWER_SCALE__SECTION__FIELD` (see
//! `docs/stack.md`), `PRE_STOP_DELAY` (overrides the config's), `PRESSURE_MAX_LAG` (`off` or a
//! duration), `LIMITED_PERIOD` (10s), `TOWER_SCALE_CONFIG` (a stack config file).
//!
//! `cargo run -p example-quickstart -- --print-config` prints the effective stack config (the
//! file with the environment's overrides), secrets hidden, and exits.

use std::future::IntoFuture;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_scale::breaker::{BreakerConfig, BreakerLayer, CircuitBreaker, SlidingWindow};
use tower_scale::compression::RequestDecompressionLayer;
use tower_scale::offload::{Offload, OffloadError};
use tower_scale::ratelimit::{HeaderKey, MemoryStore, Quota, RateLimitLayer, RedisStore};
use tower_scale::session::{Session, SessionError};
use tower_scale::stack::{Stack, StackConfig};

/// Shared application state.
#[derive(Clone, Debug)]
struct AppState {
    /// The pool for CPU-bound work.
    offload: Offload,
}

/// The stack of `tower-scale.toml`, with the environment's overrides (`REDIS_*`,
/// `TOWER_SCALE__SECTION__FIELD`); another file with `TOWER_SCALE_CONFIG`, and
/// `PRE_STOP_DELAY` overrides the file's shutdown delay.
fn stack_config() -> Result<StackConfig, Box<dyn std::error::Error>> {
    let mut config = match std::env::var("TOWER_SCALE_CONFIG") {
        Ok(path) => StackConfig::from_toml_file(path)?,
        Err(_) => StackConfig::from_toml(include_str!("../tower-scale.toml"))?,
    }
    .env_overrides()?;
    if let Ok(delay) = std::env::var("PRE_STOP_DELAY")
        && let Some(shutdown) = config.shutdown.as_mut()
    {
        shutdown.pre_stop_delay = humantime::parse_duration(&delay)
            .map_err(|e| format!("PRE_STOP_DELAY={delay:?}: {e}"))?;
    }
    // PRESSURE_MAX_LAG: the lag threshold of the load shedding, or `off`.
    if let Ok(lag) = std::env::var("PRESSURE_MAX_LAG")
        && let Some(pressure) = config.pressure.as_mut()
    {
        pressure.max_lag = match lag.as_str() {
            "off" => None,
            _ => Some(
                humantime::parse_duration(&lag)
                    .map_err(|e| format!("PRESSURE_MAX_LAG={lag:?}: {e}"))?,
            ),
        };
    }
    Ok(config)
}

/// Everything the app is built from.
struct Parts<'a> {
    stack: &'a Stack,
    breaker: CircuitBreaker,
    /// The period of `/limited`'s quota of 3 requests.
    limited_period: Duration,
}

/// Builds the app: the routes, their own layers, then the whole stack around them (see
/// `tower_scale::stack` for the order).
fn app(parts: Parts<'_>) -> Result<Router, Box<dyn std::error::Error>> {
    let offload = Offload::builder().build()?;
    // 3 requests per LIMITED_PERIOD (10 s) per API key: global through Redis when there is one.
    let quota = [Quota::new(3, parts.limited_period)];
    let limit = match parts.stack.backend() {
        Some(backend) => RateLimitLayer::new(RedisStore::new(backend.clone()), quota),
        None => RateLimitLayer::new(MemoryStore::new(100_000), quota),
    }?
    .key_with(HeaderKey(http::HeaderName::from_static("x-api-key")));
    let routes = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/counter", get(counter))
        .route("/me", get(me))
        .route("/slow/{id}", get(slow).delete(purge))
        .route("/limited", get(|| async { "ok" }).route_layer(limit))
        .route("/heavy", get(heavy))
        .route(
            "/downstream",
            get(flaky_downstream).route_layer(BreakerLayer::new(parts.breaker)),
        )
        .route(
            "/report",
            get(|| async { "tower-scale quick-start report line\n".repeat(500) }),
        )
        // Request bodies are decompressed with an 8 MiB cap.
        .layer(RequestDecompressionLayer::new(8 * 1024 * 1024))
        .with_state(AppState { offload });
    let app = parts.stack.apply(routes);
    Ok(match parts.stack.health_routes() {
        Some(health) => app.merge(health),
        None => app,
    })
}

/// The breaker guarding `/downstream`: opens when half of the last 4 calls failed, for 10 s.
fn downstream_breaker() -> Result<CircuitBreaker, tower_scale::breaker::ConfigError> {
    CircuitBreaker::named("downstream", {
        let mut config = BreakerConfig::default();
        config.sliding_window = SlidingWindow::Count { size: 4 };
        config.minimum_calls = 4;
        config.wait_in_open = Duration::from_secs(10);
        config
    })
}

/// Query of `/downstream`.
#[derive(serde::Deserialize)]
struct Flaky {
    /// Simulate a failing dependency.
    #[serde(default)]
    fail: u8,
}

/// A stand-in for a call to a dependency that fails when asked to.
async fn flaky_downstream(Query(q): Query<Flaky>) -> (StatusCode, &'static str) {
    if q.fail > 0 {
        (StatusCode::INTERNAL_SERVER_ERROR, "the dependency failed")
    } else {
        (StatusCode::OK, "the dependency answered")
    }
}

/// Query of `/login`.
#[derive(serde::Deserialize)]
struct Login {
    /// Who logs in (a real app checks a password first).
    user: String,
}

/// Starts a logged-in session: a new id (no session fixation), bound to the user so that a
/// log-out-everywhere can end it.
async fn login(session: Session, Query(login): Query<Login>) -> Result<String, SessionError> {
    session.cycle_id();
    session.set_user(&login.user);
    session.insert("count", &0u64)?;
    Ok(format!("welcome {}\n", login.user))
}

/// Ends the session.
async fn logout(session: Session) -> &'static str {
    session.destroy();
    "bye\n"
}

/// Counts this session's visits; 401 without a logged-in session.
async fn counter(session: Session) -> Result<(StatusCode, String), SessionError> {
    let Some(count) = session.get::<u64>("count").await? else {
        return Ok((
            StatusCode::UNAUTHORIZED,
            "log in first: POST /login?user=...\n".into(),
        ));
    };
    session.insert("count", &(count + 1))?;
    Ok((StatusCode::OK, format!("{}\n", count + 1)))
}

/// Who is logged in.
async fn me(session: Session) -> Result<String, SessionError> {
    Ok(session.user().await?.unwrap_or_else(|| "anonymous".into()) + "\n")
}

/// `DELETE /slow/{id}`: the data changed. A successful unsafe request purges the cached
/// entries of its URI (in Redis, so on every instance).
async fn purge(Path(id): Path<u32>) -> StatusCode {
    tracing::info!(id, "item changed; its cached response is purged");
    StatusCode::NO_CONTENT
}

/// Origin calls of `/slow/{id}` in this process, for the `x-origin-call` header.
static ORIGIN_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A slow origin: a 200 ms "query". Its `Cache-Control` lets the stack's response cache keep
/// it for 30 s (shared by every instance with Redis). `x-origin-call` names the origin call
/// (process and count) a response came from, so a client can tell a cached copy from a fresh
/// one.
async fn slow(Path(id): Path<u32>) -> impl axum::response::IntoResponse {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = ORIGIN_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    (
        [
            (http::header::CACHE_CONTROL, "public, max-age=30".to_owned()),
            (
                http::HeaderName::from_static("x-origin-call"),
                format!("{}-{n}", std::process::id()),
            ),
        ],
        format!("{{\"id\":{id},\"name\":\"item {id}\"}}\n"),
    )
}

/// CPU-bound work (the seed's transcoding stand-in), run off the async workers.
async fn heavy(State(state): State<AppState>) -> Result<String, OffloadError> {
    let digest = state
        .offload
        .run(|| {
            (0..20_000_000u64).fold(0xcbf2_9ce4_8422_2325_u64, |h, x| {
                (h ^ x).wrapping_mul(0x100_0000_01b3)
            })
        })
        .await?;
    Ok(format!("{digest:016x}"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A failure to start is printed in its Display form (`error: ...`), exit code 1.
    example_support::exit_code(run().await)
}

/// Fails before serving when Redis is configured but does not answer a `PING`, naming the URL
/// with its password hidden.
async fn ping_redis(stack: &Stack) -> Result<(), String> {
    let Some(backend) = stack.backend() else {
        return Ok(());
    };
    let url = tower_scale::redis::redact_url(&backend.config().url).into_owned();
    match backend.ping().await {
        Ok(rtt) => {
            tracing::info!(url, ?rtt, "redis answered");
            Ok(())
        }
        Err(e) => Err(format!("cannot reach Redis at {url}: {e}")),
    }
}

async fn run() -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = stack_config()?;
    if std::env::args().any(|a| a == "--print-config") {
        print!("{}", config.to_toml_redacted()?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    // Installs the metrics recorder, serves /metrics, starts the runtime probe ([metrics]).
    let stack = Stack::build(&config)?;
    ping_redis(&stack).await?;
    let addr = example_support::listen_addr(3000)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(
        %addr,
        backend = if stack.backend().is_some() { "redis" } else { "in-memory" },
        "listening"
    );
    let shutdown = stack
        .shutdown()
        .cloned()
        .ok_or("the example needs a [shutdown] section in its stack config")?;
    // SIGTERM / Ctrl-C: not ready at once, keep serving the pre-stop delay, then drain; a
    // second signal forces the exit.
    shutdown.listen_for_signals();
    let limited_period = match std::env::var("LIMITED_PERIOD") {
        Ok(p) => humantime::parse_duration(&p).map_err(|e| format!("LIMITED_PERIOD={p:?}: {e}"))?,
        Err(_) => Duration::from_secs(10),
    };
    let app = app(Parts {
        stack: &stack,
        breaker: downstream_breaker()?,
        limited_period,
    })?;
    // tower-scale's serve loop: through the drain, no keep-alive connection is closed while a
    // proxy may be writing a request on it. With the peer address (`ConnectInfo<SocketAddr>`),
    // which a `peer_ip` rate-limit key needs.
    let serve = shutdown.serve(listener, app).with_connect_info();
    let report = shutdown.run(serve.into_future()).await;
    tracing::info!(?report, "stopped");
    Ok(std::process::ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn test_app() -> Router {
        let config = StackConfig::from_toml(include_str!("../tower-scale.toml")).unwrap();
        let stack = Stack::build(&config).unwrap();
        app(Parts {
            stack: &stack,
            breaker: downstream_breaker().unwrap(),
            limited_period: Duration::from_secs(10),
        })
        .unwrap()
    }

    async fn status(app: &Router, uri: &str) -> StatusCode {
        app.clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn a_failing_downstream_opens_the_breaker() {
        let app = test_app();
        for _ in 0..4 {
            assert_eq!(
                status(&app, "/downstream?fail=1").await,
                StatusCode::INTERNAL_SERVER_ERROR
            );
        }
        // Open: even a call that would succeed is answered at once with 503.
        assert_eq!(
            status(&app, "/downstream").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(&app, "/hello").await, StatusCode::OK);
    }

    #[tokio::test]
    async fn limited_route_answers_429_past_its_quota() {
        let app = test_app();
        let call = || {
            app.clone().oneshot(
                Request::get("/limited")
                    .header("x-api-key", "demo")
                    .body(Body::empty())
                    .unwrap(),
            )
        };
        for _ in 0..3 {
            assert_eq!(call().await.unwrap().status(), StatusCode::OK);
        }
        let res = call().await.unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(res.headers().contains_key("retry-after"));
        // Without an API key: 400.
        assert_eq!(status(&app, "/limited").await, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn large_responses_are_compressed() {
        let res = test_app()
            .oneshot(
                Request::get("/report")
                    .header("accept-encoding", "gzip")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.headers()["content-encoding"], "gzip");
        assert_eq!(res.headers()["vary"], "accept-encoding");
    }

    async fn send(
        app: &Router,
        method: &str,
        uri: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, Option<String>, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let cookie = res
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, cookie, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn login_counter_logout() {
        let app = test_app();
        assert_eq!(
            send(&app, "GET", "/counter", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (status, cookie, _) = send(&app, "POST", "/login?user=alice", None).await;
        assert_eq!(status, StatusCode::OK);
        let cookie = cookie.expect("login sets the session cookie");
        assert_eq!(send(&app, "GET", "/counter", Some(&cookie)).await.2, "1\n");
        assert_eq!(send(&app, "GET", "/counter", Some(&cookie)).await.2, "2\n");
        assert_eq!(send(&app, "GET", "/me", Some(&cookie)).await.2, "alice\n");
        send(&app, "POST", "/logout", Some(&cookie)).await;
        assert_eq!(
            send(&app, "GET", "/me", Some(&cookie)).await.2,
            "anonymous\n"
        );
        assert_eq!(
            send(&app, "GET", "/counter", Some(&cookie)).await.0,
            StatusCode::UNAUTHORIZED
        );
        // Routes that do not touch the session set no cookie.
        assert_eq!(send(&app, "GET", "/hello", None).await.1, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_slow_route_is_cached() {
        let app = test_app();
        let first = app
            .clone()
            .oneshot(Request::get("/slow/7").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(
            first.headers()["cache-status"]
                .to_str()
                .unwrap()
                .contains("miss")
        );
        let again = app
            .clone()
            .oneshot(Request::get("/slow/7").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(
            again.headers()["cache-status"]
                .to_str()
                .unwrap()
                .contains("hit")
        );
        let body = again.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{\"id\":7,\"name\":\"item 7\"}\n");
        // DELETE purges it: the next GET goes to the origin again.
        let purge = app
            .clone()
            .oneshot(Request::delete("/slow/7").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(purge.status(), StatusCode::NO_CONTENT);
        let after = app
            .clone()
            .oneshot(Request::get("/slow/7").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(
            after.headers()["cache-status"]
                .to_str()
                .unwrap()
                .contains("miss")
        );
    }

    #[tokio::test]
    async fn the_stack_serves_metrics() {
        let app = test_app();
        assert_eq!(status(&app, "/hello").await, StatusCode::OK);
        let res = app
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let text = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains(r#"route="/hello""#), "{text}");
    }

    #[tokio::test]
    async fn heavy_work_is_offloaded() {
        assert_eq!(status(&test_app(), "/heavy").await, StatusCode::OK);
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
