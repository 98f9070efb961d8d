//! Distinct paths and tags never share a Redis entry (issue 21): braces in a path or a tag
//! used to be replaced by `_`, so `/x?q={a}` and `/x?q=_a_` read and purged each other's
//! entries. Against a real redis-server and a real Redis Cluster.

use std::time::Duration;

use bytes::Bytes;
use tower_scale_cache::{RedisStore, Store};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::{RedisCluster, RedisServer};

const TTL: Duration = Duration::from_secs(60);

async fn lookalike_paths_keep_their_own_entries(store: &RedisStore) {
    let braces = "/x?q={a}";
    let underscores = "/x?q=_a_";
    store
        .put(
            braces,
            &[("GET", Bytes::from_static(b"braces"))],
            TTL,
            &["{t}".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        store.get(underscores, "GET").await.unwrap(),
        None,
        "the path with braces wrote the entry of the path with underscores"
    );
    store
        .put(
            underscores,
            &[("GET", Bytes::from_static(b"underscores"))],
            TTL,
            &["_t_".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        store.get(braces, "GET").await.unwrap().as_deref(),
        Some(&b"braces"[..])
    );
    assert_ne!(
        store.entry_key(braces, "GET"),
        store.entry_key(underscores, "GET")
    );
    assert_ne!(store.index_key(braces), store.index_key(underscores));
    // Purging one tag purges its own group only.
    assert_eq!(store.purge_tag("{t}").await.unwrap(), [braces]);
    assert_eq!(store.get(braces, "GET").await.unwrap(), None);
    assert_eq!(
        store.get(underscores, "GET").await.unwrap().as_deref(),
        Some(&b"underscores"[..])
    );
    // Purging one path purges its own entries only.
    store
        .put(braces, &[("GET", Bytes::from_static(b"again"))], TTL, &[])
        .await
        .unwrap();
    store.purge(&[underscores.into()]).await.unwrap();
    assert_eq!(
        store.get(braces, "GET").await.unwrap().as_deref(),
        Some(&b"again"[..])
    );
}

#[tokio::test]
async fn a_path_with_braces_cannot_read_or_purge_the_entry_of_a_path_with_underscores() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    lookalike_paths_keep_their_own_entries(&RedisStore::new(backend)).await;
}

#[tokio::test]
async fn a_path_with_braces_cannot_read_or_purge_the_entry_of_a_path_with_underscores_on_a_cluster()
{
    let cluster = RedisCluster::start();
    let mut config = RedisConfig::cluster(cluster.urls());
    config.command_timeout = Duration::from_secs(2);
    let backend = RedisBackend::new(config).unwrap();
    lookalike_paths_keep_their_own_entries(&RedisStore::new(backend)).await;
}
