//! `ratelimit_decisions_total` moves with each decision: `allowed` and `rejected` by the store,
//! `fallback_allowed` / `fallback_rejected` by the local share and `store_error` while Redis
//! fails, under the name of the policy that decided (and no other). Each test records into its
//! own recorder, the default of its current-thread runtime.

use std::collections::BTreeSet;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_scale_ratelimit::{
    OnStoreError, Quota, RateLimitConfig, RateLimitLayer, RedisStore, names,
};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::{RedisServer, metric_value};

use crate::support::*;

/// Every `decision` label value, in the order [`counts`] reads them.
const DECISIONS: [&str; 5] = [
    "allowed",
    "rejected",
    "store_error",
    "fallback_allowed",
    "fallback_rejected",
];

/// The series of `policy` and `decision`, when there is one.
fn decisions(handle: &PrometheusHandle, policy: &str, decision: &str) -> Option<f64> {
    let series = format!(
        "{}{{policy=\"{policy}\",decision=\"{decision}\"}}",
        names::RATELIMIT_DECISIONS_TOTAL.name
    );
    metric_value(&handle.render(), &series)
}

/// Every series of `policy`, one per [`DECISIONS`] entry.
fn counts(handle: &PrometheusHandle, policy: &str) -> [Option<f64>; 5] {
    DECISIONS.map(|d| decisions(handle, policy, d))
}

/// The `policy` label of every `ratelimit_decisions_total` series.
fn policies(handle: &PrometheusHandle) -> BTreeSet<String> {
    let prefix = format!("{}{{policy=\"", names::RATELIMIT_DECISIONS_TOTAL.name);
    handle
        .render()
        .lines()
        .filter_map(|l| Some(l.strip_prefix(&prefix)?.split('"').next()?.to_owned()))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|&n| n.to_owned()).collect()
}

#[tokio::test(start_paused = true)]
async fn store_decisions_are_counted_as_allowed_or_rejected() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let app = app(memory(vec![Quota::per_second(2)]));
    let handle = recorder.handle();
    // An unnamed policy is `default`: its series are there before any request.
    assert_eq!(policies(&handle), set(&["default"]));
    assert_eq!(counts(&handle, "default"), [Some(0.0); 5]);
    for _ in 0..3 {
        hit(&app, Some("a")).await;
    }
    assert_eq!(decisions(&handle, "default", "allowed"), Some(2.0));
    assert_eq!(decisions(&handle, "default", "rejected"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn renamed_policies_have_series_under_their_names_only() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let api = memory(vec![Quota::per_second(2)]).name("api").unwrap();
    // A clone configured apart gets a policy of its own, named anew.
    let admin = api.clone().name("draft").unwrap().name("admin").unwrap();
    let (api, admin) = (app(api), app(admin));
    let handle = recorder.handle();
    assert_eq!(policies(&handle), set(&["admin", "api"]));
    assert_eq!(counts(&handle, "api"), [Some(0.0); 5]);
    assert_eq!(counts(&handle, "admin"), [Some(0.0); 5]);
    for _ in 0..3 {
        hit(&api, Some("a")).await;
    }
    // (A clone shares the store: a `MemoryStore` counts keys whatever the policy's name.)
    hit(&admin, Some("b")).await;
    assert_eq!(policies(&handle), set(&["admin", "api"]));
    let zero = Some(0.0);
    assert_eq!(
        counts(&handle, "api"),
        [Some(2.0), Some(1.0), zero, zero, zero]
    );
    assert_eq!(
        counts(&handle, "admin"),
        [Some(1.0), zero, zero, zero, zero]
    );
}

#[tokio::test]
async fn a_policy_named_in_its_config_counts_under_that_name_on_redis() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let server = RedisServer::start();
    let config: RateLimitConfig = serde_json::from_str(
        r#"{"name": "login", "quotas": [{"count": 1, "period": "1m"}],
            "key": {"type": "header", "name": "x-api-key"}}"#,
    )
    .unwrap();
    let store = RedisStore::new(RedisBackend::new(RedisConfig::new(server.url())).unwrap());
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::from_config(store, &config).unwrap());
    let handle = recorder.handle();
    assert_eq!(policies(&handle), set(&["login"]));
    assert_eq!(counts(&handle, "login"), [Some(0.0); 5]);
    assert_eq!(hit(&app, Some("k")).await.status(), StatusCode::OK);
    assert_eq!(
        hit(&app, Some("k")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(hit(&app, Some("j")).await.status(), StatusCode::OK);
    assert_eq!(policies(&handle), set(&["login"]));
    let zero = Some(0.0);
    assert_eq!(
        counts(&handle, "login"),
        [Some(2.0), Some(1.0), zero, zero, zero]
    );
}

#[tokio::test]
async fn decisions_while_redis_fails_are_counted_apart() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let server = RedisServer::start();
    let open = app(per_minute_on_redis(&server, OnStoreError::FailOpen));
    let closed = app(per_minute_on_redis(&server, OnStoreError::FailClosed));
    assert_eq!(hit(&open, Some("k")).await.status(), StatusCode::OK);
    let handle = recorder.handle();
    assert_eq!(decisions(&handle, "default", "allowed"), Some(1.0));
    server.pause();
    // The local share (one per minute on one instance) admits one, then refuses.
    assert_eq!(hit(&open, Some("k")).await.status(), StatusCode::OK);
    assert_eq!(
        hit(&open, Some("k")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        hit(&closed, Some("k")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.resume();
    assert_eq!(decisions(&handle, "default", "fallback_allowed"), Some(1.0));
    assert_eq!(
        decisions(&handle, "default", "fallback_rejected"),
        Some(1.0)
    );
    assert_eq!(decisions(&handle, "default", "store_error"), Some(1.0));
    assert_eq!(decisions(&handle, "default", "allowed"), Some(1.0));
}
