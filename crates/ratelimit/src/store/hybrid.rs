//! A store leasing small allowances from a shared one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Decision, Store, policy_key};
use crate::{BoxFuture, Key, Quota, StoreError};

/// A store in front of a shared one (Redis) that leases small allowances and decides locally
/// until they are spent, cutting round trips by about the lease size.
///
/// Each lease is taken from the shared store as one request costing `lease` units, so the
/// shared count never exceeds the quota: across `n` instances the admitted count stays within
/// **`quota - n × lease` and `quota`** (leased units an instance does not use before the lease
/// expires are lost, never given twice). When less than a lease is left, requests fall back to
/// one round trip each, so the last units of the quota are not stranded.
///
/// Requests the layer sends never wait for a lease while the quota has room: once a key's
/// lease falls below a low-water mark (a quarter of the lease by default,
/// [`prefetch_below`](Self::prefetch_below)), the next lease is taken in the background and
/// added to what is left. Without it, every request of a busy key that arrives while the lease
/// is being renewed waits for that round trip (all of them, when one client sends them: the
/// tail latency of a hot key). An instance then holds at most `lease + low-water` units, so
/// the lower bound above becomes `quota - n × (lease + low-water)`.
///
/// Nor does a request wait long for a lease when the quota's store is slow or hung: a
/// request that finds no live lease waits at most [`wait_at_most`](Self::wait_at_most)
/// (5 ms by default), then the layer decides it as if the store had failed (by default on this
/// instance's share of the quota), while the lease is still taken in the background. That
/// wait counts from when the lease being taken was asked for: behind a renewal stuck on a hung
/// store (it holds the key's refill until the command timeout), requests do not each wait
/// 5 ms, they decide at once. And once the shared store is known to be down (its last answer
/// to a lease request was [`StoreError::is_unavailable`]: a timeout, a refused connection,
/// Redis's breaker open), requests without a live lease do not wait at all: they decide at
/// once, while one lease request at a time (at most one per `wait_at_most`) is sent in the
/// background to find out when it is back; the first one granted ends the outage.
///
/// The `RateLimit` header field of a request decided from a lease reports the quota, as well
/// as this instance can know it: what the shared store said the quota had left when it
/// granted the last lease, plus the lease's units this instance has not spent yet; and the
/// time until the quota is full again by that answer, counting those units as not spent.
/// What other instances spent since, and what the quota regained since, show from the next
/// lease on.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_scale_ratelimit::{HybridStore, Quota, RateLimitLayer, RedisStore};
/// # fn build(backend: tower_scale_redis::RedisBackend) -> Result<(), Box<dyn std::error::Error>> {
/// let store = HybridStore::new(RedisStore::new(backend), 10, Duration::from_millis(500));
/// let layer = RateLimitLayer::new(store, [Quota::per_second(1000)])?;
/// # Ok(()) }
/// ```
pub struct HybridStore<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for HybridStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<S> {
    shared: S,
    lease: u32,
    lease_ttl: Duration,
    /// Below this many units left, the next lease is taken in the background (0: never).
    low_water: AtomicU32,
    /// Background lease renewals under way.
    prefetching: AtomicUsize,
    /// The longest a request that found no live lease waits for the shared store, in
    /// nanoseconds.
    wait_at_most: AtomicU64,
    /// Whether the shared store is known to be down, and when to ask it again.
    health: StdMutex<Health>,
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

/// The refill lock of a [`Slot`], held while a lease is taken; clears
/// [`Lease::refilling_since`] when dropped.
struct Refilling<'a> {
    slot: &'a Slot,
    _lock: tokio::sync::MutexGuard<'a, ()>,
}

impl Drop for Refilling<'_> {
    fn drop(&mut self) {
        self.slot.lease().refilling_since = None;
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
    /// A background renewal was started for this lease (reset when a lease is installed).
    renewing: bool,
    /// Since when a lease is being taken (the refill lock held), if one is.
    refilling_since: Option<Instant>,
    /// What the quota had left when the shared store last granted a lease, its units taken.
    quota_remaining: u32,
    /// When the quota was full again by that answer, its units counted as spent.
    quota_full_at: Instant,
    /// The smallest quota's emission interval: each unit not yet spent brings the quota's
    /// full time that much closer.
    unit: Duration,
}

