//! Building policies: invalid values, config files, configuring a cloned layer.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tower_scale_ratelimit::{MemoryStore, Quota, RateLimitLayer};

use crate::support::*;

#[test]
fn bad_policies_are_errors() {
    assert!(RateLimitLayer::new(MemoryStore::new(1), []).is_err());
    let err = RateLimitLayer::new(MemoryStore::new(1), [Quota::per_second(0)]).unwrap_err();
    assert!(err.to_string().contains("count"), "{err}");
    let err = RateLimitLayer::new(MemoryStore::new(1), [Quota::per_second(1)])
        .unwrap()
        .name("bad name")
        .unwrap_err();
    assert!(err.to_string().contains("bad name"), "{err}");
    let q: Quota = serde_json::from_str(r#"{"count": 100, "period": "1m", "burst": 10}"#).unwrap();
    assert_eq!(q, Quota::per_minute(100).burst(10));
}

#[tokio::test(start_paused = true)]
async fn fallback_instances_in_config_and_zero_is_an_error() {
    use tower_scale_ratelimit::{OnStoreErrorConfig, RateLimitConfig};
    let config: RateLimitConfig = serde_json::from_str(
        r#"{"quotas": [{"count": 10, "period": "1m"}], "on_store_error": "admit",
            "fallback_instances": 3}"#,
    )
    .unwrap();
    assert_eq!(config.on_store_error, OnStoreErrorConfig::Admit);
    assert_eq!(config.fallback_instances, 3);
    assert!(RateLimitLayer::from_config(MemoryStore::new(10), &config).is_ok());
    let default: RateLimitConfig =
        serde_json::from_str(r#"{"quotas": [{"count": 10, "period": "1m"}]}"#).unwrap();
    assert_eq!(default.on_store_error, OnStoreErrorConfig::FailOpen);
    assert_eq!(default.fallback_instances, 1);
    let mut zero = default;
    zero.fallback_instances = 0;
    let err = RateLimitLayer::from_config(MemoryStore::new(10), &zero).unwrap_err();
    assert!(err.to_string().contains("fallback_instances"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_policy_from_a_config_file() {
    use tower_scale_ratelimit::RateLimitConfig;
    let config: RateLimitConfig = serde_json::from_str(
        r#"{"name": "api", "quotas": [{"count": 1, "period": "1m"}],
            "key": {"type": "header", "name": "x-api-key"}, "missing_key": "reject401"}"#,
    )
    .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::from_config(MemoryStore::new(100), &config).unwrap());
    assert_eq!(hit(&app, None).await.status(), StatusCode::UNAUTHORIZED);
    let res = hit(&app, Some("c")).await;
    assert_eq!(res.headers()["ratelimit-policy"], r#""api";q=1;w=60"#);
    assert_eq!(
        hit(&app, Some("c")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    let bad: RateLimitConfig = serde_json::from_str(
        r#"{"quotas": [{"count": 1, "period": "1m"}], "key": {"type": "header", "name": "bad header"}}"#,
    )
    .unwrap();
    let err = RateLimitLayer::from_config(MemoryStore::new(1), &bad).unwrap_err();
    assert!(err.to_string().contains("bad header"), "{err}");
    assert!(
        serde_json::from_str::<RateLimitConfig>(r#"{"quotas": [], "burts": 1}"#).is_err(),
        "unknown fields are errors"
    );
}

/// Configuring a layer whose policy a clone shares gives it a policy of its own: the clone
/// keeps its configuration, and nothing panics.
#[tokio::test(start_paused = true)]
async fn configuring_a_cloned_layer_gives_it_its_own_policy_instead_of_panicking() {
    let base = memory(vec![Quota::per_minute(1)]);
    let kept = base.clone();
    let quiet = base.headers(false).dry_run(true).name("quiet").unwrap();
    let (kept, quiet) = (app(kept), app(quiet));
    let res = hit(&kept, Some("k")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["ratelimit-policy"], "\"default\";q=1;w=60");
    assert_eq!(
        hit(&kept, Some("k")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        let res = hit(&quiet, Some("q")).await;
        assert_eq!(res.status(), StatusCode::OK, "dry run");
        assert!(!res.headers().contains_key("ratelimit-policy"));
    }
    // A layer configured after it built a service: the service keeps the policy it had.
    let layer = memory(vec![Quota::per_minute(1)]);
    let before = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer.clone());
    let after = app(layer.cost(2));
    assert_eq!(hit(&before, Some("b")).await.status(), StatusCode::OK);
    // A cost of 2 never fits a burst of 1.
    assert_eq!(
        hit(&after, Some("a")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
