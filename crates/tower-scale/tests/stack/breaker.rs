//! `[breaker]`: one breaker per path prefix, with its own settings.

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use tower_scale::breaker::State;
use tower_scale::stack::{Stack, StackConfig};

use crate::send;

const CONFIG: &str = r#"
[breaker]
status = 502

[breaker.routes."/payments"]
sliding_window = { type = "count", size = 4 }
minimum_calls = 4
wait_in_open = "10s"

[breaker.routes."/payments/refunds"]
sliding_window = { type = "count", size = 2 }
minimum_calls = 2
wait_in_open = "10s"
"#;

#[derive(serde::Deserialize)]
struct Fail {
    #[serde(default)]
    fail: u8,
}

async fn downstream(Query(q): Query<Fail>) -> StatusCode {
    if q.fail > 0 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

#[tokio::test]
async fn each_prefix_has_its_own_breaker_and_other_routes_none() {
    let stack = Stack::build(&StackConfig::from_toml(CONFIG).unwrap()).unwrap();
    let app = stack.apply(
        Router::new()
            .route("/payments/{id}", get(downstream))
            .route("/payments/refunds/{id}", get(downstream))
            .route("/paymentsx", get(downstream))
            .route("/hello", get(downstream)),
    );
    // The longest prefix decides: two failed refunds open the refunds breaker only.
    for _ in 0..2 {
        let res = send(&app, "/payments/refunds/1?fail=1", &[]).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(
        stack.breaker("/payments/refunds").unwrap().state(),
        State::Open
    );
    let refused = send(&app, "/payments/refunds/1", &[]).await;
    assert_eq!(
        refused.status(),
        StatusCode::BAD_GATEWAY,
        "the configured status"
    );
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        send(&app, "/payments/7", &[]).await.status(),
        StatusCode::OK
    );

    // Four failed payments open the payments breaker.
    for _ in 0..4 {
        send(&app, "/payments/7?fail=1", &[]).await;
    }
    assert_eq!(stack.breaker("/payments").unwrap().state(), State::Open);
    assert_eq!(
        send(&app, "/payments/7", &[]).await.status(),
        StatusCode::BAD_GATEWAY
    );

    // Paths under no prefix are not guarded, however often they fail.
    for uri in ["/paymentsx?fail=1", "/hello?fail=1"] {
        for _ in 0..10 {
            let res = send(&app, uri, &[]).await;
            assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
    assert_eq!(send(&app, "/hello", &[]).await.status(), StatusCode::OK);
}

#[test]
fn a_breaker_section_that_guards_nothing_or_is_invalid_is_refused() {
    for (toml, needle) in [
        ("[breaker]", "routes"),
        ("[breaker.routes.payments]", "starts with /"),
        (
            "[breaker.routes.\"/p\"]\nminimum_calls = 0",
            "minimum_calls",
        ),
        ("[breaker]\nstatus = 200\n[breaker.routes.\"/p\"]", "status"),
    ] {
        let e = Stack::build(&StackConfig::from_toml(toml).unwrap()).unwrap_err();
        assert_eq!(e.section(), "breaker");
        assert!(e.to_string().contains(needle), "{e} should name {needle}");
    }
}
