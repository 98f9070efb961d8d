//! Each metric of `tower_scale_pubsub::names`, and each of its label values, moves when its
//! event happens: against a real redis-server (restarted to interrupt the connections), and on
//! the in-memory backend for the events it has (publishes, slow subscribers). Read from a
//! Prometheus recorder installed for the test's thread: the tests run on a current-thread
//! runtime, so the broadcaster's subscriber and stream reader tasks report to it too.

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tower_scale_pubsub::{Delivery, Event, names};
use tower_scale_testkit::RedisServer;

use support::{PATIENCE, builder, eventually, next_event, next_message, text, until_interrupted};

const DELIVERIES: [Delivery; 2] = [Delivery::PubSub, Delivery::Stream];

/// The value of the series `series` (`name` or `name{label="value"}`, as the exporter writes
/// it), 0 when absent.
fn value(recorder: &PrometheusRecorder, series: &str) -> f64 {
    tower_scale_testkit::metric_value(&recorder.handle().render(), series).unwrap_or(0.0)
}

/// `name{delivery="pubsub"}` or `name{delivery="stream"}`.
fn by_delivery(name: &str, delivery: Delivery) -> String {
    let label = match delivery {
        Delivery::PubSub => "pubsub",
        Delivery::Stream => "stream",
    };
    format!("{name}{{delivery=\"{label}\"}}")
}

fn other(delivery: Delivery) -> Delivery {
    match delivery {
        Delivery::PubSub => Delivery::Stream,
        Delivery::Stream => Delivery::PubSub,
    }
}

/// The metrics the tests below show moving: every one the crate declares.
#[test]
fn every_metric_of_the_crate_is_shown_moving_here() {
    let shown = [
        names::PUBSUB_PUBLISHED_TOTAL,
        names::PUBSUB_LAGGED_TOTAL,
        names::PUBSUB_INTERRUPTIONS_TOTAL,
        names::PUBSUB_CONNECTED,
    ];
    let mut declared: Vec<&str> = names::METRICS.iter().map(|m| m.name).collect();
    let mut shown: Vec<&str> = shown.iter().map(|m| m.name).collect();
    declared.sort_unstable();
    shown.sort_unstable();
    assert_eq!(declared, shown, "a metric without a test here");
}

#[tokio::test]
async fn published_total_counts_each_publish_by_delivery_and_not_a_failed_one() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut server = RedisServer::start();
    let name = names::PUBSUB_PUBLISHED_TOTAL.name;
    let mut expected = [0.0, 0.0];
    for (i, delivery) in DELIVERIES.into_iter().enumerate() {
        let a = support::instance(
            &server.url(),
            builder(delivery).publish_retry(Duration::ZERO),
        );
        for n in 1..=3 {
            a.publish("r", "m").await.unwrap();
            expected[i] = f64::from(n);
            assert_eq!(value(&recorder, &by_delivery(name, delivery)), expected[i]);
        }
        assert_eq!(
            value(&recorder, &by_delivery(name, other(delivery))),
            expected[1 - i],
            "{delivery:?} publishes leave the other label alone"
        );
    }
    // A publish Redis did not take is not counted.
    server.kill();
    for delivery in DELIVERIES {
        let a = support::instance(
            &server.url(),
            builder(delivery).publish_retry(Duration::ZERO),
        );
        let err = a.publish("r", "lost").await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
    }
    assert_eq!(value(&recorder, &by_delivery(name, Delivery::PubSub)), 3.0);
    assert_eq!(value(&recorder, &by_delivery(name, Delivery::Stream)), 3.0);
}

#[tokio::test]
async fn published_total_counts_the_in_memory_backends_publishes_by_delivery() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let name = names::PUBSUB_PUBLISHED_TOTAL.name;
    let pubsub = builder(Delivery::PubSub).build().unwrap();
    let stream = builder(Delivery::Stream).build().unwrap();
    for _ in 0..3 {
        pubsub.publish("r", "m").await.unwrap();
    }
    for _ in 0..2 {
        stream.publish("r", "m").await.unwrap();
    }
    assert_eq!(value(&recorder, &by_delivery(name, Delivery::PubSub)), 3.0);
    assert_eq!(value(&recorder, &by_delivery(name, Delivery::Stream)), 2.0);
}

