//! The layer's rules, on the in-memory store, with tokio's clock paused where time matters.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use support::{Counting, Counts, app, call};
use tower::ServiceExt;
use tower_scale_core::PrivateMark;
use tower_scale_session::{
    BoxFuture, MemoryStore, Record, Refusal, SameSite, Save, SaveOutcome, Session, SessionConfig,
    SessionId, SessionManagerLayer, Store, StoreError,
};

fn setup(config: &SessionConfig) -> (Router, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let store = Counting {
        store: MemoryStore::new(),
        counts: counts.clone(),
    };
    let layer = SessionManagerLayer::from_config(store, config).unwrap();
    (app(layer), counts)
}

fn config() -> SessionConfig {
    let mut config = SessionConfig::default();
    config.ttl = Duration::from_secs(3600);
    config.touch_after = Duration::from_secs(60);
    config
}

#[tokio::test]
async fn untouched_and_anonymous_reads_cost_nothing_and_set_no_cookie() {
    let (app, counts) = setup(&config());
    let r = call(&app, "GET", "/untouched", None).await;
    assert_eq!((r.status, r.set_cookie.as_deref()), (StatusCode::OK, None));
    // Reading an anonymous session: nothing to load, nothing to write, no cookie.
    let r = call(&app, "GET", "/get/a", None).await;
    assert_eq!((r.body.as_str(), r.set_cookie.as_deref()), ("none", None));
    // Removing from or cycling an empty session writes nothing either.
    assert_eq!(call(&app, "POST", "/remove/a", None).await.set_cookie, None);
    assert_eq!(call(&app, "POST", "/cycle", None).await.set_cookie, None);
    assert_eq!(call(&app, "POST", "/logout", None).await.set_cookie, None);
    assert_eq!(counts.get(), (0, 0, 0));

    // With a live session, an untouched route still costs nothing.
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    counts.reset();
    let r = call(&app, "GET", "/untouched", Some(&cookie)).await;
    assert_eq!(r.set_cookie, None);
    assert_eq!(counts.get(), (0, 0, 0));
    // Reading: one load, no write (the sliding refresh is not due yet).
    let r = call(&app, "GET", "/get/a", Some(&cookie)).await;
    assert_eq!((r.body.as_str(), r.set_cookie.as_deref()), ("1", None));
    assert_eq!(counts.get(), (1, 0, 0));
}

#[tokio::test]
async fn cookie_attributes_and_max_age_match_the_ttl() {
    let (app, _) = setup(&config());
    let r = call(&app, "POST", "/set/a/1", None).await;
    let header = r.set_cookie.clone().unwrap();
    assert!(header.starts_with("sid="), "{header}");
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=3600",
    ] {
        assert!(header.contains(attr), "{attr} missing: {header}");
    }
    let id = r.cookie()["sid=".len()..].to_owned();
    assert!(SessionId::parse(&id).is_some());

    let mut local = config();
    local.secure = false;
    local.cookie_name = "app".into();
    local.path = "/api".into();
    let (app, _) = setup(&local);
    let header = call(&app, "POST", "/set/a/1", None)
        .await
        .set_cookie
        .unwrap();
    assert!(
        header.starts_with("app=") && header.contains("Path=/api"),
        "{header}"
    );
    assert!(!header.contains("Secure"), "{header}");
}

