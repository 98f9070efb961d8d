//! Keys are injective: distinct inputs never share a Redis key, and a tag with braces still
//! keeps a script's keys in one Redis Cluster slot (issue 21).

use std::sync::LazyLock;
use std::time::Duration;

use tower_scale_redis::redis::Script;
use tower_scale_redis::{Keys, RedisBackend, RedisConfig};
use tower_scale_testkit::RedisCluster;

/// Sets two keys and returns their sum: on a cluster, only when both are in one slot.
static TWO_KEYS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[2]); \
         return tonumber(redis.call('GET', KEYS[1])) + tonumber(redis.call('GET', KEYS[2]))",
    )
});

/// Tags that the old `_` replacement wrote alike, in groups.
const LOOKALIKE_TAGS: [&[&str]; 3] = [
    &["{a}", "_a_", "{a_", "_a}", "}a{"],
    &["user}{1", "user__1", "user{}1"],
    &["{", "}", "_"],
];

#[test]
fn braces_in_a_tag_cannot_pick_another_tags_keys() {
    let keys = Keys::new("p");
    for group in LOOKALIKE_TAGS {
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                assert_ne!(
                    keys.tagged("c", a, "s"),
                    keys.tagged("c", b, "s"),
                    "tags {a:?} and {b:?} share a key"
                );
            }
        }
    }
}

#[test]
fn a_separator_in_the_concern_cannot_pick_another_concerns_keys() {
    let keys = Keys::new("p");
    assert_ne!(keys.key("a:b", "c"), keys.key("a", "b:c"));
    assert_ne!(keys.tagged("a:{b", "c", "s"), keys.tagged("a", "b", "s"));
    assert_ne!(
        keys.tagged("a:{b}:x", "y", "s"),
        keys.tagged("a", "b}:x:{y", "s")
    );
}

#[tokio::test]
async fn tags_with_braces_keep_a_scripts_keys_in_one_cluster_slot() {
    let cluster = RedisCluster::start();
    let mut config = RedisConfig::cluster(cluster.urls());
    config.command_timeout = Duration::from_secs(2);
    let b = RedisBackend::new(config).unwrap();
    for (i, tag) in LOOKALIKE_TAGS.iter().flat_map(|g| g.iter()).enumerate() {
        let k1 = b.keys().tagged("test", tag, "a");
        let k2 = b.keys().tagged("test", tag, "b");
        assert_eq!(cluster.keyslot(&k1), cluster.keyslot(&k2), "{k1} {k2}");
        let i = i64::try_from(i).unwrap();
        let sum: i64 = b
            .invoke(TWO_KEYS.key(&k1).key(&k2).arg(i).arg(1))
            .await
            .unwrap();
        assert_eq!(sum, i + 1);
    }
}
