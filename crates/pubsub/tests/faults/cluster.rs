//! Faults of the node that owns the stream rooms' slot on a local 3-master Redis Cluster.

use super::*;
use tower_scale_testkit::RedisCluster;

/// Any stream key of the default tag: they all share its slot.
const STREAM_KEY: &str = "ts:pubsub:{ts:streams}:r1";

fn instance(cluster: &RedisCluster) -> Broadcaster {
    instance_with(cluster, Duration::from_millis(500), Duration::from_secs(60))
}

fn instance_with(
    cluster: &RedisCluster,
    command_timeout: Duration,
    publish_retry: Duration,
) -> Broadcaster {
    builder(Delivery::Stream)
        .read_block(Duration::from_millis(300))
        .publish_retry(publish_retry)
        .redis(support::cluster_backend(cluster, command_timeout))
        .build()
        .unwrap()
}

/// Receives `n` messages of each subscription, which must be `<prefix><i>` in order,
/// exactly once, with rising ids.
async fn expect_in_order(subs: &mut [&mut Subscription], from: usize, to: usize) {
    for sub in subs.iter_mut() {
        let mut last = None;
        for i in from..to {
            let m = next_message(sub).await;
            assert_eq!(
                text(&m),
                format!("{}-m{i}", sub.room()),
                "in order, exactly once"
            );
            assert!(m.id() > last);
            last = m.id();
        }
    }
}

/// Publishes `<room>-m<i>` for `i` in `from..to` to both rooms, each publish awaited.
fn publish(a: &Broadcaster, from: usize, to: usize) -> tokio::task::JoinHandle<()> {
    let a = a.clone();
    tokio::spawn(async move {
        for i in from..to {
            for room in ["r1", "r2"] {
                // Retried through the outage (CLUSTERDOWN included), never added twice.
                a.publish(room, format!("{room}-m{i}")).await.unwrap();
            }
        }
    })
}

/// The owner is frozen (`SIGSTOP`) until the cluster declares it failed: the reader's
/// bounded `XREAD` notices, the reader reconnects once the node answers again and the
/// cluster is up, and resumes after the last id it delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_slot_owner_loses_no_stream_message() {
    let cluster = RedisCluster::start();
    let owner_index = cluster.slot_owner(cluster.keyslot(STREAM_KEY));
    let owner = &cluster.nodes()[owner_index];
    let (a, b) = (instance(&cluster), instance(&cluster));
    let (mut r1, mut r2) = (
        b.subscribe("r1").await.unwrap(),
        b.subscribe("r2").await.unwrap(),
    );
    publish(&a, 0, 5).await.unwrap();
    expect_in_order(&mut [&mut r1, &mut r2], 0, 5).await;

    owner.pause();
    let publisher = publish(&a, 5, 20);
    eventually("the reader noticed the frozen node", || !b.is_connected()).await;
    // Long enough for the other masters to mark it failed: the cluster answers
    // CLUSTERDOWN until it is back, and publishes keep retrying through that too.
    let other = &cluster.nodes()[(owner_index + 1) % 3];
    eventually("the cluster declared the node failed", || {
        other
            .cli(&["CLUSTER", "INFO"])
            .contains("cluster_state:fail")
    })
    .await;
    owner.resume();
    expect_in_order(&mut [&mut r1, &mut r2], 5, 20).await;
    publisher.await.unwrap();
    assert!(b.is_connected());
    // Nothing more: no duplicate arrives after the last message.
    publish(&a, 20, 21).await.unwrap();
    expect_in_order(&mut [&mut r1, &mut r2], 20, 21).await;
}

/// Another master is frozen until the cluster is down: the owner answers `CLUSTERDOWN` to
/// everything. Publishes treat that as Redis being unavailable and retry; the reader keeps
/// reconnecting without taking `CLUSTERDOWN` for a lost stream; once the cluster is up
/// again every message arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_cluster_delays_stream_rooms_without_loss() {
    let cluster = RedisCluster::start();
    let owner_index = cluster.slot_owner(cluster.keyslot(STREAM_KEY));
    let owner = &cluster.nodes()[owner_index];
    let other = &cluster.nodes()[(owner_index + 1) % 3];
    // A command timeout longer than the cluster client's own retries of CLUSTERDOWN, so
    // that publishes see the reply itself (with 500 ms they time out first).
    let patient = Duration::from_secs(5);
    let (a, b) = (
        instance_with(&cluster, patient, Duration::from_secs(60)),
        instance(&cluster),
    );
    let c = instance_with(&cluster, patient, Duration::ZERO);
    let (mut r1, mut r2) = (
        b.subscribe("r1").await.unwrap(),
        b.subscribe("r2").await.unwrap(),
    );
    publish(&a, 0, 5).await.unwrap();
    expect_in_order(&mut [&mut r1, &mut r2], 0, 5).await;

    other.pause();
    eventually("the owner considers the cluster down", || {
        owner
            .cli(&["CLUSTER", "INFO"])
            .contains("cluster_state:fail")
    })
    .await;
    // One attempt: CLUSTERDOWN says Redis is unavailable, not a bad request.
    let err = c.publish("r1", "not sent").await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // A stream publish runs the append script (EVALSHA), which nothing else sends: once
    // the owner has refused one more than `c`'s, a publish of `a` met CLUSTERDOWN, and
    // retries.
    let refused_before = rejected_calls(owner, "evalsha");
    let publisher = publish(&a, 5, 20);
    eventually("a publish retried through CLUSTERDOWN", || {
        rejected_calls(owner, "evalsha") > refused_before
    })
    .await;
    eventually("the reader noticed", || !b.is_connected()).await;
    other.resume();
    expect_in_order(&mut [&mut r1, &mut r2], 5, 20).await;
    publisher.await.unwrap();
    publish(&a, 20, 21).await.unwrap();
    expect_in_order(&mut [&mut r1, &mut r2], 20, 21).await;
}

