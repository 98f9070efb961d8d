//! The Redis backplane over TLS (`rediss://`, a CA and certificates generated per test) and as
//! an ACL user: the subscriber connection (pub/sub rooms) and the stream reader (stream rooms)
//! connect with the backend's TLS settings and credentials, on one server (with mutual TLS)
//! and on a 3-master cluster with `tls-cluster yes`.
#![cfg(feature = "redis")]

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use tower_scale_pubsub::{Broadcaster, Delivery};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::{RedisCluster, RedisServer, TlsFiles};

use support::{next_message, text};

/// Two instances (each its own backend and connections) exchange messages in both deliveries.
async fn instances_exchange_messages(config: &RedisConfig) {
    for delivery in [Delivery::PubSub, Delivery::Stream] {
        let instance = || {
            let backend = RedisBackend::new(config.clone()).expect("valid config");
            Broadcaster::builder()
                .delivery(delivery)
                .redis(backend)
                .build()
                .expect("valid broadcaster")
        };
        let (a, b) = (instance(), instance());
        let mut on_b = b.subscribe("room").await.unwrap();
        let mut on_a = a.subscribe("room").await.unwrap();
        for i in 0..5 {
            a.publish("room", format!("m{i}")).await.unwrap();
        }
        for sub in [&mut on_a, &mut on_b] {
            for i in 0..5 {
                assert_eq!(
                    text(&next_message(sub).await),
                    format!("m{i}"),
                    "{delivery:?}"
                );
            }
        }
        assert!(a.is_connected() && b.is_connected(), "{delivery:?}");
    }
}

const PASSWORD: &str = "pubsub-Pw-5d1";
/// A limited user, as the operations guide (https://github.com/tower-scale/tower-scale/blob/main/docs/operations.md) recommends: the stream reader wakes its blocked XREAD
/// with `CLIENT UNBLOCK`.
const RULES: [&str; 5] = ["~ts:*", "&ts:*", "+@all", "-@dangerous", "+client|unblock"];

#[tokio::test]
async fn rooms_work_over_mutual_tls_as_an_acl_user() {
    let tls = TlsFiles::generate();
    let server = RedisServer::start_tls(&tls, true);
    server.add_acl_user("app", PASSWORD, &RULES);
    let port = server.tls_port().unwrap();
    let mut config = RedisConfig::new(format!("rediss://app:{PASSWORD}@127.0.0.1:{port}"));
    config.tls_ca_file = Some(tls.ca_file());
    config.tls_cert_file = Some(tls.client_cert_file());
    config.tls_key_file = Some(tls.client_key_file());
    config.command_timeout = Duration::from_secs(2);
    instances_exchange_messages(&config).await;
    server.wait_tls_clients_are("app").await;
    assert_eq!(
        server.cli(&["ACL", "LOG"]),
        "",
        "Redis refused commands to app"
    );
}

#[tokio::test]
async fn rooms_work_on_a_tls_cluster_as_an_acl_user() {
    let tls = TlsFiles::generate();
    let cluster = RedisCluster::start_tls(&tls);
    cluster.add_acl_user("app", PASSWORD, &RULES);
    let seeds = cluster
        .tls_urls()
        .into_iter()
        .map(|url| url.replacen("rediss://", &format!("rediss://app:{PASSWORD}@"), 1))
        .collect::<Vec<_>>();
    let mut config = RedisConfig::cluster(seeds);
    config.tls_ca_file = Some(tls.ca_file());
    config.command_timeout = Duration::from_secs(2);
    instances_exchange_messages(&config).await;
    for node in cluster.nodes() {
        assert_eq!(
            node.cli(&["ACL", "LOG"]),
            "",
            "a node refused commands to app"
        );
    }
}
