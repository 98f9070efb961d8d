//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tower_scale_pubsub::{Broadcaster, BroadcasterBuilder, Delivery, Event, Message, Subscription};
use tower_scale_redis::{RedisBackend, RedisConfig};

/// Generous bound for an event that must come (never a timing assertion: only a guard against
/// a hung test).
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The next event, or a panic naming what was awaited.
pub async fn next_event(sub: &mut Subscription) -> Event {
    tokio::time::timeout(PATIENCE, sub.recv())
        .await
        .unwrap_or_else(|_| panic!("no event in room {} within {PATIENCE:?}", sub.room()))
        .expect("the subscription ended")
}

/// The next event, which must be a message.
pub async fn next_message(sub: &mut Subscription) -> Message {
    match next_event(sub).await {
        Event::Message(m) => m,
        other => panic!("expected a message in {}, got {other:?}", sub.room()),
    }
}

/// The payload as text.
pub fn text(m: &Message) -> String {
    String::from_utf8(m.payload().to_vec()).expect("utf-8 payload")
}

/// A backend on `url` with a short command timeout.
pub fn backend(url: &str) -> RedisBackend {
    let mut config = RedisConfig::new(url);
    config.command_timeout = Duration::from_millis(500);
    RedisBackend::new(config).expect("valid config")
}

/// A backend on `cluster` with this command timeout.
pub fn cluster_backend(
    cluster: &tower_scale_testkit::RedisCluster,
    command_timeout: Duration,
) -> RedisBackend {
    let mut config = RedisConfig::cluster(cluster.urls());
    config.command_timeout = command_timeout;
    RedisBackend::new(config).expect("valid config")
}

/// A Redis broadcaster with its own backend (as a separate instance would have).
pub fn instance(url: &str, builder: BroadcasterBuilder) -> Broadcaster {
    builder.redis(backend(url)).build().expect("valid config")
}

/// A builder that notices faults quickly: ping every 200 ms, subscribe confirmed within 300 ms,
/// stream publishes retried for 20 s.
pub fn builder(delivery: Delivery) -> BroadcasterBuilder {
    Broadcaster::builder()
        .delivery(delivery)
        .ping_interval(Duration::from_millis(200))
        .subscribe_timeout(Duration::from_millis(300))
        .publish_retry(Duration::from_secs(20))
}

/// Polls `check` until it holds (a guard against hanging, not a timing assertion).
pub async fn eventually(what: &str, check: impl FnMut() -> bool) {
    tower_scale_testkit::eventually(what, PATIENCE, check).await;
}

/// Skips events until `Interrupted`; messages before it are allowed (published before the
/// fault reached this instance), anything else is not.
pub async fn until_interrupted(sub: &mut Subscription) {
    loop {
        match next_event(sub).await {
            Event::Interrupted => return,
            Event::Message(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
