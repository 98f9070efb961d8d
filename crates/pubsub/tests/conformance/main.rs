//! The behaviour every backend shares, run against the in-memory backend and against Redis
//! (two instances with their own connections, one real redis-server).

mod cluster;
#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use tower_scale_pubsub::{Broadcaster, BroadcasterBuilder, Delivery, Error, Event, MessageId};
use tower_scale_testkit::{RedisCluster, RedisServer};

use support::{next_event, next_message, text};

/// Builds "instances" of one deployment from a builder: clones of one broadcaster in memory,
/// separate broadcasters with their own connections over Redis.
trait Deployment {
    fn instance(&self, builder: BroadcasterBuilder) -> Broadcaster;
}

struct Memory;

impl Deployment for Memory {
    fn instance(&self, _builder: BroadcasterBuilder) -> Broadcaster {
        unreachable!("memory deployments share one broadcaster; see `pair`")
    }
}

struct Redis(RedisServer);

impl Deployment for Redis {
    fn instance(&self, builder: BroadcasterBuilder) -> Broadcaster {
        support::instance(&self.0.url(), builder)
    }
}

struct Cluster(RedisCluster);

impl Deployment for Cluster {
    fn instance(&self, builder: BroadcasterBuilder) -> Broadcaster {
        let backend = support::cluster_backend(&self.0, Duration::from_secs(2));
        builder.redis(backend).build().expect("valid broadcaster")
    }
}

/// Two instances: over Redis, separate broadcasters; in memory, one shared broadcaster.
fn pair(
    deployment: Option<&dyn Deployment>,
    make: impl Fn() -> BroadcasterBuilder,
) -> (Broadcaster, Broadcaster) {
    match deployment {
        Some(d) => (d.instance(make()), d.instance(make())),
        None => {
            let b = make().build().unwrap();
            (b.clone(), b)
        }
    }
}

async fn fan_out_to_every_instance(d: Option<&dyn Deployment>, delivery: Delivery) {
    let (a, b) = pair(d, || Broadcaster::builder().delivery(delivery));
    let mut on_a = a.subscribe("room").await.unwrap();
    let mut on_b = b.subscribe("room").await.unwrap();
    let mut other = b.subscribe("other").await.unwrap();
    for i in 0..20 {
        let from = if i % 2 == 0 { &a } else { &b };
        let id = from.publish("room", format!("m{i}")).await.unwrap();
        assert_eq!(id.is_some(), delivery == Delivery::Stream);
    }
    b.publish("other", "elsewhere").await.unwrap();
    for sub in [&mut on_a, &mut on_b] {
        let mut last_id = None;
        for i in 0..20 {
            let m = next_message(sub).await;
            assert_eq!(text(&m), format!("m{i}"));
            assert_eq!(m.room(), "room");
            assert!(m.id() > last_id || delivery == Delivery::PubSub);
            last_id = m.id();
        }
    }
    // Rooms are separate: "other" got its message only.
    assert_eq!(text(&next_message(&mut other).await), "elsewhere");
}

async fn leaving_closes_the_room(d: Option<&dyn Deployment>, delivery: Delivery) {
    let (a, b) = pair(d, || Broadcaster::builder().delivery(delivery));
    let first = a.subscribe("r").await.unwrap();
    let second = a.subscribe("r").await.unwrap();
    assert_eq!(a.subscribers("r"), 2);
    drop(first);
    assert_eq!(a.subscribers("r"), 1);
    drop(second);
    assert_eq!(a.subscribers("r"), 0);
    assert_eq!(a.rooms(), 0);
    // Publishing to a room without subscribers is fine, and a later subscriber starts after it.
    b.publish("r", "unheard").await.unwrap();
    let mut again = a.subscribe("r").await.unwrap();
    b.publish("r", "heard").await.unwrap();
    assert_eq!(text(&next_message(&mut again).await), "heard");
}

async fn slow_subscriber_lags_alone(d: Option<&dyn Deployment>, delivery: Delivery) {
    let (a, b) = pair(d, || {
        Broadcaster::builder().delivery(delivery).queue_capacity(4)
    });
    let mut slow = a.subscribe("r").await.unwrap();
    let mut fast = a.subscribe("r").await.unwrap();
    for i in 0..10 {
        b.publish("r", format!("m{i}")).await.unwrap();
        // The fast one keeps up, so it never lags.
        assert_eq!(text(&next_message(&mut fast).await), format!("m{i}"));
    }
    // The slow one lost the 6 oldest and is told so, then gets the 4 newest.
    assert_eq!(next_event(&mut slow).await, Event::Lagged(6));
    for i in 6..10 {
        assert_eq!(text(&next_message(&mut slow).await), format!("m{i}"));
    }
}

