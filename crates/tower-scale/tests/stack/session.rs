//! `[session]` with a `[redis]` backend: `[session.redis]` picks the Redis store's layout.

use axum::Router;
use axum::routing::get;
use tower_scale::session::Session;
use tower_scale::stack::{Stack, StackConfig};
use tower_scale_testkit::RedisServer;

use crate::{body, send, session_cookie};

/// The type of the Redis value holding the session a `/visit` created.
async fn stored_as(redis: &RedisServer, session: &str) -> String {
    let toml = format!(
        "[redis]\nurl = \"{}\"\nkey_prefix = \"stack\"\n\n[session]\nsecure = false\n{session}",
        redis.url()
    );
    let stack = Stack::build(&StackConfig::from_toml(&toml).unwrap()).unwrap();
    let app: Router = stack.apply(Router::new().route(
        "/visit",
        get(|s: Session| async move {
            let n: u64 = s.get("n").await.ok().flatten().unwrap_or(0) + 1;
            s.insert("n", &n).unwrap();
            n.to_string()
        }),
    ));
    let first = send(&app, "/visit", &[]).await;
    let cookie = session_cookie(&first);
    assert_eq!(
        body(send(&app, "/visit", &[("cookie", &cookie)]).await).await,
        "2"
    );
    let key = format!("stack:session:{}", &cookie["sid=".len()..]);
    redis.cli(&["TYPE", &key]).trim().to_owned()
}

#[tokio::test]
async fn the_redis_layout_is_chosen_in_the_session_section() {
    let redis = RedisServer::start();
    assert_eq!(stored_as(&redis, "").await, "hash", "the default");
    assert_eq!(
        stored_as(&redis, "[session.redis]\nlayout = \"record\"\n").await,
        "string"
    );
    assert_eq!(
        stored_as(&redis, "redis = { layout = \"hash\" }\n").await,
        "hash"
    );
    let e = StackConfig::from_toml("[session]\nredis = { layout = \"rows\" }\n").unwrap_err();
    assert!(e.to_string().contains("rows"), "{e}");
}
