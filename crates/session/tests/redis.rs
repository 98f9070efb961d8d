//! The Redis store against real `redis-server`s started by the tests: two app instances over
//! HTTP, concurrent writers, command counts, Redis paused and killed, expiry, Redis Cluster.

#[macro_use]
mod support;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use axum::http::StatusCode;
use support::{Reply, app, call, conformance};
use tower_scale_redis::redis;
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_session::{
    RedisLayout, RedisStore, Save, SaveOutcome, SessionConfig, SessionId, SessionManagerLayer,
    Store,
};
use tower_scale_testkit::{RedisCluster, RedisServer};

fn config() -> SessionConfig {
    support::redis_config()
}

/// A backend whose commands may take long: these tests check what the store does, and a reply
/// delayed by a busy machine must not turn into a timeout (a `503`, a save not made, a
/// watchdog `PING` among the counted commands).
fn backend(url: &str) -> RedisBackend {
    patient(RedisConfig::new(url))
}

/// A backend on `config` with command and connect timeouts that no busy machine reaches.
fn patient(mut config: RedisConfig) -> RedisBackend {
    config.command_timeout = Duration::from_secs(60);
    config.connect_timeout = Duration::from_secs(60);
    RedisBackend::new(config).unwrap()
}

/// A backend with a short command timeout, for the test of a Redis that does not answer.
fn impatient_backend(url: &str) -> RedisBackend {
    let mut c = RedisConfig::new(url);
    c.command_timeout = Duration::from_millis(300);
    RedisBackend::new(c).unwrap()
}

/// A backend on `cluster` whose commands may take long (see [`backend`]).
fn cluster_backend(cluster: &RedisCluster) -> RedisBackend {
    patient(RedisConfig::cluster(cluster.urls()))
}

fn layer(backend: RedisBackend, layout: RedisLayout) -> SessionManagerLayer {
    SessionManagerLayer::from_config(RedisStore::new(backend).layout(layout), &config()).unwrap()
}

/// Guards against a hang: every test step must finish; this is not a timing assertion.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("a session request hung")
}

/// One app instance: an HTTP server on its own port with its own Redis connections.
struct Instance {
    base: String,
}

impl Instance {
    async fn start(redis_url: &str, layout: RedisLayout) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = app(layer(backend(redis_url), layout));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base }
    }
}

struct Client(reqwest::Client);

impl Client {
    fn new() -> Self {
        Self(reqwest::Client::builder().no_proxy().build().unwrap())
    }

    async fn body(&self, on: &Instance, method: &str, path: &str, cookie: Option<&str>) -> String {
        self.send(on, method, path, cookie).await.body
    }

    async fn send(&self, on: &Instance, method: &str, path: &str, cookie: Option<&str>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.0.request(method, format!("{}{path}", on.base));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let res = bounded(req.send()).await.unwrap();
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
        let set_cookie = res
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.text().await.unwrap();
        Reply {
            status,
            set_cookie,
            body,
        }
    }
}

async fn two_instances_share_sessions(layout: RedisLayout) {
    let redis = RedisServer::start();
    let (a, b) = (
        Instance::start(&redis.url(), layout).await,
        Instance::start(&redis.url(), layout).await,
    );
    let http = Client::new();

    // Log in on A.
    let login = http.send(&a, "POST", "/login/alice", None).await;
    assert_eq!(login.status, StatusCode::OK);
    let cookie = login.cookie();
    // Read on B.
    assert_eq!(http.body(&b, "GET", "/user", Some(&cookie)).await, "alice");
    // Change on B, read on A.
    http.send(&b, "POST", "/set/theme/dark", Some(&cookie))
        .await;
    assert_eq!(
        http.body(&a, "GET", "/get/theme", Some(&cookie)).await,
        "dark"
    );
    // Logging in again on B cycles the id: the old one is dead on A, the new one works on A.
    let relogin = http
        .send(&b, "POST", "/login/alice", Some(&cookie))
        .await
        .cookie();
    assert_ne!(relogin, cookie);
    assert_eq!(http.body(&a, "GET", "/user", Some(&cookie)).await, "none");
    assert_eq!(http.body(&a, "GET", "/user", Some(&relogin)).await, "alice");
    assert_eq!(
        http.body(&a, "GET", "/get/theme", Some(&relogin)).await,
        "dark"
    );
    // Logout on B invalidates on A.
    let out = http.send(&b, "POST", "/logout", Some(&relogin)).await;
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    assert_eq!(http.body(&a, "GET", "/user", Some(&relogin)).await, "none");
    // A late write with the dead id does not bring the session back.
    let late = http
        .send(&a, "POST", "/set/theme/light", Some(&relogin))
        .await;
    assert_ne!(late.cookie(), relogin);
    assert_eq!(
        http.body(&b, "GET", "/get/theme", Some(&relogin)).await,
        "none"
    );

    // Log out everywhere: two devices on two instances, ended from a third session.
    let laptop = http.send(&a, "POST", "/login/bob", None).await.cookie();
    let phone = http.send(&b, "POST", "/login/bob", None).await.cookie();
    let admin = http.send(&a, "POST", "/login/admin", None).await.cookie();
    assert_eq!(
        http.body(&b, "POST", "/logout-all/bob", Some(&admin)).await,
        "2"
    );
    assert_eq!(http.body(&a, "GET", "/user", Some(&laptop)).await, "none");
    assert_eq!(http.body(&b, "GET", "/user", Some(&phone)).await, "none");
    assert_eq!(http.body(&a, "GET", "/user", Some(&admin)).await, "admin");
}

