//! Test app and helpers shared by the session tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_scale_session::{
    BoxFuture, Record, Refuse, Save, SaveOutcome, Session, SessionConfig, SessionError, SessionId,
    SessionManagerLayer, Store, StoreError,
};

/// Runs a test body `async fn name(layout: RedisLayout)` once per Redis store layout, as the
/// tests `name::hash` and `name::record`, with the given `#[tokio::test]` arguments.
#[allow(unused_macros)]
macro_rules! for_each_layout {
    ($name:ident $(, $($args:tt)*)?) => {
        mod $name {
            #[tokio::test$(($($args)*))?]
            async fn hash() {
                super::$name(tower_scale_session::RedisLayout::Hash).await;
            }
            #[tokio::test$(($($args)*))?]
            async fn record() {
                super::$name(tower_scale_session::RedisLayout::Record).await;
            }
        }
    };
}

/// The settings of the Redis tests: a 10-minute TTL refreshed after a minute, plain HTTP.
pub fn redis_config() -> SessionConfig {
    let mut config = SessionConfig::default();
    config.ttl = std::time::Duration::from_secs(600);
    config.touch_after = std::time::Duration::from_secs(60);
    config.secure = false;
    config
}

/// The routes every test drives.
pub fn app<R: Refuse<Body>>(layer: SessionManagerLayer<R>) -> Router {
    Router::new()
        .route("/untouched", get(|| async { "ok" }))
        .route(
            "/get/{key}",
            get(|session: Session, Path(key): Path<String>| async move {
                let v: Option<String> = session.get(&key).await?;
                Ok::<_, SessionError>(v.unwrap_or_else(|| "none".into()))
            }),
        )
        .route(
            "/set/{key}/{value}",
            post(
                |session: Session, Path((key, value)): Path<(String, String)>| async move {
                    session.insert(&key, &value)?;
                    Ok::<_, SessionError>("set")
                },
            ),
        )
        .route(
            "/rmw/{key}/{value}",
            post(
                |session: Session, Path((key, value)): Path<(String, String)>| async move {
                    // Read first, like a real handler, then change one field.
                    let _: Option<String> = session.get("user").await?;
                    session.insert(&key, &value)?;
                    Ok::<_, SessionError>("set")
                },
            ),
        )
        .route(
            "/remove/{key}",
            post(|session: Session, Path(key): Path<String>| async move {
                session.remove(&key);
                "removed"
            }),
        )
        .route(
            "/login/{user}",
            post(|session: Session, Path(user): Path<String>| async move {
                session.cycle_id();
                session.set_user(&user);
                session.insert("user", &user)?;
                Ok::<_, SessionError>("welcome")
            }),
        )
        .route(
            "/login-keeping-cart/{user}",
            post(|session: Session, Path(user): Path<String>| async move {
                session.cycle_id_keeping(&["cart"]);
                session.set_user(&user);
                Ok::<_, SessionError>("welcome")
            }),
        )
        .route(
            "/cycle",
            post(|session: Session| async move {
                session.cycle_id();
                "cycled"
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.destroy();
                "bye"
            }),
        )
        .route(
            "/logout-flash",
            post(|session: Session| async move {
                session.destroy();
                session.insert("flash", "bye")?;
                Ok::<_, SessionError>("bye")
            }),
        )
        .route(
            "/switch/{user}",
            post(|session: Session, Path(user): Path<String>| async move {
                // Switch account: end the old session, start the new user's.
                session.destroy();
                session.set_user(&user);
                session.insert("user", &user)?;
                let secret: Option<String> = session.get("secret").await?;
                Ok::<_, SessionError>(secret.unwrap_or_else(|| "none".into()))
            }),
        )
        .route(
            "/logout-all/{user}",
            post(|session: Session, Path(user): Path<String>| async move {
                let n = session.destroy_all_for_user(&user).await?;
                Ok::<_, SessionError>(n.to_string())
            }),
        )
        .route(
            "/incr",
            post(|session: Session| async move {
                let n: u64 = session.get("count").await?.unwrap_or(0) + 1;
                session.insert("count", &n)?;
                Ok::<_, SessionError>(n.to_string())
            }),
        )
        .route(
            "/user",
            get(|session: Session| async move {
                let u = session.user().await?;
                Ok::<_, SessionError>(u.unwrap_or_else(|| "none".into()))
            }),
        )
        .layer(layer)
}

/// A response, reduced to what the tests check.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    /// The whole `Set-Cookie` header, if any.
    pub set_cookie: Option<String>,
    pub body: String,
}

impl Reply {
    /// The `name=value` pair of the `Set-Cookie` header.
    pub fn cookie(&self) -> String {
        let header = self.set_cookie.as_deref().expect("a Set-Cookie header");
        tower_scale_testkit::cookie_pair(header).to_owned()
    }
}

