//! The backend against real `redis-server` processes started by the test kit.

mod cluster;
#[path = "../support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Duration;

use tower_scale_redis::redis::{self, Script};
use tower_scale_redis::{ConnectionKind, Error, RedisBackend, RedisConfig};
use tower_scale_testkit::{RedisCluster, RedisServer};

use support::bounded;

const KINDS: [ConnectionKind; 2] = [ConnectionKind::Multiplexed, ConnectionKind::Pooled];

/// Sets two keys that share a hash tag and returns their sum.
static TWO_KEYS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[2]); \
         return tonumber(redis.call('GET', KEYS[1])) + tonumber(redis.call('GET', KEYS[2]))",
    )
});

fn backend(url: String, kind: ConnectionKind, timeout_ms: u64) -> RedisBackend {
    let mut config = RedisConfig::new(url);
    config.connection = kind;
    config.command_timeout = Duration::from_millis(timeout_ms);
    config.key_prefix = "t".to_owned();
    RedisBackend::new(config).unwrap()
}

#[tokio::test]
async fn round_trips_on_both_connection_kinds() {
    let server = RedisServer::start();
    for kind in KINDS {
        let b = backend(server.url(), kind, 1000);
        let key = b.keys().key("test", &format!("{kind:?}"));
        assert_eq!(key, format!("t:test:{kind:?}"));
        b.query::<()>(redis::cmd("SET").arg(&key).arg("v1"))
            .await
            .unwrap();
        let got: Option<String> = b.query(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(got.as_deref(), Some("v1"));

        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("INCR")
            .arg(&key)
            .ignore()
            .cmd("SET")
            .arg(&key)
            .arg(41)
            .ignore()
            .cmd("INCR")
            .arg(&key);
        let err = b.query_pipeline::<(i64,)>(&pipe).await;
        // INCR on "v1" fails inside the transaction; the later commands still run.
        assert!(err.is_err(), "INCR on a string must surface as an error");
        let got: i64 = b.query(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(got, 42);

        let rtt = b.ping().await.unwrap();
        assert!(rtt < Duration::from_secs(1));
        assert!(format!("{b:?}").contains("t"), "Debug shows the config");
    }
}

#[tokio::test]
async fn many_concurrent_commands_all_answer() {
    let server = RedisServer::start();
    for kind in KINDS {
        let b = backend(server.url(), kind, 2000);
        let key = b.keys().key("test", "counter");
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let b = b.clone();
                let key = key.clone();
                tokio::spawn(async move { b.query::<i64>(redis::cmd("INCR").arg(&key)).await })
            })
            .collect();
        let mut seen = HashSet::new();
        for t in tasks {
            seen.insert(t.await.unwrap().unwrap());
        }
        assert_eq!(seen.len(), 200, "every INCR got its own value");
        b.query::<()>(redis::cmd("DEL").arg(&key)).await.unwrap();
    }
}

#[tokio::test]
async fn scripts_are_reloaded_after_script_flush() {
    let server = RedisServer::start();
    for kind in KINDS {
        let b = backend(server.url(), kind, 1000);
        let k1 = b.keys().tagged("test", "s", "a");
        let k2 = b.keys().tagged("test", "s", "b");
        let sum: i64 = b
            .invoke(TWO_KEYS.key(&k1).key(&k2).arg(1).arg(2))
            .await
            .unwrap();
        assert_eq!(sum, 3);
        server.reset_stats();
        assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
        let sum: i64 = b
            .invoke(TWO_KEYS.key(&k1).key(&k2).arg(20).arg(22))
            .await
            .unwrap();
        assert_eq!(sum, 42);
        let calls: Vec<_> = server.command_calls();
        let count = |name: &str| calls.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
        // EVALSHA failed with NOSCRIPT, the script was loaded once, EVALSHA ran again.
        assert_eq!(count("evalsha"), 2, "{calls:?}");
        assert_eq!(count("script|load"), 1, "{calls:?}");
        assert_eq!(
            count("eval"),
            0,
            "the body is never sent with EVAL: {calls:?}"
        );
        // Further calls are one EVALSHA each (the SET/GET inside the script count too).
        server.reset_stats();
        let _: i64 = b
            .invoke(TWO_KEYS.key(&k1).key(&k2).arg(1).arg(1))
            .await
            .unwrap();
        let calls = server.command_calls();
        assert!(calls.contains(&("evalsha".to_owned(), 1)), "{calls:?}");
        assert!(
            !calls.iter().any(|(n, _)| n.starts_with("script")),
            "{calls:?}"
        );
        // deadpool checks a pooled connection on checkout with UNWATCH + PING (one pipelined
        // round trip): the cost that makes the pooled mode the slower one.
        let recycle = if kind == ConnectionKind::Pooled { 2 } else { 0 };
        assert_eq!(
            server.total_calls(),
            5 + recycle,
            "EVALSHA + 2 SET + 2 GET: {calls:?}"
        );
    }
}