async fn logout_then_flash_or_account_switch_cannot_keep_the_old_session(layout: RedisLayout) {
    let redis = RedisServer::start();
    let store_backend = backend(&redis.url());
    let app = app(layer(store_backend.clone(), layout));
    let (flash, bob) = support::destroy_then_write_starts_a_new_session(&app).await;
    let prefix = store_backend.keys().prefix();
    // Only bob's new session in bob's index; alice's has none left.
    assert_eq!(
        redis
            .cli(&["SMEMBERS", &format!("{prefix}:session-user:bob")])
            .trim(),
        &bob["sid=".len()..]
    );
    assert_eq!(
        redis
            .cli(&["SCARD", &format!("{prefix}:session-user:alice")])
            .trim(),
        "0"
    );
    let store = RedisStore::new(store_backend).layout(layout);
    let flash_id = SessionId::parse(&flash["sid=".len()..]).unwrap();
    let flash_record = store.load(&flash_id).await.unwrap().unwrap();
    assert_eq!(
        flash_record.user, None,
        "the flash session is bound to no user"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_instances_lose_no_field() {
    // The hash layout's guarantee; the record layout's writers: the last one wins.
    let redis = RedisServer::start();
    let (a, b) = (
        Instance::start(&redis.url(), RedisLayout::Hash).await,
        Instance::start(&redis.url(), RedisLayout::Hash).await,
    );
    let http = Client::new();
    let cookie = http.send(&a, "POST", "/login/carol", None).await.cookie();
    let n = 64;
    let writes = (0..n).map(|i| {
        let (http, cookie) = (&http, &cookie);
        let on = if i % 2 == 0 { &a } else { &b };
        async move {
            http.send(on, "POST", &format!("/rmw/f{i}/v{i}"), Some(cookie))
                .await
        }
    });
    for reply in futures_util::future::join_all(writes).await {
        assert_eq!(reply.status, StatusCode::OK);
    }
    for i in 0..n {
        let on = if i % 2 == 0 { &b } else { &a };
        let got = http
            .body(on, "GET", &format!("/get/f{i}"), Some(&cookie))
            .await;
        assert_eq!(got, format!("v{i}"), "field f{i} lost");
    }
    assert_eq!(http.body(&a, "GET", "/user", Some(&cookie)).await, "carol");
}

fn calls(redis: &RedisServer) -> HashMap<String, u64> {
    redis
        .command_calls()
        .into_iter()
        .filter(|(name, _)| name != "info" && !name.starts_with("config"))
        .collect()
}

/// The commands of one run of the save script: `EVALSHA` and the calls inside it (the
/// `HMGET` of `__exp` doubles as the existence check).
const SAVE_SCRIPT: &[(&str, u64)] = &[("evalsha", 1), ("hmget", 1), ("hset", 1), ("pexpire", 1)];

/// The commands of one store operation.
type Commands = &'static [(&'static str, u64)];

/// What each store operation costs Redis, in one layout.
struct Costs {
    read: Commands,
    write_without_read: Commands,
    update_after_read: Commands,
    create: Commands,
    refresh: Commands,
    delete: Commands,
}

