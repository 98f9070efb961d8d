//! `[pressure]`: `max_lag` sheds while the runtime lags, through the probe the stack starts
//! itself; `max_in_flight` sheds past its count.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tower_scale::stack::{Stack, StackConfig};

use crate::{lag_the_runtime, send};

#[tokio::test(start_paused = true)]
async fn max_lag_sheds_while_the_runtime_lags_with_the_probe_the_stack_started() {
    let config = StackConfig::from_toml("[pressure]\nmax_lag = \"50ms\"").unwrap();
    let stack = Stack::build(&config).unwrap();
    let app = stack.apply(
        Router::new()
            .route("/work", get(|| async { "done" }))
            .route("/livez", get(|| async { "alive" })),
    );
    assert_eq!(send(&app, "/work", &[]).await.status(), StatusCode::OK);

    lag_the_runtime(
        stack.lag().expect("the stack started the probe"),
        Duration::from_millis(300),
    )
    .await;
    let shed = send(&app, "/work", &[]).await;
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["x-shed-reason"], "lag");
    assert!(shed.headers().contains_key("retry-after"));
    // Health routes are exempt.
    assert_eq!(send(&app, "/livez", &[]).await.status(), StatusCode::OK);

    // Once the probe's window (1 s) holds no late wake-up, the work is served again.
    for _ in 0..15 {
        lag_the_runtime(stack.lag().unwrap(), Duration::ZERO).await;
    }
    assert_eq!(send(&app, "/work", &[]).await.status(), StatusCode::OK);
}

#[test]
fn max_lag_outside_a_runtime_is_refused_naming_the_field_and_the_way_out() {
    let config = StackConfig::from_toml("[pressure]\nmax_in_flight = 10").unwrap();
    // max_lag is on by default (200 ms): it needs the probe, which needs a runtime.
    let e = Stack::build(&config).unwrap_err();
    assert_eq!(e.section(), "pressure");
    assert!(e.to_string().contains("max_lag"), "{e}");
    assert!(e.to_string().contains("StackBuilder::lag_from"), "{e}");
    // Unset from the environment, nothing needs the probe.
    let config = config
        .env_overrides_from([("TOWER_SCALE__PRESSURE__MAX_LAG", "")])
        .unwrap();
    assert_eq!(config.pressure.as_ref().unwrap().max_lag, None);
    Stack::build(&config).unwrap();
}

#[tokio::test]
async fn max_in_flight_sheds_past_its_count() {
    let config = StackConfig::from_toml("[pressure]\nmax_in_flight = 1\nstatus = 429\n").unwrap();
    let stack = Stack::build(&config).unwrap();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered = std::sync::Mutex::new(Some(entered_tx));
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let wait = release.clone();
    let entered = std::sync::Arc::new(entered);
    let app = stack.apply(Router::new().route(
        "/hold",
        get(move || {
            let wait = wait.clone();
            let entered = entered.clone();
            async move {
                if let Some(tx) = entered.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                wait.notified().await;
                "released"
            }
        }),
    ));
    let held = tokio::spawn({
        let app = app.clone();
        async move { send(&app, "/hold", &[]).await.status() }
    });
    entered_rx.await.unwrap();
    assert_eq!(
        send(&app, "/hold", &[]).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    release.notify_one();
    assert_eq!(held.await.unwrap(), StatusCode::OK);
}
