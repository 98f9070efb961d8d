//! Real faults against a real redis-server: restarts (with and without persistence), a hung
//! server, Redis down at subscribe and publish time; and the one-connection-per-instance and
//! unsubscribe-on-last-leave properties seen from the server.

mod cluster;
#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use tokio::time::sleep;
use tower_scale_pubsub::{Broadcaster, Delivery, Event, Subscription};
use tower_scale_testkit::RedisServer;

use support::{builder, eventually, next_event, next_message, text, until_interrupted};

fn lines(reply: &str) -> usize {
    reply.lines().filter(|l| !l.trim().is_empty()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscriber_connection_per_instance_and_unsubscribe_on_last_leave() {
    let server = RedisServer::start();
    let a = support::instance(&server.url(), builder(Delivery::PubSub));
    let mut subs = Vec::new();
    for i in 0..30 {
        subs.push(a.subscribe(&format!("room{i}")).await.unwrap());
        // A second local subscriber of the same room adds nothing on Redis.
        subs.push(a.subscribe(&format!("room{i}")).await.unwrap());
    }
    // subscribe returned after Redis confirmed: the channels are there now.
    assert_eq!(
        lines(&server.cli(&["PUBSUB", "CHANNELS", "ts:pubsub:*"])),
        30
    );
    assert_eq!(
        lines(&server.cli(&["CLIENT", "LIST", "TYPE", "pubsub"])),
        1,
        "one subscriber connection for every room"
    );
    // Leaving all rooms but one unsubscribes their channels.
    subs.truncate(2);
    eventually("29 channels unsubscribed", || {
        server.cli(&["PUBSUB", "CHANNELS", "ts:pubsub:*"]) == "ts:pubsub:room0"
    })
    .await;
    subs.pop();
    assert_eq!(
        lines(&server.cli(&["PUBSUB", "CHANNELS", "ts:pubsub:*"])),
        1
    );
    subs.clear();
    eventually("the last channel unsubscribed", || {
        lines(&server.cli(&["PUBSUB", "CHANNELS", "ts:pubsub:*"])) == 0
    })
    .await;
    assert_eq!(a.rooms(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_resubscribes_after_a_restart_and_reports_the_gap() {
    let mut server = RedisServer::start();
    let a = support::instance(&server.url(), builder(Delivery::PubSub));
    let b = support::instance(&server.url(), builder(Delivery::PubSub));
    let mut on_b = b.subscribe("r").await.unwrap();
    a.publish("r", "before").await.unwrap();
    assert_eq!(text(&next_message(&mut on_b).await), "before");

    server.restart();
    // A pub/sub publish while the subscriber is away is at most once: the subscriber is told
    // that it may have missed messages once it is back.
    until_interrupted(&mut on_b).await;
    // Back: every message published from now on arrives (publish fails only while the
    // backend itself reconnects).
    loop {
        match a.publish("r", "after").await {
            Ok(_) => break,
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(text(&next_message(&mut on_b).await), "after");
    // The room is subscribed again on the new server, through one connection.
    assert_eq!(
        server.cli(&["PUBSUB", "CHANNELS", "ts:pubsub:*"]),
        "ts:pubsub:r"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_is_noticed_by_ping_and_the_gap_reported() {
    let server = RedisServer::start();
    let a = support::instance(&server.url(), builder(Delivery::PubSub));
    let b = support::instance(&server.url(), builder(Delivery::PubSub));
    let mut on_b = b.subscribe("r").await.unwrap();
    server.pause();
    // Publishing to a hung Redis fails within the command timeout, it does not hang.
    let err = a.publish("r", "lost").await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // The silent connection is found dead by its ping, and replaced once Redis answers again.
    assert!(b.is_connected());
    eventually("the ping noticed", || !b.is_connected()).await;
    server.resume();
    until_interrupted(&mut on_b).await;
    assert!(b.is_connected());
    loop {
        if a.publish("r", "after").await.is_ok() {
            break;
        }
        sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(text(&next_message(&mut on_b).await), "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_rooms_lose_nothing_across_a_restart_of_a_persistent_redis() {
    let mut server =
        RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always"]);
    let a = support::instance(&server.url(), builder(Delivery::Stream));
    let b = support::instance(&server.url(), builder(Delivery::Stream));
    let mut on_b = b.subscribe("r").await.unwrap();
    let mut on_a = a.subscribe("r").await.unwrap();
    const N: usize = 200;
    let publisher = tokio::spawn({
        let a = a.clone();
        async move {
            for i in 0..N {
                // Each publish retries through the outage and never adds its message twice.
                a.publish("r", format!("m{i}")).await.unwrap();
            }
        }
    });
    let mut last_ids = [None, None];
    for i in 0..N {
        if i == 50 {
            tokio::task::block_in_place(|| server.restart());
        }
        for (sub, last_id) in [&mut on_a, &mut on_b].into_iter().zip(&mut last_ids) {
            let m = next_message(sub).await;
            assert_eq!(text(&m), format!("m{i}"), "in order, exactly once");
            assert!(m.id() > *last_id);
            *last_id = m.id();
        }
    }
    publisher.await.unwrap();
    // Nothing more: no duplicate arrives after the last message.
    a.publish("r", "end").await.unwrap();
    assert_eq!(text(&next_message(&mut on_b).await), "end");
    assert_eq!(text(&next_message(&mut on_a).await), "end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_rooms_report_history_lost_with_redis_data() {
    let mut server = RedisServer::start();
    let a = support::instance(&server.url(), builder(Delivery::Stream));
    let b = support::instance(&server.url(), builder(Delivery::Stream));
    let mut on_b = b.subscribe("r").await.unwrap();
    a.publish("r", "m0").await.unwrap();
    assert_eq!(text(&next_message(&mut on_b).await), "m0");
    // The new server starts empty: the stream and its history are gone.
    server.restart();
    assert_eq!(next_event(&mut on_b).await, Event::Interrupted);
    a.publish("r", "m1").await.unwrap();
    assert_eq!(text(&next_message(&mut on_b).await), "m1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_subscribe_and_publish_time() {
    let mut server = RedisServer::start();
    let a = support::instance(
        &server.url(),
        builder(Delivery::PubSub).publish_retry(Duration::ZERO),
    );
    let b = Broadcaster::builder()
        .delivery_with(|room: &str| {
            if room == "durable" {
                Delivery::Stream
            } else {
                Delivery::PubSub
            }
        })
        .subscribe_timeout(Duration::from_millis(300))
        .publish_retry(Duration::from_millis(300))
        .redis(support::backend(&server.url()))
        .build()
        .unwrap();
    server.kill();
    // Publishing fails fast with an error saying Redis is unavailable.
    let err = a.publish("r", "x").await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let err = b.publish("durable", "x").await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // A new stream room needs Redis to know where to start.
    let err = b.subscribe("durable").await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(b.rooms(), 0, "the failed subscription left no room behind");
    // A pub/sub room can be joined: it is subscribed when Redis is back.
    let mut on_b = b.subscribe("r").await.unwrap();
    tokio::task::block_in_place(|| server.restart());
    assert_eq!(next_event(&mut on_b).await, Event::Interrupted);
    loop {
        if a.publish("r", "back").await.is_ok() {
            break;
        }
        sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(text(&next_message(&mut on_b).await), "back");
}