fn costs(layout: RedisLayout) -> Costs {
    match layout {
        RedisLayout::Hash => Costs {
            read: &[("hgetall", 1)],
            write_without_read: SAVE_SCRIPT,
            update_after_read: SAVE_SCRIPT,
            create: &[("multi", 1), ("hset", 1), ("pexpire", 1), ("exec", 1)],
            // The save script writing `__exp` alone.
            refresh: SAVE_SCRIPT,
            delete: &[("evalsha", 1), ("hget", 1), ("del", 1)],
        },
        // Every write is one SET; the refresh script patches `__exp` into the record as
        // stored now (a change made since the read is kept).
        _ => Costs {
            read: &[("get", 1)],
            write_without_read: &[("get", 1), ("set", 1)],
            update_after_read: &[("set", 1)],
            create: &[("set", 1)],
            refresh: &[("evalsha", 1), ("get", 1), ("set", 1)],
            delete: &[("getdel", 1)],
        },
    }
}

/// A request (method, path, cookie), the commands it should cost, and what that shows.
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a [&'a [(&'a str, u64)]],
    &'a str,
);

/// Expected command counts: the sum of the given lists.
fn expect(lists: &[&[(&str, u64)]]) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for (k, v) in lists.iter().flat_map(|l| l.iter()) {
        *out.entry((*k).to_owned()).or_default() += v;
    }
    out
}

async fn redis_commands_per_request_type(layout: RedisLayout) {
    let cost = costs(layout);
    let redis = RedisServer::start();
    let store_backend = backend(&redis.url());
    let app = app(layer(store_backend.clone(), layout));
    // Warm up: load the scripts, open the connection.
    let cookie = call(&app, "POST", "/login/dave", None).await.cookie();
    call(&app, "POST", "/logout", Some(&cookie)).await;
    let anon = call(&app, "POST", "/set/a/1", None).await.cookie();
    call(&app, "POST", "/set/w/1", Some(&anon)).await;

    // (request, expected commands, what it shows)
    let cases: [Case<'_>; 6] = [
        (
            "GET",
            "/untouched",
            Some(&anon),
            &[],
            "untouched: no command",
        ),
        (
            "GET",
            "/get/a",
            Some(&anon),
            &[cost.read],
            "read-only: one read",
        ),
        (
            "POST",
            "/set/b/2",
            Some(&anon),
            &[cost.write_without_read],
            "write-only",
        ),
        (
            "POST",
            "/incr",
            Some(&anon),
            &[cost.read, cost.update_after_read],
            "read-modify-write",
        ),
        ("POST", "/set/a/1", None, &[cost.create], "new session"),
        (
            "POST",
            "/login/dave",
            None,
            &[
                cost.create,
                &[("multi", 1), ("sadd", 1), ("pexpire", 1), ("exec", 1)],
            ],
            "login: the new session, then the user index (MULTI SADD PEXPIRE EXEC)",
        ),
    ];
    let mut dave = String::new();
    for (method, path, cookie, expected, what) in cases {
        redis.reset_stats();
        let reply = call(&app, method, path, cookie).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}");
        assert_eq!(calls(&redis), expect(expected), "{what}");
        if path == "/login/dave" {
            dave = reply.cookie();
        }
    }

    // A bound session read and written: the index's expiry recorded at login is far enough
    // ahead, so no index transaction; and the index outlives the session.
    redis.reset_stats();
    let reply = call(&app, "POST", "/incr", Some(&dave)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        calls(&redis),
        expect(&[cost.read, cost.update_after_read]),
        "a bound session's update: read + update, no user index refresh"
    );
    let prefix = store_backend.keys().prefix();
    let pttl = |key: String| -> i64 { redis.cli(&["PTTL", &key]).trim().parse().unwrap() };
    let session_ttl = pttl(format!("{prefix}:session:{}", &dave["sid=".len()..]));
    let index_ttl = pttl(format!("{prefix}:session-user:dave"));
    assert!(
        session_ttl > 0 && index_ttl > session_ttl,
        "session {session_ttl} ms, index {index_ttl} ms"
    );

    redis.reset_stats();
    call(&app, "POST", "/logout", Some(&dave)).await;
    assert_eq!(
        calls(&redis),
        expect(&[cost.delete, &[("srem", 1)]]),
        "logout: the delete, then SREM from the user index"
    );
}