/// Sends one request through the router in process.
pub async fn call(app: &Router, method: &str, uri: &str, cookie: Option<&str>) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let mut set_cookies = res.headers().get_all("set-cookie").iter();
    let set_cookie = set_cookies.next().map(|v| v.to_str().unwrap().to_owned());
    assert!(
        set_cookies.next().is_none(),
        "at most one Set-Cookie per response"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        set_cookie,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// Counts store calls, passing each to a real store.
#[derive(Debug, Default)]
pub struct Counts {
    pub loads: AtomicUsize,
    pub saves: AtomicUsize,
    pub deletes: AtomicUsize,
}

impl Counts {
    pub fn get(&self) -> (usize, usize, usize) {
        (
            self.loads.load(Ordering::SeqCst),
            self.saves.load(Ordering::SeqCst),
            self.deletes.load(Ordering::SeqCst),
        )
    }
    pub fn reset(&self) {
        self.loads.store(0, Ordering::SeqCst);
        self.saves.store(0, Ordering::SeqCst);
        self.deletes.store(0, Ordering::SeqCst);
    }
}

/// A real store whose calls are counted.
#[derive(Debug)]
pub struct Counting<S> {
    pub store: S,
    pub counts: Arc<Counts>,
}

impl<S: Store> Store for Counting<S> {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        self.counts.loads.fetch_add(1, Ordering::SeqCst);
        self.store.load(id)
    }
    fn save<'a>(&'a self, save: Save<'a>) -> BoxFuture<'a, Result<SaveOutcome, StoreError>> {
        self.counts.saves.fetch_add(1, Ordering::SeqCst);
        self.store.save(save)
    }
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        self.counts.deletes.fetch_add(1, Ordering::SeqCst);
        self.store.delete(id)
    }
    fn delete_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        self.store.delete_user(user)
    }
}

