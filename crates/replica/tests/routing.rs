//! Routing decisions and the read-your-writes window, on two instances sharing a secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::{Extension, Router};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_scale_replica::{DbRoute, Error, ForceTargetLayer, ReadWriteLayer, Reason, Target};

const SECRET: &[u8; 40] = b"0123456789abcdef0123456789abcdef-shared!";

/// One instance: answers with the routing decision its handler saw.
fn instance(clock: &Arc<AtomicU64>) -> Router {
    async fn show(Extension(route): Extension<DbRoute>) -> String {
        format!("{:?}/{:?}", route.target, route.reason)
    }
    let clock = Arc::clone(clock);
    Router::new()
        .route("/items", get(show).post(show).delete(show))
        .route(
            "/fail",
            axum::routing::post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route("/fresh", get(show).route_layer(ForceTargetLayer::primary()))
        .layer(
            ReadWriteLayer::new(SECRET)
                .unwrap()
                .window(Duration::from_secs(5))
                .clock(move || clock.load(Ordering::SeqCst)),
        )
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (String, Option<String>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (String::from_utf8(body.to_vec()).unwrap(), cookie)
}

#[tokio::test]
async fn reads_writes_and_read_your_writes_across_two_instances() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (a, b) = (instance(&clock), instance(&clock));

    // Reads go to a replica, writes to the primary.
    assert_eq!(
        call(&a, "GET", "/items", None).await,
        ("Replica/Read".to_owned(), None)
    );
    let (decision, cookie) = call(&a, "POST", "/items", None).await;
    assert_eq!(decision, "Primary/Write");
    let cookie = cookie.expect("a successful write sets the cookie");
    assert!(cookie.starts_with("ts_rw="), "{cookie}");

    // The same client's read right after, on the OTHER instance, goes to the primary.
    let (decision, set) = call(&b, "GET", "/items", Some(&cookie)).await;
    assert_eq!(decision, "Primary/RecentWrite");
    assert_eq!(set, None, "reads do not extend the window");
    // Another client (no cookie) still reads from a replica.
    assert_eq!(call(&b, "GET", "/items", None).await.0, "Replica/Read");

    // Just before the window ends: primary; after: replica again.
    clock.fetch_add(4_999, Ordering::SeqCst);
    assert_eq!(
        call(&b, "GET", "/items", Some(&cookie)).await.0,
        "Primary/RecentWrite"
    );
    clock.fetch_add(1, Ordering::SeqCst);
    assert_eq!(
        call(&a, "GET", "/items", Some(&cookie)).await.0,
        "Replica/Read"
    );
}

#[tokio::test]
async fn failed_writes_set_no_cookie_and_tampered_cookies_are_ignored() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let a = instance(&clock);
    let (_, cookie) = call(&a, "POST", "/fail", None).await;
    assert_eq!(cookie, None, "a failed write changed nothing to read back");

    // A client that forges its own window is not believed.
    let forged = "ts_rw=99999999999999";
    assert_eq!(
        call(&a, "GET", "/items", Some(forged)).await.0,
        "Replica/Read"
    );
    let (_, cookie) = call(&a, "DELETE", "/items", None).await;
    let cookie = cookie.unwrap();
    let tampered = format!("{}9", &cookie);
    assert_eq!(
        call(&a, "GET", "/items", Some(&tampered)).await.0,
        "Replica/Read"
    );
    // A cookie signed with another secret is ignored too.
    let other = ReadWriteLayer::new(&[1u8; 32]).unwrap();
    let other_app = Router::new()
        .route("/items", axum::routing::post(|| async { "ok" }))
        .layer(other);
    let (_, foreign) = call(&other_app, "POST", "/items", None).await;
    assert_eq!(
        call(&a, "GET", "/items", foreign.as_deref()).await.0,
        "Replica/Read"
    );
    // The genuine cookie still works next to other cookies.
    let jar = format!("theme=dark; {cookie}; lang=en");
    assert_eq!(
        call(&a, "GET", "/items", Some(&jar)).await.0,
        "Primary/RecentWrite"
    );
}

#[tokio::test]
async fn a_route_can_force_its_target() {
    let clock = Arc::new(AtomicU64::new(0));
    let a = instance(&clock);
    assert_eq!(call(&a, "GET", "/fresh", None).await.0, "Primary/Forced");
    let _ = (Target::Replica, Reason::Read);
}

#[test]
fn bad_settings_are_errors() {
    assert!(matches!(
        ReadWriteLayer::new(b"short"),
        Err(Error::KeyTooShort(5))
    ));
    let layer = ReadWriteLayer::new(SECRET).unwrap();
    let err = layer.cookie_name("bad name;").unwrap_err();
    assert!(err.to_string().contains("bad name;"), "{err}");
}
