//! One conformance suite for every store: memory, Redis, Redis Cluster.

mod support;

use std::time::Duration;

use bytes::Bytes;
use tower_scale_cache::{Cache, MemoryStore, RedisStore, Store};
use tower_scale_testkit::{RedisCluster, RedisServer};

async fn conformance(store: &dyn Store) {
    let v = |s: &'static str| Bytes::from_static(s.as_bytes());
    let ttl = Duration::from_secs(60);
    assert_eq!(store.get("g1", "a").await.unwrap(), None);
    store
        .put("g1", &[("a", v("1")), ("b", v("2"))], ttl, &["t1".into()])
        .await
        .unwrap();
    store
        .put("g2", &[("a", v("3"))], ttl, &["t1".into(), "t2".into()])
        .await
        .unwrap();
    store.put("g3", &[("a", v("4"))], ttl, &[]).await.unwrap();
    assert_eq!(store.get("g1", "a").await.unwrap(), Some(v("1")));
    assert_eq!(store.get("g1", "b").await.unwrap(), Some(v("2")));
    // A later put merges into the group and overwrites fields.
    store.put("g1", &[("b", v("2b"))], ttl, &[]).await.unwrap();
    assert_eq!(store.get("g1", "a").await.unwrap(), Some(v("1")));
    assert_eq!(store.get("g1", "b").await.unwrap(), Some(v("2b")));

    // The count of a group's fields (the bound on a resource's variants).
    assert_eq!(store.field_count("g1").await.unwrap(), Some(2));
    assert_eq!(store.field_count("g3").await.unwrap(), Some(1));
    assert_eq!(store.field_count("none").await.unwrap(), Some(0));

    // Purging a group removes all its fields, nothing else.
    store.purge(&["g3".into()]).await.unwrap();
    assert_eq!(store.field_count("g3").await.unwrap(), Some(0));
    assert_eq!(store.get("g3", "a").await.unwrap(), None);
    assert_eq!(store.get("g1", "a").await.unwrap(), Some(v("1")));

    // A tag purge removes its groups and returns them; the tag is empty afterwards.
    let mut purged = store.purge_tag("t2").await.unwrap();
    purged.sort();
    assert_eq!(purged, ["g2"]);
    assert_eq!(store.get("g2", "a").await.unwrap(), None);
    assert_eq!(store.get("g1", "a").await.unwrap(), Some(v("1")));
    assert_eq!(store.purge_tag("t2").await.unwrap(), Vec::<String>::new());
    let purged = store.purge_tag("t1").await.unwrap();
    assert!(purged.contains(&"g1".to_owned()));
    assert_eq!(store.get("g1", "b").await.unwrap(), None);

    // Names with braces and odd bytes are fine.
    store
        .put("/a{b}?x=1", &[("GET|x=é", v("5"))], ttl, &["{t}".into()])
        .await
        .unwrap();
    assert_eq!(
        store.get("/a{b}?x=1", "GET|x=é").await.unwrap(),
        Some(v("5"))
    );
    assert_eq!(store.purge_tag("{t}").await.unwrap(), ["/a{b}?x=1"]);

    // Locks: exclusive, released only by their token, expiring by themselves.
    let t = store
        .try_lock("g", "f", ttl)
        .await
        .unwrap()
        .expect("free lock");
    assert_eq!(store.try_lock("g", "f", ttl).await.unwrap(), None);
    assert!(store.try_lock("g", "other", ttl).await.unwrap().is_some());
    store.unlock("g", "f", t.wrapping_add(1)).await.unwrap();
    assert_eq!(
        store.try_lock("g", "f", ttl).await.unwrap(),
        None,
        "wrong token"
    );
    store.unlock("g", "f", t).await.unwrap();
    let short = store
        .try_lock("g", "f", Duration::from_millis(30))
        .await
        .unwrap();
    assert!(short.is_some());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        store.try_lock("g", "f", ttl).await.unwrap().is_some(),
        "an expired lock is free"
    );

    // Groups expire with their longest TTL.
    store
        .put("exp", &[("a", v("1"))], Duration::from_millis(30), &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.get("exp", "a").await.unwrap(), None);
}

