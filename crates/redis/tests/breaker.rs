//! The backend's circuit breaker, and breakers shared across instances through Redis.
#![cfg(feature = "breaker")]

use std::time::Duration;

use tower_scale_breaker::{
    BreakerConfig, CircuitBreaker, Outcome, SharedBreaker, SharedState, SlidingWindow, State,
};
use tower_scale_redis::{Error, RedisBackend, RedisBreakerState, RedisConfig, redis};
use tower_scale_testkit::RedisServer;

fn guarded(url: String) -> RedisBackend {
    let mut config = RedisConfig::new(url);
    config.command_timeout = Duration::from_millis(100);
    config.breaker = {
        let mut breaker = BreakerConfig::default();
        breaker.sliding_window = SlidingWindow::Count { size: 4 };
        breaker.minimum_calls = 4;
        breaker.wait_in_open = Duration::from_millis(200);
        breaker.max_wait_in_open = Duration::from_millis(200);
        breaker.permitted_calls_in_half_open = 1;
        breaker
    };
    RedisBackend::new(config).unwrap()
}

async fn wait_until_ok(b: &RedisBackend) {
    for _ in 0..100 {
        if b.ping().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the backend did not recover");
}

#[tokio::test]
async fn a_hung_redis_is_skipped_at_once_after_the_breaker_opens() {
    let server = RedisServer::start();
    let b = guarded(server.url());
    b.ping().await.unwrap();
    server.pause();
    // A few commands wait for their timeout (3: with the first success, 3 of 4 calls in the
    // window failed)...
    let mut timeouts = 0;
    let err = loop {
        let err = b.ping().await.unwrap_err();
        if !err.is_timeout() {
            break err;
        }
        timeouts += 1;
        assert!(timeouts <= 4, "the breaker should have opened");
    };
    assert_eq!(timeouts, 3);
    // ...then the breaker answers without sending anything.
    assert!(matches!(err, Error::CircuitOpen(Some(_))), "{err}");
    assert!(err.is_circuit_open() && err.is_unavailable());
    assert_eq!(b.breaker().unwrap().state(), State::Open);
    server.resume();
    wait_until_ok(&b).await;
    assert_eq!(b.breaker().unwrap().state(), State::Closed);
}

#[tokio::test]
async fn a_dead_redis_opens_the_breaker_and_a_restart_closes_it() {
    let mut server = RedisServer::start();
    let b = guarded(server.url());
    b.ping().await.unwrap();
    server.kill();
    let mut saw_open = false;
    for _ in 0..10 {
        match b.ping().await {
            Err(Error::CircuitOpen(_)) => {
                saw_open = true;
                break;
            }
            Err(e) => assert!(e.is_unavailable(), "{e}"),
            Ok(_) => panic!("the server is dead"),
        }
    }
    assert!(saw_open, "the breaker never opened");
    server.restart();
    wait_until_ok(&b).await;
}

#[tokio::test]
async fn error_replies_do_not_trip_the_breaker() {
    let server = RedisServer::start();
    let b = guarded(server.url());
    b.query::<()>(redis::cmd("SET").arg("ts:k").arg("text"))
        .await
        .unwrap();
    for _ in 0..10 {
        let err = b
            .query::<i64>(redis::cmd("INCR").arg("ts:k"))
            .await
            .unwrap_err();
        assert!(!err.is_unavailable(), "{err}");
    }
    assert_eq!(b.breaker().unwrap().state(), State::Closed, "Redis is up");
}

#[tokio::test]
async fn the_breaker_can_be_switched_off() {
    let server = RedisServer::start();
    let mut config = RedisConfig::new(server.url());
    config.breaker_enabled = false;
    let b = RedisBackend::new(config).unwrap();
    assert!(b.breaker().is_none());
    b.ping().await.unwrap();
}

#[tokio::test]
async fn instances_open_together_through_redis() {
    let server = RedisServer::start();
    let mut config = BreakerConfig::default();
    config.sliding_window = SlidingWindow::Count { size: 2 };
    config.minimum_calls = 2;
    config.wait_in_open = Duration::from_secs(30);
    // Two instances: separate backends, separate breakers for the same downstream.
    let a = CircuitBreaker::named("payments", config.clone()).unwrap();
    let b = CircuitBreaker::named("payments", config).unwrap();
    let state_a =
        RedisBreakerState::new(RedisBackend::new(RedisConfig::new(server.url())).unwrap());
    let state_b =
        RedisBreakerState::new(RedisBackend::new(RedisConfig::new(server.url())).unwrap());
    let _share_a = SharedBreaker::spawn(&a, state_a.clone(), Duration::from_millis(20));
    let share_b = SharedBreaker::spawn(&b, state_b.clone(), Duration::from_millis(20));

    // Instance A sees the downstream fail and opens.
    for _ in 0..2 {
        a.try_acquire().unwrap().record(Outcome::FAILURE);
    }
    assert_eq!(a.state(), State::Open);
    // Instance B opens too without a single failure of its own.
    let mut opened = false;
    for _ in 0..200 {
        if b.state() == State::Open {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(opened, "B did not learn that A opened");
    let wait = b.try_acquire().unwrap_err().retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    let until = state_b.open_until("payments").await.unwrap().unwrap();
    assert!(until > 0);

    // Garbage in the shared key is reported, never trusted.
    server.cli(&["SET", "ts:breaker:payments", "not-a-number"]);
    assert!(state_b.open_until("payments").await.is_err());

    // With Redis gone, B keeps deciding locally.
    share_b.stop();
    b.reset();
    drop(server);
    assert!(state_b.open_until("payments").await.is_err());
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
}