/// A subscriber that reads nothing while 20 messages go through a queue of 4 is told it lost
/// 16, and the counter adds them; on the in-memory backend and through Redis, both deliveries.
#[tokio::test]
async fn lagged_total_adds_the_messages_a_slow_subscriber_lost() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let server = RedisServer::start();
    let name = names::PUBSUB_LAGGED_TOTAL.name;
    let mut total = 0;
    for redis in [false, true] {
        for delivery in DELIVERIES {
            let case = format!("{delivery:?}, redis {redis}");
            let b = if redis {
                support::instance(&server.url(), builder(delivery).queue_capacity(4))
            } else {
                builder(delivery).queue_capacity(4).build().unwrap()
            };
            let a = if redis {
                support::instance(&server.url(), builder(delivery))
            } else {
                b.clone()
            };
            let mut slow = b.subscribe("r").await.unwrap();
            let mut fast = b.subscribe("r").await.unwrap();
            for i in 0..20 {
                a.publish("r", format!("m{i}")).await.unwrap();
            }
            // The fast subscriber reads until the last message: all 20 are then in the room's
            // queue (the fast one may lag too, when Redis delivers faster than it reads).
            loop {
                match next_event(&mut fast).await {
                    Event::Lagged(n) => total += n,
                    Event::Message(m) if text(&m) == "m19" => break,
                    Event::Message(_) => {}
                    other => panic!("{case}: unexpected {other:?}"),
                }
            }
            assert_eq!(next_event(&mut slow).await, Event::Lagged(16), "{case}");
            total += 16;
            assert_eq!(value(&recorder, name), total as f64, "{case}");
            for i in 16..20 {
                assert_eq!(
                    text(&next_message(&mut slow).await),
                    format!("m{i}"),
                    "{case}"
                );
            }
            assert_eq!(value(&recorder, name), total as f64, "{case}");
        }
    }
}

/// A killed Redis sets `pubsub_connected` to 0; once it is back, the subscription is told of
/// the gap, `pubsub_interruptions_total` counts it and the gauge is 1 again; each under its
/// delivery's label only.
#[tokio::test]
async fn interruptions_and_connected_by_delivery_across_a_redis_restart() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut server = RedisServer::start();
    let interruptions = names::PUBSUB_INTERRUPTIONS_TOTAL.name;
    let connected = names::PUBSUB_CONNECTED.name;
    let mut counted = [0.0, 0.0];
    for (i, delivery) in DELIVERIES.into_iter().enumerate() {
        let case = format!("{delivery:?}");
        let gauge = by_delivery(connected, delivery);
        let counter = by_delivery(interruptions, delivery);
        let a = support::instance(&server.url(), builder(delivery));
        let b = support::instance(&server.url(), builder(delivery));
        let mut sub = b.subscribe("r").await.unwrap();
        eventually(&format!("{case}: connected"), || {
            value(&recorder, &gauge) == 1.0
        })
        .await;
        a.publish("r", "before").await.unwrap();
        assert_eq!(text(&next_message(&mut sub).await), "before");
        assert_eq!(value(&recorder, &counter), counted[i], "{case}");

        server.kill();
        eventually(&format!("{case}: disconnected"), || {
            value(&recorder, &gauge) == 0.0
        })
        .await;
        assert_eq!(
            value(&recorder, &counter),
            counted[i],
            "{case}: not yet back"
        );

        // A fresh, empty server: pub/sub messages may have been missed, the stream is gone.
        server.restart();
        until_interrupted(&mut sub).await;
        counted[i] += 1.0;
        assert_eq!(value(&recorder, &counter), counted[i], "{case}");
        eventually(&format!("{case}: connected again"), || {
            value(&recorder, &gauge) == 1.0
        })
        .await;
        assert_eq!(
            value(&recorder, &by_delivery(interruptions, other(delivery))),
            counted[1 - i],
            "{case}: the other delivery's counter does not move"
        );
        // Back to work (a pub/sub publish fails while the publisher's own connection is
        // re-established).
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while let Err(e) = a.publish("r", "after").await {
            assert!(
                e.is_unavailable() && tokio::time::Instant::now() < deadline,
                "{e}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        loop {
            if text(&next_message(&mut sub).await) == "after" {
                break;
            }
        }
        drop((a, b, sub));
    }
}
