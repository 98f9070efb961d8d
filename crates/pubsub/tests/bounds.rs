//! What a client publishing to rooms it makes up can leave in Redis: every stream expires and
//! none grows past its cap. Real redis-server and Redis Cluster.

mod support;

use std::time::Duration;

use futures_util::{StreamExt, stream};
use tower_scale_pubsub::{Broadcaster, Delivery};
use tower_scale_testkit::{RedisCluster, RedisServer};

/// Publishes one message to each of `rooms` made-up stream rooms, many at a time.
async fn publish_to_made_up_rooms(broadcaster: &Broadcaster, rooms: usize) {
    stream::iter(0..rooms)
        .for_each_concurrent(64, |n| async move {
            broadcaster
                .publish(&format!("made-up-{n}"), "x")
                .await
                .unwrap();
        })
        .await;
}

/// Every key holding a stream carries an expiry no longer than a day, and the stream of a room
/// published to `hot` times holds about `history_len` entries.
fn assert_streams_bounded(node: &RedisServer, history_len: usize) {
    for _ in 0..20 {
        let key = node.cli(&["RANDOMKEY"]);
        assert!(!key.is_empty(), "no key on the node");
        let ttl: i64 = node.cli(&["TTL", &key]).parse().unwrap();
        assert!(
            (1..=24 * 3600).contains(&ttl),
            "{key} has TTL {ttl}: it would stay forever"
        );
    }
    let hot = node
        .cli(&["--scan", "--pattern", "*hot*"])
        .lines()
        .next()
        .map(str::to_owned)
        .expect("the hot room's stream");
    let len: usize = node.cli(&["XLEN", &hot]).parse().unwrap();
    // `MAXLEN ~` trims whole nodes of 100 entries.
    assert!(len <= history_len + 100, "{hot} holds {len} entries");
    let ttl: i64 = node.cli(&["TTL", &hot]).parse().unwrap();
    assert!(ttl > 0, "{hot} has TTL {ttl}");
}

async fn publish_hot(broadcaster: &Broadcaster, times: usize) {
    for i in 0..times {
        broadcaster.publish("hot", format!("m{i}")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_made_up_rooms_cannot_fill_redis_forever() {
    let server = RedisServer::start();
    let broadcaster = support::instance(
        &server.url(),
        Broadcaster::builder()
            .delivery(Delivery::Stream)
            .history_len(50),
    );
    publish_to_made_up_rooms(&broadcaster, 100_000).await;
    publish_hot(&broadcaster, 1000).await;
    assert_eq!(server.cli(&["DBSIZE"]), "100001");
    assert_streams_bounded(&server, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_made_up_rooms_cannot_fill_a_redis_cluster_forever() {
    let cluster = RedisCluster::start();
    let backend = support::cluster_backend(&cluster, Duration::from_secs(2));
    let broadcaster = Broadcaster::builder()
        .delivery(Delivery::Stream)
        .history_len(50)
        .redis(backend)
        .build()
        .unwrap();
    publish_to_made_up_rooms(&broadcaster, 10_000).await;
    publish_hot(&broadcaster, 1000).await;
    // Every stream room of the broadcaster lives in one slot, on one master.
    let node = cluster
        .nodes()
        .iter()
        .find(|n| n.cli(&["DBSIZE"]) != "0")
        .expect("a node with the streams");
    assert_eq!(node.cli(&["DBSIZE"]), "10001");
    assert_streams_bounded(node, 50);
}

/// With a short `history_ttl`, the streams of 100,000 rooms nobody publishes to any more are
/// gone from Redis once it has passed, while a room still published to keeps its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_rooms_streams_expire_from_redis() {
    let server = RedisServer::start();
    let ttl = Duration::from_secs(2);
    let broadcaster = support::instance(
        &server.url(),
        Broadcaster::builder()
            .delivery(Delivery::Stream)
            .history_ttl(ttl),
    );
    publish_to_made_up_rooms(&broadcaster, 100_000).await;
    // Publishing them may take longer than the TTL on a loaded machine: the first may be gone.
    let held: usize = server.cli(&["DBSIZE"]).parse().unwrap();
    assert!((1..=100_000).contains(&held), "{held} keys");
    let key = server.cli(&["RANDOMKEY"]);
    let pttl: i64 = server.cli(&["PTTL", &key]).parse().unwrap();
    assert!(pttl <= 2000, "{key} expires in {pttl} ms");
    // Redis expires keys in the background, a sample at a time.
    tower_scale_testkit::eventually("the idle streams expired", Duration::from_secs(60), || {
        redis_is_empty(&server)
    })
    .await;
    broadcaster.publish("lively", "x").await.unwrap();
    assert_eq!(server.cli(&["DBSIZE"]), "1");
}

/// Whether Redis holds no key any more.
fn redis_is_empty(server: &RedisServer) -> bool {
    server.cli(&["DBSIZE"]) == "0"
}
