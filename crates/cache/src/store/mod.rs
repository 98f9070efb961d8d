//! Where entries live: the [`Store`] trait, the in-memory default and the Redis store.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{BoxFuture, StoreError};

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use self::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
#[cfg(feature = "redis")]
pub(crate) use self::redis::{CONCERN, redis_error};

/// The field of an HTTP resource without `Vary` (or of its `Vary` marker).
pub(crate) const BASE_FIELD: &str = "GET";

/// The field of a value of the typed API in its group.
pub(crate) const VALUE_FIELD: &str = "v";

/// Settings of `RedisStore` (feature `redis`), all with defaults; deserializable (the
/// stack's `[cache.redis]` table).
///
/// ```
/// use tower_scale_cache::RedisStoreConfig;
///
/// let config: RedisStoreConfig =
///     serde_json::from_str(r#"{ "index_every_entry": true }"#).unwrap();
/// assert!(config.index_every_entry);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisStoreConfig {
    /// Index every entry, a resource without `Vary` or tags included (one script per store
    /// instead of one `SET … PX`): the first step of a rolling upgrade from a version whose
    /// purges reach indexed entries only. Default `false`; see
    /// `RedisStore::index_every_entry`.
    pub index_every_entry: bool,
}

/// The fields the crate writes alone in a group, [`BASE_FIELD`] and [`VALUE_FIELD`]: the Redis
/// store writes such a field stored alone and untagged with one `SET`, outside the group's
/// index, and purges delete them by name.
#[cfg(feature = "redis")]
pub(crate) const BASE_FIELDS: [&str; 2] = [BASE_FIELD, VALUE_FIELD];

/// A store of cache entries: the shared tier every instance reads and writes.
///
/// Entries are grouped: a **group** is what one purge removes at once (one URI with all its
/// `Vary` variants, or one key of the typed API), a **field** names one entry in it. Stores
/// hold opaque bytes (the crate's binary entry encoding) and need no knowledge of HTTP.
///
/// Implementations: [`MemoryStore`] (one process, the default) and `RedisStore` (feature
/// `redis`, shared by every instance, Redis Cluster included). Both pass the same
/// conformance suite (`tests/store.rs`).
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// The bytes stored under `group`/`field`, if any.
    fn get<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;

    /// Stores fields of one group in one operation, keeps the group at least `ttl`, and adds
    /// the group to each tag's set (kept as long as its longest member).
    fn put<'a>(
        &'a self,
        group: &'a str,
        fields: &'a [(&'a str, Bytes)],
        ttl: Duration,
        tags: &'a [String],
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// How many fields `group` holds (an HTTP resource's `Vary` variants and its marker),
    /// entries that expired since they were stored possibly included; `None` when the store
    /// does not tell (the default), which leaves the number of variants per resource unbounded.
    fn field_count<'a>(
        &'a self,
        group: &'a str,
    ) -> BoxFuture<'a, Result<Option<usize>, StoreError>> {
        let _ = group;
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Deletes whole groups.
    fn purge<'a>(&'a self, groups: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Atomically takes and deletes the set of groups tagged `tag`, then deletes those groups;
    /// returns them.
    fn purge_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;

    /// Takes the lock `group`/`field` for `ttl` if nobody holds it; returns its token.
    fn try_lock<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>>;

    /// Releases the lock if `token` still holds it.
    fn unlock<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
        token: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The Redis backend behind this store, if any: the cache uses it for the invalidation
    /// bus of the local tier.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    fn redis_backend(&self) -> Option<&tower_scale_redis::RedisBackend> {
        None
    }
}

/// A fresh lock token.
pub(crate) fn token() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((std::process::id(), now, N.fetch_add(1, Ordering::Relaxed)))
}
