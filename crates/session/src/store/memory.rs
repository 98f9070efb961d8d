use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use moka::sync::Cache;

use tower_scale_core::{BoxFuture, Clock, StoreError, TokioClock};

use super::{Record, Save, SaveOutcome, Store, capped};
use crate::SessionId;

/// Sessions in this process's memory (moka): the embedded default for a single instance.
///
/// Bounded: at most [`max_sessions`](Self::max_sessions) sessions (default 1,000,000), the
/// least recently used evicted first; an entry idle longer than the session TTL is dropped
/// from memory. Expiry itself is exact: a session is gone once its expiry time passes, by
/// the same clock as the layer's (tokio's, so tests can pause and advance it).
///
/// Sessions here are lost on restart and not shared between instances: use `RedisStore`
/// when more than one instance serves the same users.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

type Users = HashMap<String, HashSet<SessionId>>;

#[derive(Debug)]
struct Inner {
    sessions: Cache<SessionId, Arc<Mutex<Record>>>,
    users: Arc<Mutex<Users>>,
    clock: TokioClock,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store of at most 1,000,000 sessions, dropping those idle for more than a day.
    pub fn new() -> Self {
        Self::build(1_000_000, Duration::from_secs(24 * 3600))
    }

    /// Caps the number of sessions kept (least recently used evicted first).
    #[must_use]
    pub fn max_sessions(self, max: u64) -> Self {
        Self::build(max, self.idle())
    }

    /// Drops sessions idle for longer than `idle` from memory; set it to at least the
    /// session TTL (the layer's default TTL is a day).
    #[must_use]
    pub fn idle_timeout(self, idle: Duration) -> Self {
        let max = self
            .inner
            .sessions
            .policy()
            .max_capacity()
            .unwrap_or(1_000_000);
        Self::build(max, idle)
    }

    fn idle(&self) -> Duration {
        self.inner
            .sessions
            .policy()
            .time_to_idle()
            .unwrap_or(Duration::from_secs(24 * 3600))
    }

    fn build(max: u64, idle: Duration) -> Self {
        let users: Arc<Mutex<Users>> = Arc::default();
        let index = Arc::downgrade(&users);
        Self {
            inner: Arc::new(Inner {
                sessions: Cache::builder()
                    .max_capacity(max)
                    .time_to_idle(idle)
                    // A session evicted for space or idleness leaves its user's index too.
                    .eviction_listener(move |id: Arc<SessionId>, record: Arc<Mutex<Record>>, _| {
                        let user = lock(&record).user.take();
                        if let (Some(user), Some(users)) = (user, index.upgrade()) {
                            unindex(&users, &user, &id);
                        }
                    })
                    .build(),
                users,
                clock: TokioClock::new(),
            }),
        }
    }

    /// Number of sessions held (approximate: eviction runs in batches).
    pub fn len(&self) -> u64 {
        self.inner.sessions.run_pending_tasks();
        self.inner.sessions.entry_count()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn live(&self, id: &SessionId) -> Option<Arc<Mutex<Record>>> {
        let entry = self.inner.sessions.get(id)?;
        let expires_at = lock(&entry).expires_at;
        if expires_at <= self.inner.clock.now_ms() {
            self.inner.sessions.invalidate(id);
            return None;
        }
        Some(entry)
    }

    fn unindex(&self, user: &str, id: &SessionId) {
        unindex(&self.inner.users, user, id);
    }

    fn save_now(&self, save: &Save<'_>) -> SaveOutcome {
        let existing = self.live(save.id);
        let entry = match (save.create, existing) {
            (true, Some(_)) => return SaveOutcome::Collision,
            (false, None) => return SaveOutcome::Missing,
            (false, Some(entry)) => entry,
            (true, None) => {
                let record = Record::default().with_ends_at(save.ends_at);
                let entry = Arc::new(Mutex::new(record));
                self.inner.sessions.insert(save.id.clone(), entry.clone());
                entry
            }
        };
        let previous_user = {
            let mut record = lock(&entry);
            for (k, v) in save.set {
                record.fields.insert(k.clone(), v.clone());
            }
            for k in save.remove {
                record.fields.remove(k);
            }
            record.expires_at = capped(save.expires_at, 0, record.ends_at).0;
            match save.user {
                Some(user) => record.user.replace(user.to_owned()),
                None => None,
            }
        };
        if let Some(user) = save.user {
            if let Some(previous) = previous_user.filter(|p| p != user) {
                self.unindex(&previous, save.id);
            }
            lock(&self.inner.users)
                .entry(user.to_owned())
                .or_default()
                .insert(save.id.clone());
        }
        SaveOutcome::Saved
    }

    fn delete_now(&self, id: &SessionId) {
        if let Some(entry) = self.inner.sessions.remove(id) {
            let user = lock(&entry).user.take();
            if let Some(user) = user {
                self.unindex(&user, id);
            }
        }
    }
}

fn unindex(users: &Mutex<Users>, user: &str, id: &SessionId) {
    let mut users = lock(users);
    if let Some(ids) = users.get_mut(user) {
        ids.remove(id);
        if ids.is_empty() {
            users.remove(user);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store for MemoryStore {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        let record = self.live(id).map(|entry| lock(&entry).clone());
        Box::pin(std::future::ready(Ok(record)))
    }

    fn save<'a>(&'a self, save: Save<'a>) -> BoxFuture<'a, Result<SaveOutcome, StoreError>> {
        let outcome = self.save_now(&save);
        Box::pin(std::future::ready(Ok(outcome)))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        self.delete_now(id);
        Box::pin(std::future::ready(Ok(())))
    }

    fn delete_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        let ids = lock(&self.inner.users).remove(user).unwrap_or_default();
        let mut deleted = 0;
        for id in ids {
            if let Some(entry) = self.inner.sessions.remove(&id) {
                let expired = lock(&entry).expires_at <= self.inner.clock.now_ms();
                deleted += usize::from(!expired);
            }
        }
        Box::pin(std::future::ready(Ok(deleted)))
    }
}
