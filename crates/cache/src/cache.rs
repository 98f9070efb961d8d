use std::fmt;
use std::future::Future;
use std::sync::Arc;
#[cfg(feature = "redis")]
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderName;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::entry::{Entry, EntryBody};
use crate::flight::{Flights, Join, Outcome};
use crate::l1::L1;
use crate::{Clock, Error, MemoryStore, Store, StoreError, SystemClock};

/// The field of a typed value in its group.
const VALUE_FIELD: &str = "v";

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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) l1: Option<Arc<L1>>,
    pub(crate) flights: Arc<Flights>,
    /// The `Vary` header names last seen per URI group, to read a variant in one round trip.
    vary: moka::sync::Cache<String, Arc<[HeaderName]>>,
    /// Whether `vary` ever held names: until then a lookup skips it (most caches never see a
    /// `Vary` response, and a skipped lookup is only one more read if one arrives meanwhile).
    any_vary: AtomicBool,
    pub(crate) lock: Option<LockConfig>,
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

/// The cross-instance lock: on a miss, one instance recomputes while the others wait for its
/// entry (polling the store) or serve a stale one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockConfig {
    /// How long the lock lives at most (covers a crashed holder). Default 5 s.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long another instance waits for the holder's entry before fetching itself.
    /// Default 2 s.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
    /// How often a waiting instance looks for the entry. Default 10 ms.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
}

impl Default for LockConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(5),
            wait: Duration::from_secs(2),
            poll: Duration::from_millis(10),
        }
    }
}

/// The serde form of a [`Cache`]'s settings (the store is given separately).
///
/// ```
/// use tower_scale_cache::CacheConfig;
///
/// let config: CacheConfig = serde_json::from_str(r#"{
///     "l1_max_bytes": 33554432, "l1_ttl": "5s", "lock": { "wait": "1s" }
/// }"#).unwrap();
/// assert_eq!(config.lock.unwrap().wait.as_secs(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Size of the local tier in bytes; `None` (the default) for no local tier.
    pub l1_max_bytes: Option<u64>,
    /// Longest time an entry stays in the local tier. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub l1_ttl: Duration,
    /// The cross-instance lock; `None` (the default) for none.
    pub lock: Option<LockConfig>,
    /// How long a purge waits for every instance to confirm. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub purge_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            l1_max_bytes: None,
            l1_ttl: Duration::from_secs(10),
            lock: None,
            purge_timeout: Duration::from_secs(1),
        }
    }
}

/// Builds a [`Cache`]; see [`Cache::builder`].
#[must_use]
#[derive(Debug)]
pub struct CacheBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: CacheConfig,
}

impl CacheBuilder {
    /// A local tier of at most `max_bytes`, in front of the store.
    ///
    /// Needs a store with a Redis backend: invalidations reach every instance's local tier
    /// over Redis pub/sub.
    pub fn l1(mut self, max_bytes: u64) -> Self {
        self.config.l1_max_bytes = Some(max_bytes);
        self
    }

    /// Longest time an entry stays in the local tier (default 10 s): the bound on staleness
    /// when a purge could not be confirmed by every instance.
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.config.l1_ttl = ttl;
        self
    }

    /// Turns on the cross-instance lock.
    pub fn lock(mut self, lock: LockConfig) -> Self {
        self.config.lock = Some(lock);
        self
    }

    /// How long a purge waits for every instance to confirm (default 1 s).
    pub fn purge_timeout(mut self, timeout: Duration) -> Self {
        self.config.purge_timeout = timeout;
        self
    }

    /// All settings at once, from a [`CacheConfig`].
    pub fn config(mut self, config: CacheConfig) -> Self {
        self.config = config;
        self
    }

    /// The clock that dates entries (default the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the cache. No I/O happens here: the invalidation bus starts on first use.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a local tier is asked for without a Redis store, or a duration
    /// is zero.
    pub fn build(self) -> Result<Cache, Error> {
        let c = &self.config;
        if let Some(lock) = &c.lock
            && (lock.ttl.is_zero() || lock.poll.is_zero())
        {
            return Err(Error::Config(
                "lock: ttl and poll must be above zero".into(),
            ));
        }
        if c.purge_timeout.is_zero() {
            return Err(Error::Config("purge_timeout must be above zero".into()));
        }
        let l1 = match c.l1_max_bytes {
            None => None,
            Some(max) => {
                #[cfg(feature = "redis")]
                let has_bus = self.store.redis_backend().is_some();
                #[cfg(not(feature = "redis"))]
                let has_bus = false;
                if !has_bus {
                    return Err(Error::Config(
                        "l1: the local tier needs a Redis store (its invalidations travel over Redis pub/sub)".into(),
                    ));
                }
                if c.l1_ttl.is_zero() || max == 0 {
                    return Err(Error::Config(
                        "l1: size and l1_ttl must be above zero".into(),
                    ));
                }
                Some(Arc::new(L1::new(max, c.l1_ttl, false)))
            }
        };
        Ok(Cache {
            inner: Arc::new(Inner {
                store: self.store,
                clock: self.clock,
                l1,
                flights: Arc::default(),
                vary: moka::sync::Cache::new(10_000),
                any_vary: AtomicBool::new(false),
                lock: c.lock,
                purge_timeout: c.purge_timeout,
                #[cfg(feature = "redis")]
                bus: OnceLock::new(),
            }),
        })
    }
}

