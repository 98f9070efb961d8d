//! Distinct rate-limit keys never share a Redis bucket (issue 21): braces in a key used to be
//! replaced by `_`, so a client keyed `a{b}` spent the quota of the client keyed `a_b_`.
//! Against a real redis-server.
#![cfg(feature = "redis")]

use tower_scale_ratelimit::{Quota, RedisStore, Store};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

#[tokio::test]
async fn a_key_with_braces_cannot_spend_the_quota_of_a_key_with_underscores() {
    let server = RedisServer::start();
    let store = RedisStore::new(RedisBackend::new(RedisConfig::new(server.url())).unwrap());
    let quotas = [Quota::per_minute(1)];
    assert!(store.check("a{b}", &quotas, 1).await.unwrap().allowed);
    assert!(!store.check("a{b}", &quotas, 1).await.unwrap().allowed);
    for other in ["a_b_", "a}b{", "a{b_"] {
        assert!(
            store.check(other, &quotas, 1).await.unwrap().allowed,
            "{other:?} shares the bucket of \"a{{b}}\""
        );
    }
}