#[tokio::test]
async fn writes_keep_the_id_and_reads_see_them() {
    let (app, counts) = setup(&config());
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    let r = call(&app, "POST", "/set/b/2", Some(&cookie)).await;
    assert_eq!(r.cookie(), cookie, "an update keeps the id");
    assert_eq!(call(&app, "GET", "/get/a", Some(&cookie)).await.body, "1");
    assert_eq!(call(&app, "GET", "/get/b", Some(&cookie)).await.body, "2");
    call(&app, "POST", "/remove/a", Some(&cookie)).await;
    assert_eq!(
        call(&app, "GET", "/get/a", Some(&cookie)).await.body,
        "none"
    );
    assert_eq!(call(&app, "GET", "/get/b", Some(&cookie)).await.body, "2");
    // Write-only requests do not read the session first.
    counts.reset();
    call(&app, "POST", "/set/c/3", Some(&cookie)).await;
    assert_eq!(counts.get(), (0, 1, 0));
    // Read-modify-write: one load, one save.
    counts.reset();
    assert_eq!(call(&app, "POST", "/incr", Some(&cookie)).await.body, "1");
    assert_eq!(call(&app, "POST", "/incr", Some(&cookie)).await.body, "2");
    assert_eq!(counts.get(), (2, 2, 0));
}

#[tokio::test]
async fn unknown_ids_are_never_adopted() {
    let (app, _) = setup(&config());
    let planted = format!("sid={}", SessionId::random());
    let r = call(&app, "GET", "/get/a", Some(&planted)).await;
    assert_eq!((r.body.as_str(), r.set_cookie.as_deref()), ("none", None));
    // A write with an unknown id starts a new session under a fresh id.
    let r = call(&app, "POST", "/set/a/1", Some(&planted)).await;
    assert_ne!(r.cookie(), planted);
    assert_eq!(
        call(&app, "GET", "/get/a", Some(&planted)).await.body,
        "none"
    );
    assert_eq!(
        call(&app, "GET", "/get/a", Some(&r.cookie())).await.body,
        "1"
    );
}

#[tokio::test]
async fn login_cycles_the_id_against_fixation() {
    let (app, _) = setup(&config());
    // An attacker obtains a session id and plants it in the victim's browser.
    let planted = call(&app, "POST", "/set/cart/book", None).await.cookie();
    let r = call(&app, "POST", "/login/victim", Some(&planted)).await;
    let fresh = r.cookie();
    assert_ne!(fresh, planted);
    // The victim's session keeps its data under the new id and is bound to the user...
    assert_eq!(
        call(&app, "GET", "/get/cart", Some(&fresh)).await.body,
        "book"
    );
    assert_eq!(
        call(&app, "GET", "/user", Some(&fresh)).await.body,
        "victim"
    );
    // ...and the planted id is worth nothing.
    assert_eq!(
        call(&app, "GET", "/user", Some(&planted)).await.body,
        "none"
    );
    assert_eq!(
        call(&app, "GET", "/get/cart", Some(&planted)).await.body,
        "none"
    );
}

#[tokio::test]
async fn a_csrf_token_planted_before_login_does_not_survive_it() {
    let (app, _) = setup(&config());
    // The attacker plants a session holding their own CSRF token (and a cart).
    let planted = call(&app, "POST", "/set/csrf/attacker-token", None)
        .await
        .cookie();
    call(&app, "POST", "/set/cart/book", Some(&planted)).await;
    // The victim logs in; the login keeps only the cart.
    let fresh = call(&app, "POST", "/login-keeping-cart/victim", Some(&planted))
        .await
        .cookie();
    assert_ne!(fresh, planted);
    for (path, cookie, expected) in [
        ("/get/csrf", &fresh, "none"),
        ("/get/cart", &fresh, "book"),
        ("/user", &fresh, "victim"),
        ("/get/cart", &planted, "none"),
    ] {
        let body = call(&app, "GET", path, Some(cookie)).await.body;
        assert_eq!(body, expected, "{path} with {cookie}");
    }
}