/// A group's base field stored alone (`GET` of a resource without `Vary`, `v` of a typed
/// value), mixed with `Vary` variants, other fields and tags: what a read, a count and a purge
/// see is the same on every store.
async fn base_fields(store: &dyn Store) {
    let v = |s: &'static str| Bytes::from_static(s.as_bytes());
    let ttl = Duration::from_secs(60);

    // A plain entry: counted, purged.
    for field in ["GET", "v"] {
        store
            .put("/plain", &[(field, v("p"))], ttl, &[])
            .await
            .unwrap();
        assert_eq!(store.get("/plain", field).await.unwrap(), Some(v("p")));
        assert_eq!(
            store.field_count("/plain").await.unwrap(),
            Some(1),
            "{field}"
        );
        store.purge(&["/plain".into()]).await.unwrap();
        assert_eq!(store.get("/plain", field).await.unwrap(), None, "{field}");
        assert_eq!(
            store.field_count("/plain").await.unwrap(),
            Some(0),
            "{field}"
        );
    }

    // A group with `Vary` variants (the marker and a variant), then a plain entry replacing
    // the marker, and the reverse (the resource starts answering with `Vary`): the variant
    // stays counted, and a purge removes both.
    let vary = [("GET", v("marker")), ("GET|a=1", v("var"))];
    let plain = [("GET", v("plain"))];
    for (group, first, then) in [("/vp", &vary[..], &plain[..]), ("/pv", &plain, &vary)] {
        store.put(group, first, ttl, &[]).await.unwrap();
        store.put(group, then, ttl, &[]).await.unwrap();
        assert_eq!(
            store.get(group, "GET").await.unwrap(),
            Some(then[0].1.clone())
        );
        assert_eq!(store.get(group, "GET|a=1").await.unwrap(), Some(v("var")));
        assert_eq!(store.field_count(group).await.unwrap(), Some(2), "{group}");
        store.purge(&[group.into()]).await.unwrap();
        assert_eq!(store.get(group, "GET").await.unwrap(), None, "{group}");
        assert_eq!(store.get(group, "GET|a=1").await.unwrap(), None, "{group}");
        assert_eq!(store.field_count(group).await.unwrap(), Some(0), "{group}");
    }

    // A tag purge reaches a tagged group's plain base entry: stored tagged, then again
    // without tags (the response lost its tag header), and a typed value beside a tagged
    // field.
    store
        .put("/tp", &[("GET", v("tagged"))], ttl, &["t".into()])
        .await
        .unwrap();
    store
        .put("/tp", &[("GET", v("plain"))], ttl, &[])
        .await
        .unwrap();
    store
        .put("user:1", &[("v", v("ada"))], ttl, &[])
        .await
        .unwrap();
    store
        .put("user:1", &[("x", v("other"))], ttl, &["t".into()])
        .await
        .unwrap();
    assert_eq!(store.field_count("user:1").await.unwrap(), Some(2));
    let mut purged = store.purge_tag("t").await.unwrap();
    purged.sort();
    assert_eq!(purged, ["/tp", "user:1"]);
    assert_eq!(store.get("/tp", "GET").await.unwrap(), None);
    assert_eq!(store.get("user:1", "v").await.unwrap(), None);
    assert_eq!(store.get("user:1", "x").await.unwrap(), None);
}

#[tokio::test]
async fn memory_store() {
    conformance(&MemoryStore::default()).await;
    base_fields(&MemoryStore::default()).await;
}

#[tokio::test]
async fn redis_store() {
    let server = RedisServer::start();
    conformance(&RedisStore::new(support::backend(&server))).await;
    base_fields(&RedisStore::new(support::backend(&server))).await;
    assert_eq!(entries_left(&server), "", "purges leave nothing");
}

/// The cache's keys on `server` but the locks (the conformance suite leaves some held).
fn entries_left(server: &RedisServer) -> String {
    let keys = server.cli(&["KEYS", "ts:cache:*"]);
    let mut left: Vec<&str> = keys.lines().filter(|k| !k.contains(":lock:")).collect();
    left.sort_unstable();
    left.join("\n")
}