/// How many calls of `command` `node` refused before running them (`INFO commandstats`).
fn rejected_calls(node: &tower_scale_testkit::RedisServer, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:");
    node.cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .flat_map(|stats| stats.split(','))
        .find_map(|kv| kv.strip_prefix("rejected_calls="))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// The owner crashes and comes back without its data (no persistence): the reader
/// reconnects, tells subscribers that entries were lost, and delivers what follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_owner_losing_its_data_is_reported_then_delivers() {
    let mut cluster = RedisCluster::start();
    let owner = cluster.slot_owner(cluster.keyslot(STREAM_KEY));
    let (a, b) = (instance(&cluster), instance(&cluster));
    let mut r1 = b.subscribe("r1").await.unwrap();
    a.publish("r1", "r1-m0").await.unwrap();
    assert_eq!(text(&next_message(&mut r1).await), "r1-m0");

    // A real crash: SIGKILL, then a new process on the same port with the node's
    // nodes.conf (it rejoins with its slots) and no data.
    tokio::task::block_in_place(|| {
        cluster.nodes_mut()[owner].restart();
        cluster.wait_ok();
    });
    assert_eq!(next_event(&mut r1).await, Event::Interrupted);
    a.publish("r1", "r1-m1").await.unwrap();
    assert_eq!(text(&next_message(&mut r1).await), "r1-m1");
}

/// The slot moves to another node (`CLUSTER SETSLOT`, `MIGRATE`) while the reader is
/// blocked on it: the reader is redirected (`MOVED`), looks the owner up again and goes on
/// from the last id it delivered; the streams moved with their ids, so nothing is lost or
/// repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_follows_its_slot_to_another_node() {
    let cluster = RedisCluster::start();
    let slot = cluster.keyslot(STREAM_KEY);
    let from = cluster.slot_owner(slot);
    let to = (from + 1) % 3;
    let (a, b) = (instance(&cluster), instance(&cluster));
    let (mut r1, mut r2) = (
        b.subscribe("r1").await.unwrap(),
        b.subscribe("r2").await.unwrap(),
    );
    publish(&a, 0, 5).await.unwrap();
    expect_in_order(&mut [&mut r1, &mut r2], 0, 5).await;

    tokio::task::block_in_place(|| move_slot(&cluster, slot, from, to));
    assert_eq!(cluster.slot_owner(slot), to);
    let publisher = publish(&a, 5, 20);
    expect_in_order(&mut [&mut r1, &mut r2], 5, 20).await;
    publisher.await.unwrap();
    // The reader reads from the new owner now.
    let blocked = cluster.nodes()[to].cli(&["CLIENT", "LIST"]);
    assert!(blocked.contains("cmd=xread"), "{blocked}");
}

/// Moves `slot` with its keys from node `from` to node `to`, the way `redis-cli --cluster
/// reshard` does.
fn move_slot(cluster: &RedisCluster, slot: u16, from: usize, to: usize) {
    let nodes = cluster.nodes();
    let id = |n: usize| nodes[n].cli(&["CLUSTER", "MYID"]);
    let (from_id, to_id) = (id(from), id(to));
    let slot = slot.to_string();
    assert_eq!(
        nodes[to].cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]),
        "OK"
    );
    assert_eq!(
        nodes[from].cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]),
        "OK"
    );
    let keys = nodes[from].cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "1000"]);
    let port = nodes[to].port().to_string();
    let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
    migrate.extend(keys.lines());
    assert_eq!(nodes[from].cli(&migrate), "OK");
    for node in [to, from, 3 - to - from] {
        assert_eq!(
            nodes[node].cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]),
            "OK"
        );
    }
}
