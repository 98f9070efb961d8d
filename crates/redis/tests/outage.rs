//! Redis away for seconds under concurrent load, with the backend's default settings (500 ms
//! command timeout, the default breaker): paused (SIGSTOP), the network to it cut (iptables in
//! a private network namespace), restarted with its data lost. Nothing hangs, only the first
//! wave of commands and the breaker's probes wait, and commands succeed again once Redis is
//! back. Time is paused while Redis is away (nothing it could answer is awaited then).
#![cfg(feature = "breaker")]

use std::time::Duration;

use tokio::time::Instant;
use tower_scale_breaker::State;
use tower_scale_redis::{Error, RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

/// Concurrent clients, each sending a command every 10 ms.
const CLIENTS: usize = 64;
/// How long Redis is away.
const AWAY: Duration = Duration::from_secs(5);

/// Runs [`CLIENTS`] clients for [`AWAY`] on paused time against a Redis that does not answer,
/// and checks what they met: only the first wave (the commands sent before the first
/// failures) and the breaker's probes waited, each at most the command timeout; every other
/// command failed at once, most with `CircuitOpen` and a wait of at most 500 ms (so Redis is
/// tried again within half a second of any moment, however long it was away).
async fn only_the_first_wave_waits(b: &RedisBackend) {
    tokio::time::pause();
    let start = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let b = b.clone();
        clients.push(tokio::spawn(async move {
            // (waited, the error) per command
            let mut outcomes = Vec::new();
            while start.elapsed() < AWAY {
                let sent = Instant::now();
                let err = b.ping().await.unwrap_err();
                outcomes.push((sent.elapsed(), err));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }
    tokio::time::resume();
    let timeout = b.config().command_timeout;
    let waited: Vec<_> = outcomes
        .iter()
        .filter(|(waited, _)| *waited >= timeout / 2)
        .collect();
    // The first wave, and at most 3 probes per 500 ms open + up to 500 ms probing.
    let probes = 3 * (AWAY.as_millis() / 1000 + 1) as usize;
    assert!(
        waited.len() <= CLIENTS + probes,
        "{} of {} commands waited",
        waited.len(),
        outcomes.len()
    );
    // (+ 1 ms: the timer's rounding)
    assert!(
        waited
            .iter()
            .all(|(w, e)| e.is_unavailable() && *w <= timeout + Duration::from_millis(1)),
        "{waited:?}"
    );
    let open: Vec<_> = outcomes
        .iter()
        .filter_map(|(_, e)| match e {
            Error::CircuitOpen(wait) => Some(*wait),
            _ => None,
        })
        .collect();
    assert!(open.len() > outcomes.len() * 9 / 10, "{open:?}");
    assert!(
        // (None: half-open, the probes are under way.)
        open.iter()
            .all(|wait| wait.is_none_or(|w| w <= Duration::from_millis(500))),
        "open for longer than 500 ms: {:?}",
        open.iter().max()
    );
    let mut sorted: Vec<_> = outcomes.iter().map(|(w, _)| *w).collect();
    sorted.sort();
    assert_eq!(sorted[sorted.len() / 2], Duration::ZERO, "the median waits");
}

/// Redis answers again: three successful probes close the breaker (the wait only bounds a
/// hang; the breaker tries again every 500 ms).
async fn recovers(b: &RedisBackend) {
    for _ in 0..3 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while b.ping().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "never recovered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(b.breaker().unwrap().state(), State::Closed);
}

#[tokio::test]
async fn under_concurrency_only_the_first_wave_waits_for_a_paused_redis() {
    let server = RedisServer::start();
    let b = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    b.ping().await.unwrap();
    server.pause();
    only_the_first_wave_waits(&b).await;
    server.resume();
    recovers(&b).await;
}

/// The network to Redis cut: every packet dropped, connections left open. Where network
/// namespaces are refused (not root, a sandbox), a paused Redis stands in for it, as
/// documented in the operations guide (https://github.com/tower-scale/tower-scale/blob/main/docs/operations.md): to a client both are a peer that never answers.
#[tokio::test]
async fn under_concurrency_only_the_first_wave_waits_for_a_network_dropping_packets() {
    let isolated = RedisServer::start_isolated();
    let server = match &isolated {
        Ok(server) => server,
        Err(e) => {
            eprintln!("no network namespace ({e}): SIGSTOP stands in for lost packets");
            &RedisServer::start()
        }
    };
    let b = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    b.ping().await.unwrap();
    let cut = |on: bool| match (&isolated, on) {
        (Ok(s), true) => s.drop_packets(100),
        (Ok(s), false) => s.pass_packets(),
        (Err(_), true) => server.pause(),
        (Err(_), false) => server.resume(),
    };
    cut(true);
    only_the_first_wave_waits(&b).await;
    cut(false);
    recovers(&b).await;
}

/// Redis killed and, after [`AWAY`], started again empty on the same port: while it is down
/// commands fail at once (connection refused, then the breaker); after it is back they succeed
/// on a new connection, and scripts are loaded again.
#[tokio::test]
async fn a_redis_restarted_empty_fails_commands_at_once_then_serves_them() {
    let mut server = RedisServer::start();
    let b = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let script = tower_scale_redis::redis::Script::new("return 7");
    assert_eq!(b.invoke::<i64>(&script.prepare_invoke()).await.unwrap(), 7);
    server.kill();
    tokio::time::pause();
    let start = Instant::now();
    let mut errors = 0;
    while start.elapsed() < AWAY {
        let sent = Instant::now();
        let err = b.ping().await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        // Refused connections fail at once; no command waits for a timeout.
        assert!(sent.elapsed() < b.config().command_timeout, "{err}");
        errors += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::resume();
    assert!(errors > 100);
    server.restart();
    recovers(&b).await;
    assert_eq!(b.invoke::<i64>(&script.prepare_invoke()).await.unwrap(), 7);
}

/// Whether `err` is the link's answer right after a connection attempt failed, once its
/// reconnect backoff has grown to its longest (1 s): the next attempt is a whole second away.
fn attempt_failed_with_the_longest_backoff(err: &Error) -> bool {
    matches!(err, Error::Redis(e) if e.to_string().contains("next attempt in 1s"))
}

/// Redis killed for [`AWAY`] (long enough for the link's reconnect backoff to grow to 1 s,
/// past the breaker's 500 ms open wait) and started again right after a probe's connection
/// attempt was refused. From then on every command is either refused by the breaker, at once, until its
/// open wait ends, or answered: the breaker's next probe reaches Redis, it is not refused by
/// the link's backoff (which would reopen the breaker for another 500 ms without Redis
/// having been tried), and nothing waits for a timeout.
#[tokio::test]
async fn once_redis_is_back_the_breakers_next_probe_reaches_it() {
    let mut server = RedisServer::start();
    let b = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    b.ping().await.unwrap();
    server.kill();
    tokio::time::pause();
    let start = Instant::now();
    loop {
        let err = b.ping().await.unwrap_err();
        if start.elapsed() >= AWAY && attempt_failed_with_the_longest_backoff(&err) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::resume();
    server.restart();
    let mut errors = Vec::new();
    // The wait only bounds a hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = b.ping().await {
        errors.push(e);
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        errors.iter().all(|e| matches!(e, Error::CircuitOpen(_))),
        "{:?}",
        errors.iter().find(|e| !matches!(e, Error::CircuitOpen(_)))
    );
    recovers(&b).await;
}