#[tokio::test]
async fn logout_and_log_out_everywhere() {
    let (app, _) = setup(&config());
    let laptop = call(&app, "POST", "/login/alice", None).await.cookie();
    let phone = call(&app, "POST", "/login/alice", None).await.cookie();
    let bob = call(&app, "POST", "/login/bob", None).await.cookie();
    let r = call(&app, "POST", "/logout", Some(&laptop)).await;
    let removal = r.set_cookie.unwrap();
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert_eq!(call(&app, "GET", "/user", Some(&laptop)).await.body, "none");
    assert_eq!(call(&app, "GET", "/user", Some(&phone)).await.body, "alice");
    let laptop = call(&app, "POST", "/login/alice", None).await.cookie();
    assert_eq!(
        call(&app, "POST", "/logout-all/alice", Some(&bob))
            .await
            .body,
        "2"
    );
    assert_eq!(call(&app, "GET", "/user", Some(&laptop)).await.body, "none");
    assert_eq!(call(&app, "GET", "/user", Some(&phone)).await.body, "none");
    assert_eq!(call(&app, "GET", "/user", Some(&bob)).await.body, "bob");
    assert_eq!(
        call(&app, "POST", "/logout-all/alice", Some(&bob))
            .await
            .body,
        "0"
    );
}

#[tokio::test]
async fn logout_then_flash_or_account_switch_cannot_keep_the_old_session() {
    let (app, _) = setup(&config());
    let (_, bob) = support::destroy_then_write_starts_a_new_session(&app).await;
    assert_eq!(
        call(&app, "POST", "/logout-all/bob", Some(&bob)).await.body,
        "1"
    );
}

#[tokio::test(start_paused = true)]
async fn sessions_expire_after_the_ttl() {
    let (app, _) = setup(&config());
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    tokio::time::advance(Duration::from_secs(3599)).await;
    assert_eq!(
        call(&app, "GET", "/untouched", Some(&cookie)).await.body,
        "ok"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    let r = call(&app, "GET", "/get/a", Some(&cookie)).await;
    assert_eq!((r.body.as_str(), r.set_cookie.as_deref()), ("none", None));
    // An expired id is not revived by a write either.
    let r = call(&app, "POST", "/set/a/2", Some(&cookie)).await;
    assert_ne!(r.cookie(), cookie);
}

#[tokio::test(start_paused = true)]
async fn sliding_expiry_refreshes_at_most_once_per_interval() {
    let (app, counts) = setup(&config());
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    counts.reset();
    // Within touch_after of the last write: reads write nothing.
    tokio::time::advance(Duration::from_secs(59)).await;
    let r = call(&app, "GET", "/get/a", Some(&cookie)).await;
    assert_eq!(r.set_cookie, None);
    assert_eq!(counts.get(), (1, 0, 0));
    // Past it: one refresh, with a cookie whose Max-Age is the full TTL again.
    tokio::time::advance(Duration::from_secs(2)).await;
    let r = call(&app, "GET", "/get/a", Some(&cookie)).await;
    assert_eq!(r.cookie(), cookie);
    assert!(r.set_cookie.as_deref().unwrap().contains("Max-Age=3600"));
    assert_eq!(counts.get(), (2, 1, 0));
    // Right after the refresh: nothing again.
    let r = call(&app, "GET", "/get/a", Some(&cookie)).await;
    assert_eq!(r.set_cookie, None);
    assert_eq!(counts.get(), (3, 1, 0));
    // Kept alive past the first TTL by reads alone.
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(3000)).await;
        assert_eq!(call(&app, "GET", "/get/a", Some(&cookie)).await.body, "1");
    }
}

