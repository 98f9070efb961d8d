//! `RedisStore` on Redis Cluster.

use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisCluster;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_limit_is_exact_on_redis_cluster() {
    let cluster = RedisCluster::start();
    let backends = (0..4)
        .map(|_| RedisBackend::new(RedisConfig::cluster(cluster.urls())).unwrap())
        .collect();
    accuracy_across_instances(backends).await;
}
