//! Every Redis-backed crate works as a limited ACL user over TLS: one stack built from TOML
//! (`[redis] url = "rediss://app:<password>@…"`, `tls_ca_file`) with sessions, the response
//! cache (with its local tier and invalidation bus), the rate limit, plus pub/sub rooms and
//! the shared breaker state, against a real `redis-server --tls-port` whose user `app` may only
//! touch `ts:*` keys and channels and has no dangerous command but `CLIENT UNBLOCK`. Redis's `ACL LOG` shows that no
//! command was refused, and `CLIENT LIST` that every TLS connection is `app`'s.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use tower::ServiceExt;
use tower_scale::breaker::SharedState;
use tower_scale::pubsub::{Broadcaster, Delivery, Event};
use tower_scale::redis::RedisBreakerState;
use tower_scale::session::Session;
use tower_scale::stack::{Stack, StackConfig};
use tower_scale_testkit::{RedisServer, TlsFiles, cookie_pair};

const PASSWORD: &str = "acl-tls-Pw-2b8";
const RULES: [&str; 5] = ["~ts:*", "&ts:*", "+@all", "-@dangerous", "+client|unblock"];

async fn send(app: &Router, uri: &str, headers: &[(&str, &str)]) -> axum::response::Response {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_redis_backed_crate_works_as_a_limited_acl_user_over_tls() {
    let tls = TlsFiles::generate();
    let server = RedisServer::start_tls(&tls, false);
    // The rules docs/security.md recommends: the stream reader of pub/sub wakes its blocked
    // XREAD with CLIENT UNBLOCK, a dangerous command, when a room opens.
    server.add_acl_user("app", PASSWORD, &RULES);
    let port = server.tls_port().unwrap();
    let toml = format!(
        r#"
[redis]
url = "rediss://app:{PASSWORD}@127.0.0.1:{port}"
tls_ca_file = {ca:?}
command_timeout = "2s"

[rate_limit]
quotas = [{{ count = 2, period = "60s" }}]
key = {{ type = "header", name = "x-api-key" }}

[session]
secure = false

[cache]
ttl = "30s"

[cache.tiers]
l1_max_bytes = 1048576
"#,
        ca = tls.ca_file().display().to_string(),
    );
    let stack = Stack::build(&StackConfig::from_toml(&toml).unwrap()).unwrap();
    let backend = stack.backend().unwrap().clone();
    let app = stack.apply(
        Router::new()
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
                get(|| async { ([(header::CACHE_CONTROL, "max-age=60")], "a document") }),
            ),
    );

    // Sessions: a visit stored in Redis and read back.
    let first = send(&app, "/visit", &[("x-api-key", "a")]).await;
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = cookie_pair(first.headers()["set-cookie"].to_str().unwrap()).to_owned();
    let second = send(&app, "/visit", &[("x-api-key", "a"), ("cookie", &cookie)]).await;
    assert_eq!(second.status(), StatusCode::OK);
    let body = axum::body::to_bytes(second.into_body(), 64).await.unwrap();
    assert_eq!(&body[..], b"2", "the session was not read back from Redis");

    // Rate limit: the third request of key "a" is refused, counted in Redis.
    let third = send(&app, "/visit", &[("x-api-key", "a"), ("cookie", &cookie)]).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);

    // Response cache: a miss stored in Redis, then a hit.
    let miss = send(&app, "/doc", &[("x-api-key", "b")]).await;
    assert_eq!(miss.status(), StatusCode::OK);
    let hit = send(&app, "/doc", &[("x-api-key", "c")]).await;
    let status = hit.headers()["cache-status"].to_str().unwrap().to_owned();
    assert!(status.contains("hit"), "{status}");

    // Pub/sub rooms in both deliveries, on the same backend.
    for delivery in [Delivery::PubSub, Delivery::Stream] {
        let rooms = Broadcaster::builder()
            .delivery(delivery)
            .redis(backend.clone())
            .build()
            .unwrap();
        let mut sub = rooms.subscribe("room").await.unwrap();
        rooms.publish("room", "hello").await.unwrap();
        match tokio::time::timeout(Duration::from_secs(15), sub.recv()).await {
            Ok(Some(Event::Message(m))) => assert_eq!(&m.payload()[..], b"hello"),
            other => panic!("{delivery:?}: expected the message, got {other:?}"),
        }
    }

    // The breaker state shared across instances.
    let shared = RedisBreakerState::new(backend.clone());
    let until = 4_102_444_800_000; // 2100-01-01, in ms
    shared.publish_open("payments", until).await.unwrap();
    assert_eq!(shared.open_until("payments").await.unwrap(), Some(until));

    // Nothing was refused to `app`, and the stack's connections are all `app`'s, over TLS.
    assert_eq!(
        server.cli(&["ACL", "LOG"]),
        "",
        "Redis refused commands to app"
    );
    server.wait_tls_clients_are("app").await;
    // The user is limited for real: a key outside `ts:*` is refused.
    let err = backend
        .query::<()>(tower_scale::redis::redis::cmd("SET").arg("other").arg(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NoPerm"), "{err}");
}