#[tokio::test(start_paused = true)]
async fn activity_cannot_keep_a_session_past_its_absolute_timeout() {
    let mut absolute = config();
    absolute.absolute_timeout = Some(Duration::from_secs(2 * 3600));
    let (app, counts) = setup(&absolute);
    let half_hour = Duration::from_secs(1800);
    // Read every half hour: the sliding expiry alone would keep it alive for ever.
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    for _ in 0..3 {
        tokio::time::advance(half_hour).await;
        assert_eq!(call(&app, "GET", "/get/a", Some(&cookie)).await.body, "1");
    }
    // A write without a read cannot extend it either.
    tokio::time::advance(Duration::from_secs(1799)).await;
    call(&app, "POST", "/set/b/2", Some(&cookie)).await;
    // Near the end, a read writes nothing: the expiry cannot move.
    counts.reset();
    assert_eq!(call(&app, "GET", "/get/a", Some(&cookie)).await.body, "1");
    assert_eq!(counts.get(), (1, 0, 0));
    tokio::time::advance(Duration::from_secs(2)).await;
    let r = call(&app, "GET", "/get/a", Some(&cookie)).await;
    assert_eq!((r.body.as_str(), r.set_cookie.as_deref()), ("none", None));

    // Cycling the id (a privilege change) keeps the session's creation time.
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    for _ in 0..2 {
        tokio::time::advance(Duration::from_secs(3500)).await;
        assert_eq!(call(&app, "GET", "/get/a", Some(&cookie)).await.body, "1");
    }
    let cycled = call(&app, "POST", "/cycle", Some(&cookie)).await.cookie();
    assert_eq!(call(&app, "GET", "/get/a", Some(&cycled)).await.body, "1");
    tokio::time::advance(Duration::from_secs(201)).await;
    assert_eq!(
        call(&app, "GET", "/get/a", Some(&cycled)).await.body,
        "none"
    );
}

#[test]
fn absolute_timeout_is_validated_and_set_by_config_or_setter() {
    let config: SessionConfig = serde_json::from_str(r#"{"absolute_timeout":"12h"}"#).unwrap();
    assert_eq!(
        config.absolute_timeout,
        Some(Duration::from_secs(12 * 3600))
    );
    assert_eq!(SessionConfig::default().absolute_timeout, None);
    let mut bad = config;
    bad.absolute_timeout = Some(Duration::from_millis(500));
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("absolute_timeout"), "{e}");
    let layer = SessionManagerLayer::new(MemoryStore::new());
    assert!(layer.clone().absolute_timeout(Duration::ZERO).is_err());
    assert!(layer.absolute_timeout(Duration::from_secs(3600)).is_ok());
}

#[tokio::test]
async fn signed_cookies_reject_forgery_before_any_store_call() {
    let keys = |k: &[&str]| {
        let mut c = config();
        c.signing_keys = k.iter().map(|s| (*s).to_owned()).collect();
        c
    };
    let old = "an old signing secret of thirty-two bytes or more";
    let new = "a new signing secret of thirty-two bytes or more!!";
    let counts = Arc::new(Counts::default());
    let store = Arc::new(MemoryStore::new());
    let layer = |c: &SessionConfig| {
        let counted = Counting {
            store: store.clone(),
            counts: counts.clone(),
        };
        app(SessionManagerLayer::from_config(counted, c).unwrap())
    };
    let before = layer(&keys(&[old]));
    let signed = call(&before, "POST", "/set/a/1", None).await.cookie();
    let id = signed.rsplit('=').next().unwrap().to_owned();
    assert!(
        signed.len() > "sid=".len() + 22,
        "the value carries a MAC: {signed}"
    );

    // Rotation: the new key signs, the old one still verifies.
    let after = layer(&keys(&[new, old]));
    assert_eq!(call(&after, "GET", "/get/a", Some(&signed)).await.body, "1");
    let resigned = call(&after, "POST", "/set/b/2", Some(&signed))
        .await
        .cookie();
    assert_ne!(resigned, signed);
    assert_eq!(
        call(&after, "GET", "/get/b", Some(&resigned)).await.body,
        "2"
    );

    // Forged: the bare id, a tampered MAC, a MAC from another key. No store call at all.
    counts.reset();
    let bare = format!("sid={}", &signed[signed.len() - 22..]);
    let mut tampered = signed.clone();
    tampered.replace_range(4..5, if &signed[4..5] == "A" { "B" } else { "A" });
    for forged in [bare, tampered, format!("sid={id}")] {
        let r = call(&after, "GET", "/get/a", Some(&forged)).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, "none"),
            "{forged}"
        );
    }
    assert_eq!(counts.get(), (0, 0, 0));
}

