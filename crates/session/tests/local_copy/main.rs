//! The Redis store's local copy (`RedisStore::local_copy`) against real `redis-server`s and the
//! test kit's 3-master cluster: two instances, each with its own copy and tracking
//! connection; a change on one is seen by the very next read on the other; a dropped tracking
//! connection or a Redis restart empties the copies; reads with the copy cost no command.

#[path = "../support/mod.rs"]
#[macro_use]
mod support;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use support::{app, call};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_session::{
    LocalCopyConfig, RedisLayout, RedisStore, SessionConfig, SessionManagerLayer,
};
use tower_scale_testkit::{RedisCluster, RedisServer, eventually};

fn config() -> SessionConfig {
    support::redis_config()
}

/// One instance: its own backend, store, local copy and tracking connection(s).
struct Instance {
    app: Router,
    store: RedisStore,
}

impl Instance {
    fn new(mut redis: RedisConfig, layout: RedisLayout) -> Self {
        redis.command_timeout = Duration::from_secs(2);
        let backend = RedisBackend::new(redis).unwrap();
        let store = RedisStore::new(backend)
            .layout(layout)
            .local_copy(&LocalCopyConfig::default())
            .unwrap();
        let layer = SessionManagerLayer::from_config(store.clone(), &config()).unwrap();
        Self {
            app: app(layer),
            store,
        }
    }

    fn standalone(redis: &RedisServer, layout: RedisLayout) -> Self {
        Self::new(RedisConfig::new(redis.url()), layout)
    }

    fn is_up(&self) -> bool {
        self.store.invalidations().unwrap().is_up()
    }

    async fn up(&self) {
        eventually(
            "the tracking connection is up",
            Duration::from_secs(10),
            || self.is_up(),
        )
        .await;
    }

    async fn get(&self, cookie: &str, key: &str) -> String {
        let reply = call(&self.app, "GET", &format!("/get/{key}"), Some(cookie)).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body
    }

    async fn set(&self, cookie: &str, key: &str, value: &str) {
        let reply = call(
            &self.app,
            "POST",
            &format!("/set/{key}/{value}"),
            Some(cookie),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }

    async fn login(&self, user: &str) -> String {
        call(&self.app, "POST", &format!("/login/{user}"), None)
            .await
            .cookie()
    }
}

/// The command of a session read in Redis, by layout.
fn read_command(layout: RedisLayout) -> &'static str {
    match layout {
        RedisLayout::Hash => "hgetall",
        _ => "get",
    }
}

/// Guards against a hang: every test step must finish; this is not a timing assertion.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("a session request hung")
}

