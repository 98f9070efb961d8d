//! Presence ([`example_chat::presence::Presence`]) on a real redis-server and on the test
//! kit's 3-master Redis Cluster: shared by instances, expiring, bounded, and a Redis outage
//! reported as an error (the chat then skips that refresh), never a hang.

use std::time::Duration;

use example_chat::presence::Presence;
use tower_scale_core::ManualClock;
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::{RedisCluster, RedisServer};

const TTL: Duration = Duration::from_secs(10);

/// Two "instances" (two backends, one Redis) see the same people; entries leave when
/// forgotten or once expired; a room holds at most `max` entries; the key expires.
async fn conformance(config: impl Fn() -> RedisConfig) {
    let clock = ManualClock::new(1_700_000_000_000);
    let a = RedisBackend::new(config()).unwrap();
    let b = RedisBackend::new(config()).unwrap();
    let on_a = Presence::redis(a.clone(), TTL, 3, clock.clone());
    let on_b = Presence::redis(b, TTL, 3, clock.clone());

    on_a.mark("lobby", "alice/a1").await.unwrap();
    on_b.mark("lobby", "bob/b1").await.unwrap();
    on_b.mark("lobby", "alice/b2").await.unwrap();
    on_b.mark("other", "carol/b3").await.unwrap();
    assert_eq!(on_a.users("lobby").await.unwrap(), ["alice", "bob"]);
    assert_eq!(on_b.users("other").await.unwrap(), ["carol"]);

    // alice is still there on her other connection.
    on_a.forget("lobby", "alice/a1").await.unwrap();
    assert_eq!(on_b.users("lobby").await.unwrap(), ["alice", "bob"]);

    // bob keeps marking, alice's last connection stops (its instance died): she expires.
    clock.advance(TTL / 2);
    on_b.mark("lobby", "bob/b1").await.unwrap();
    clock.advance(TTL / 2);
    assert_eq!(on_a.users("lobby").await.unwrap(), ["bob"]);

    // Bounded: a room keeps at most 3 entries, those marked last.
    for i in 0..6 {
        clock.advance(Duration::from_millis(1));
        on_a.mark("lobby", &format!("u{i}/a")).await.unwrap();
    }
    assert_eq!(on_b.users("lobby").await.unwrap(), ["u3", "u4", "u5"]);
    let key = Presence::key(&a, "lobby");
    let card: usize = a
        .query(tower_scale_redis::redis::cmd("ZCARD").arg(&key))
        .await
        .unwrap();
    assert_eq!(card, 3);
    // And the key itself expires after the last mark.
    let pttl: i64 = a
        .query(tower_scale_redis::redis::cmd("PTTL").arg(&key))
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 10_000, "PTTL {pttl}");
}

#[tokio::test]
async fn presence_is_shared_expiring_and_bounded_on_redis() {
    let server = RedisServer::start();
    conformance(|| RedisConfig::new(server.url())).await;
}

#[tokio::test]
async fn presence_is_shared_expiring_and_bounded_on_redis_cluster() {
    let cluster = RedisCluster::start();
    conformance(|| RedisConfig::cluster(cluster.urls())).await;
}

#[tokio::test]
async fn presence_reports_a_paused_redis_as_an_error_without_hanging() {
    let server = RedisServer::start();
    let mut config = RedisConfig::new(server.url());
    config.command_timeout = Duration::from_millis(300);
    let presence = Presence::redis(
        RedisBackend::new(config).unwrap(),
        TTL,
        10,
        ManualClock::new(1_700_000_000_000),
    );
    presence.mark("lobby", "alice/1").await.unwrap();
    server.pause();
    let outage = tokio::time::timeout(Duration::from_secs(30), presence.mark("lobby", "bob/1"))
        .await
        .expect("bounded by the command timeout");
    server.resume();
    assert!(outage.is_err());
    // Redis may still run the mark it had received; either way presence works again.
    let users = presence.users("lobby").await.unwrap();
    assert!(users.contains(&"alice".to_owned()), "{users:?}");
}

#[test]
fn a_presence_ttl_shorter_than_two_refreshes_is_refused() {
    let config = example_chat::ChatConfig {
        presence_refresh: Duration::from_secs(5),
        presence_ttl: Duration::from_secs(9),
        ..example_chat::ChatConfig::default()
    };
    let shutdown = tower_scale_shutdown::Shutdown::new(Default::default());
    let err = example_chat::Chat::new(config, shutdown).unwrap_err();
    assert!(err.to_string().contains("presence_ttl"), "{err}");
}
