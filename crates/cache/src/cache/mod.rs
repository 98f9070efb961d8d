//! The cache handle: store, local tier, single-flight, the cross-instance lock and purges.
//! Its builder and settings are in `builder.rs`, the typed cache-aside API in `typed.rs`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
#[cfg(feature = "redis")]
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderName;

use crate::entry::Entry;
use crate::flight::{Flights, Join};
use crate::l1::L1;
use crate::names;
use crate::{Clock, Error, MemoryStore, Store, StoreError};

mod builder;
mod typed;

pub use self::builder::{CacheBuilder, CacheConfig, LockConfig};
pub use self::typed::FetchOptions;

/// A cache handle: a store (memory or Redis), an optional local tier, single-flight and the
/// cross-instance lock. Cheap to clone; clones share everything.
///
/// Used directly as a typed cache-aside API ([`get_or_fetch`](Cache::get_or_fetch)), and by
/// [`ResponseCacheLayer`](crate::ResponseCacheLayer) for HTTP responses.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use tower_scale_cache::{Cache, MemoryStore};
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct User { id: u64, name: String }
///
/// let cache = Cache::new(MemoryStore::default());
/// let load = || async { Ok::<_, std::io::Error>(User { id: 1, name: "ada".into() }) };
/// let user = cache.get_or_fetch("user:1", Duration::from_secs(60), load).await.unwrap();
/// // The second call is answered by the cache: this fetch never runs.
/// let again: User = cache
///     .get_or_fetch("user:1", Duration::from_secs(60), || async {
///         Err::<User, _>(std::io::Error::other("not called"))
///     })
///     .await
///     .unwrap();
/// assert_eq!(user, again);
/// # }
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    l1: Option<Arc<L1>>,
    flights: Arc<Flights>,
    /// The `Vary` header names last seen per URI group, to read a variant in one round trip.
    vary: moka::sync::Cache<String, Arc<[HeaderName]>>,
    /// Whether `vary` ever held names: until then a lookup skips it (most caches never see a
    /// `Vary` response, and a skipped lookup is only one more read if one arrives meanwhile).
    any_vary: AtomicBool,
    lock: Option<LockConfig>,
    /// How long a purge waits for the other instances' acknowledgements (the Redis bus).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    purge_timeout: Duration,
    #[cfg(feature = "redis")]
    bus: OnceLock<Option<crate::bus::BusHandle>>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.inner.store)
            .field("l1", &self.inner.l1.is_some())
            .field("lock", &self.inner.lock)
            .finish_non_exhaustive()
    }
}

/// What the cross-instance lock decided.
pub(crate) enum Coordinated {
    /// Go to the origin; release the lock (if any) afterwards.
    Fetch(Option<u64>),
    /// Another instance stored it meanwhile.
    Filled(Arc<Entry>),
    /// Another instance is recomputing; serve the stale entry.
    ServeStale,
}

/// The single-flight key of entry `field` of `group`.
fn flight_key(group: &str, field: &str) -> String {
    let mut k = String::with_capacity(group.len() + field.len() + 1);
    k.push_str(group);
    k.push('\0');
    k.push_str(field);
    k
}

impl Cache {
    /// A cache on `store` with default settings: no local tier, no cross-instance lock.
    pub fn new(store: impl Store) -> Self {
        match Self::builder(store).build() {
            Ok(cache) => cache,
            // The defaults are valid.
            Err(e) => unreachable!("default cache settings are valid: {e}"),
        }
    }

    /// A cache on an in-memory store of 64 MiB.
    pub fn memory() -> Self {
        Self::new(MemoryStore::default())
    }

    /// A builder for a cache on `store`.
    pub fn builder(store: impl Store) -> CacheBuilder {
        CacheBuilder::new(Arc::new(store))
    }