/// Alternating change-on-A / read-on-B pairs over `sessions`: every read must see the change
/// just made (a write, a logout, or a log-out-everywhere). Returns the number of pairs.
async fn alternate(a: &Instance, b: &Instance, sessions: usize, rounds: usize) -> usize {
    let mut cookies = Vec::new();
    for i in 0..sessions {
        cookies.push(a.login(&format!("user{i}")).await);
    }
    let mut stale = Vec::new();
    let mut pairs = 0;
    for round in 0..rounds {
        for (i, cookie) in cookies.iter_mut().enumerate() {
            let user = format!("user{i}");
            // The previous value is in B's copy (B read it after the last change).
            if round % 100 == 99 {
                // A logout on A, or a log-out-everywhere on A from another session.
                if i % 2 == 0 {
                    call(&a.app, "POST", "/logout", Some(cookie)).await;
                } else {
                    let admin = a.login("admin").await;
                    let path = format!("/logout-all/{user}");
                    assert_eq!(call(&a.app, "POST", &path, Some(&admin)).await.body, "1");
                }
                if b.get(cookie, "user").await != "none" {
                    stale.push((round, i, "logout"));
                }
                *cookie = a.login(&user).await;
            } else {
                let value = format!("v{round}");
                a.set(cookie, "n", &value).await;
                if b.get(cookie, "n").await != value {
                    stale.push((round, i, "write"));
                }
            }
            pairs += 1;
            // A second read: served from B's copy when it works.
            b.get(cookie, "user").await;
        }
    }
    assert!(
        stale.is_empty(),
        "{} stale reads out of {pairs}, first: {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
    pairs
}

async fn a_change_on_one_instance_is_seen_by_the_very_next_read_on_the_other(layout: RedisLayout) {
    let redis = RedisServer::start();
    let (a, b) = (
        Instance::standalone(&redis, layout),
        Instance::standalone(&redis, layout),
    );
    a.up().await;
    b.up().await;
    redis.reset_stats();
    // 10 sessions x 1,000 rounds: 10,000 change/read pairs (1% of them logouts).
    let pairs = bounded(alternate(&a, &b, 10, 1_000)).await;
    assert_eq!(pairs, 10_000);
    // B's first read after each change goes to Redis (its copy was dropped); its second read
    // is served locally. A logout's check reads a session that no longer exists (no copy).
    // In the record layout, A's write (made without a read) reads the record first.
    let reads_per_pair = match layout {
        RedisLayout::Hash => 1,
        _ => 2,
    };
    let reads = redis.calls(read_command(layout));
    let least = reads_per_pair * pairs as u64;
    assert!(
        (least..least + 300).contains(&reads),
        "{reads} reads for {pairs} pairs of two reads each: the second read of each pair should be local"
    );
}

async fn reads_with_the_local_copy_cost_no_redis_command(layout: RedisLayout) {
    let redis = RedisServer::start();
    let a = Instance::standalone(&redis, layout);
    a.up().await;
    let cookie = a.login("amy").await;
    assert_eq!(a.get(&cookie, "user").await, "amy");
    redis.reset_stats();
    for _ in 0..1_000 {
        assert_eq!(a.get(&cookie, "user").await, "amy");
    }
    assert_eq!(redis.total_calls(), 0, "{:?}", redis.command_calls());
}

async fn a_killed_tracking_connection_empties_the_local_copies(layout: RedisLayout) {
    let redis = RedisServer::start();
    let (a, b) = (
        Instance::standalone(&redis, layout),
        Instance::standalone(&redis, layout),
    );
    a.up().await;
    b.up().await;
    let cookie = a.login("bob").await;
    for round in 0..20 {
        let value = format!("before{round}");
        a.set(&cookie, "n", &value).await;
        assert_eq!(b.get(&cookie, "n").await, value);
        redis.reset_stats();
        assert_eq!(b.get(&cookie, "n").await, value);
        assert_eq!(
            redis.calls(read_command(layout)),
            0,
            "the second read is local"
        );

        for id in b.store.invalidations().unwrap().client_ids() {
            assert_eq!(redis.cli(&["CLIENT", "KILL", "ID", &id.to_string()]), "1");
        }
        // The very next read knows the channel dropped: it reads Redis, and so does every
        // read until the channel is back (nothing reports changes meanwhile).
        assert_eq!(b.get(&cookie, "n").await, value);
        assert_eq!(
            redis.calls(read_command(layout)),
            1,
            "the copy was dropped with the channel"
        );
        let changed = format!("while-down{round}");
        a.set(&cookie, "n", &changed).await;
        assert_eq!(b.get(&cookie, "n").await, changed);
        b.up().await;
        assert_eq!(b.get(&cookie, "n").await, changed);
        redis.reset_stats();
        assert_eq!(b.get(&cookie, "n").await, changed);
        assert_eq!(
            redis.calls(read_command(layout)),
            0,
            "local again once the channel is back"
        );
    }
}

async fn a_redis_restart_empties_the_local_copies(layout: RedisLayout) {
    let mut redis = RedisServer::start();
    let a = Instance::standalone(&redis, layout);
    a.up().await;
    let cookie = a.login("carl").await;
    assert_eq!(a.get(&cookie, "user").await, "carl");
    assert_eq!(a.get(&cookie, "user").await, "carl");
    redis.restart();
    // The restarted Redis holds no session: no read may answer from the old copy. Reads
    // fail (503) until the connections are back, then find no session.
    let mut answers = Vec::new();
    bounded(async {
        loop {
            let reply = call(&a.app, "GET", "/get/user", Some(&cookie)).await;
            if reply.status == StatusCode::OK {
                answers.push(reply.body);
                if a.is_up() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(answers.iter().all(|a| a == "none"), "{answers:?}");
    let fresh = a.login("carl").await;
    assert_eq!(a.get(&fresh, "user").await, "carl");
    redis.reset_stats();
    assert_eq!(a.get(&fresh, "user").await, "carl");
    assert_eq!(
        redis.calls(read_command(layout)),
        0,
        "local again after the restart"
    );
}

async fn works_on_redis_cluster(layout: RedisLayout) {
    let cluster = RedisCluster::start();
    let (a, b) = (
        Instance::new(RedisConfig::cluster(cluster.urls()), layout),
        Instance::new(RedisConfig::cluster(cluster.urls()), layout),
    );
    a.up().await;
    b.up().await;
    // One tracking connection per master.
    assert_eq!(b.store.invalidations().unwrap().client_ids().len(), 3);
    // 30 sessions with random ids, so on every master but with a chance of 3 * (2/3)^30.
    let pairs = bounded(alternate(&a, &b, 30, 100)).await;
    assert_eq!(pairs, 3_000);
    let cookie = a.login("dora").await;
    let key = b
        .store
        .session_key(&tower_scale_session::SessionId::parse(&cookie["sid=".len()..]).unwrap());
    let owner = &cluster.nodes()[cluster.slot_owner(cluster.keyslot(&key))];
    assert_eq!(b.get(&cookie, "user").await, "dora");
    owner.reset_stats();
    assert_eq!(b.get(&cookie, "user").await, "dora");
    assert_eq!(
        owner.calls(read_command(layout)),
        0,
        "the second read is local"
    );
}

#[tokio::test]
async fn a_bad_setting_or_url_is_refused() {
    let backend = RedisBackend::new(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
    let mut config = LocalCopyConfig::default();
    config.max_sessions = 0;
    let e = RedisStore::new(backend).local_copy(&config).unwrap_err();
    assert!(e.to_string().contains("max_sessions"), "{e}");
    let unix = RedisBackend::new(RedisConfig::new("redis+unix:///tmp/redis.sock")).unwrap();
    let e = RedisStore::new(unix)
        .local_copy(&LocalCopyConfig::default())
        .unwrap_err();
    assert!(e.to_string().contains("TCP"), "{e}");
}

for_each_layout!(
    a_change_on_one_instance_is_seen_by_the_very_next_read_on_the_other,
    flavor = "multi_thread",
    worker_threads = 2
);
for_each_layout!(
    reads_with_the_local_copy_cost_no_redis_command,
    flavor = "multi_thread",
    worker_threads = 2
);
for_each_layout!(
    a_killed_tracking_connection_empties_the_local_copies,
    flavor = "multi_thread",
    worker_threads = 2
);
for_each_layout!(
    a_redis_restart_empties_the_local_copies,
    flavor = "multi_thread",
    worker_threads = 2
);
for_each_layout!(
    works_on_redis_cluster,
    flavor = "multi_thread",
    worker_threads = 2
);
