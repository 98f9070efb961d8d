//! The layer order, checked through what each layer does to the others (against a real Redis
//! where the order shows in Redis calls), and the config's parse errors.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use http_body_util::BodyExt;
use tower_scale::session::Session;
use tower_scale::stack::{Stack, StackConfig};
use tower_scale_testkit::RedisServer;

use crate::{body, send, session_cookie};

const CONFIG: &str = r#"
[shutdown]
pre_stop_delay = "0s"

[metrics]

[rate_limit]
quotas = [{ count = 3, period = "10s" }]
key = { type = "header", name = "x-api-key" }

[session]
secure = false

[cache]
ttl = "30s"

[compression]
min_size = 32
"#;

fn app(stack: &Stack) -> Router {
    let routes = Router::new()
        .route(
            "/visit",
            get(|s: Session| async move {
                let n: u64 = s.get("n").await.ok().flatten().unwrap_or(0) + 1;
                s.insert("n", &n).unwrap();
                n.to_string()
            }),
        )
        .route(
            "/doc",
            get(|| async { "a document long enough to be worth compressing, ".repeat(20) }),
        );
    let app = stack.apply(routes);
    match stack.health_routes() {
        Some(health) => app.merge(health),
        None => app,
    }
}

#[test]
fn config_errors_name_the_section_or_key() {
    let e = StackConfig::from_toml("[sesion]\nttl = \"1h\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sesion"), "{e}");
    let bad = StackConfig::from_toml("[session]\nttl = \"0s\"").unwrap();
    let e = Stack::build(&bad).unwrap_err();
    assert_eq!(e.section(), "session");
    let bad = StackConfig::from_toml("[rate_limit]\nquotas = []").unwrap();
    assert_eq!(Stack::build(&bad).unwrap_err().section(), "rate_limit");
    let bad = StackConfig::from_toml("[redis]\nurl = \"http://nope\"").unwrap();
    assert_eq!(Stack::build(&bad).unwrap_err().section(), "redis");
    // Everything optional: an empty config is a stack of no layers.
    let empty = Stack::build(&StackConfig::from_toml("").unwrap()).unwrap();
    assert!(empty.health_routes::<()>().is_none());
}

/// `[tracing]` without the `otel` feature is refused, naming the feature; off, it is accepted.
/// (With `otel`, the `traces` test covers the section.)
#[cfg(not(feature = "otel"))]
#[test]
fn tracing_without_otel_is_refused() {
    let on = StackConfig::from_toml("[tracing]").unwrap();
    let e = Stack::build(&on).unwrap_err();
    assert_eq!(e.section(), "tracing");
    assert!(e.to_string().contains("`otel` feature"), "{e}");
    let off = StackConfig::from_toml("[tracing]\ntrace_context = false").unwrap();
    assert!(Stack::build(&off).is_ok());
}

