//! A 3-master Redis Cluster with `tls-cluster yes`: the cluster client follows the nodes'
//! TLS ports with the configured CA, as a limited ACL user.

use std::time::Duration;

use tower_scale_redis::redis;
use tower_scale_redis::{ConnectionKind, RedisBackend, RedisConfig};
use tower_scale_testkit::{RedisCluster, TlsFiles};

use crate::support::bounded;

#[tokio::test]
async fn a_tls_cluster_serves_keys_on_every_node_and_scripts_as_an_acl_user() {
    let tls = TlsFiles::generate();
    let cluster = RedisCluster::start_tls(&tls);
    cluster.add_acl_user("app", "cluster-Pw-1", &["~t:*", "+@all", "-@dangerous"]);
    let seeds = cluster
        .tls_urls()
        .into_iter()
        .map(|url| url.replacen("rediss://", "rediss://app:cluster-Pw-1@", 1))
        .collect::<Vec<_>>();
    let mut config = RedisConfig::cluster(seeds);
    config.tls_ca_file = Some(tls.ca_file());
    config.command_timeout = Duration::from_secs(5);
    config.key_prefix = "t".to_owned();
    let backend = RedisBackend::new(config).unwrap();
    // Enough keys to land on every master.
    let keys: Vec<String> = (0..30)
        .map(|i| backend.keys().key("tls", &i.to_string()))
        .collect();
    let mut owners = std::collections::HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        bounded(backend.query::<()>(redis::cmd("SET").arg(key).arg(i)))
            .await
            .unwrap();
        owners.insert(cluster.slot_owner(cluster.keyslot(key)));
    }
    assert_eq!(owners.len(), 3, "the keys should span every master");
    for (i, key) in keys.iter().enumerate() {
        let got: usize = bounded(backend.query(redis::cmd("GET").arg(key)))
            .await
            .unwrap();
        assert_eq!(got, i);
    }
    crate::round_trip(&backend, "cluster").await;
    for node in cluster.nodes() {
        assert_eq!(
            node.cli(&["ACL", "LOG"]),
            "",
            "a node refused commands to app"
        );
    }
}

#[test]
fn a_cluster_pool_with_certificate_files_is_a_config_error() {
    let tls = TlsFiles::generate();
    let mut config = RedisConfig::cluster(["rediss://127.0.0.1:7000", "rediss://127.0.0.1:7001"]);
    config.connection = ConnectionKind::Pooled;
    config.tls_ca_file = Some(tls.ca_file());
    let err = RedisBackend::new(config).unwrap_err().to_string();
    assert!(
        err.contains("connection") && err.contains("multiplexed"),
        "{err}"
    );
}
