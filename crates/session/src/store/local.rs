//! The Redis store's local copy of recently read sessions, invalidated by Redis itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use moka::sync::Cache;
use tower_scale_redis::{Invalidations, RedisBackend, Stamp};

use super::Record;
use crate::LocalCopyConfig;

/// A copy and the generation of the tracking channel it was read in.
#[derive(Clone)]
struct Copy {
    record: Arc<Record>,
    generation: u64,
}

/// Sessions read on this instance, by Redis key, each dropped as soon as Redis reports the
/// key changed or deleted (see [`Invalidations`] for the rule followed here).
#[derive(Clone)]
pub(crate) struct LocalCopy {
    copies: Cache<String, Copy>,
    invalidations: Invalidations,
    /// The generation whose copies the cache holds (older ones are dropped on sight).
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for LocalCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCopy")
            .field("sessions", &self.copies.entry_count())
            .field("invalidations", &self.invalidations)
            .finish()
    }
}

/// What a read may do with the local copy: `None` when the tracking channel is down.
pub(crate) type Ticket = Option<Stamp>;

impl LocalCopy {
    pub(crate) fn start(
        backend: &RedisBackend,
        prefix: String,
        config: &LocalCopyConfig,
    ) -> Result<Self, tower_scale_redis::Error> {
        let copies: Cache<String, Copy> = Cache::builder()
            .max_capacity(config.max_sessions)
            .time_to_live(config.max_age)
            .build();
        let sink = copies.clone();
        let invalidations =
            Invalidations::start(backend, prefix, config.heartbeat, move |key: &[u8]| {
                if let Ok(key) = std::str::from_utf8(key) {
                    sink.invalidate(key);
                }
            })?;
        Ok(Self {
            copies,
            invalidations,
            generation: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The tracking channel's state for `key`, after applying what it received.
    pub(crate) fn ticket(&self, key: &str) -> Ticket {
        let stamp = self.invalidations.sync(key.as_bytes())?;
        if self.generation.swap(stamp.generation(), SeqCst) != stamp.generation() {
            // Copies of an older generation are never served; free their memory too.
            self.copies.invalidate_all();
        }
        Some(stamp)
    }

    /// The copy of `key`, if one of this generation is kept.
    pub(crate) fn get(&self, key: &str, stamp: Stamp) -> Option<Record> {
        self.copies
            .get(key)
            .filter(|copy| copy.generation == stamp.generation())
            .map(|copy| Record::clone(&copy.record))
    }

    /// Keeps a copy just read from Redis, unless the key changed (or the channel went down)
    /// since `stamp` was taken.
    pub(crate) fn keep(&self, key: &str, record: &Record, stamp: Stamp) {
        let copy = Copy {
            record: Arc::new(record.clone()),
            generation: stamp.generation(),
        };
        self.copies.insert(key.to_owned(), copy);
        // Checked after the insert: an invalidation counted before this check is seen here,
        // one counted after it removes the copy just inserted.
        if !self.invalidations.still(key.as_bytes(), stamp) {
            self.copies.invalidate(key);
        }
    }

    /// This instance changed or deleted `key`: its copy goes now, before Redis's report.
    pub(crate) fn changed(&self, key: &str) {
        self.invalidations
            .changed(key.as_bytes(), || self.copies.invalidate(key));
    }

    /// The tracking channel.
    pub(crate) fn invalidations(&self) -> &Invalidations {
        &self.invalidations
    }
}