#[tokio::test]
async fn in_memory_stack_serves_sessions_cache_and_compression() {
    let stack = Stack::build(&StackConfig::from_toml(CONFIG).unwrap()).unwrap();
    assert!(stack.backend().is_none());
    let app = app(&stack);
    let key = ("x-api-key", "k1");
    let first = send(&app, "/visit", &[key]).await;
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = session_cookie(&first);
    let second = send(&app, "/visit", &[key, ("cookie", &cookie)]).await;
    assert_eq!(
        &second.into_body().collect().await.unwrap().to_bytes()[..],
        b"2"
    );
    assert_eq!(send(&app, "/readyz", &[]).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_order_shows_in_what_each_layer_costs_the_others() {
    let redis = RedisServer::start();
    let toml = format!("{CONFIG}\n[redis]\nurl = \"{}\"\n", redis.url());
    let stack = Stack::build(&StackConfig::from_toml(&toml).unwrap()).unwrap();
    assert!(stack.backend().is_some());
    let app = app(&stack);

    // Sessions and the rate limit are shared through Redis.
    let key = ("x-api-key", "k2");
    let login = send(&app, "/visit", &[key]).await;
    let cookie = session_cookie(&login);
    assert_eq!(
        send(&app, "/visit", &[key, ("cookie", &cookie)])
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&app, "/visit", &[key, ("cookie", &cookie)])
            .await
            .status(),
        StatusCode::OK
    );

    // Rate limit outside sessions: a rejected request never reads its session.
    redis.reset_stats();
    let limited = send(&app, "/visit", &[key, ("cookie", &cookie)]).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        redis.calls("hgetall"),
        0,
        "a rate-limited request read a session"
    );

    // Cache outside compression: the stored entry is the gzip variant, and a hit serves it.
    let gzip = [("x-api-key", "k3"), ("accept-encoding", "gzip")];
    let miss = send(&app, "/doc", &gzip).await;
    assert_eq!(miss.headers()["content-encoding"], "gzip");
    let hit = send(
        &app,
        "/doc",
        &[("x-api-key", "k4"), ("accept-encoding", "gzip")],
    )
    .await;
    let status = hit.headers()["cache-status"].to_str().unwrap().to_owned();
    assert!(status.contains("hit"), "{status}");
    assert_eq!(hit.headers()["content-encoding"], "gzip");
    // Sessions outside the cache: a hit runs no handler, touches no session, sets no cookie.
    assert!(hit.headers().get("set-cookie").is_none());

    // The stack's shutdown drives readiness: ready while serving, not once shutdown starts.
    assert_eq!(send(&app, "/readyz", &[]).await.status(), StatusCode::OK);
    let shutdown = stack.shutdown().unwrap().clone();
    let stopped = shutdown.stop_accepting();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown
                .run(async move {
                    stopped.await;
                    Ok::<(), std::io::Error>(())
                })
                .await
        }
    });
    shutdown.trigger();
    let report = tokio::time::timeout(std::time::Duration::from_secs(20), running)
        .await
        .expect("shutdown finished")
        .unwrap();
    assert_eq!(report.exit_code(), 0);
    assert_eq!(
        send(&app, "/readyz", &[]).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn cache_sections_parse_rules_and_tiers() {
    let text = "[cache]\nttl = \"30s\"\npublic = true\n[cache.tiers]\nl1_max_bytes = 1048576\n";
    let config = StackConfig::from_toml(text).unwrap();
    let cache = config.cache.as_ref().unwrap();
    assert_eq!(cache.tiers.l1_max_bytes, Some(1_048_576));
    assert_eq!(cache.response.ttl, Some(std::time::Duration::from_secs(30)));
    assert!(cache.response.public);
    let e = StackConfig::from_toml("[cache]\nttll = \"30s\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("ttll"), "{e}");
}

/// A login form that puts a CSRF token in a new session: the response carries the session's
/// `Set-Cookie`, added by the session layer after the cache (inside it) saw the response. Were
/// it stored, every later anonymous visitor would get the first visitor's token, without the
/// cookie that goes with it.
#[tokio::test]
async fn a_response_that_created_a_session_is_never_served_to_another_visitor() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let config =
        StackConfig::from_toml("[session]\nsecure = false\n\n[cache]\nttl = \"60s\"\n").unwrap();
    let stack = Stack::build(&config).unwrap();
    let routes = Router::new().route(
        "/login",
        get(|s: Session| async move {
            let token = format!("csrf-{}", NEXT.fetch_add(1, Ordering::Relaxed));
            s.insert("csrf", &token).unwrap();
            token
        }),
    );
    let app = stack.apply(routes);

    let first = send(&app, "/login", &[]).await;
    assert!(first.headers().contains_key("set-cookie"));
    let first_token = body(first).await;
    for _ in 0..3 {
        let other = send(&app, "/login", &[]).await;
        assert!(
            other.headers().contains_key("set-cookie"),
            "an anonymous visitor got a page without its session cookie"
        );
        assert_ne!(
            body(other).await,
            first_token,
            "a visitor got another visitor's token"
        );
    }
}