    /// A cache of built parts (see [`CacheBuilder::build`]).
    fn assemble(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        l1: Option<Arc<L1>>,
        lock: Option<LockConfig>,
        purge_timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                l1,
                flights: Arc::default(),
                vary: moka::sync::Cache::new(10_000),
                any_vary: AtomicBool::new(false),
                lock,
                purge_timeout,
                #[cfg(feature = "redis")]
                bus: OnceLock::new(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// Whether the local tier is in use right now (it is off while the invalidation bus is
    /// not subscribed, e.g. before the first use or after losing the Redis connection).
    pub fn l1_active(&self) -> bool {
        self.inner.l1.as_ref().is_some_and(|l| l.is_healthy())
    }

    /// Starts the invalidation bus (idempotent) and waits at most `timeout` for it to be
    /// subscribed; returns whether it is. Caches start it on first use by themselves; this is
    /// for readiness checks and tests.
    pub async fn ready(&self, timeout: Duration) -> bool {
        #[cfg(feature = "redis")]
        if let Some(handle) = self.bus() {
            let mut sub = handle.bus.subscribed_watch();
            return tokio::time::timeout(timeout, sub.wait_for(|s| *s))
                .await
                .is_ok();
        }
        let _ = timeout;
        true
    }

    #[cfg(feature = "redis")]
    fn bus(&self) -> Option<&crate::bus::BusHandle> {
        self.inner
            .bus
            .get_or_init(|| {
                let backend = self.inner.store.redis_backend()?;
                Some(crate::bus::Bus::start(
                    backend.clone(),
                    self.inner.l1.clone(),
                ))
            })
            .as_ref()
    }

    /// Wall-clock milliseconds, on the cache's clock.
    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Joins the in-process flight of entry `field` of `group`: leads it, or follows its
    /// leader.
    pub(crate) fn join_flight(&self, group: &str, field: &str) -> Join {
        self.inner.flights.join(flight_key(group, field))
    }

    /// A mark of this instance's ended flights, to take before a read (see [`Flights::mark`]).
    pub(crate) fn flight_mark(&self) -> u64 {
        self.inner.flights.mark()
    }

    /// Whether the cross-instance lock is on (its holder reads the store again itself).
    pub(crate) fn has_lock(&self) -> bool {
        self.inner.lock.is_some()
    }

    /// The `Vary` names last seen for `group`.
    pub(crate) fn vary_names(&self, group: &str) -> Option<Arc<[HeaderName]>> {
        if !self.inner.any_vary.load(Ordering::Acquire) {
            return None;
        }
        self.inner.vary.get(group)
    }

    /// Remembers the `Vary` names of `group`.
    pub(crate) fn remember_vary(&self, group: &str, names: Arc<[HeaderName]>) {
        self.inner.any_vary.store(true, Ordering::Release);
        self.inner.vary.insert(group.to_owned(), names);
    }

    /// Reads an entry: local tier, then the store (filling the local tier). A stale local copy
    /// is read again from the store (another instance may have refreshed it). A corrupt entry
    /// reads as absent.
    pub(crate) async fn lookup(
        &self,
        group: &str,
        field: &str,
    ) -> Result<Option<Arc<Entry>>, StoreError> {
        let epoch = match &self.inner.l1 {
            Some(l1) => {
                #[cfg(feature = "redis")]
                self.bus();
                if let Some(e) = l1.get(group, field)
                    && e.is_fresh(self.now_ms())
                {
                    names::l1_hit();
                    return Ok(Some(e));
                }
                Some(l1.epoch())
            }
            None => None,
        };
        let Some(bytes) = self.inner.store.get(group, field).await? else {
            return Ok(None);
        };
        let entry = match Entry::decode(bytes) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                tracing::warn!(error = %e, group, field, "dropping a corrupt cache entry");
                return Ok(None);
            }
        };
        if let (Some(l1), Some(epoch)) = (&self.inner.l1, epoch)
            && entry.is_usable(self.now_ms())
        {
            l1.fill(group, field, &entry, epoch);
        }
        Ok(Some(entry))
    }

    /// Writes entries of one group; failures are logged (the cache fails open).
    /// Whether `group` may take one more field when it may hold `max` (always with a store
    /// that does not count; never when the store fails to count: not stored).
    pub(crate) async fn has_room(&self, group: &str, max: usize) -> bool {
        match self.inner.store.field_count(group).await {
            Ok(count) => count.is_none_or(|n| n < max),
            Err(e) => {
                tracing::warn!(error = %e, group, "cache store failed; entry not stored");
                false
            }
        }
    }