impl Lease {
    /// An admitted request's decision: the quota's figures as of the last lease, with the
    /// units this instance still holds counted as not spent.
    fn decision(&self, now: Instant) -> Decision {
        Decision {
            allowed: true,
            retry_after: Duration::ZERO,
            remaining: self.quota_remaining.saturating_add(self.remaining),
            reset: self
                .quota_full_at
                .saturating_duration_since(now)
                .saturating_sub(self.unit.saturating_mul(self.remaining)),
            never: false,
        }
    }
}

/// What the lease requests found of the shared store: after an unavailable answer it is
/// down until a lease request succeeds; meanwhile requests decide without waiting, and one
/// lease request at a time, at most one per `wait_at_most`, asks it in the background.
#[derive(Debug)]
struct Health {
    down: bool,
    /// While down: no lease request to the shared store before this.
    retry_at: Instant,
    /// While down: a background lease request is under way.
    probing: bool,
}

/// The smallest emission interval of `quotas` (the one that refills fastest).
fn unit(quotas: &[Quota]) -> Duration {
    quotas
        .iter()
        .map(Quota::emission_interval)
        .min()
        .unwrap_or_default()
}

impl Slot {
    fn new() -> Self {
        Self {
            lease: StdMutex::new(Lease {
                remaining: 0,
                expires: Instant::now(),
                renewing: false,
                refilling_since: None,
                quota_remaining: 0,
                quota_full_at: Instant::now(),
                unit: Duration::ZERO,
            }),
            refill: Mutex::new(()),
        }
    }

    fn lease(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the refill lock, noting since when a lease is being taken.
    async fn refill(&self) -> Refilling<'_> {
        let lock = self.refill.lock().await;
        self.lease().refilling_since = Some(Instant::now());
        Refilling {
            slot: self,
            _lock: lock,
        }
    }

    /// Spends `cost` from a live lease, if it holds that much. The flag: whether this request
    /// left fewer than `low_water` units and no renewal was started yet (the caller starts
    /// one).
    fn spend(&self, cost: u32, low_water: u32) -> Option<(Decision, bool)> {
        let mut lease = self.lease();
        let now = Instant::now();
        if lease.remaining >= cost && lease.expires > now {
            lease.remaining -= cost;
            let renew = lease.remaining < low_water && !lease.renewing;
            lease.renewing |= renew;
            return Some((lease.decision(now), renew));
        }
        None
    }

    /// Spends `cost` from a live lease, if it holds that much and `claim` agrees (called
    /// with the lease locked, so that nothing is spent for a request that gave up).
    fn spend_if(&self, cost: u32, claim: impl FnOnce() -> bool) -> Option<Decision> {
        let mut lease = self.lease();
        let now = Instant::now();
        if lease.remaining >= cost && lease.expires > now && claim() {
            lease.remaining -= cost;
            return Some(lease.decision(now));
        }
        None
    }

    /// Whether a lease is live: units left, not expired.
    fn is_live(&self) -> bool {
        let lease = self.lease();
        lease.remaining > 0 && lease.expires > Instant::now()
    }

