//! The backend reports command latency and errors through the `metrics` facade (its own test
//! binary, so the global recorder sees this test's commands only).

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tower_scale_redis::{RedisBackend, RedisConfig, redis};
use tower_scale_testkit::{RedisServer, metric_value};

#[tokio::test]
async fn command_latency_and_errors_are_counted() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let server = RedisServer::start();
    let mut config = RedisConfig::new(server.url());
    config.command_timeout = Duration::from_millis(100);
    let backend = RedisBackend::new(config).unwrap();
    for _ in 0..3 {
        backend.ping().await.unwrap();
    }
    // A server error (wrong type) and a timeout (paused server).
    backend
        .query::<()>(redis::cmd("SET").arg("ts:m:k").arg("v"))
        .await
        .unwrap();
    assert!(
        backend
            .query::<i64>(redis::cmd("INCR").arg("ts:m:k"))
            .await
            .is_err()
    );
    server.pause();
    assert!(backend.ping().await.unwrap_err().is_timeout());
    server.resume();

    let text = handle.render();
    assert_eq!(
        metric_value(&text, "redis_command_duration_seconds_count"),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, r#"redis_command_errors_total{kind="timeout"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, r#"redis_command_errors_total{kind="server"}"#),
        Some(1.0),
        "{text}"
    );
}