/// Store rules every store must follow, checked directly on the trait.
pub async fn conformance(store: &dyn Store) {
    use std::collections::HashMap;
    use std::time::Duration;
    let ttl = Duration::from_secs(600);
    let far = u64::MAX / 2;
    let id = SessionId::random();
    let set = vec![
        ("a".to_owned(), "1".to_owned()),
        ("b".to_owned(), "2".to_owned()),
    ];
    // Update of an unknown session: nothing written, never recreated.
    assert_eq!(
        store
            .save(Save::new(&id, false, &set, &[], None, ttl, far))
            .await
            .unwrap(),
        SaveOutcome::Missing
    );
    assert_eq!(store.load(&id).await.unwrap(), None);
    // Create, then a second create of the same id is a collision.
    assert_eq!(
        store
            .save(Save::new(&id, true, &set, &[], Some("u1"), ttl, far))
            .await
            .unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(
        store
            .save(Save::new(&id, true, &[], &[], None, ttl, far))
            .await
            .unwrap(),
        SaveOutcome::Collision
    );
    let record = store.load(&id).await.unwrap().unwrap();
    let expected: HashMap<String, String> = set.iter().cloned().collect();
    assert_eq!(record.fields, expected);
    assert_eq!(record.user.as_deref(), Some("u1"));
    assert_eq!(record.expires_at, far);
    // An update changes only the fields it names.
    let change = vec![
        ("b".to_owned(), "3".to_owned()),
        ("c".to_owned(), "4".to_owned()),
    ];
    let remove = vec!["a".to_owned()];
    assert_eq!(
        store
            .save(Save::new(&id, false, &change, &remove, None, ttl, far - 1))
            .await
            .unwrap(),
        SaveOutcome::Saved
    );
    let record = store.load(&id).await.unwrap().unwrap();
    assert_eq!(record.fields.get("a"), None);
    assert_eq!(record.fields.get("b").map(String::as_str), Some("3"));
    assert_eq!(record.fields.get("c").map(String::as_str), Some("4"));
    assert_eq!(record.user.as_deref(), Some("u1"));
    assert_eq!(record.expires_at, far - 1);
    // An update after a read, of a session deleted since the read: not recreated either.
    let gone = SessionId::random();
    store
        .save(Save::new(&gone, true, &set, &[], None, ttl, far))
        .await
        .unwrap();
    store.delete(&gone).await.unwrap();
    assert_eq!(
        store
            .save(Save::new(&gone, false, &change, &[], None, ttl, far).loaded(None))
            .await
            .unwrap(),
        SaveOutcome::Missing
    );
    assert_eq!(store.load(&gone).await.unwrap(), None);
    // Rebinding to another user moves the session between users' indexes.
    let other = SessionId::random();
    store
        .save(Save::new(&other, true, &set, &[], Some("u1"), ttl, far))
        .await
        .unwrap();
    store
        .save(Save::new(&other, false, &[], &[], Some("u2"), ttl, far))
        .await
        .unwrap();
    assert_eq!(store.delete_user("u2").await.unwrap(), 1);
    assert_eq!(store.load(&other).await.unwrap(), None);
    assert!(
        store.load(&id).await.unwrap().is_some(),
        "u1's session survives u2's logout"
    );
    assert_eq!(store.delete_user("u1").await.unwrap(), 1);
    assert_eq!(store.load(&id).await.unwrap(), None);
    assert_eq!(store.delete_user("u1").await.unwrap(), 0);
    // Deleting is idempotent.
    store.delete(&id).await.unwrap();
    store.delete(&SessionId::random()).await.unwrap();
}

/// `destroy()` then writes in the same request: the writes start a new session under a new
/// id; the old id is dead and out of its user's index. Returns the new sessions' cookies
/// (after the flash logout, after the account switch).
pub async fn destroy_then_write_starts_a_new_session(app: &Router) -> (String, String) {
    // A logout handler that also sets a flash message.
    let old = call(app, "POST", "/login/alice", None).await.cookie();
    call(app, "POST", "/set/secret/alice-data", Some(&old)).await;
    let r = call(app, "POST", "/logout-flash", Some(&old)).await;
    let flash = r.cookie();
    assert_ne!(flash, old, "the flash message went into the old session");
    assert_eq!(call(app, "GET", "/user", Some(&old)).await.body, "none");
    assert_eq!(
        call(app, "GET", "/get/secret", Some(&old)).await.body,
        "none"
    );
    assert_eq!(
        call(app, "GET", "/get/flash", Some(&flash)).await.body,
        "bye"
    );
    assert_eq!(call(app, "GET", "/user", Some(&flash)).await.body, "none");
    assert_eq!(
        call(app, "GET", "/get/secret", Some(&flash)).await.body,
        "none"
    );
    let admin = call(app, "POST", "/login/admin", None).await.cookie();
    assert_eq!(
        call(app, "POST", "/logout-all/alice", Some(&admin))
            .await
            .body,
        "0",
        "the old id left alice's index"
    );

    // Switch account: alice's session must not be merged into bob's.
    let old = call(app, "POST", "/login/alice", None).await.cookie();
    call(app, "POST", "/set/secret/alice-data", Some(&old)).await;
    let r = call(app, "POST", "/switch/bob", Some(&old)).await;
    assert_eq!(r.body, "none", "bob's request read alice's data");
    let bob = r.cookie();
    assert_ne!(bob, old, "bob was merged into alice's session");
    assert_eq!(call(app, "GET", "/user", Some(&old)).await.body, "none");
    assert_eq!(call(app, "GET", "/user", Some(&bob)).await.body, "bob");
    assert_eq!(
        call(app, "GET", "/get/secret", Some(&bob)).await.body,
        "none"
    );
    assert_eq!(
        call(app, "POST", "/logout-all/alice", Some(&admin))
            .await
            .body,
        "0"
    );
    assert_eq!(call(app, "GET", "/user", Some(&bob)).await.body, "bob");
    (flash, bob)
}

/// A request on instance A loads a session bound to a user; instance B logs it out; A then
/// saves a change. The session must stay gone: `a` must not recreate it (nor, for a store
/// with a user index, put it back there; the caller checks that). Returns the session's id.
pub async fn a_late_save_does_not_revive(a: &dyn Store, b: &dyn Store) -> SessionId {
    use std::time::Duration;
    let ttl = Duration::from_secs(600);
    let far = u64::MAX / 2;
    let id = SessionId::random();
    let set = vec![("a".to_owned(), "1".to_owned())];
    let created = a.save(Save::new(&id, true, &set, &[], Some("ivy"), ttl, far));
    assert_eq!(created.await.unwrap(), SaveOutcome::Saved);
    let loaded = a.load(&id).await.unwrap().expect("the session A loads");
    assert_eq!(loaded.user.as_deref(), Some("ivy"));
    b.delete(&id).await.unwrap();
    // A's save of the request that loaded the session before the logout; its user index is
    // due for a refresh (as for a session whose recorded index expiry is near).
    let change = vec![("a".to_owned(), "2".to_owned())];
    let late = Save::new(&id, false, &change, &[], Some("ivy"), ttl, far)
        .loaded_record(&loaded)
        .user_indexed_until(None);
    let outcome = a.save(late).await;
    assert_eq!(
        b.load(&id).await.unwrap(),
        None,
        "the logged-out session came back"
    );
    assert_eq!(
        a.load(&id).await.unwrap(),
        None,
        "the logged-out session came back"
    );
    assert_eq!(outcome.unwrap(), SaveOutcome::Missing);
    id
}