async fn redis_paused_or_killed_reads_503_and_writes_are_reported(layout: RedisLayout) {
    let mut redis = RedisServer::start();
    // The session is made through another instance, whose commands may take long: only the
    // calls made while Redis does not answer need the short timeout.
    let patient_app = app(layer(backend(&redis.url()), layout));
    let cookie = call(&patient_app, "POST", "/set/a/1", None).await.cookie();
    let app = app(layer(impatient_backend(&redis.url()), layout));

    redis.pause();
    let read = bounded(call(&app, "GET", "/get/a", Some(&cookie))).await;
    assert_eq!(read.status, StatusCode::SERVICE_UNAVAILABLE);
    let write = bounded(call(&app, "POST", "/set/a/2", Some(&cookie))).await;
    assert_eq!(
        write.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a failed save is not a 200"
    );
    assert_eq!(write.set_cookie, None);
    // Routes that do not touch the session do not care.
    assert_eq!(
        bounded(call(&app, "GET", "/untouched", Some(&cookie)))
            .await
            .status,
        StatusCode::OK
    );
    redis.resume();

    // Back: the session is intact. The write that timed out was answered 503 (outcome
    // unknown to the client); it was either never sent (the backend's breaker opened) or
    // sits in the paused server's socket and is applied whole on resume, never half.
    let mut read = bounded(call(&app, "GET", "/get/a", Some(&cookie))).await;
    for _ in 0..50 {
        if read.status == StatusCode::OK {
            break;
        }
        // The backend's breaker may hold calls back briefly after the outage.
        tokio::time::sleep(Duration::from_millis(100)).await;
        read = bounded(call(&app, "GET", "/get/a", Some(&cookie))).await;
    }
    assert_eq!(read.status, StatusCode::OK);
    assert!(["1", "2"].contains(&read.body.as_str()), "{read:?}");

    redis.kill();
    let read = bounded(call(&app, "GET", "/get/a", Some(&cookie))).await;
    assert_eq!(read.status, StatusCode::SERVICE_UNAVAILABLE);
    let login = bounded(call(&app, "POST", "/login/erin", None)).await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        login.set_cookie, None,
        "no cookie for a session that was not stored"
    );
}

async fn sessions_expire_with_the_ttl_and_redis_holds_the_same_ttl(layout: RedisLayout) {
    let redis = RedisServer::start();
    let store_backend = backend(&redis.url());
    let app = app(layer(store_backend.clone(), layout));
    let reply = call(&app, "POST", "/set/a/1", None).await;
    assert!(reply.set_cookie.as_deref().unwrap().contains("Max-Age=600"));
    let cookie = reply.cookie();
    let id = &cookie["sid=".len()..];
    let key = format!("{}:session:{id}", store_backend.keys().prefix());
    let pttl: i64 = redis.cli(&["PTTL", &key]).trim().parse().unwrap();
    assert!(
        (590_000..=600_000).contains(&pttl),
        "server TTL {pttl} ms vs Max-Age 600 s"
    );

    // Move tokio's clock past the TTL (Redis's own clock will expire the key too).
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(601)).await;
    tokio::time::resume();
    let r = call(&app, "GET", "/get/a", Some(&cookie)).await;
    assert_eq!(
        (r.status, r.body.as_str(), r.set_cookie.as_deref()),
        (StatusCode::OK, "none", None)
    );
}

/// A bound session saved on every request refreshes its user's index only when the expiry it
/// recorded would no longer cover the session's new expiry with a minute to spare.
async fn the_user_index_is_refreshed_about_once_per_ttl(layout: RedisLayout) {
    let redis = RedisServer::start();
    let store_backend = backend(&redis.url());
    let app = app(layer(store_backend.clone(), layout));
    let index = format!("{}:session-user:fay", store_backend.keys().prefix());
    let fay = call(&app, "POST", "/login/fay", None).await.cookie();
    let refreshes = |redis: &RedisServer| redis.calls("sadd");

    // 600 s TTL: the index was made to live 1,200 s at login. Up to 539 s later, a save
    // (new expiry at most 1,139 s after login) leaves more than a minute: no refresh.
    for (advance, expected) in [(100, 0), (439, 0), (2, 1), (100, 0)] {
        // The session's clock follows tokio's; resumed before the call, whose Redis
        // commands have timeouts.
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(advance)).await;
        tokio::time::resume();
        // Redis's clock does not move: hand the index a shorter TTL, to see a refresh raise
        // it (100 s: the key outlives the call however busy the machine is).
        redis.cli(&["PEXPIRE", &index, "100000"]);
        redis.reset_stats();
        let r = call(&app, "POST", "/incr", Some(&fay)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(refreshes(&redis), expected, "after +{advance} s");
        let ttl: i64 = redis.cli(&["PTTL", &index]).trim().parse().unwrap();
        if expected == 1 {
            assert!((1_190_000..=1_200_000).contains(&ttl), "index TTL {ttl} ms");
        } else {
            assert!((1..=100_000).contains(&ttl), "index TTL {ttl} ms");
        }
    }
}