    /// Installs a new lease of `units`, granted by the shared store's decision `granted` on
    /// `quotas`, keeping what is left of the current one while it is live (units of an
    /// expired lease are lost, never revived). Returns the decision the lease's figures give.
    fn install(
        &self,
        units: u32,
        expires: Instant,
        granted: &Decision,
        quotas: &[Quota],
    ) -> Decision {
        let mut lease = self.lease();
        let now = Instant::now();
        if lease.expires <= now {
            lease.remaining = 0;
        }
        lease.remaining = lease.remaining.saturating_add(units);
        lease.expires = expires;
        lease.renewing = false;
        lease.quota_remaining = granted.remaining;
        lease.quota_full_at = now + granted.reset;
        lease.unit = unit(quotas);
        lease.decision(now)
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
                low_water: AtomicU32::new(lease.max(1) / 4),
                prefetching: AtomicUsize::new(0),
                wait_at_most: AtomicU64::new(nanos(DEFAULT_WAIT_AT_MOST)),
                health: StdMutex::new(Health {
                    down: false,
                    retry_at: Instant::now(),
                    probing: false,
                }),
                slots: RwLock::new(Vec::new()),
                max_keys: MAX_KEYS,
            }),
        }
    }

    /// Takes a key's next lease in the background once fewer than `units` are left of its
    /// current one (default: a quarter of the lease; 0 turns it off). Only requests decided
    /// through the layer ([`Store::check_local`]) start a renewal.
    #[must_use]
    pub fn prefetch_below(self, units: u32) -> Self {
        self.inner.low_water.store(units, Ordering::Relaxed);
        self
    }

    /// The longest a request that finds no live lease waits for the shared store (default
    /// 5 ms). If the lease (or, with less than a lease left in the quota, the shared store's
    /// answer for the request alone) does not come within it, the request is answered with
    /// [`StoreError::unavailable`], so that the layer decides it as its
    /// [`OnStoreError`](crate::OnStoreError) says (by default on this instance's share of
    /// the quota, without waiting), and the lease is still taken in the background for the
    /// requests after it. A hung or slow Redis then costs a request at most this wait instead
    /// of the backend's command timeout. A request answered so may also be counted in the
    /// shared store (when its own round trip, with less than a lease left, lands late).
    #[must_use]
    pub fn wait_at_most(self, wait: Duration) -> Self {
        self.inner
            .wait_at_most
            .store(nanos(wait), Ordering::Relaxed);
        self
    }

    /// Background lease renewals under way now (for monitoring and tests).
    pub fn prefetches_in_flight(&self) -> usize {
        self.inner.prefetching.load(Ordering::Relaxed)
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

    /// A decision for a request that found no live lease: one taken from the shared store
    /// (or the shared store's own answer), if it comes within [`wait_at_most`](
    /// Self::wait_at_most); else [`StoreError::unavailable`], and the layer decides on this
    /// instance's share ([`OnStoreError`](crate::OnStoreError)) while the lease is still
    /// taken in the background and serves the requests after it.
    async fn decide(
        &self,
        policy: &str,
        key: &Key,
        shared_key: &str,
        quotas: &[Quota],
        cost: u32,
    ) -> Result<Decision, StoreError> {
        let slot = self.slot(policy, key);
        if let Some(probe) = self.known_down() {
            if probe {
                self.probe(slot, shared_key, quotas);
            }
            return Err(StoreError::unavailable(
                "no rate-limit lease: the shared store is down",
                "its last answer to a lease request was an error",
            ));
        }
        let mut wait = self.wait_bound();
        // A lease already being taken (a renewal, or another request's) counts against the
        // wait: a request never waits past `wait_at_most` after that round trip began, and
        // once it has lasted that long (a hung store) requests decide at once.
        let since = slot.lease().refilling_since;
        if let Some(since) = since {
            wait = wait.saturating_sub(since.elapsed());
            if wait.is_zero() {
                return Err(StoreError::unavailable(
                    "no rate-limit lease: the one being taken is late",
                    "the shared store has not answered yet",
                ));
            }
        }
        let ask = Arc::new(AtomicU8::new(WAITING));
        let store = self.clone();
        let (shared_key, quotas) = (shared_key.to_owned(), quotas.to_vec());
        let task_ask = Arc::clone(&ask);
        let mut task = tokio::spawn(async move {
            store
                .take_lease(&slot, &shared_key, &quotas, cost, &task_ask)
                .await
        });
        let answered = match tokio::time::timeout(wait, &mut task).await {
            Ok(joined) => joined,
            // Gave up first: the request is decided without the shared store.
            Err(_) if claim(&ask, GAVE_UP) => {
                return Err(StoreError::unavailable(
                    format!("no rate-limit lease within {wait:?}"),
                    "the shared store has not answered yet",
                ));
            }
            // The answer was being given as the wait ended: it is there.
            Err(_) => task.await,
        };
        match answered {
            Ok(Some(result)) => result,
            Ok(None) => unreachable!("an answer is claimed before the requester gives up"),
            Err(e) => Err(StoreError::unavailable("rate-limit lease task failed", e)),
        }
    }

    /// The [`wait_at_most`](Self::wait_at_most) setting.
    fn wait_bound(&self) -> Duration {
        Duration::from_nanos(self.inner.wait_at_most.load(Ordering::Relaxed))
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.inner
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `None` while the shared store is not known to be down; else whether the caller is to
    /// send the background lease request that finds out whether it is back (one at a time, at
    /// most one per `wait_at_most`).
    fn known_down(&self) -> Option<bool> {
        let mut health = self.health();
        if !health.down {
            return None;
        }
        let probe = !health.probing && Instant::now() >= health.retry_at;
        health.probing |= probe;
        Some(probe)
    }

    /// Notes the shared store's answer to a lease request: an unavailable error marks it down
    /// (asked again no sooner than `wait_at_most` from now), any other answer up.
    fn note<T>(&self, answer: &Result<T, StoreError>) {
        let down = answer.as_ref().is_err_and(StoreError::is_unavailable);
        let mut health = self.health();
        if down && !health.down {
            tracing::debug!("rate-limit shared store down: deciding without waiting for it");
        }
        health.down = down;
        health.retry_at = Instant::now() + self.wait_bound();
    }

    /// While the shared store is down: takes `slot`'s lease in the background, nobody
    /// waiting for it, to learn whether the store is back.
    fn probe(&self, slot: Arc<Slot>, shared_key: &str, quotas: &[Quota]) {
        let store = self.clone();
        let (shared_key, quotas) = (shared_key.to_owned(), quotas.to_vec());
        tokio::spawn(async move {
            let _refill = slot.refill().await;
            if !slot.is_live() {
                let now = Instant::now();
                let size = store.lease_size(&quotas);
                let answer = store.inner.shared.check(&shared_key, &quotas, size).await;
                store.note(&answer);
                if let Ok(d) = answer
                    && d.allowed
                {
                    slot.install(size, now + store.inner.lease_ttl, &d, &quotas);
                }
            }
            store.health().probing = false;
        });
    }

    /// Takes a lease for `slot` (or asks the shared store for this request alone, when less
    /// than a lease is left), answering the request waiting in `ask` unless it gave up:
    /// `None` then, and a lease taken is kept whole for the requests after it.
    async fn take_lease(
        &self,
        slot: &Slot,
        shared_key: &str,
        quotas: &[Quota],
        cost: u32,
        ask: &AtomicU8,
    ) -> Option<Result<Decision, StoreError>> {
        let _refill = slot.refill().await;
        let answer = |result| claim(ask, ANSWERED).then_some(result);
        loop {
            if ask.load(Ordering::Acquire) == GAVE_UP {
                return None;
            }
            // Another request may have refilled the lease while this one waited.
            if let Some(d) = slot.spend_if(cost, || claim(ask, ANSWERED)) {
                return Some(Ok(d));
            }
            let shared = &self.inner.shared;
            let now = Instant::now();
            let size = self.lease_size(quotas).max(cost);
            if size > cost {
                let lease = shared.check(shared_key, quotas, size).await;
                self.note(&lease);
                let d = match lease {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::debug!(error = %e, "rate-limit lease not granted");
                        return answer(Err(e));
                    }
                };
                if d.allowed {
                    // The whole lease, then this request's cost from it (unless it gave up,
                    // or requests served from the lease meanwhile spent it: then again).
                    slot.lease().remaining = 0;
                    slot.install(size, now + self.inner.lease_ttl, &d, quotas);
                    continue;
                }
                if d.remaining < cost {
                    // Not even this request fits: answer without a second round trip. The
                    // wait was computed for a whole lease; a single request fits sooner.
                    slot.lease().remaining = 0;
                    let mut rejected = d;
                    rejected.retry_after =
                        d.retry_after.saturating_sub(unit(quotas) * (size - cost));
                    return answer(Ok(rejected));
                }
            }
            // Less than a lease left: this request alone.
            slot.lease().remaining = 0;
            let alone = shared.check(shared_key, quotas, cost).await;
            self.note(&alone);
            return answer(alone);
        }
    }

    /// A lease's size: never larger than the smallest burst.
    fn lease_size(&self, quotas: &[Quota]) -> u32 {
        quotas
            .iter()
            .map(Quota::max_burst)
            .min()
            .unwrap_or(1)
            .min(self.inner.lease)
    }

    /// Starts taking `slot`'s next lease in the background (outside a tokio runtime: not at
    /// all; the request that finds the lease spent takes it).
    fn renew(&self, policy: &str, key: &Key, quotas: &[Quota], slot: &Arc<Slot>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            slot.lease().renewing = false;
            return;
        };
        self.inner.prefetching.fetch_add(1, Ordering::Relaxed);
        let store = self.clone();
        let slot = Arc::clone(slot);
        let (policy, key, quotas) = (policy.to_owned(), key.clone(), quotas.to_vec());
        runtime.spawn(async move {
            store.renew_now(&policy, &key, &quotas, &slot).await;
            store.inner.prefetching.fetch_sub(1, Ordering::Relaxed);
        });
    }

    async fn renew_now(&self, policy: &str, key: &Key, quotas: &[Quota], slot: &Slot) {
        let _refill = slot.refill().await;
        let low_water = self.inner.low_water.load(Ordering::Relaxed);
        {
            let lease = slot.lease();
            // A request that found the lease spent renewed it meanwhile.
            if lease.remaining >= low_water || !lease.renewing {
                return;
            }
        }
        let now = Instant::now();
        let size = self.lease_size(quotas);
        let shared_key = policy_key(policy, key);
        let answer = self.inner.shared.check(&shared_key, quotas, size).await;
        self.note(&answer);
        match answer {
            Ok(d) if d.allowed => {
                slot.install(size, now + self.inner.lease_ttl, &d, quotas);
            }
            // Less than a lease left in the quota: the requests after this lease ask for
            // themselves (`renewing` stays set: no second attempt for this lease).
            Ok(_) => {}
            // The request that finds the lease spent meets the error and the layer's
            // `OnStoreError`.
            Err(e) => tracing::debug!(error = %e, "background lease renewal failed"),
        }
    }
}