/// A group's base field stored alone, without tags, is one `SET … PX` and no index; anything
/// else (variants, tags, other fields) still goes through the script and the index.
async fn a_plain_base_entry_is_one_set(store: &RedisStore, nodes: &[RedisServer]) {
    let v = |s: &'static str| Bytes::from_static(s.as_bytes());
    let ttl = Duration::from_secs(60);
    let key = |group: &str, field: &str| store.entry_key(group, field);
    for (group, field) in [("/cached/1", "GET"), ("user:1", "v")] {
        // Warm the script cache and the connections first: only the put is counted.
        store.get(group, field).await.unwrap();
        for n in nodes {
            n.reset_stats();
        }
        store
            .put(group, &[(field, v("x"))], ttl, &[])
            .await
            .unwrap();
        assert_eq!(
            support::redis_calls(nodes),
            [("set".to_owned(), 1)],
            "{group} {field}: one SET"
        );
        let entry = key(group, field);
        let index = store.index_key(group);
        let (mut pttl, mut indexed) = (None, false);
        for n in nodes {
            if n.cli(&["EXISTS", &entry]) == "1" {
                pttl = n.cli(&["PTTL", &entry]).parse::<i64>().ok();
            }
            indexed |= n.cli(&["EXISTS", &index]) == "1";
        }
        assert!(
            pttl.is_some_and(|t| t > 0 && t <= 60_000),
            "{entry} expires: {pttl:?}"
        );
        assert!(!indexed, "{group}: no index");
    }
    // A tagged base entry, and another field: the script and the index.
    for (fields, tags) in [
        (vec![("GET", v("x"))], vec!["t".to_owned()]),
        (vec![("GET|a=1", v("x"))], vec![]),
        (vec![("GET", v("m")), ("GET|a=1", v("x"))], vec![]),
    ] {
        // Once to load the scripts, purged, then counted.
        store.put("/g", &fields, ttl, &tags).await.unwrap();
        store.purge(&["/g".into()]).await.unwrap();
        for n in nodes {
            n.reset_stats();
        }
        store.put("/g", &fields, ttl, &tags).await.unwrap();
        let evalsha: u64 = nodes.iter().map(|n| n.calls("evalsha")).sum();
        let sadd: u64 = nodes.iter().map(|n| n.calls("sadd")).sum();
        assert_eq!(evalsha, 1 + tags.len() as u64, "{fields:?} {tags:?}");
        assert_eq!(sadd, 1 + tags.len() as u64, "{fields:?} {tags:?}: indexed");
    }
    store
        .purge(&["/g".into(), "/cached/1".into(), "user:1".into()])
        .await
        .unwrap();
    store.purge_tag("t").await.unwrap();
}

#[tokio::test]
async fn redis_plain_base_entry_is_one_set() {
    let server = RedisServer::start();
    let store = RedisStore::new(support::backend(&server));
    a_plain_base_entry_is_one_set(&store, std::slice::from_ref(&server)).await;
}

/// The purge script of the version that indexes every entry: it deletes what the index names.
const INDEX_ONLY_PURGE: &str = "local fields = redis.call('SMEMBERS', KEYS[1])
for _, f in ipairs(fields) do redis.call('DEL', ARGV[1] .. f) end
redis.call('DEL', KEYS[1], KEYS[2])
return #fields";