#[tokio::test]
async fn a_paused_server_times_out_instead_of_hanging() {
    let server = RedisServer::start();
    for kind in KINDS {
        let b = backend(server.url(), kind, 150);
        b.ping().await.unwrap();
        server.pause();
        // An open connection to a frozen server, and a fresh one: both time out.
        let err = bounded(b.ping()).await.unwrap_err();
        assert!(
            matches!(err, Error::Timeout(d) if d == Duration::from_millis(150)),
            "{err}"
        );
        assert!(err.is_timeout() && err.is_unavailable());
        let fresh = backend(server.url(), kind, 150);
        let err = bounded(fresh.ping()).await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
        server.resume();
        // After the thaw the same backend answers again.
        let mut ok = false;
        for _ in 0..50 {
            if bounded(b.ping()).await.is_ok() {
                ok = true;
                break;
            }
        }
        assert!(ok, "{kind:?}: no answer after resume");
    }
}

#[tokio::test]
async fn reconnects_by_itself_after_a_restart() {
    let mut server = RedisServer::start();
    for kind in KINDS {
        let b = backend(server.url(), kind, 500);
        let key = b.keys().key("test", "restart");
        b.query::<()>(redis::cmd("SET").arg(&key).arg(1))
            .await
            .unwrap();
        server.restart();
        // The connection in the pool died with the old process: at most a few commands fail
        // while it is replaced, then commands succeed with no action from the caller.
        let mut failures = 0;
        let value: Option<i64> = loop {
            match bounded(b.query(redis::cmd("GET").arg(&key))).await {
                Ok(v) => break v,
                Err(e) => {
                    assert!(e.is_unavailable(), "{e}");
                    failures += 1;
                    assert!(failures < 20, "no reconnect after 20 attempts: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert_eq!(value, None, "a fresh server has no data");
        assert!(
            failures <= 3,
            "{kind:?}: {failures} failures before reconnecting"
        );
    }
}

#[tokio::test]
async fn a_down_server_errors_at_once() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    for kind in KINDS {
        let b = backend(url.clone(), kind, 2000);
        let err = bounded(b.ping()).await.unwrap_err();
        assert!(err.is_unavailable(), "{kind:?}: {err}");
    }
}

#[tokio::test]
async fn bad_urls_fail_at_build_time_with_the_field_named() {
    for url in [
        "",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:notaport",
        "nonsense",
    ] {
        let err = RedisBackend::new(RedisConfig::new(url)).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{url:?}: {err}");
        assert!(err.to_string().contains("url"), "{err}");
    }
    let err =
        RedisBackend::new(RedisConfig::cluster(["redis://127.0.0.1:7000", "bad://"])).unwrap_err();
    assert!(err.to_string().contains("nodes[0]"), "{err}");
}

/// A command's future is held inside every cache, session and rate-limit future, and those
/// are boxed: a box up to 1,032 bytes is served from glibc's per-thread cache, a larger one
/// takes malloc's slow path (and its arena lock) on every request. The cache's `GET` future
/// is this one plus about 120 bytes.
#[test]
fn command_futures_stay_small() {
    let b = RedisBackend::new(RedisConfig::default()).unwrap();
    let cmd = redis::cmd("PING");
    let size = std::mem::size_of_val(&b.query::<String>(&cmd));
    assert!(size <= 768, "a command future is {size} bytes");
}
