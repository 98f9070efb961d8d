use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::Quota;
use crate::store::{BoxFuture, Decision, Store, StoreError};

/// A store in front of a shared one (Redis) that leases small allowances and decides locally
/// until they are spent, cutting round trips by about the lease size.
///
/// Each lease is taken from the shared store as one request costing `lease` units, so the
/// shared count never exceeds the quota: across `n` instances the admitted count stays within
/// **`quota - n × lease` and `quota`** (leased units an instance does not use before the lease
/// expires are lost, never given twice). When less than a lease is left, requests fall back to
/// one round trip each, so the last units of the quota are not stranded.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_scale_ratelimit::{HybridStore, Quota, RateLimitLayer, RedisStore};
/// # fn build(backend: tower_scale_redis::RedisBackend) -> Result<(), Box<dyn std::error::Error>> {
/// let store = HybridStore::new(RedisStore::new(backend), 10, Duration::from_millis(500));
/// let layer = RateLimitLayer::new(store, [Quota::per_second(1000)])?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HybridStore<S> {
    shared: Arc<S>,
    lease: u32,
    lease_ttl: Duration,
    leases: moka::sync::Cache<String, Arc<Mutex<Lease>>>,
}

impl<S> std::fmt::Debug for HybridStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridStore")
            .field("lease", &self.lease)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Lease {
    remaining: u32,
    expires: Instant,
}

impl<S: Store> HybridStore<S> {
    /// Leases `lease` units at a time from `shared`, each lease usable for `lease_ttl`.
    pub fn new(shared: S, lease: u32, lease_ttl: Duration) -> Self {
        Self {
            shared: Arc::new(shared),
            lease: lease.max(1),
            lease_ttl,
            leases: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(lease_ttl.max(Duration::from_secs(1)) * 4)
                .build(),
        }
    }

    async fn decide(&self, key: &str, quotas: &[Quota], cost: u32) -> Result<Decision, StoreError> {
        let lease = self.leases.get_with_by_ref(key, || {
            Arc::new(Mutex::new(Lease {
                remaining: 0,
                expires: Instant::now(),
            }))
        });
        let mut lease = lease.lock().await;
        let now = Instant::now();
        if lease.expires > now && lease.remaining >= cost {
            lease.remaining -= cost;
            return Ok(Decision {
                allowed: true,
                retry_after: Duration::ZERO,
                remaining: lease.remaining,
                reset: Duration::ZERO,
                never: false,
            });
        }
        // A new lease, never larger than the smallest burst.
        let size = quotas
            .iter()
            .map(Quota::max_burst)
            .min()
            .unwrap_or(1)
            .min(self.lease)
            .max(cost);
        if size > cost {
            let d = self.shared.check(key, quotas, size).await?;
            if d.allowed {
                lease.remaining = size - cost;
                lease.expires = now + self.lease_ttl;
                return Ok(d);
            }
            if d.remaining < cost {
                // Not even this request fits: answer without a second round trip. The wait
                // was computed for a whole lease; a single request fits sooner.
                lease.remaining = 0;
                let interval = quotas
                    .iter()
                    .map(Quota::emission_interval)
                    .min()
                    .unwrap_or_default();
                let mut rejected = d;
                rejected.retry_after = d.retry_after.saturating_sub(interval * (size - cost));
                return Ok(rejected);
            }
        }
        // Less than a lease left: this request alone.
        lease.remaining = 0;
        self.shared.check(key, quotas, cost).await
    }
}

impl<S: Store> Store for HybridStore<S> {
    fn check<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(self.decide(key, quotas, cost))
    }

    /// Asks the shared store: leases serve `check` only.
    fn peek<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.shared.peek(key, quotas, cost)
    }

    /// Counts in the shared store: leases serve `check` only.
    fn consume<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.shared.consume(key, quotas, cost)
    }
}
