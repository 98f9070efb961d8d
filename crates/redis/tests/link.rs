//! The default connection (standalone, multiplexed, over TCP): one connection per link opened
//! on first use, a watchdog instead of a timer per command, reconnection with a backoff, and
//! nothing left running once the backend is dropped. Against real `redis-server` processes.

mod support;

use std::time::Duration;

use tower_scale_redis::redis;
use tower_scale_redis::{Error, RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

use support::bounded;

const TIMEOUT: Duration = Duration::from_millis(200);

fn backend(url: String, pool_size: usize) -> RedisBackend {
    let mut config = RedisConfig::new(url);
    config.command_timeout = TIMEOUT;
    config.pool_size = Some(pool_size);
    // The breaker would turn timeouts into `CircuitOpen`: these tests look at the link alone.
    #[cfg(feature = "breaker")]
    {
        config.breaker_enabled = false;
    }
    RedisBackend::new(config).unwrap()
}

/// The clients connected to `server` but the `redis-cli` asking (whose last command is
/// `CLIENT LIST`): the backend's connections.
fn backend_clients(server: &RedisServer) -> usize {
    server
        .cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|line| line.starts_with("id=") && !line.contains("cmd=client|list"))
        .count()
}

/// Waits until `cond` holds (the server closes connections asynchronously), at most 5 s.
async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    tower_scale_testkit::eventually(what, Duration::from_secs(5), cond).await;
}

async fn client_id(b: &RedisBackend) -> i64 {
    b.query(redis::cmd("CLIENT").arg("ID")).await.unwrap()
}

#[tokio::test]
async fn a_hung_server_ends_every_waiting_command_with_a_timeout() {
    let server = RedisServer::start();
    let b = backend(server.url(), 1);
    let key = b.keys().key("test", "hung");
    b.query::<()>(redis::cmd("SET").arg(&key).arg(1))
        .await
        .unwrap();
    server.pause();
    // Twenty commands wait on the open connection of a frozen server: the watchdog stops the
    // connection and every one of them ends with a timeout.
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let b = b.clone();
            let key = key.clone();
            tokio::spawn(async move { b.query::<i64>(redis::cmd("GET").arg(&key)).await })
        })
        .collect();
    for task in waiting {
        let err = bounded(task).await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Timeout(d) if d == TIMEOUT), "{err}");
    }
    // A new command finds no connection: the reconnection cannot finish either, and the
    // command times out too.
    let err = bounded(b.query::<i64>(redis::cmd("GET").arg(&key)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(d) if d == TIMEOUT), "{err}");
    server.resume();
    // After the thaw, a command after the backoff succeeds on a new connection.
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(v) = bounded(b.query::<i64>(redis::cmd("GET").arg(&key))).await {
            answer = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer, Some(1), "no answer after resume");
}

#[tokio::test]
async fn a_killed_server_fails_fast_and_a_restart_is_reconnected() {
    let mut server = RedisServer::start();
    let b = backend(server.url(), 1);
    b.ping().await.unwrap();
    server.kill();
    // Connection errors, never timeouts; right after a failed attempt the link does not try
    // again before its backoff, and says so.
    let mut backoff_seen = false;
    for _ in 0..20 {
        let err = bounded(b.ping()).await.unwrap_err();
        let Error::Redis(e) = &err else {
            panic!("expected a connection error, got {err}")
        };
        assert!(e.is_io_error() || e.is_connection_dropped(), "{err}");
        assert!(err.is_unavailable() && !err.is_timeout(), "{err}");
        backoff_seen |= err.to_string().contains("next attempt in");
    }
    assert!(
        backoff_seen,
        "commands kept trying to connect with no backoff"
    );
    server.restart();
    let mut ok = false;
    for _ in 0..100 {
        if bounded(b.ping()).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "no reconnection after the restart");
    assert_eq!(backend_clients(&server), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_commands_open_one_connection_per_link() {
    let server = RedisServer::start();
    for size in [1, 3] {
        let b = backend(server.url(), size);
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.ping().await })
            })
            .collect();
        for task in tasks {
            bounded(task).await.unwrap().unwrap();
        }
        assert_eq!(backend_clients(&server), size, "pool_size {size}");
        drop(b);
        eventually("the connections closed", || backend_clients(&server) == 0).await;
    }
}

#[tokio::test]
async fn dropping_the_backend_closes_its_connection_and_stops_its_tasks() {
    let server = RedisServer::start();
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();
    let b = backend(server.url(), 2);
    assert_eq!(
        backend_clients(&server),
        0,
        "building the backend does no I/O"
    );
    let clone = b.clone();
    b.ping().await.unwrap();
    clone.ping().await.unwrap();
    assert_eq!(backend_clients(&server), 2);
    eventually("a driver and a watchdog per connection", || {
        metrics.num_alive_tasks() == tasks_before + 4
    })
    .await;
    drop(b);
    assert_eq!(
        backend_clients(&server),
        2,
        "a clone still holds the backend"
    );
    drop(clone);
    eventually("the connections closed", || backend_clients(&server) == 0).await;
    eventually("the tasks stopped", || {
        metrics.num_alive_tasks() == tasks_before
    })
    .await;
}