/// The default of [`HybridStore::wait_at_most`]: well above a round trip to a healthy Redis
/// nearby, well below a command timeout.
const DEFAULT_WAIT_AT_MOST: Duration = Duration::from_millis(5);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The states of a request waiting for a lease ([`HybridStore::decide`]): waiting, answered
/// by the task taking the lease, or gone (decided without it). Whichever of the two moves it
/// from [`WAITING`] first wins.
const WAITING: u8 = 0;
const ANSWERED: u8 = 1;
const GAVE_UP: u8 = 2;

/// Moves `ask` from [`WAITING`] to `to`; `false` when the other side moved it first.
fn claim(ask: &AtomicU8, to: u8) -> bool {
    ask.compare_exchange(WAITING, to, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
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
        quotas: &[Quota],
        cost: u32,
    ) -> Option<Decision> {
        let low_water = self.inner.low_water.load(Ordering::Relaxed);
        let slots = self.read();
        let slot = keys_of(&slots, policy)?.get(key)?;
        let (decision, renew) = slot.spend(cost, low_water)?;
        if renew {
            let slot = Arc::clone(slot);
            drop(slots);
            self.renew(policy, key, quotas, &slot);
        }
        Some(decision)
    }

    fn check_key<'a>(
        &'a self,
        policy: &'a str,
        key: &'a Key,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(async move {
            let shared_key = policy_key(policy, key);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[tokio::test(start_paused = true)]
    async fn a_renewal_adds_to_a_live_lease_and_never_revives_an_expired_one() {
        let slot = Slot::new();
        let quotas = [Quota::per_hour(100)];
        let granted = Decision::rejected(Duration::ZERO);
        let install = |units| {
            slot.install(
                units,
                Instant::now() + Duration::from_secs(1),
                &granted,
                &quotas,
            );
        };
        install(10);
        let (_, renew) = slot.spend(6, 5).unwrap();
        assert!(renew, "4 left, below 5: renew");
        assert!(!slot.spend(1, 5).unwrap().1, "one renewal per lease");
        install(10);
        assert_eq!(slot.lease().remaining, 13, "3 left + 10");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(slot.spend(1, 5).is_none(), "expired");
        install(10);
        assert_eq!(slot.lease().remaining, 10, "the expired 13 are lost");
    }

    /// Asks for `key` until the answer is a lease (the 30 s only bound a hang).
    #[cfg(feature = "redis")]
    async fn until_leased<S: Store>(
        store: &HybridStore<S>,
        key: &Key,
        quotas: &[Quota],
        what: &str,
    ) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while store.check_key("p", key, quotas, 1).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Redis hung (SIGSTOP) and the lease spent: the first request waits at most
    /// `wait_at_most` (the store is not known to be down yet), and once the lease request
    /// behind it has failed (the command timeout), no request waits at all, although the
    /// lease requests sent in the background to learn whether Redis is back each hang again
    /// until the command timeout. On paused time, one request per millisecond for 3 s: a
    /// request that waited shows as time passed. Once Redis answers, a lease is taken again.
    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn once_the_shared_store_is_known_down_requests_never_wait_for_it() {
        use tower_scale_redis::{RedisBackend, RedisConfig};
        use tower_scale_testkit::RedisServer;

        let server = RedisServer::start();
        let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
        let store = HybridStore::new(crate::RedisStore::new(backend), 10, Duration::from_secs(60))
            .prefetch_below(0);
        let quotas = [Quota::per_hour(1_000_000)];
        let key = Key::from("k");
        // A lease (the first may take longer than the wait for it on a loaded machine),
        // then spent.
        until_leased(&store, &key, &quotas, "no lease from a healthy Redis").await;
        while store.check_local("p", &key, &quotas, 1).is_some() {}

        server.pause();
        tokio::time::pause();
        let start = Instant::now();
        let mut waited = Vec::new();
        while start.elapsed() < Duration::from_secs(3) {
            let sent = Instant::now();
            let err = store.check_key("p", &key, &quotas, 1).await.unwrap_err();
            assert!(err.is_unavailable(), "{err}");
            if sent.elapsed() > Duration::ZERO {
                waited.push((sent - start, sent.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::resume();
        server.resume();
        // (+ 1 ms: the timer's rounding)
        assert!(
            waited.len() == 1 && waited[0].1 <= DEFAULT_WAIT_AT_MOST + Duration::from_millis(1),
            "requests that waited (sent at, waited): {waited:?}"
        );

        until_leased(&store, &key, &quotas, "no lease once Redis is back").await;
        assert!(
            store.check_local("p", &key, &quotas, 1).is_some(),
            "a lease again"
        );
    }

    /// Over an in-memory shared store with paused time: the renewal runs on the runtime and
    /// lands before the lease is spent, so no request goes to the shared store itself.
    #[tokio::test(start_paused = true)]
    async fn the_layers_requests_renew_the_lease_in_the_background() {
        let store =
            HybridStore::new(MemoryStore::new(100), 10, Duration::from_secs(60)).prefetch_below(5);
        let quotas = [Quota::per_second(1_000).burst(40)];
        let key = Key::from("k");
        assert!(
            store.check_local("p", &key, &quotas, 1).is_none(),
            "no lease yet"
        );
        assert!(
            store
                .check_key("p", &key, &quotas, 1)
                .await
                .unwrap()
                .allowed
        );
        // Leases at requests 0 (taken by the request), 5, 15 and 25 (renewals): 40 units.
        for i in 1..40 {
            let d = store.check_local("p", &key, &quotas, 1);
            assert!(d.is_some_and(|d| d.allowed), "request {i} decided locally");
            tokio::task::yield_now().await; // lets a renewal started by it run
        }
        assert_eq!(store.prefetches_in_flight(), 0);
        // The whole burst leased: the renewal started at request 35 is refused, the lease runs
        // out, and request 40 goes to the shared store.
        assert!(store.check_local("p", &key, &quotas, 1).is_none());
    }
}
