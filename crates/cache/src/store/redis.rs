use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use futures_util::future::try_join_all;
use tower_scale_redis::RedisBackend;
use tower_scale_redis::redis::{self, RedisWrite, Script};

use super::{BASE_FIELDS, RedisStoreConfig, Store, token};
use crate::{BoxFuture, StoreError};

/// Key concern of every cache key: `<prefix>:cache:...`.
pub(crate) const CONCERN: &str = "cache";

/// Sets the entries of one group, each a string expiring after `ARGV[1]` ms: `KEYS[1]` is the
/// group's index (the set of its field names), `KEYS[2..]` the entries' keys, `ARGV[2..]` the
/// field names then the values in the same order. The index is kept as long as its
/// longest-lived entry. Not used for a base field stored alone and untagged (one `SET`).
static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("put.lua")));

/// Deletes a group: every entry its index `KEYS[1]` names (the key of field `f` is
/// `ARGV[1] .. f`, in the same slot), the index, `KEYS[2]`, the group's hash of the version 1
/// layout (so that a purge also reaches instances still running it), and `KEYS[3..]`, the
/// keys of the base fields, which a put leaves out of the index. The indexed entries' keys
/// are not declared in `KEYS` (only the script learns their names); they hash to the index's
/// slot, so the script still touches one slot and runs on Redis Cluster (tested by the
/// conformance suite on a local cluster).
static PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("purge.lua")));

/// Counts a group's fields: the members of its index `KEYS[1]`, plus each base field
/// `ARGV[i]` that is not a member but whose key `KEYS[i + 1]` exists.
static COUNT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("count.lua")));

/// Adds a group to a tag's set, kept as long as its longest-lived member.
static TAG: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("tag.lua")));

/// Takes a tag's members and deletes the set in one step.
static TAKE_TAG: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("take_tag.lua")));

/// Deletes a lock only if the token still holds it.
static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("unlock.lua")));

/// The Redis store: every instance shares the entries.
///
/// - An entry is one string, `<prefix>:cache:{<group>}:s:<field>`, written with its expiry
///   (`SET … PX`); a hit is one `GET`. The group's index, `<prefix>:cache:{<group>}:i`, is the
///   set of its fields (a URI's `Vary` variants and their marker), so that purging the group
///   (one script) deletes them all; every key of a group shares one hash tag.
/// - A group's base field stored alone and untagged (an HTTP response without `Vary`, a
///   value of the typed API) is one `SET … PX` and stays out of the index: a purge deletes
///   the base fields' keys by name. An instance of a version that indexes every entry does
///   not: see [`index_every_entry`](Self::index_every_entry) for a rolling upgrade.
/// - A tag is a set of groups, `<prefix>:cache:{t:<tag>}:groups`.
/// - Locks are `SET NX PX` keys, `<prefix>:cache:{<group>}:lock:<field>`.
///
/// Every script touches one slot, so everything runs on Redis Cluster.
///
/// ```no_run
/// use tower_scale_cache::{Cache, RedisStore};
/// use tower_scale_redis::{RedisBackend, RedisConfig};
///
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
/// let cache = Cache::new(RedisStore::new(backend));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RedisStore {
    backend: RedisBackend,
    /// `<prefix>:cache:{`, the start of every entry key (as `Keys::tagged` writes it), built
    /// once so that a `GET` writes its key in four pieces rather than seven.
    entry_head: Arc<str>,
    /// Whether a base field stored alone and untagged is indexed too (one script rather than
    /// one `SET`).
    index_every_entry: bool,
}

impl RedisStore {
    /// A store on `backend`.
    pub fn new(backend: RedisBackend) -> Self {
        let mut head = String::new();
        backend.keys().push_tagged_base(&mut head, CONCERN, "");
        // `<prefix>:cache:{}:` without the empty tag's closing `}:`.
        head.truncate(head.len() - "}:".len());
        Self {
            backend,
            entry_head: head.into(),
            index_every_entry: false,
        }
    }

    /// A store on `backend` with `config`'s settings.
    pub fn from_config(backend: RedisBackend, config: &RedisStoreConfig) -> Self {
        Self::new(backend).index_every_entry(config.index_every_entry)
    }

    /// Whether every entry goes into its group's index, a base field stored alone and
    /// untagged included (off by default: that entry is one `SET … PX` and nothing else).
    ///
    /// Instances of a version that indexes every entry purge a group by its index only, so
    /// they do not delete an entry stored by one `SET`. During a rolling upgrade from such a
    /// version, turn this on so that their purges still reach everything; once no instance
    /// runs it, turn it off (again instance by instance: this version's purges delete both
    /// kinds).
    ///
    /// ```no_run
    /// use tower_scale_cache::RedisStore;
    /// use tower_scale_redis::{RedisBackend, RedisConfig};
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = RedisBackend::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let store = RedisStore::new(backend).index_every_entry(true);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn index_every_entry(mut self, on: bool) -> Self {
        self.index_every_entry = on;
        self
    }

