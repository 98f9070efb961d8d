use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::{BoxFuture, Decision, Store, StoreError};
use crate::{Key, Quota};

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
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    shared: S,
    lease: u32,
    lease_ttl: Duration,
    /// Per policy name (`""` for keys given whole to [`Store::check`]), per key: the lease.
    /// Read-locked on the hot path; written only to add a key or drop stale ones.
    slots: RwLock<Slots>,
    max_keys: usize,
}

/// The leases of every policy name (a short list, searched by comparing names: cheaper
/// than hashing one), then of every key.
type Slots = Vec<(Box<str>, HashMap<Key, Arc<Slot>>)>;

fn keys_of<'a>(slots: &'a Slots, policy: &str) -> Option<&'a HashMap<Key, Arc<Slot>>> {
    slots
        .iter()
        .find(|(name, _)| **name == *policy)
        .map(|(_, keys)| keys)
}

impl<S> std::fmt::Debug for HybridStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridStore")
            .field("lease", &self.inner.lease)
            .field("lease_ttl", &self.inner.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// One key's lease. Spending from it takes the `std` mutex for a few instructions (never
/// across an await); taking a new lease holds `refill` across the round trip, so requests of
/// one key that find the lease spent wait for one refill instead of each making a round trip.
#[derive(Debug)]
struct Slot {
    lease: StdMutex<Lease>,
    refill: Mutex<()>,
}

#[derive(Debug)]
struct Lease {
    remaining: u32,
    expires: Instant,
}

impl Slot {
    fn new() -> Self {
        Self {
            lease: StdMutex::new(Lease {
                remaining: 0,
                expires: Instant::now(),
            }),
            refill: Mutex::new(()),
        }
    }

    fn lease(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spends `cost` from a live lease, if it holds that much.
    fn spend(&self, cost: u32) -> Option<Decision> {
        let mut lease = self.lease();
        if lease.remaining >= cost && lease.expires > Instant::now() {
            lease.remaining -= cost;
            return Some(Decision {
                allowed: true,
                retry_after: Duration::ZERO,
                remaining: lease.remaining,
                reset: Duration::ZERO,
                never: false,
            });
        }
        None
    }

    /// Whether dropping the slot loses nothing: no live lease, no refill under way.
    fn is_stale(self: &Arc<Self>, now: Instant) -> bool {
        Arc::strong_count(self) == 1 && {
            let lease = self.lease();
            lease.remaining == 0 || lease.expires <= now
        }
    }
}

impl<S: Store> HybridStore<S> {
    /// Leases `lease` units at a time from `shared`, each lease usable for `lease_ttl`.
    pub fn new(shared: S, lease: u32, lease_ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared,
                lease: lease.max(1),
                lease_ttl,
                slots: RwLock::new(Vec::new()),
                max_keys: MAX_KEYS,
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Slots> {
        self.inner
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot of `key` in `policy`, added when missing. Past `max_keys` keys, slots with
    /// nothing to lose are dropped first (then, if still too many, idle ones: their unused
    /// units are lost, never given twice).
    fn slot(&self, policy: &str, key: &Key) -> Arc<Slot> {
        if let Some(slot) = keys_of(&self.read(), policy).and_then(|keys| keys.get(key)) {
            return Arc::clone(slot);
        }
        let mut slots = self
            .inner
            .slots
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = keys_of(&slots, policy).and_then(|keys| keys.get(key)) {
            return Arc::clone(slot);
        }
        let held = |slots: &Slots| slots.iter().map(|(_, keys)| keys.len()).sum::<usize>();
        if held(&slots) >= self.inner.max_keys {
            let now = Instant::now();
            for (_, keys) in slots.iter_mut() {
                keys.retain(|_, slot| !slot.is_stale(now));
            }
            if held(&slots) >= self.inner.max_keys {
                for (_, keys) in slots.iter_mut() {
                    keys.retain(|_, slot| Arc::strong_count(slot) > 1);
                }
            }
        }
        let slot = Arc::new(Slot::new());
        let keys = match slots.iter().position(|(name, _)| **name == *policy) {
            Some(i) => &mut slots[i].1,
            None => {
                slots.push((policy.into(), HashMap::new()));
                &mut slots.last_mut().expect("just pushed").1
            }
        };
        keys.insert(key.clone(), Arc::clone(&slot));
        slot
    }

    async fn decide(
        &self,
        policy: &str,
        key: &Key,
        shared_key: &str,
        quotas: &[Quota],
        cost: u32,
    ) -> Result<Decision, StoreError> {
        let slot = self.slot(policy, key);
        let _refill = slot.refill.lock().await;
        // Another request may have refilled the lease while this one waited.
        if let Some(d) = slot.spend(cost) {
            return Ok(d);
        }
        let shared = &self.inner.shared;
        let now = Instant::now();
        // A new lease, never larger than the smallest burst.
        let size = quotas
            .iter()
            .map(Quota::max_burst)
            .min()
            .unwrap_or(1)
            .min(self.inner.lease)
            .max(cost);
        if size > cost {
            let d = shared.check(shared_key, quotas, size).await?;
            if d.allowed {
                let mut lease = slot.lease();
                lease.remaining = size - cost;
                lease.expires = now + self.inner.lease_ttl;
                return Ok(d);
            }
            if d.remaining < cost {
                // Not even this request fits: answer without a second round trip. The wait
                // was computed for a whole lease; a single request fits sooner.
                slot.lease().remaining = 0;
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
        slot.lease().remaining = 0;
        shared.check(shared_key, quotas, cost).await
    }
}

/// Keys (leases) held at most, as the earlier bounded cache did.
const MAX_KEYS: usize = 100_000;

impl<S: Store> Store for HybridStore<S> {
    fn check<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(async move { self.decide("", &Key::from(key), key, quotas, cost).await })
    }

    /// Spends from a live lease of `key` without waiting; `None` when the lease is spent or
    /// expired (the layer then calls [`check_key`](Store::check_key), which takes a new one).
    fn check_local(
        &self,
        policy: &str,
        key: &Key,
        _quotas: &[Quota],
        cost: u32,
    ) -> Option<Decision> {
        keys_of(&self.read(), policy)?.get(key)?.spend(cost)
    }

    fn check_key<'a>(
        &'a self,
        policy: &'a str,
        key: &'a Key,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(async move {
            let shared_key = crate::store::policy_key(policy, key);
            self.decide(policy, key, &shared_key, quotas, cost).await
        })
    }

    /// Asks the shared store: leases serve `check` only.
    fn peek<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.inner.shared.peek(key, quotas, cost)
    }

    /// Counts in the shared store: leases serve `check` only.
    fn consume<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.inner.shared.consume(key, quotas, cost)
    }
}
