//! The stack on the test kit's 3-master Redis Cluster, configured from the environment
//! (`REDIS_URL` with every seed node, `REDIS_MODE=cluster`): two instances share sessions, the
//! rate limit and pub/sub rooms.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tower_scale::session::Session;
use tower_scale::stack::{Stack, StackConfig};
use tower_scale_testkit::RedisCluster;

use crate::{body, send, session_cookie};

const CONFIG: &str = r#"
[rate_limit]
quotas = [{ count = 3, period = "1h" }]
key = { type = "header", name = "x-api-key" }

[session]
secure = false

# subscribe returns once Redis confirmed the room, however loaded the machine is.
[pubsub]
subscribe_timeout = "60s"
"#;

fn app(stack: &Stack) -> Router {
    stack.apply(Router::new().route(
        "/visit",
        get(|s: Session| async move {
            let n: u64 = s.get("n").await.ok().flatten().unwrap_or(0) + 1;
            s.insert("n", &n).unwrap();
            n.to_string()
        }),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_redis_cluster_share_sessions_limits_and_rooms() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls().join(",");
    let config = StackConfig::from_toml(CONFIG)
        .unwrap()
        .env_overrides_from([
            ("REDIS_URL", urls.as_str()),
            ("REDIS_MODE", "cluster"),
            ("REDIS_KEY_PREFIX", "stack"),
        ])
        .unwrap();
    let redis = config.redis.as_ref().unwrap();
    assert_eq!(redis.nodes.len(), 2, "the other seed nodes");
    let (a, b) = (
        Stack::build(&config).unwrap(),
        Stack::build(&config).unwrap(),
    );
    let (app_a, app_b) = (app(&a), app(&b));
    let key = ("x-api-key", "cluster");

    let first = send(&app_a, "/visit", &[key]).await;
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = session_cookie(&first);
    let second = send(&app_b, "/visit", &[key, ("cookie", &cookie)]).await;
    assert_eq!(body(second).await, "2", "instance b read a's session");
    assert_eq!(
        send(&app_a, "/visit", &[key, ("cookie", &cookie)])
            .await
            .status(),
        StatusCode::OK
    );
    // The quota of 3 is global: the fourth request, on b, is refused.
    let limited = send(&app_b, "/visit", &[key, ("cookie", &cookie)]).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);

    let mut sub = b.pubsub().unwrap().subscribe("news").await.unwrap();
    a.pubsub()
        .unwrap()
        .publish("news", "on the cluster")
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("the message crossed within 10 s")
        .unwrap();
    assert_eq!(&event.message().unwrap().payload()[..], b"on the cluster");
}