async fn sliding_refresh_extends_the_redis_ttl_without_rewriting_data(layout: RedisLayout) {
    let redis = RedisServer::start();
    let store_backend = backend(&redis.url());
    let app = app(layer(store_backend.clone(), layout));
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    let key = format!(
        "{}:session:{}",
        store_backend.keys().prefix(),
        &cookie["sid=".len()..]
    );
    let warm_up = call(&app, "POST", "/set/a/1", None).await.cookie();
    call(&app, "POST", "/set/w/1", Some(&cookie)).await;
    // Shorten the server TTL by hand, to see the refresh put it back.
    redis.cli(&["PEXPIRE", &key, "100000"]);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(61)).await;
    tokio::time::resume();
    // Another session's refresh first, so the scripts are loaded before the counts start.
    let warmed = call(&app, "GET", "/get/a", Some(&warm_up)).await;
    assert!(warmed.set_cookie.is_some(), "the warm-up read refreshed");
    redis.reset_stats();
    let r = call(&app, "GET", "/get/a", Some(&cookie)).await;
    assert_eq!(r.body, "1");
    assert!(r.set_cookie.as_deref().unwrap().contains("Max-Age=600"));
    // One read, then the refresh, writing the expiry only.
    let cost = costs(layout);
    assert_eq!(calls(&redis), expect(&[cost.read, cost.refresh]));
    let pttl: i64 = redis.cli(&["PTTL", &key]).trim().parse().unwrap();
    assert!(
        pttl > 500_000,
        "TTL refreshed to the full 600 s, got {pttl} ms"
    );
    assert_eq!(call(&app, "GET", "/get/a", Some(&cookie)).await.body, "1");
}

/// Two stores (instances) on one Redis, each with its own connections.
fn two_stores(redis: &RedisServer, layout: RedisLayout) -> (RedisStore, RedisStore) {
    let store = || RedisStore::new(backend(&redis.url())).layout(layout);
    (store(), store())
}

/// Two requests read one session, then each changes a different field: in the record layout
/// the last write wins for the whole session (as in tower-sessions and express-session); in
/// the hash layout both changes are kept.
async fn two_writers_of_one_session(layout: RedisLayout) {
    let redis = RedisServer::start();
    let (a, b) = two_stores(&redis, layout);
    let ttl = Duration::from_secs(600);
    let far = u64::MAX / 2;
    let id = SessionId::random();
    let created = a.save(Save::new(&id, true, &[], &[], None, ttl, far));
    assert_eq!(created.await.unwrap(), SaveOutcome::Saved);
    let (read_a, read_b) = (
        a.load(&id).await.unwrap().unwrap(),
        b.load(&id).await.unwrap().unwrap(),
    );
    for (store, read, field) in [(&a, &read_a, "from_a"), (&b, &read_b, "from_b")] {
        let set = vec![(field.to_owned(), "1".to_owned())];
        let save = Save::new(&id, false, &set, &[], None, ttl, far).loaded_record(read);
        assert_eq!(store.save(save).await.unwrap(), SaveOutcome::Saved);
    }
    let fields = a.load(&id).await.unwrap().unwrap().fields;
    let kept: Vec<&str> = ["from_a", "from_b"]
        .into_iter()
        .filter(|f| fields.contains_key(*f))
        .collect();
    match layout {
        RedisLayout::Hash => assert_eq!(kept, ["from_a", "from_b"]),
        _ => assert_eq!(kept, ["from_b"], "the record layout: the last writer wins"),
    }
}