    /// The key of the string holding entry `field` of `group`.
    pub fn entry_key(&self, group: &str, field: &str) -> String {
        let Some(pieces) = self.entry_key_pieces(group, field) else {
            let mut suffix = String::with_capacity(field.len() + 2);
            suffix.push_str("s:");
            suffix.push_str(field);
            return self.backend.keys().tagged(CONCERN, group, &suffix);
        };
        let mut key = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
        for piece in pieces {
            key.push_str(piece);
        }
        key
    }

    /// The entry key's pieces, `<prefix>:cache:{<group>}:s:<field>`, when the group holds no
    /// brace to neutralise (the usual path-and-query key); else `None` (then `Keys::tagged`
    /// writes the key).
    fn entry_key_pieces<'a>(&'a self, group: &'a str, field: &'a str) -> Option<[&'a str; 4]> {
        if group.bytes().any(|b| matches!(b, b'{' | b'}')) {
            return None;
        }
        Some([&self.entry_head, group, "}:s:", field])
    }

    /// The `GET` of an entry, its buffers sized once and the key written straight into it
    /// (the same bytes as [`entry_key`](Self::entry_key), without a string of its own).
    fn get_command(&self, group: &str, field: &str) -> redis::Cmd {
        let Some(pieces) = self.entry_key_pieces(group, field) else {
            let key = self.entry_key(group, field);
            let mut cmd = redis::Cmd::with_capacity(2, 3 + key.len());
            cmd.arg("GET").arg(key);
            return cmd;
        };
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        let mut cmd = redis::Cmd::with_capacity(2, 3 + len);
        cmd.arg("GET");
        // Appends to the command's buffer (sized above): no growth, no error to handle.
        let mut key = cmd.bufmut_for_next_arg(0);
        for piece in pieces {
            key.put_slice(piece.as_bytes());
        }
        drop(key);
        cmd
    }

    /// The key of a group's index: the set of its fields.
    pub fn index_key(&self, group: &str) -> String {
        self.backend.keys().tagged(CONCERN, group, "i")
    }

    /// Declares the keys of `group`'s base fields on `script`, in the order of `BASE_FIELDS`.
    fn base_keys(&self, script: &mut redis::ScriptInvocation<'_>, group: &str) {
        for field in BASE_FIELDS {
            script.key(self.entry_key(group, field));
        }
    }

    /// The key of a group's hash in the version 1 layout (one hash per group), deleted by
    /// purges; nothing reads it.
    fn legacy_key(&self, group: &str) -> String {
        self.backend.keys().tagged(CONCERN, group, "e")
    }

    fn tag_key(&self, tag: &str) -> String {
        let mut t = String::with_capacity(tag.len() + 2);
        t.push_str("t:");
        t.push_str(tag);
        self.backend.keys().tagged(CONCERN, &t, "groups")
    }

    fn lock_key(&self, group: &str, field: &str) -> String {
        let mut s = String::with_capacity(field.len() + 5);
        s.push_str("lock:");
        s.push_str(field);
        self.backend.keys().tagged(CONCERN, group, &s)
    }
}

/// Milliseconds of a Redis expiry: at least 1 (`PX 0` is an error).
fn px(d: Duration) -> u64 {
    tower_scale_core::millis(d).max(1)
}

/// A store error for a failed Redis command `op`: unavailable when Redis could not be reached
/// (down, timed out, breaker open), the Redis error kept as its source.
pub(crate) fn redis_error(op: &'static str, e: tower_scale_redis::Error) -> StoreError {
    let unavailable = e.is_unavailable();
    StoreError::with_source(op, unavailable, e)
}