#[tokio::test]
async fn an_idle_connection_is_never_stopped_by_the_watchdog() {
    let server = RedisServer::start();
    let b = backend(server.url(), 1);
    let id = client_id(&b).await;
    // No command in flight: however long nothing is read, the connection is not hung.
    tokio::time::pause();
    for _ in 0..100 {
        tokio::time::advance(TIMEOUT / 4).await;
    }
    // Real time again for the command itself (a paused clock would jump ahead while it
    // waits for its reply).
    tokio::time::resume();
    assert_eq!(client_id(&b).await, id, "the same connection");
    assert_eq!(backend_clients(&server), 1);
}

/// A reply that arrived in time, but that its caller has not read yet (its task is queued
/// behind other work on a busy runtime), is not a hung server: the watchdog keeps the
/// connection, so the other commands on it are not failed with it (all of them at once, which
/// opened the breaker: 503s from a busy instance whose Redis was fine).
#[tokio::test]
async fn a_reply_its_caller_has_not_read_yet_does_not_stop_the_connection() {
    let server = RedisServer::start();
    let b = backend(server.url(), 1);
    let id = client_id(&b).await;
    let key = b.keys().key("test", "unread");
    b.query::<()>(redis::cmd("SET").arg(&key).arg(5))
        .await
        .unwrap();
    let get = redis::cmd("GET").arg(&key).clone();
    let mut unread = Box::pin(b.query::<i64>(&get));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(unread.as_mut().poll(cx))).await;
    assert!(first.is_pending(), "sent, not answered yet");
    // A command sent after it is answered after it: the GET's reply has arrived.
    assert_eq!(client_id(&b).await, id);
    // Ten command timeouts pass, a tenth at a time, before the GET's caller reads its reply;
    // after each look of the watchdog, the connection still answers at once (real time
    // for that command: a paused clock would jump ahead while it waits for its reply).
    for _ in 0..100 {
        tokio::time::pause();
        tokio::time::advance(TIMEOUT / 10).await;
        tokio::time::resume();
        assert_eq!(client_id(&b).await, id, "the same connection");
    }
    assert_eq!(unread.await.unwrap(), 5);
    assert_eq!(backend_clients(&server), 1);
}

#[tokio::test]
async fn a_busy_silent_connection_is_stopped_by_the_watchdog() {
    let server = RedisServer::start_with_args(&["--enable-debug-command", "yes"]);
    let b = backend(server.url(), 1);
    let id = client_id(&b).await;
    // A command that holds Redis for 10 command timeouts: nothing is read meanwhile, so the
    // watchdog stops the connection and the command ends with a timeout...
    let err = bounded(b.query::<()>(redis::cmd("DEBUG").arg("SLEEP").arg("2")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(d) if d == TIMEOUT), "{err}");
    // ...while a quick command on the next connection succeeds.
    let mut new_id = None;
    for _ in 0..100 {
        if let Ok(id) = b.query::<i64>(redis::cmd("CLIENT").arg("ID")).await {
            new_id = Some(id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(new_id.expect("no new connection"), id);
}

#[cfg(unix)]
#[tokio::test]
async fn a_unix_socket_url_works_through_the_fallback() {
    let socket = std::env::temp_dir().join(format!("tower-scale-link-{}.sock", std::process::id()));
    let socket_arg = socket.to_str().unwrap().to_owned();
    let server = RedisServer::start_with_args(&["--unixsocket", &socket_arg]);
    let mut config = RedisConfig::new(format!("redis+unix://{socket_arg}"));
    config.command_timeout = TIMEOUT;
    let b = RedisBackend::new(config).unwrap();
    b.query::<()>(redis::cmd("SET").arg("ts:unix").arg(7))
        .await
        .unwrap();
    let v: i64 = b.query(redis::cmd("GET").arg("ts:unix")).await.unwrap();
    assert_eq!(v, 7);
    server.pause();
    let err = bounded(b.ping()).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    server.resume();
    drop(server);
    let _ = std::fs::remove_file(socket);
}

#[test]
fn command_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let b = RedisBackend::new(RedisConfig::default()).unwrap();
    let cmd = redis::cmd("PING");
    send(&b.query::<String>(&cmd));
    send(&b.query_pipeline::<()>(&redis::pipe()));
    let script = redis::Script::new("return 1");
    send(&b.invoke::<i64>(&script.prepare_invoke()));
}

/// Runs `fut` on a fresh current-thread runtime, dropped afterwards with all its tasks.
fn on_runtime<T>(fut: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(fut)
}

/// Pings until one succeeds; returns the failures before it.
async fn failures_before_ok(b: &RedisBackend) -> usize {
    for failures in 0..100 {
        if bounded(b.ping()).await.is_ok() {
            return failures;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no answer after 100 attempts");
}

#[test]
fn a_backend_outlives_the_runtimes_it_ran_on() {
    let server = RedisServer::start();
    let b = backend(server.url(), 1);
    // Runtime A shuts down while its attempt to connect to a frozen server is under way...
    server.pause();
    let err = on_runtime(b.ping()).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    server.resume();
    // ...so runtime B does not wait for it: it connects anew.
    on_runtime(failures_before_ok(&b));
    // The connection's driver ran on B and is gone with it: on runtime C the link notices at
    // the first command and reconnects.
    let failures = on_runtime(failures_before_ok(&b));
    assert!(failures <= 1, "{failures} failures before reconnecting");
}