#[tokio::test]
async fn a_rolling_upgrade_indexes_every_entry_for_the_old_purges() {
    let server = RedisServer::start();
    let v = Bytes::from_static(b"x");
    let ttl = Duration::from_secs(60);
    // An instance still running the version that indexes every entry purges `group`.
    let old_purge = |store: &RedisStore, group: &str| {
        server.cli(&[
            "EVAL",
            INDEX_ONLY_PURGE,
            "2",
            &store.index_key(group),
            &format!("ts:cache:{{{group}}}:e"),
            &store.entry_key(group, ""),
        ])
    };
    // Off (the default): an old instance's purge misses a plain entry; this version's does not.
    let store = RedisStore::new(support::backend(&server));
    store
        .put("/a", &[("GET", v.clone())], ttl, &[])
        .await
        .unwrap();
    old_purge(&store, "/a");
    assert_eq!(store.get("/a", "GET").await.unwrap(), Some(v.clone()));
    store.purge(&["/a".into()]).await.unwrap();
    assert_eq!(store.get("/a", "GET").await.unwrap(), None);
    // On, during the upgrade: the entry is indexed, so the old purge deletes it too.
    let upgrading = RedisStore::new(support::backend(&server)).index_every_entry(true);
    for field in ["GET", "v"] {
        upgrading
            .put("/a", &[(field, v.clone())], ttl, &[])
            .await
            .unwrap();
        assert_eq!(server.cli(&["SMEMBERS", &upgrading.index_key("/a")]), field);
        old_purge(&upgrading, "/a");
        assert_eq!(upgrading.get("/a", field).await.unwrap(), None, "{field}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store() {
    let cluster = RedisCluster::start();
    conformance(&RedisStore::new(support::cluster_backend(&cluster))).await;
    let store = RedisStore::new(support::cluster_backend(&cluster));
    base_fields(&store).await;
    a_plain_base_entry_is_one_set(&store, cluster.nodes()).await;
    for node in cluster.nodes() {
        assert_eq!(entries_left(node), "", "purges leave nothing");
    }
    // The typed APIs on the cluster: a value and raw bytes, each fetched once, then hits.
    let cache = Cache::new(RedisStore::new(support::cluster_backend(&cluster)));
    let ttl = Duration::from_secs(60);
    for key in ["user:1", "user:2"] {
        let fetched = cache
            .get_or_fetch(key, ttl, || async { Ok::<_, std::io::Error>(7_u32) })
            .await
            .unwrap();
        let hit = cache
            .get_or_fetch(key, ttl, || async {
                Err::<u32, _>(std::io::Error::other("a hit does not fetch"))
            })
            .await
            .unwrap();
        assert_eq!((fetched, hit), (7, 7));
        let page = format!("page:{key}");
        cache
            .get_or_fetch_bytes(&page, ttl, || async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"<p>raw</p>"))
            })
            .await
            .unwrap();
        let hit = cache
            .get_or_fetch_bytes(&page, ttl, || async {
                Err::<Bytes, _>(std::io::Error::other("a hit does not fetch"))
            })
            .await
            .unwrap();
        assert_eq!(hit, "<p>raw</p>");
    }
}

#[tokio::test]
async fn redis_keys_share_a_slot_per_group_and_tag() {
    let server = RedisServer::start();
    let store = RedisStore::new(support::backend(&server));
    store
        .put(
            "/x",
            &[("GET", Bytes::from_static(b"1"))],
            Duration::from_secs(60),
            &["t".into()],
        )
        .await
        .unwrap();
    let mut keys: Vec<String> = server
        .cli(&["KEYS", "ts:cache:*"])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "ts:cache:{/x}:i",
            "ts:cache:{/x}:s:GET",
            "ts:cache:{t:t}:groups"
        ]
    );
    assert_eq!(server.cli(&["TYPE", "ts:cache:{/x}:s:GET"]), "string");
    assert_eq!(server.cli(&["GET", "ts:cache:{/x}:s:GET"]), "1");
    for key in ["ts:cache:{/x}:s:GET", "ts:cache:{/x}:i"] {
        let ttl: i64 = server.cli(&["PTTL", key]).parse().unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{key}: {ttl}");
    }
    assert_eq!(
        store.entry_key("/x", "GET|accept-encoding=gzip"),
        "ts:cache:{/x}:s:GET|accept-encoding=gzip"
    );
    let long = format!("GET|accept-language={}", "é".repeat(100));
    assert_eq!(
        store.entry_key("/x", &long),
        format!("ts:cache:{{/x}}:s:{long}"),
        "a field longer than the stack buffer"
    );
    assert_eq!(
        store.entry_key("/a{b}?c", "GET"),
        "ts:cache:{/a{{b{_?c}:s:GET",
        "braces of a group cannot move the hash tag"
    );
    assert_eq!(
        store.entry_key("/é?q=1", "GET|x=y"),
        support::backend(&server)
            .keys()
            .tagged("cache", "/é?q=1", "s:GET|x=y"),
        "the brace-free path builds what `Keys::tagged` builds"
    );
    assert_eq!(store.index_key("/x"), "ts:cache:{/x}:i");
    // A purge leaves nothing of the group.
    store.purge(&["/x".into()]).await.unwrap();
    assert_eq!(
        server.cli(&["EXISTS", "ts:cache:{/x}:i", "ts:cache:{/x}:s:GET"]),
        "0"
    );
}

#[tokio::test]
async fn redis_down_is_an_error_not_a_hang() {
    let mut server = RedisServer::start();
    let store = RedisStore::new(support::backend(&server));
    store.get("g", "f").await.unwrap();
    server.pause();
    assert!(store.get("g", "f").await.is_err(), "paused: a timeout");
    server.resume();
    server.kill();
    assert!(store.get("g", "f").await.is_err(), "killed: an error");
}