#[tokio::test]
async fn malformed_cookie_headers_give_an_anonymous_session() {
    let (app, counts) = setup(&config());
    let good = call(&app, "POST", "/set/a/1", None).await.cookie();
    counts.reset();
    let huge = format!("{good}; pad={}", "x".repeat(10_000));
    let dup = format!("{good}; {good}");
    let cases = [
        "sid=".to_owned(),
        "sid".to_owned(),
        "=;=;;".to_owned(),
        "sid=../../etc/passwd".to_owned(),
        format!("{good}x"),
        huge,
        dup,
        "sid=\u{e9}\u{e9}".to_owned(),
    ];
    for cookie in &cases {
        let r = call(&app, "GET", "/get/a", Some(cookie)).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, "none"),
            "{cookie:.60}"
        );
    }
    assert_eq!(counts.get(), (0, 0, 0));
}

#[tokio::test]
async fn reserved_fields_are_refused() {
    let (app, _) = setup(&config());
    let r = call(&app, "POST", "/set/__exp/1", None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.set_cookie, None);
}

#[tokio::test]
async fn memory_store_is_bounded() {
    let store = MemoryStore::new().max_sessions(1_000);
    let layer = SessionManagerLayer::from_config(store.clone(), &config()).unwrap();
    let app = app(layer);
    for i in 0..5_000 {
        call(&app, "POST", &format!("/set/k/{i}"), None).await;
    }
    assert!(store.len() <= 1_000, "{} sessions held", store.len());
}

#[tokio::test]
async fn a_session_logged_out_elsewhere_is_not_revived_by_a_late_save() {
    let store = MemoryStore::new();
    support::a_late_save_does_not_revive(&store, &store).await;
    assert_eq!(store.delete_user("ivy").await.unwrap(), 0);
}

#[tokio::test]
async fn memory_store_conformance() {
    support::conformance(&MemoryStore::new()).await;
}

/// Sends a request carrying a [`PrivateMark`] (as a shared cache outside the session layer
/// puts there) and tells whether the mark was set once the response is there.
async fn marked(app: &Router, method: &str, uri: &str, cookie: Option<&str>) -> bool {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let mut req = req.body(Body::empty()).unwrap();
    let mark = PrivateMark::get_or_insert(req.extensions_mut());
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{method} {uri}");
    mark.is_set()
}

#[tokio::test(start_paused = true)]
async fn a_response_that_changes_the_session_cannot_be_stored_by_a_shared_cache() {
    let (app, _) = setup(&config());
    // Creating a session (Set-Cookie): the outer cache's mark is set.
    assert!(marked(&app, "POST", "/set/a/1", None).await);
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    // Only reading an existing session, or not touching it: not set.
    assert!(!marked(&app, "GET", "/get/a", Some(&cookie)).await);
    assert!(!marked(&app, "GET", "/untouched", Some(&cookie)).await);
    assert!(!marked(&app, "GET", "/user", Some(&cookie)).await);
    // Changing, binding, cycling, destroying: set.
    for (method, uri) in [
        ("POST", "/set/b/2"),
        ("POST", "/remove/b"),
        ("POST", "/incr"),
        ("POST", "/login/mallory"),
    ] {
        assert!(marked(&app, method, uri, Some(&cookie)).await, "{uri}");
    }
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    assert!(marked(&app, "POST", "/cycle", Some(&cookie)).await);
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    assert!(marked(&app, "POST", "/logout", Some(&cookie)).await);
    // A read that refreshes the sliding expiry sends a Set-Cookie: set.
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(marked(&app, "GET", "/get/a", Some(&cookie)).await);
    assert!(!marked(&app, "GET", "/get/a", Some(&cookie)).await);
}