    /// `keep_ms` keeps the entries that long past their windows (for revalidation). Returns
    /// whether the store answered: `false` when it was unavailable (a timeout, Redis away),
    /// so that the caller sends it nothing more for this request (it would wait again).
    pub(crate) async fn save(
        &self,
        group: &str,
        fields: &[(&str, Arc<Entry>)],
        tags: &[String],
        keep_ms: u64,
    ) -> bool {
        let ttl = fields
            .iter()
            .map(|(_, e)| e.store_ttl_ms().saturating_add(keep_ms))
            .max()
            .unwrap_or(1);
        let epoch = self.inner.l1.as_ref().map(|l| l.epoch());
        let encoded: Vec<(&str, Bytes)> = fields.iter().map(|(f, e)| (*f, e.encode())).collect();
        match self
            .inner
            .store
            .put(group, &encoded, Duration::from_millis(ttl), tags)
            .await
        {
            Ok(()) => {
                names::stored(encoded.iter().map(|(_, b)| b.len()).sum());
                if let (Some(l1), Some(epoch)) = (&self.inner.l1, epoch) {
                    for (field, entry) in fields {
                        l1.fill(group, field, entry, epoch);
                    }
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, group, "cache store failed; entry not stored");
                !e.is_unavailable()
            }
        }
    }

    /// The cross-instance lock step of a miss. `poll` reads the entry the lock holder stores.
    pub(crate) async fn coordinate<P, PF>(
        &self,
        group: &str,
        field: &str,
        have_stale: bool,
        poll: P,
    ) -> Coordinated
    where
        P: Fn() -> PF,
        PF: Future<Output = Option<Arc<Entry>>>,
    {
        let Some(lock) = self.inner.lock else {
            return Coordinated::Fetch(None);
        };
        let deadline = tokio::time::Instant::now() + lock.wait;
        loop {
            match self.inner.store.try_lock(group, field, lock.ttl).await {
                Ok(Some(token)) => {
                    // The holder before us may have stored the entry and released the lock
                    // between our read and our lock: read once more before fetching.
                    if let Some(e) = poll().await
                        && e.is_fresh(self.now_ms())
                    {
                        self.unlock(group, field, Some(token)).await;
                        return Coordinated::Filled(e);
                    }
                    return Coordinated::Fetch(Some(token));
                }
                Ok(None) if have_stale => return Coordinated::ServeStale,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "cache lock unavailable; fetching");
                    return Coordinated::Fetch(None);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Coordinated::Fetch(None);
            }
            tokio::time::sleep(lock.poll).await;
            if let Some(e) = poll().await
                && e.is_fresh(self.now_ms())
            {
                return Coordinated::Filled(e);
            }
        }
    }

    pub(crate) async fn unlock(&self, group: &str, field: &str, token: Option<u64>) {
        if let Some(token) = token
            && let Err(e) = self.inner.store.unlock(group, field, token).await
        {
            tracing::debug!(error = %e, "cache lock not released; it expires by itself");
        }
    }

    /// Deletes `key` (a typed key, or the key of an HTTP resource: all its variants) from the
    /// store and from every instance's local tier.
    ///
    /// # Guarantee
    ///
    /// When it returns `Ok`, the entry is gone from Redis and every instance that was
    /// subscribed to the invalidation bus has dropped it from its local tier: no instance
    /// serves it afterwards (fetches already in flight may store a new value). An instance
    /// that is not subscribed does not use its local tier at all.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store failed (nothing is guaranteed), or
    /// [`Error::PurgeUnconfirmed`] when the entry is gone from the store but some instance did
    /// not confirm within the purge timeout (it drops the entry at the latest after `l1_ttl`).
    pub async fn invalidate(&self, key: &str) -> Result<(), Error> {
        let groups = [key.to_owned()];
        self.inner.store.purge(&groups).await?;
        self.purge_local_and_remote(Some(&groups)).await
    }

    /// Deletes every entry tagged `tag`, with the guarantee of
    /// [`invalidate`](Cache::invalidate).
    ///
    /// # Errors
    ///
    /// As [`invalidate`](Cache::invalidate).
    pub async fn invalidate_tag(&self, tag: &str) -> Result<(), Error> {
        let groups = self.inner.store.purge_tag(tag).await?;
        if groups.is_empty() {
            return Ok(());
        }
        self.purge_local_and_remote(Some(&groups)).await
    }

    async fn purge_local_and_remote(&self, groups: Option<&[String]>) -> Result<(), Error> {
        if let Some(l1) = &self.inner.l1 {
            l1.invalidate(groups);
        }
        #[cfg(feature = "redis")]
        if let Some(handle) = self.bus() {
            return handle.bus.purge(groups, self.inner.purge_timeout).await;
        }
        Ok(())
    }
}
