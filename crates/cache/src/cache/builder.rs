//! The settings of a [`Cache`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Cache;
use crate::l1::L1;
use crate::{Clock, ConfigError, Store, SystemClock};

/// The cross-instance lock: on a miss, one instance recomputes while the others wait for its
/// entry (polling the store) or serve a stale one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
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
pub struct CacheBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: CacheConfig,
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CacheBuilder {
    /// A builder for a cache on `store`, with the system clock and default settings.
    pub(super) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            config: CacheConfig::default(),
        }
    }

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

    /// The clock that dates entries (default the system clock): any [`Clock`], such as a
    /// [`ManualClock`](crate::ManualClock) in tests.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_scale_cache::{Cache, Clock, ManualClock, MemoryStore};
    ///
    /// let clock = ManualClock::new(1_000);
    /// let cache = Cache::builder(MemoryStore::default()).clock(clock.clone()).build().unwrap();
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(clock.now_ms(), 3_000);
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the cache. No I/O happens here: the invalidation bus starts on first use.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when a local tier is asked for without a Redis store, or a duration
    /// is zero.
    pub fn build(self) -> Result<Cache, ConfigError> {
        let c = &self.config;
        if let Some(lock) = &c.lock
            && (lock.ttl.is_zero() || lock.poll.is_zero())
        {
            return Err(ConfigError::new("lock", "ttl and poll must be above zero"));
        }
        if c.purge_timeout.is_zero() {
            return Err(ConfigError::new("purge_timeout", "must be above zero"));
        }
        let l1 = match c.l1_max_bytes {
            None => None,
            Some(max) => {
                #[cfg(feature = "redis")]
                let has_bus = self.store.redis_backend().is_some();
                #[cfg(not(feature = "redis"))]
                let has_bus = false;
                if !has_bus {
                    return Err(ConfigError::new(
                        "l1",
                        "the local tier needs a Redis store (its invalidations travel over Redis pub/sub)",
                    ));
                }
                if c.l1_ttl.is_zero() || max == 0 {
                    return Err(ConfigError::new("l1", "size and l1_ttl must be above zero"));
                }
                Some(Arc::new(L1::new(max, c.l1_ttl, false)))
            }
        };
        Ok(Cache::assemble(
            self.store,
            self.clock,
            l1,
            c.lock,
            c.purge_timeout,
        ))
    }
}
