//! The backend on a local 3-master Redis Cluster.

use super::*;

#[tokio::test]
async fn cluster_scripts_run_on_every_node_and_reload_after_flush() {
    let cluster = RedisCluster::start();
    for kind in KINDS {
        let mut config = RedisConfig::cluster(cluster.urls());
        config.connection = kind;
        config.command_timeout = Duration::from_secs(2);
        let b = RedisBackend::new(config).unwrap();
        assert!(b.is_cluster());
        b.ping().await.unwrap();

        // Tags spread over many slots, hence over all 3 masters; each script's two keys share
        // one slot through the hash tag.
        let mut slots = HashSet::new();
        for i in 0..60 {
            let tag = format!("user{i}");
            let k1 = b.keys().tagged("test", &tag, "a");
            let k2 = b.keys().tagged("test", &tag, "b");
            assert_eq!(cluster.keyslot(&k1), cluster.keyslot(&k2));
            slots.insert(cluster.keyslot(&k1));
            let sum: i64 = b
                .invoke(TWO_KEYS.key(&k1).key(&k2).arg(i).arg(1))
                .await
                .unwrap();
            assert_eq!(sum, i + 1);
        }
        let owners: HashSet<usize> = slots.iter().map(|slot| cluster.slot_owner(*slot)).collect();
        assert_eq!(owners.len(), 3, "the scripts reached every master");

        for node in cluster.nodes() {
            assert_eq!(node.cli(&["SCRIPT", "FLUSH"]), "OK");
        }
        for i in 0..10 {
            let tag = format!("user{i}");
            let k1 = b.keys().tagged("test", &tag, "a");
            let k2 = b.keys().tagged("test", &tag, "b");
            let sum: i64 = b
                .invoke(TWO_KEYS.key(&k1).key(&k2).arg(5).arg(5))
                .await
                .unwrap();
            assert_eq!(sum, 10, "script reloaded after SCRIPT FLUSH");
        }

        // Plain commands route by slot too.
        for i in 0..30 {
            let key = b.keys().key("test", &format!("plain{i}"));
            b.query::<()>(redis::cmd("SET").arg(&key).arg(i))
                .await
                .unwrap();
            let v: i64 = b.query(redis::cmd("GET").arg(&key)).await.unwrap();
            assert_eq!(v, i);
        }
    }
}

#[tokio::test]
async fn cluster_node_paused_times_out() {
    let cluster = RedisCluster::start();
    let mut config = RedisConfig::cluster(cluster.urls());
    config.command_timeout = Duration::from_millis(200);
    let b = RedisBackend::new(config).unwrap();
    // Find a key on node 0, then freeze node 0.
    let key = (0..)
        .map(|i| b.keys().key("test", &format!("k{i}")))
        .find(|k| cluster.slot_owner(cluster.keyslot(k)) == 0)
        .unwrap();
    b.query::<()>(redis::cmd("SET").arg(&key).arg(1))
        .await
        .unwrap();
    cluster.nodes()[0].pause();
    let err = bounded(b.query::<i64>(redis::cmd("GET").arg(&key)))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    cluster.nodes()[0].resume();
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(v) = bounded(b.query::<i64>(redis::cmd("GET").arg(&key))).await {
            assert_eq!(v, 1);
            ok = true;
            break;
        }
    }
    assert!(ok, "no answer after resume");
}