/// How a typed value is cached: lifetime, stale window, tags.
///
/// ```
/// use std::time::Duration;
/// use tower_scale_cache::FetchOptions;
///
/// let options = FetchOptions::new(Duration::from_secs(60))
///     .stale(Duration::from_secs(30))
///     .tag("users");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchOptions {
    /// How long the value is fresh.
    pub ttl: Duration,
    /// How long after that it may still be served: while another instance holds the
    /// cross-instance lock, or when the fetch fails.
    pub stale: Duration,
    /// Tags, purged together with [`Cache::invalidate_tag`].
    pub tags: Vec<String>,
}

impl FetchOptions {
    /// Fresh for `ttl`, no stale window, no tags.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            ..Self::default()
        }
    }

    /// The stale window.
    #[must_use]
    pub fn stale(mut self, stale: Duration) -> Self {
        self.stale = stale;
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// What a typed leader hands its followers.
type TypedOutcome<E> = Result<Arc<Entry>, Arc<E>>;

/// What the cross-instance lock decided.
pub(crate) enum Coordinated {
    /// Go to the origin; release the lock (if any) afterwards.
    Fetch(Option<u64>),
    /// Another instance stored it meanwhile.
    Filled(Arc<Entry>),
    /// Another instance is recomputing; serve the stale entry.
    ServeStale,
}

impl Inner {
    /// The `Vary` names last seen for `group`.
    pub(crate) fn vary_names(&self, group: &str) -> Option<Arc<[HeaderName]>> {
        if !self.any_vary.load(Ordering::Acquire) {
            return None;
        }
        self.vary.get(group)
    }

    /// Remembers the `Vary` names of `group`.
    pub(crate) fn remember_vary(&self, group: &str, names: Arc<[HeaderName]>) {
        self.any_vary.store(true, Ordering::Release);
        self.vary.insert(group.to_owned(), names);
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn flight_key(group: &str, field: &str) -> String {
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
        CacheBuilder {
            store: Arc::new(store),
            clock: Arc::new(SystemClock),
            config: CacheConfig::default(),
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

    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Reads an entry: local tier, then the store (filling the local tier). A corrupt entry
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
                if let Some(e) = l1.get(group, field) {
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

    pub(crate) async fn save(&self, group: &str, fields: &[(&str, Arc<Entry>)], tags: &[String]) {
        let ttl = fields
            .iter()
            .map(|(_, e)| e.store_ttl_ms())
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
                if let (Some(l1), Some(epoch)) = (&self.inner.l1, epoch) {
                    for (field, entry) in fields {
                        l1.fill(group, field, entry, epoch);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, group, "cache store failed; entry not stored"),
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

    /// Returns the cached value of `key`, or runs `fetch` once (for all concurrent callers of
    /// this instance; for all instances with the cross-instance lock) and caches its value for
    /// `ttl`.
    ///
    /// The store failing never fails the call: `fetch` runs and its value is returned.
    ///
    /// # Errors
    ///
    /// The error of `fetch`, shared (`Arc`) with the callers that waited for it, as moka's
    /// `try_get_with` does.
    pub async fn get_or_fetch<T, F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        fetch: F,
    ) -> Result<T, Arc<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Send + Sync + 'static,
    {
        self.get_or_fetch_with(key, &FetchOptions::new(ttl), fetch)
            .await
    }

    /// [`get_or_fetch`](Cache::get_or_fetch) with a stale window and tags.
    ///
    /// # Errors
    ///
    /// As [`get_or_fetch`](Cache::get_or_fetch); with a stale window, a failing `fetch`
    /// returns the stale value instead.
    pub async fn get_or_fetch_with<T, F, Fut, E>(
        &self,
        key: &str,
        options: &FetchOptions,
        fetch: F,
    ) -> Result<T, Arc<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Send + Sync + 'static,
    {
        self.fetch_coded::<Json<T>, F, Fut, E>(key, options, fetch)
            .await
    }

    /// [`get_or_fetch`](Cache::get_or_fetch) for bytes stored as they are, without serde: an
    /// already serialized document, a rendered page, an image. A hit is the stored bytes
    /// (shared, not copied); nothing is parsed.
    ///
    /// A key holds either kind: bytes stored by this method are not a valid JSON value for
    /// [`get_or_fetch`](Cache::get_or_fetch) in general (and the other way round they are
    /// JSON text), so read a key with the method that wrote it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use tower_scale_cache::{Cache, MemoryStore};
    ///
    /// let cache = Cache::new(MemoryStore::default());
    /// let page = cache
    ///     .get_or_fetch_bytes("page:home", Duration::from_secs(60), || async {
    ///         Ok::<_, std::io::Error>(Bytes::from_static(b"<h1>home</h1>"))
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(page, "<h1>home</h1>");
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get_or_fetch`](Cache::get_or_fetch).
    pub async fn get_or_fetch_bytes<F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        fetch: F,
    ) -> Result<Bytes, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Send + Sync + 'static,
    {
        self.get_or_fetch_bytes_with(key, &FetchOptions::new(ttl), fetch)
            .await
    }

    /// [`get_or_fetch_bytes`](Cache::get_or_fetch_bytes) with a stale window and tags.
    ///
    /// # Errors
    ///
    /// As [`get_or_fetch_with`](Cache::get_or_fetch_with).
    pub async fn get_or_fetch_bytes_with<F, Fut, E>(
        &self,
        key: &str,
        options: &FetchOptions,
        fetch: F,
    ) -> Result<Bytes, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Send + Sync + 'static,
    {
        self.fetch_coded::<Raw, F, Fut, E>(key, options, fetch)
            .await
    }

    /// The body of the `get_or_fetch` methods, for values stored with the codec `C`.
    async fn fetch_coded<C, F, Fut, E>(
        &self,
        key: &str,
        options: &FetchOptions,
        fetch: F,
    ) -> Result<C::Value, Arc<E>>
    where
        C: Codec,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C::Value, E>>,
        E: Send + Sync + 'static,
    {
        let stale = match self.lookup(key, VALUE_FIELD).await {
            Ok(Some(entry)) => {
                let now = self.now_ms();
                if entry.is_fresh(now)
                    && let Some(v) = decode_value::<C>(&entry)
                {
                    return Ok(v);
                }
                (entry.is_usable(now) && decode_value::<C>(&entry).is_some()).then_some(entry)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, key, "cache store unavailable; fetching");
                None
            }
        };
        let mut fetch = Some(fetch);
        loop {
            match self.inner.flights.join(flight_key(key, VALUE_FIELD)) {
                Join::Follower(f) => match f.wait().await {
                    None => continue,
                    Some(outcome) => match outcome.downcast_ref::<TypedOutcome<E>>() {
                        Some(Ok(entry)) => {
                            if let Some(v) = decode_value::<C>(entry) {
                                return Ok(v);
                            }
                        }
                        Some(Err(e)) => return Err(Arc::clone(e)),
                        None => {}
                    },
                },
                Join::Leader(leader) => {
                    return self
                        .lead_typed::<C, F, Fut, E>(key, options, stale, leader, fetch.take())
                        .await;
                }
            }
            // A follower that could not use the leader's outcome fetches by itself.
            let fetch = fetch.take().map(|f| f());
            return match fetch {
                Some(fut) => fut.await.map_err(Arc::new),
                None => unreachable!("fetch is taken once"),
            };
        }
    }

    async fn lead_typed<C, F, Fut, E>(
        &self,
        key: &str,
        options: &FetchOptions,
        stale: Option<Arc<Entry>>,
        leader: crate::flight::Leader,
        fetch: Option<F>,
    ) -> Result<C::Value, Arc<E>>
    where
        C: Codec,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C::Value, E>>,
        E: Send + Sync + 'static,
    {
        let finish = |leader: crate::flight::Leader, o: TypedOutcome<E>| {
            leader.finish(Arc::new(o) as Outcome);
        };
        let coordinated = self
            .coordinate(key, VALUE_FIELD, stale.is_some(), || async {
                self.lookup(key, VALUE_FIELD).await.ok().flatten()
            })
            .await;
        let token = match coordinated {
            Coordinated::Filled(entry) => {
                if let Some(v) = decode_value::<C>(&entry) {
                    finish(leader, Ok(entry));
                    return Ok(v);
                }
                None
            }
            Coordinated::ServeStale => {
                if let Some(entry) = &stale
                    && let Some(v) = decode_value::<C>(entry)
                {
                    finish(leader, Ok(Arc::clone(entry)));
                    return Ok(v);
                }
                None
            }
            Coordinated::Fetch(token) => token,
        };
        let Some(fetch) = fetch else {
            unreachable!("the leader holds the fetch")
        };
        let result = fetch().await;
        let outcome = match result {
            Ok(value) => match C::encode(&value) {
                Ok(bytes) => {
                    let entry = Arc::new(Entry {
                        stored_at: self.now_ms(),
                        ttl_ms: millis(options.ttl),
                        swr_ms: millis(options.stale),
                        sie_ms: millis(options.stale),
                        body: EntryBody::Value(bytes),
                    });
                    self.save(key, &[(VALUE_FIELD, Arc::clone(&entry))], &options.tags)
                        .await;
                    self.unlock(key, VALUE_FIELD, token).await;
                    finish(leader, Ok(entry));
                    return Ok(value);
                }
                Err(e) => {
                    tracing::warn!(error = %e, key, "value not cacheable: serialization failed");
                    self.unlock(key, VALUE_FIELD, token).await;
                    drop(leader);
                    return Ok(value);
                }
            },
            Err(e) => e,
        };
        self.unlock(key, VALUE_FIELD, token).await;
        if let Some(entry) = stale
            && entry.can_serve_on_error(self.now_ms())
            && let Some(v) = decode_value::<C>(&entry)
        {
            finish(leader, Ok(entry));
            return Ok(v);
        }
        let e = Arc::new(outcome);
        finish(leader, Err(Arc::clone(&e)));
        Err(e)
    }

    /// The fresh cached value of `key`, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails, [`Error::Codec`] when the stored value is not a
    /// `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.lookup(key, VALUE_FIELD).await? {
            Some(entry) if entry.is_fresh(self.now_ms()) => match &entry.body {
                EntryBody::Value(bytes) => serde_json::from_slice(bytes)
                    .map(Some)
                    .map_err(|e| Error::Codec(e.to_string())),
                _ => Err(Error::Codec("not a typed value".into())),
            },
            _ => Ok(None),
        }
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] when `value` cannot be serialized, [`Error::Store`] when the store
    /// fails.
    pub async fn set<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        options: &FetchOptions,
    ) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Codec(e.to_string()))?;
        let entry = Entry {
            stored_at: self.now_ms(),
            ttl_ms: millis(options.ttl),
            swr_ms: millis(options.stale),
            sie_ms: millis(options.stale),
            body: EntryBody::Value(Bytes::from(bytes)),
        };
        let ttl = Duration::from_millis(entry.store_ttl_ms());
        self.inner
            .store
            .put(key, &[(VALUE_FIELD, entry.encode())], ttl, &options.tags)
            .await?;
        self.purge_local_and_remote(Some(&[key.to_owned()])).await
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

fn decode_value<C: Codec>(entry: &Entry) -> Option<C::Value> {
    match &entry.body {
        EntryBody::Value(bytes) => C::decode(bytes),
        _ => None,
    }
}

/// How the `get_or_fetch` methods turn a value into stored bytes and back.
trait Codec {
    type Value;
    /// The bytes to store, or why `value` cannot be stored.
    fn encode(value: &Self::Value) -> Result<Bytes, String>;
    /// The value of stored bytes; `None` (logged) when they do not decode, a miss.
    fn decode(bytes: &Bytes) -> Option<Self::Value>;
}

/// serde values as JSON ([`Cache::get_or_fetch`]).
struct Json<T>(std::marker::PhantomData<fn() -> T>);

impl<T: Serialize + DeserializeOwned> Codec for Json<T> {
    type Value = T;

    fn encode(value: &T) -> Result<Bytes, String> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    fn decode(bytes: &Bytes) -> Option<T> {
        match serde_json::from_slice(bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::debug!(error = %e, "cached value does not decode; refetching");
                None
            }
        }
    }
}

/// Bytes as they are ([`Cache::get_or_fetch_bytes`]).
struct Raw;

impl Codec for Raw {
    type Value = Bytes;

    fn encode(value: &Bytes) -> Result<Bytes, String> {
        Ok(value.clone())
    }

    fn decode(bytes: &Bytes) -> Option<Bytes> {
        Some(bytes.clone())
    }
}
