//! Distinct room names never share a Redis channel or stream (issue 21): braces in a room name
//! used to be replaced by `_`, so a publish to room `a{b}` reached the subscribers of `a_b_`.
//! Two instances on one real redis-server.

mod support;

use tower_scale_pubsub::{Broadcaster, Delivery};
use tower_scale_testkit::RedisServer;

use support::{next_message, text};

/// Rooms that the old `_` replacement wrote alike.
const LOOKALIKES: [&str; 4] = ["a{b}", "a_b_", "a}b{", "a{b_"];

async fn lookalike_rooms_stay_apart(delivery: Delivery) {
    let server = RedisServer::start();
    let publisher = support::instance(&server.url(), Broadcaster::builder().delivery(delivery));
    let listener = support::instance(&server.url(), Broadcaster::builder().delivery(delivery));
    let mut subs = Vec::new();
    for room in LOOKALIKES {
        subs.push(listener.subscribe(room).await.unwrap());
    }
    for room in LOOKALIKES {
        publisher.publish(room, format!("to {room}")).await.unwrap();
    }
    // Each subscription's first message is its own room's: a message for a look-alike room
    // would have come first (Redis delivers in order).
    for (room, sub) in LOOKALIKES.iter().zip(&mut subs) {
        assert_eq!(
            text(&next_message(sub).await),
            format!("to {room}"),
            "{delivery:?}"
        );
    }
    if delivery == Delivery::Stream {
        for room in LOOKALIKES {
            let history = listener.history(room, 10).await.unwrap();
            let texts: Vec<String> = history.iter().map(text).collect();
            assert_eq!(texts, [format!("to {room}")], "history of {room}");
        }
    }
}

#[tokio::test]
async fn a_publish_to_room_a_brace_b_is_not_delivered_to_room_a_underscore_b_stream() {
    lookalike_rooms_stay_apart(Delivery::Stream).await;
}

#[tokio::test]
async fn a_publish_to_room_a_brace_b_is_not_delivered_to_room_a_underscore_b_pubsub() {
    lookalike_rooms_stay_apart(Delivery::PubSub).await;
}
