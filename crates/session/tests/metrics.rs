//! Session store operations are counted through the `metrics` facade, failures included (its
//! own test binary, so the global recorder sees this test's operations only).

mod support;

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use support::{app, call};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_session::{RedisStore, SessionManagerLayer};
use tower_scale_testkit::{RedisServer, metric_value};

#[tokio::test]
async fn loads_saves_and_failures_are_counted() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let mut redis = RedisServer::start();
    let mut config = RedisConfig::new(redis.url());
    config.command_timeout = Duration::from_millis(200);
    let layer = SessionManagerLayer::new(RedisStore::new(RedisBackend::new(config).unwrap()))
        .secure(false)
        .unwrap();
    let app = app(layer);
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    call(&app, "GET", "/get/a", Some(&cookie)).await;
    call(&app, "GET", "/untouched", Some(&cookie)).await;
    call(&app, "POST", "/logout", Some(&cookie)).await;
    redis.kill();
    let failed = call(&app, "POST", "/set/a/2", None).await;
    assert_eq!(failed.status, 503);

    let text = handle.render();
    let series = |op: &str, result: &str| {
        metric_value(
            &text,
            &format!("session_operations_total{{op=\"{op}\",result=\"{result}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(series("save", "ok"), 1.0, "{text}");
    assert_eq!(series("load", "ok"), 1.0, "{text}");
    assert_eq!(series("destroy", "ok"), 1.0, "{text}");
    assert_eq!(series("save", "error"), 1.0, "{text}");
}