/// A sliding refresh (a read with nothing changed, its expiry due) writes the expiry only: a
/// change another instance made since the read is kept.
async fn a_sliding_refresh_keeps_a_change_made_since_the_read(layout: RedisLayout) {
    let redis = RedisServer::start();
    let (a, b) = two_stores(&redis, layout);
    let ttl = Duration::from_secs(600);
    let id = SessionId::random();
    let set = vec![("n".to_owned(), "1".to_owned())];
    let created = a.save(Save::new(&id, true, &set, &[], Some("ivy"), ttl, 1_000));
    assert_eq!(created.await.unwrap(), SaveOutcome::Saved);
    let read = a.load(&id).await.unwrap().unwrap();
    let change = vec![("n".to_owned(), "2".to_owned())];
    let changed = b.save(Save::new(&id, false, &change, &[], None, ttl, 1_500));
    assert_eq!(changed.await.unwrap(), SaveOutcome::Saved);
    let refresh = Save::new(&id, false, &[], &[], Some("ivy"), ttl, 2_000).loaded_record(&read);
    assert_eq!(a.save(refresh).await.unwrap(), SaveOutcome::Saved);
    let now = b.load(&id).await.unwrap().unwrap();
    assert_eq!(now.fields["n"], "2", "the refresh overwrote a newer change");
    assert_eq!(now.expires_at, 2_000);
    assert_eq!(now.user.as_deref(), Some("ivy"));
    assert!(now.user_indexed_until.is_some());
    // A refresh of a session gone since the read: not recreated.
    b.delete(&id).await.unwrap();
    let late = Save::new(&id, false, &[], &[], Some("ivy"), ttl, 3_000).loaded_record(&read);
    assert_eq!(a.save(late).await.unwrap(), SaveOutcome::Missing);
    assert_eq!(b.load(&id).await.unwrap(), None);
}

/// Instance A's Redis user may not run `DEL` (an ACL): a clean-up that depends on a `DEL`
/// after the fact fails there, as it would on a timeout or a dropped connection.
async fn a_session_logged_out_elsewhere_is_not_revived_by_a_late_save(layout: RedisLayout) {
    let redis = RedisServer::start();
    redis.cli(&[
        "ACL", "SETUSER", "nodel", "on", ">pw", "~*", "&*", "+@all", "-del",
    ]);
    let a = RedisStore::new(backend(&format!(
        "redis://nodel:pw@127.0.0.1:{}",
        redis.port()
    )))
    .layout(layout);
    let b = RedisStore::new(backend(&redis.url())).layout(layout);
    let id = support::a_late_save_does_not_revive(&a, &b).await;
    let index: Vec<String> = b
        .backend()
        .query(redis::cmd("SMEMBERS").arg(b.user_key("ivy")))
        .await
        .unwrap();
    assert!(
        !index.iter().any(|i| i == id.as_str()),
        "the logged-out session is back in its user's index"
    );
}

/// `__idx` records until when the user's index lives, and saves skip refreshing the index
/// while it says so. A save on instance A, whose Redis user may not run `SADD` (an ACL: the
/// index write fails, as on a timeout), must therefore not record a refresh: the index would
/// then expire while the session, saved again and again, lives on, out of log-out-everywhere's
/// reach.
async fn a_failed_index_write_cannot_hide_a_session_from_log_out_everywhere(layout: RedisLayout) {
    let redis = RedisServer::start();
    redis.cli(&[
        "ACL", "SETUSER", "nosadd", "on", ">pw", "~*", "&*", "+@all", "-sadd",
    ]);
    let a = RedisStore::new(backend(&format!(
        "redis://nosadd:pw@127.0.0.1:{}",
        redis.port()
    )))
    .layout(layout);
    let b = RedisStore::new(backend(&redis.url())).layout(layout);
    let ttl = Duration::from_secs(600);
    let created_expiry = u64::MAX / 4;
    let id = SessionId::random();
    let created = b.save(Save::new(
        &id,
        true,
        &[],
        &[],
        Some("ivy"),
        ttl,
        created_expiry,
    ));
    assert_eq!(created.await.unwrap(), SaveOutcome::Saved);
    let indexed_until = b.load(&id).await.unwrap().unwrap().user_indexed_until;
    // 590 s later, a request on A reads the session and changes it: the index is due for a
    // refresh, which fails.
    let change = vec![("a".to_owned(), "1".to_owned())];
    let late = Save::new(
        &id,
        false,
        &change,
        &[],
        Some("ivy"),
        ttl,
        created_expiry + 590_000,
    )
    .loaded(Some("ivy"))
    .user_indexed_until(indexed_until);
    assert!(a.save(late).await.is_err(), "the index write failed");
    let record = b.load(&id).await.unwrap().unwrap();
    assert_eq!(
        record.user_indexed_until, indexed_until,
        "a failed index write was recorded as done"
    );
    assert_eq!(b.delete_user("ivy").await.unwrap(), 1);
}