#[tokio::test]
async fn a_cache_inside_the_session_layer_sees_the_session_mark() {
    // A stand-in for a response cache inside the session layer: it takes the request's mark
    // (inserting one if none) and reports it once the handler answered.
    let probe = axum::middleware::from_fn(
        |mut req: Request<Body>, next: axum::middleware::Next| async move {
            let mark = PrivateMark::get_or_insert(req.extensions_mut());
            let mut res = next.run(req).await;
            let private = if mark.is_set() { "yes" } else { "no" };
            res.headers_mut()
                .insert("x-private", axum::http::HeaderValue::from_static(private));
            res
        },
    );
    let sessions = SessionManagerLayer::from_config(MemoryStore::new(), &config()).unwrap();
    let app = Router::new()
        .route(
            "/set",
            post(|session: Session| async move {
                session.insert("a", "1").unwrap();
                "set"
            }),
        )
        .route("/plain", post(|| async { "plain" }))
        .layer(probe)
        .layer(sessions);
    for (uri, expected) in [("/set", "yes"), ("/plain", "no")] {
        let req = Request::post(uri).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.headers()["x-private"], expected, "{uri}");
    }
}

/// A store that is down for writes (reads find no session).
#[derive(Debug)]
struct DownForWrites;

impl Store for DownForWrites {
    fn load<'a>(&'a self, _: &'a SessionId) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
    fn save<'a>(&'a self, _: Save<'a>) -> BoxFuture<'a, Result<SaveOutcome, StoreError>> {
        let down = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "down");
        Box::pin(std::future::ready(Err(StoreError::unavailable(
            "save", down,
        ))))
    }
    fn delete<'a>(&'a self, _: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn delete_user<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(std::future::ready(Ok(0)))
    }
}

#[tokio::test]
async fn a_failed_write_is_answered_by_the_refusal() {
    let layer = SessionManagerLayer::new(DownForWrites)
        .save_error_status(StatusCode::INSUFFICIENT_STORAGE)
        .unwrap();
    // The default refusal: the configured status, an empty body, no cookie.
    let r = call(&app(layer.clone()), "POST", "/set/a/1", None).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!((r.set_cookie, r.body.as_str()), (None, ""));
    // A closure sees the status, the reason and the store's error.
    let refusing = layer.refuse_with(|refusal: &Refusal<'_>| {
        let unavailable = refusal
            .get::<StoreError>()
            .is_some_and(StoreError::is_unavailable);
        let mut res = axum::response::Response::new(Body::from(format!(
            "{} {unavailable}",
            refusal.reason()
        )));
        *res.status_mut() = refusal.status();
        res
    });
    let r = call(&app(refusing), "POST", "/set/a/1", None).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(r.body, "session-unavailable true");
    // A handler's read error keeps its own status.
    let layer = SessionManagerLayer::new(MemoryStore::new())
        .load_error_status(StatusCode::BAD_GATEWAY)
        .unwrap();
    assert_eq!(layer.config().load_error_status, 502);
    assert!(layer.save_error_status(StatusCode::OK).is_err());
}

#[test]
fn setters_validate_the_config() {
    let layer = SessionManagerLayer::new(MemoryStore::new());
    let e = layer.clone().ttl(Duration::from_secs(30)).unwrap_err();
    assert_eq!(e.field(), "touch_after");
    let layer = layer
        .touch_after(Duration::from_secs(10))
        .and_then(|l| l.ttl(Duration::from_secs(30)))
        .and_then(|l| l.cookie_name("app"))
        .and_then(|l| l.path("/api"))
        .and_then(|l| l.domain("example.com"))
        .and_then(|l| l.same_site(SameSite::Strict))
        .and_then(|l| l.signing_keys(["a signing secret of thirty-two bytes or more"]))
        .unwrap();
    assert_eq!(layer.config().ttl, Duration::from_secs(30));
    assert_eq!(layer.config().cookie_name, "app");
    assert_eq!(
        layer.clone().cookie_name("a b").unwrap_err().field(),
        "cookie_name"
    );
    assert_eq!(
        layer.clone().signing_keys(["short"]).unwrap_err().field(),
        "signing_keys[0]"
    );
    let none = layer.same_site(SameSite::None).unwrap();
    assert_eq!(none.secure(false).unwrap_err().field(), "same_site");
}