impl Store for RedisStore {
    fn get<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move {
            let value: Result<Option<Vec<u8>>, _> =
                self.backend.query(&self.get_command(group, field)).await;
            match value {
                Ok(value) => Ok(value.map(Bytes::from)),
                // Not a string (e.g. left by something else under our name): a miss, which the
                // next store overwrites.
                Err(tower_scale_redis::Error::Redis(e)) if e.code() == Some("WRONGTYPE") => {
                    Ok(None)
                }
                Err(e) => Err(redis_error("Redis GET", e)),
            }
        })
    }

    fn put<'a>(
        &'a self,
        group: &'a str,
        fields: &'a [(&'a str, Bytes)],
        ttl: Duration,
        tags: &'a [String],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if fields.is_empty() {
                return Ok(());
            }
            let ttl = px(ttl);
            if let ([(field, value)], []) = (fields, tags)
                && !self.index_every_entry
                && BASE_FIELDS.contains(field)
            {
                let key = self.entry_key(group, field);
                // `SET`, `PX` and at most 20 digits besides the key and the value.
                let mut set = redis::Cmd::with_capacity(5, key.len() + value.len() + 25);
                set.arg("SET")
                    .arg(key)
                    .arg(value.as_ref())
                    .arg("PX")
                    .arg(ttl);
                return self
                    .backend
                    .query::<()>(&set)
                    .await
                    .map_err(|e| redis_error("Redis SET", e));
            }
            let mut put = PUT.key(self.index_key(group));
            for (field, _) in fields {
                put.key(self.entry_key(group, field));
            }
            put.arg(ttl);
            for (field, _) in fields {
                put.arg(*field);
            }
            for (_, value) in fields {
                put.arg(value.as_ref());
            }
            let tag_keys: Vec<String> = tags.iter().map(|t| self.tag_key(t)).collect();
            let tag_calls = tag_keys.iter().map(|k| async move {
                self.backend
                    .invoke::<()>(TAG.key(k).arg(ttl).arg(group))
                    .await
            });
            let (put, tagged) = futures_util::future::join(
                self.backend.invoke::<()>(&put),
                try_join_all(tag_calls),
            )
            .await;
            put.map_err(|e| redis_error("Redis EVALSHA (put)", e))?;
            tagged.map_err(|e| redis_error("Redis EVALSHA (tag)", e))?;
            Ok(())
        })
    }

    fn field_count<'a>(
        &'a self,
        group: &'a str,
    ) -> BoxFuture<'a, Result<Option<usize>, StoreError>> {
        Box::pin(async move {
            let mut count = COUNT.key(self.index_key(group));
            self.base_keys(&mut count, group);
            count.arg(&BASE_FIELDS[..]);
            let count: usize = self
                .backend
                .invoke(&count)
                .await
                .map_err(|e| redis_error("Redis EVALSHA (count)", e))?;
            Ok(Some(count))
        })
    }

    fn purge<'a>(&'a self, groups: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if groups.is_empty() {
                return Ok(());
            }
            // One script per group (each group is one slot), concurrently.
            try_join_all(groups.iter().map(|g| async move {
                let mut purge = PURGE.key(self.index_key(g));
                purge.key(self.legacy_key(g));
                self.base_keys(&mut purge, g);
                purge.arg(self.entry_key(g, ""));
                self.backend.invoke::<()>(&purge).await
            }))
            .await
            .map_err(|e| redis_error("Redis EVALSHA (purge)", e))?;
            Ok(())
        })
    }

    fn purge_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let groups: Vec<String> = self
                .backend
                .invoke(&TAKE_TAG.key(self.tag_key(tag)))
                .await
                .map_err(|e| redis_error("Redis EVALSHA (take tag)", e))?;
            self.purge(&groups).await?;
            Ok(groups)
        })
    }

    fn try_lock<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let t = token();
            let set: Option<String> = self
                .backend
                .query(
                    redis::cmd("SET")
                        .arg(self.lock_key(group, field))
                        .arg(t)
                        .arg("NX")
                        .arg("PX")
                        .arg(px(ttl)),
                )
                .await
                .map_err(|e| redis_error("Redis SET NX", e))?;
            Ok(set.map(|_| t))
        })
    }

    fn unlock<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
        token: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.backend
                .invoke::<()>(UNLOCK.key(self.lock_key(group, field)).arg(token))
                .await
                .map_err(|e| redis_error("Redis EVALSHA (unlock)", e))?;
            Ok(())
        })
    }

    fn redis_backend(&self) -> Option<&RedisBackend> {
        Some(&self.backend)
    }
}

#[cfg(test)]
mod tests {
    use tower_scale_redis::{RedisBackend, RedisConfig};

    use super::*;

    #[tokio::test]
    async fn the_get_command_reads_the_entry_key() {
        // The backend connects lazily: nothing listens on this port, nothing is sent.
        let store =
            RedisStore::new(RedisBackend::new(RedisConfig::new("redis://127.0.0.1:1")).unwrap());
        let long = format!("GET|accept-language={}", "é".repeat(100));
        for (group, field) in [
            ("/cached/1", "GET"),
            ("/x?a=1&b=2", "GET|accept-encoding=gzip"),
            ("/x", long.as_str()),
            ("/a{b}?c", "GET"),
            ("", ""),
        ] {
            // The key `Keys` writes for the group and the entry's suffix.
            let key = store
                .backend
                .keys()
                .tagged(CONCERN, group, &format!("s:{field}"));
            assert_eq!(store.entry_key(group, field), key, "{group} {field}");
            let expected = redis::cmd("GET").arg(key).get_packed_command();
            assert_eq!(
                store.get_command(group, field).get_packed_command(),
                expected,
                "{group} {field}"
            );
        }
    }
}
