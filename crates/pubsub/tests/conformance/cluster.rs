//! Pub/sub and stream rooms on a local 3-master Redis Cluster: the same behaviour as on one
//! server.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_rooms_behave_as_on_one_server() {
    let cluster = Cluster(RedisCluster::start());
    let d = Some(&cluster as &dyn Deployment);
    fan_out_to_every_instance(d, Delivery::PubSub).await;
    leaving_closes_the_room(d, Delivery::PubSub).await;
    slow_subscriber_lags_alone(d, Delivery::PubSub).await;
    bad_room_names(d).await;
}

/// Stream rooms of two instances: fan-out, leaving, lagging, history and replay, the
/// per-room policy, all through one reader connection per instance to the node that owns
/// the rooms' common slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_rooms_behave_as_on_one_server() {
    let cluster = Cluster(RedisCluster::start());
    let d = Some(&cluster as &dyn Deployment);
    fan_out_to_every_instance(d, Delivery::Stream).await;
    leaving_closes_the_room(d, Delivery::Stream).await;
    slow_subscriber_lags_alone(d, Delivery::Stream).await;
    history_then_live_without_gap_or_duplicate(d).await;
    per_room_delivery_policy(d).await;
    // Every stream key is under the broadcaster's tag: one slot, held by one node.
    let slot = cluster.0.keyslot("ts:pubsub:{ts:streams}:room");
    let owner = &cluster.0.nodes()[cluster.0.slot_owner(slot)];
    let keys = owner.cli(&["KEYS", "ts:pubsub:*"]);
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "ts:pubsub:{ts:streams}:durable:x",
            "ts:pubsub:{ts:streams}:h",
            "ts:pubsub:{ts:streams}:other",
            "ts:pubsub:{ts:streams}:r",
            "ts:pubsub:{ts:streams}:room",
        ]
    );
}

/// Replay since an id, and a room whose name has braces (they cannot move the hash tag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_history_and_odd_room_names() {
    let cluster = Cluster(RedisCluster::start());
    let (a, b) = pair(Some(&cluster as &dyn Deployment), || {
        Broadcaster::builder().delivery(Delivery::Stream)
    });
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(a.publish("{x}y", format!("m{i}")).await.unwrap().unwrap());
    }
    let history = b.history("{x}y", 10).await.unwrap();
    assert_eq!(
        history.iter().map(text).collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3"]
    );
    // A client that saw m1 resumes after its id: the newer ones, then live.
    let seen = ids[1];
    let mut sub = b.subscribe_with_history("{x}y", 10).await.unwrap();
    a.publish("{x}y", "m4").await.unwrap();
    let mut after = Vec::new();
    while after.len() < 3 {
        let m = next_message(&mut sub).await;
        if m.id() > Some(seen) {
            after.push(text(&m));
        }
    }
    assert_eq!(after, ["m2", "m3", "m4"]);
    assert_eq!(
        cluster.0.keyslot("ts:pubsub:{ts:streams}:{x}y"),
        cluster.0.keyslot("ts:pubsub:{ts:streams}:room")
    );
}

/// Broadcasters with different tags use different slots, and do not see each other's
/// rooms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_tag_chooses_the_slot() {
    let cluster = Cluster(RedisCluster::start());
    let chat = || Broadcaster::builder().delivery(Delivery::Stream);
    let alerts = || chat().cluster_stream_tag("alerts");
    let (chat_a, chat_b) = (cluster.instance(chat()), cluster.instance(chat()));
    let alerts_a = cluster.instance(alerts());
    let mut on_chat = chat_b.subscribe("room").await.unwrap();
    let mut on_alerts = alerts_a.subscribe("room").await.unwrap();
    chat_a.publish("room", "chat").await.unwrap();
    alerts_a.publish("room", "alert").await.unwrap();
    assert_eq!(text(&next_message(&mut on_chat).await), "chat");
    assert_eq!(text(&next_message(&mut on_alerts).await), "alert");
    chat_a.publish("room", "chat2").await.unwrap();
    assert_eq!(text(&next_message(&mut on_chat).await), "chat2");
    assert_ne!(
        cluster.0.keyslot("ts:pubsub:{ts:streams}:room"),
        cluster.0.keyslot("ts:pubsub:{ts:alerts}:room")
    );
    assert!(matches!(
        Broadcaster::builder().cluster_stream_tag("a}b").build(),
        Err(Error::Config(m)) if m.to_string().contains("cluster_stream_tag")
    ));
}
