use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;

use super::{Store, token};
use crate::{BoxFuture, StoreError};

/// The in-memory store: one process, bounded by bytes (moka), groups expiring on their own.
///
/// The default when no Redis is configured. Clones share the same entries, so several caches
/// built from clones behave like instances sharing one Redis.
///
/// ```
/// use tower_scale_cache::{Cache, MemoryStore};
///
/// let cache = Cache::new(MemoryStore::new(64 * 1024 * 1024));
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    groups: moka::sync::Cache<String, Arc<Group>>,
    tags: Mutex<HashMap<String, HashSet<String>>>,
    locks: Mutex<HashMap<String, (u64, Instant)>>,
}

#[derive(Debug)]
struct Group {
    fields: HashMap<String, Bytes>,
    expires: Instant,
    size: u32,
}

struct GroupExpiry;

impl Expiry<String, Arc<Group>> for GroupExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        group: &Arc<Group>,
        now: Instant,
    ) -> Option<Duration> {
        Some(group.expires.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        group: &Arc<Group>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(group.expires.saturating_duration_since(now))
    }
}

impl MemoryStore {
    /// A store holding at most about `max_bytes` of entries (keys and values); the least
    /// recently used groups are evicted beyond that.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                groups: moka::sync::Cache::builder()
                    .max_capacity(max_bytes)
                    .weigher(|k: &String, g: &Arc<Group>| g.size.saturating_add(k.len() as u32))
                    .expire_after(GroupExpiry)
                    .build(),
                tags: Mutex::default(),
                locks: Mutex::default(),
            }),
        }
    }
}

impl Default for MemoryStore {
    /// 64 MiB.
    fn default() -> Self {
        Self::new(64 * 1024 * 1024)
    }
}

fn lock_key(group: &str, field: &str) -> String {
    format!("{group}\u{0}{field}")
}

impl Store for MemoryStore {
    fn get<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        let found = self
            .inner
            .groups
            .get(group)
            .and_then(|g| g.fields.get(field).cloned());
        Box::pin(std::future::ready(Ok(found)))
    }

    fn put<'a>(
        &'a self,
        group: &'a str,
        fields: &'a [(&'a str, Bytes)],
        ttl: Duration,
        tags: &'a [String],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let expires = Instant::now() + ttl;
        // Copy-on-write under moka's per-key lock, so concurrent puts to one group merge.
        self.inner
            .groups
            .entry_by_ref(group)
            .and_upsert_with(|old| {
                let (mut map, old_expires) = match old {
                    Some(e) => {
                        let g = e.into_value();
                        (g.fields.clone(), g.expires)
                    }
                    None => (HashMap::new(), expires),
                };
                for (field, value) in fields {
                    map.insert((*field).to_owned(), value.clone());
                }
                let size = map
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
                    .min(u32::MAX as usize) as u32;
                Arc::new(Group {
                    fields: map,
                    expires: old_expires.max(expires),
                    size,
                })
            });
        if !tags.is_empty() {
            let mut all = self
                .inner
                .tags
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for tag in tags {
                all.entry(tag.clone()).or_default().insert(group.to_owned());
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn field_count<'a>(
        &'a self,
        group: &'a str,
    ) -> BoxFuture<'a, Result<Option<usize>, StoreError>> {
        let count = self.inner.groups.get(group).map_or(0, |g| g.fields.len());
        Box::pin(std::future::ready(Ok(Some(count))))
    }

    fn purge<'a>(&'a self, groups: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        for group in groups {
            self.inner.groups.invalidate(group);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn purge_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let members = self
            .inner
            .tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tag)
            .unwrap_or_default();
        let groups: Vec<String> = members.into_iter().collect();
        for group in &groups {
            self.inner.groups.invalidate(group);
        }
        Box::pin(std::future::ready(Ok(groups)))
    }

    fn try_lock<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        let now = Instant::now();
        let mut locks = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        locks.retain(|_, (_, until)| *until > now);
        let key = lock_key(group, field);
        let got = match locks.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => None,
            std::collections::hash_map::Entry::Vacant(slot) => {
                let t = token();
                slot.insert((t, now + ttl));
                Some(t)
            }
        };
        Box::pin(std::future::ready(Ok(got)))
    }

    fn unlock<'a>(
        &'a self,
        group: &'a str,
        field: &'a str,
        token: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut locks = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = lock_key(group, field);
        if locks.get(&key).is_some_and(|(t, _)| *t == token) {
            locks.remove(&key);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}
