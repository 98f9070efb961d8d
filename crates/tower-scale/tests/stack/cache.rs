//! `[cache]` with a `[redis]` backend: `[cache.redis]` sets the Redis store's options.

use axum::Router;
use axum::routing::get;
use tower_scale::stack::{Stack, StackConfig};
use tower_scale_testkit::RedisServer;

use crate::{body, send};

/// The cache keys one cached `GET /item` leaves in Redis (sorted), with `section` added to
/// `[cache]`.
async fn keys_after_one_miss(redis: &RedisServer, section: &str) -> Vec<String> {
    redis.cli(&["FLUSHALL"]);
    let toml = format!(
        "[redis]\nurl = \"{}\"\nkey_prefix = \"stack\"\n\n[cache]\n{section}",
        redis.url()
    );
    let stack = Stack::build(&StackConfig::from_toml(&toml).unwrap()).unwrap();
    let app: Router = stack.apply(Router::new().route(
        "/item",
        get(|| async { ([("cache-control", "max-age=60")], "stored") }),
    ));
    assert_eq!(body(send(&app, "/item", &[]).await).await, "stored");
    let mut keys: Vec<String> = redis
        .cli(&["KEYS", "stack:cache:*"])
        .lines()
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn index_every_entry_is_set_in_the_cache_section() {
    let redis = RedisServer::start();
    let plain = keys_after_one_miss(&redis, "").await;
    assert_eq!(
        plain.len(),
        1,
        "one entry and no index by default: {plain:?}"
    );
    assert!(plain[0].ends_with(":s:GET"), "{plain:?}");
    let indexed = keys_after_one_miss(&redis, "[cache.redis]\nindex_every_entry = true\n").await;
    assert_eq!(indexed.len(), 2, "the entry and its index: {indexed:?}");
    assert!(indexed.iter().any(|k| k.ends_with(":i")), "{indexed:?}");
    let e = StackConfig::from_toml("[cache]\nredis = { index_every = true }\n").unwrap_err();
    assert!(e.to_string().contains("index_every"), "{e}");
}