/// Tokio's clock moves the layer's; Redis's own does not move, so the key's TTL shows what
/// each save asked for.
async fn activity_cannot_keep_a_redis_session_past_its_absolute_timeout(layout: RedisLayout) {
    let redis = RedisServer::start();
    let store_backend = backend(&redis.url());
    let mut config = config();
    config.absolute_timeout = Some(Duration::from_secs(900));
    let layer = SessionManagerLayer::from_config(
        RedisStore::new(store_backend.clone()).layout(layout),
        &config,
    )
    .unwrap();
    let app = app(layer);
    let cookie = call(&app, "POST", "/set/a/1", None).await.cookie();
    let key = format!(
        "{}:session:{}",
        store_backend.keys().prefix(),
        &cookie["sid=".len()..]
    );
    let pttl = || -> i64 { redis.cli(&["PTTL", &key]).trim().parse().unwrap() };
    assert!(pttl() > 590_000, "{}", pttl());
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(500)).await;
    tokio::time::resume();
    // A read refreshing the sliding expiry: 400 s left, not 600.
    let r = call(&app, "GET", "/get/a", Some(&cookie)).await;
    assert_eq!(r.body, "1");
    assert!((390_000..=400_000).contains(&pttl()), "{}", pttl());
    // A write without a read: capped too.
    redis.cli(&["PEXPIRE", &key, "1000000"]);
    call(&app, "POST", "/set/b/2", Some(&cookie)).await;
    assert!((390_000..=400_000).contains(&pttl()), "{}", pttl());
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(401)).await;
    tokio::time::resume();
    let r = call(&app, "GET", "/get/a", Some(&cookie)).await;
    assert_eq!((r.body.as_str(), r.set_cookie.as_deref()), ("none", None));
}

async fn redis_store_conformance(layout: RedisLayout) {
    let redis = RedisServer::start();
    conformance(&RedisStore::new(backend(&redis.url())).layout(layout)).await;
}

async fn works_on_redis_cluster(layout: RedisLayout) {
    let cluster = RedisCluster::start();
    let cluster_backend = cluster_backend(&cluster);
    let store = RedisStore::new(cluster_backend.clone()).layout(layout);
    conformance(&store).await;

    let app = app(layer(cluster_backend, layout));
    // Session ids are random, so log in until the sessions sit on every master (at least six
    // devices). Covering 3 masters takes about 5.5 logins on average; 200 leave the chance of
    // missing one at 3 * (2/3)^200, so the test does not depend on luck.
    let mut owners = std::collections::HashSet::new();
    let mut devices = Vec::new();
    while devices.len() < 6 || owners.len() < 3 {
        assert!(devices.len() < 200, "sessions never reached every master");
        let cookie = call(&app, "POST", "/login/frank", None).await.cookie();
        let key = store
            .session_key(&tower_scale_session::SessionId::parse(&cookie["sid=".len()..]).unwrap());
        owners.insert(cluster.slot_owner(cluster.keyslot(&key)));
        call(&app, "POST", "/incr", Some(&cookie)).await;
        assert_eq!(
            call(&app, "GET", "/get/user", Some(&cookie)).await.body,
            "frank"
        );
        devices.push(cookie);
    }
    let cycled = call(&app, "POST", "/cycle", Some(&devices[0]))
        .await
        .cookie();
    assert_eq!(
        call(&app, "GET", "/user", Some(&devices[0])).await.body,
        "none"
    );
    assert_eq!(
        call(&app, "GET", "/user", Some(&cycled)).await.body,
        "frank"
    );
    call(&app, "POST", "/logout", Some(&devices[1])).await;
    assert_eq!(
        call(&app, "GET", "/user", Some(&devices[1])).await.body,
        "none"
    );
    let other = call(&app, "POST", "/login/gina", None).await.cookie();
    assert_eq!(
        call(&app, "POST", "/logout-all/frank", Some(&other))
            .await
            .body,
        // Device 0 was cycled (its new id stays logged in) and device 1 logged out.
        (devices.len() - 1).to_string()
    );
    for cookie in devices.iter().skip(2).chain([&cycled]) {
        assert_eq!(call(&app, "GET", "/user", Some(cookie)).await.body, "none");
    }
    assert_eq!(call(&app, "GET", "/user", Some(&other)).await.body, "gina");
}