async fn history_then_live_without_gap_or_duplicate(d: Option<&dyn Deployment>) {
    let (a, b) = pair(d, || Broadcaster::builder().delivery(Delivery::Stream));
    // A live subscriber on `a` keeps the room open there while history is read.
    let mut live = a.subscribe("h").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(b.publish("h", format!("m{i}")).await.unwrap().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    for i in 0..5 {
        assert_eq!(text(&next_message(&mut live).await), format!("m{i}"));
    }
    let history = a.history("h", 3).await.unwrap();
    let texts: Vec<String> = history.iter().map(text).collect();
    assert_eq!(texts, ["m2", "m3", "m4"]);
    assert_eq!(history[2].id(), Some(ids[4]));

    let mut late = a.subscribe_with_history("h", 2).await.unwrap();
    b.publish("h", "m5").await.unwrap();
    for i in 3..6 {
        assert_eq!(text(&next_message(&mut late).await), format!("m{i}"));
    }
    assert_eq!(text(&next_message(&mut live).await), "m5");
    // The history of a pub/sub room is empty; a zero limit asks for nothing.
    assert!(a.history("h", 0).await.unwrap().is_empty());
}

async fn bad_room_names(d: Option<&dyn Deployment>) {
    let (a, _) = pair(d, Broadcaster::builder);
    assert!(matches!(
        a.publish("", "x").await,
        Err(Error::InvalidRoom(_))
    ));
    let long = "x".repeat(tower_scale_pubsub::MAX_ROOM_LEN + 1);
    assert!(matches!(
        a.subscribe(&long).await,
        Err(Error::InvalidRoom(_))
    ));
    // Any other name is a room, braces and spaces included.
    let mut odd = a.subscribe("{weird} room:1").await.unwrap();
    a.publish("{weird} room:1", "ok").await.unwrap();
    assert_eq!(text(&next_message(&mut odd).await), "ok");
}

async fn per_room_delivery_policy(d: Option<&dyn Deployment>) {
    let (a, b) = pair(d, || {
        Broadcaster::builder().delivery_with(|room: &str| {
            if room.starts_with("durable:") {
                Delivery::Stream
            } else {
                Delivery::PubSub
            }
        })
    });
    let mut durable = a.subscribe("durable:x").await.unwrap();
    let mut plain = a.subscribe("plain").await.unwrap();
    assert!(b.publish("durable:x", "1").await.unwrap().is_some());
    assert!(b.publish("plain", "2").await.unwrap().is_none());
    assert!(next_message(&mut durable).await.id().is_some());
    assert_eq!(next_message(&mut plain).await.id(), None);
}

macro_rules! suite {
    ($($name:ident => $f:ident $(($arg:expr))?;)*) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let d: Option<&dyn Deployment> = None;
                    let _ = &Memory;
                    $f(d $(, $arg)?).await;
                }
            )*
        }
        mod redis {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = Redis(RedisServer::start());
                    $f(Some(&server as &dyn Deployment) $(, $arg)?).await;
                }
            )*
        }
    };
}

suite! {
    pubsub_fans_out_to_every_instance => fan_out_to_every_instance(Delivery::PubSub);
    stream_fans_out_to_every_instance => fan_out_to_every_instance(Delivery::Stream);
    pubsub_leaving_closes_the_room => leaving_closes_the_room(Delivery::PubSub);
    stream_leaving_closes_the_room => leaving_closes_the_room(Delivery::Stream);
    pubsub_slow_subscriber_lags_alone => slow_subscriber_lags_alone(Delivery::PubSub);
    stream_slow_subscriber_lags_alone => slow_subscriber_lags_alone(Delivery::Stream);
    history_then_live => history_then_live_without_gap_or_duplicate;
    bad_room_names_are_errors => bad_room_names;
    delivery_per_room => per_room_delivery_policy;
}

/// On one server, each stream room keeps its own key (the layout before cluster support), so
/// an upgrade finds its history where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_keeps_one_key_per_stream_room() {
    let server = RedisServer::start();
    let a = support::instance(
        &server.url(),
        Broadcaster::builder().delivery(Delivery::Stream),
    );
    a.publish("lobby", "x").await.unwrap();
    assert_eq!(
        server.cli(&["KEYS", "ts:pubsub:*"]),
        "ts:pubsub:{lobby}:stream"
    );
}

/// On one server a room's name is the hash tag of its stream key, where Redis would read a brace
/// as the end of the tag: a client naming a room `{x}y` (or `_x_y`, what the braces used to turn
/// into) must not read or write the stream of another room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_with_braces_cannot_share_another_rooms_stream() {
    let server = RedisServer::start();
    let a = support::instance(
        &server.url(),
        Broadcaster::builder().delivery(Delivery::Stream),
    );
    let rooms = ["{x}y", "_x_y", "{x}", "x", "}x{y"];
    for room in rooms {
        a.publish(room, room).await.unwrap();
    }
    for room in rooms {
        let history = a.history(room, 10).await.unwrap();
        assert_eq!(
            history.iter().map(text).collect::<Vec<_>>(),
            [room],
            "the history of {room:?}"
        );
    }
    let keys = server.cli(&["KEYS", "ts:pubsub:*"]);
    assert_eq!(keys.lines().count(), rooms.len(), "{keys}");
}

#[test]
fn message_ids_order_like_redis() {
    let a: MessageId = "10-2".parse().unwrap();
    assert!(a < "10-10".parse().unwrap());
    assert!(a < "11-0".parse().unwrap());
    assert!("1-".parse::<MessageId>().is_err());
    let _ = Duration::ZERO;
}