/// Logins loop while log-out-everywhere runs again and again: a login that lands between a
/// log-out-everywhere's read of the user's index and its clean-up must stay in the index, so
/// that the next log-out-everywhere ends it.
async fn logins_during_log_out_everywhere_stay_indexed(store: RedisStore) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    // Logins started and done (one after the other, in one task).
    let (started, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let logins = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        let (started, done) = (started.clone(), done.clone());
        async move {
            let mut ids = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                started.fetch_add(1, Ordering::SeqCst);
                let id = SessionId::random();
                let save = Save::new(
                    &id,
                    true,
                    &[],
                    &[],
                    Some("race"),
                    Duration::from_secs(600),
                    u64::MAX / 2,
                );
                store.save(save).await.unwrap();
                ids.push(id);
                done.fetch_add(1, Ordering::SeqCst);
            }
            ids
        }
    });
    for _ in 0..300 {
        store.delete_user("race").await.unwrap();
    }
    // At least one login after the last log-out-everywhere, however the tasks were scheduled.
    let before = started.load(Ordering::SeqCst);
    bounded(async {
        while done.load(Ordering::SeqCst) <= before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let ids = logins.await.unwrap();
    let indexed: Vec<String> = store
        .backend()
        .query(redis::cmd("SMEMBERS").arg(store.user_key("race")))
        .await
        .unwrap();
    let mut alive = 0;
    for id in &ids {
        if store.load(id).await.unwrap().is_some() {
            assert!(
                indexed.iter().any(|i| i == id.as_str()),
                "a live session of the user is missing from the index ({} logins)",
                ids.len()
            );
            alive += 1;
        }
    }
    assert!(alive > 0, "no login ran after the last log-out-everywhere");
    assert_eq!(store.delete_user("race").await.unwrap(), alive);
    for id in &ids {
        assert_eq!(store.load(id).await.unwrap(), None);
    }
}

async fn a_login_during_log_out_everywhere_stays_indexed(layout: RedisLayout) {
    let redis = RedisServer::start();
    logins_during_log_out_everywhere_stay_indexed(
        RedisStore::new(backend(&redis.url())).layout(layout),
    )
    .await;
}

async fn a_login_during_log_out_everywhere_stays_indexed_on_cluster(layout: RedisLayout) {
    let cluster = RedisCluster::start();
    logins_during_log_out_everywhere_stay_indexed(
        RedisStore::new(cluster_backend(&cluster)).layout(layout),
    )
    .await;
}

for_each_layout!(
    two_instances_share_sessions,
    flavor = "multi_thread",
    worker_threads = 2
);
for_each_layout!(logout_then_flash_or_account_switch_cannot_keep_the_old_session);
for_each_layout!(redis_commands_per_request_type);
for_each_layout!(
    redis_paused_or_killed_reads_503_and_writes_are_reported,
    flavor = "multi_thread",
    worker_threads = 2
);
for_each_layout!(
    sessions_expire_with_the_ttl_and_redis_holds_the_same_ttl,
    flavor = "current_thread"
);
for_each_layout!(
    the_user_index_is_refreshed_about_once_per_ttl,
    flavor = "current_thread"
);
for_each_layout!(
    sliding_refresh_extends_the_redis_ttl_without_rewriting_data,
    flavor = "current_thread"
);
for_each_layout!(a_session_logged_out_elsewhere_is_not_revived_by_a_late_save);
for_each_layout!(a_failed_index_write_cannot_hide_a_session_from_log_out_everywhere);
for_each_layout!(
    activity_cannot_keep_a_redis_session_past_its_absolute_timeout,
    flavor = "current_thread"
);
for_each_layout!(redis_store_conformance);
for_each_layout!(two_writers_of_one_session);
for_each_layout!(a_sliding_refresh_keeps_a_change_made_since_the_read);
for_each_layout!(
    works_on_redis_cluster,
    flavor = "multi_thread",
    worker_threads = 2
);
for_each_layout!(
    a_login_during_log_out_everywhere_stays_indexed,
    flavor = "multi_thread",
    worker_threads = 2
);
for_each_layout!(
    a_login_during_log_out_everywhere_stays_indexed_on_cluster,
    flavor = "multi_thread",
    worker_threads = 2
);
