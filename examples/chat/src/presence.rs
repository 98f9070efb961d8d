//! Who is in a room, across instances.
//!
//! Every chat connection marks itself present in each room it joined, again every
//! `presence_refresh`, and is forgotten when it leaves the room or closes, or `presence_ttl`
//! after its last mark (its instance died). With Redis a room's presence is one sorted set,
//! `<prefix>:chat-presence:<room>` (from [`tower_scale_redis::Keys`]), holding
//! `<user>/<connection>` scored by the time the entry expires, so every instance lists the
//! same people. It is bounded: each mark drops the expired entries and keeps at most `max`
//! (those expiring last), and the key itself expires `ttl` after the last mark, so an
//! abandoned room leaves nothing behind. One key per room: it works on Redis Cluster too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_scale_core::{Clock, millis};
use tower_scale_redis::{Error, RedisBackend, redis};

/// The key concern of presence sets.
const CONCERN: &str = "chat-presence";

/// The people in each room; cheap to clone.
#[derive(Clone)]
pub struct Presence {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    ttl: Duration,
    max: usize,
    clock: Arc<dyn Clock>,
}

enum Store {
    /// Room, then entry and its expiry (ms since the epoch).
    Memory(Mutex<HashMap<String, HashMap<String, u64>>>),
    Redis(RedisBackend),
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("redis", &matches!(self.inner.store, Store::Redis(_)))
            .field("ttl", &self.inner.ttl)
            .field("max", &self.inner.max)
            .finish()
    }
}

impl Presence {
    /// Presence in this process only (a single instance). `clock` dates the entries
    /// ([`SystemClock`](tower_scale_core::SystemClock) in production).
    pub fn memory(ttl: Duration, max: usize, clock: impl Clock) -> Self {
        Self::new(Store::Memory(Mutex::default()), ttl, max, clock)
    }

    /// Presence in Redis, shared by every instance on it (their clocks in sync, as with
    /// NTP).
    pub fn redis(backend: RedisBackend, ttl: Duration, max: usize, clock: impl Clock) -> Self {
        Self::new(Store::Redis(backend), ttl, max, clock)
    }

    fn new(store: Store, ttl: Duration, max: usize, clock: impl Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                ttl,
                max: max.max(1),
                clock: Arc::new(clock),
            }),
        }
    }

    /// The Redis key of a room's presence set.
    pub fn key(backend: &RedisBackend, room: &str) -> String {
        backend.keys().key(CONCERN, room)
    }

    /// Marks `entry` (`<user>/<connection>`) present in `room` for the next `ttl`.
    pub async fn mark(&self, room: &str, entry: &str) -> Result<(), Error> {
        let now = self.inner.clock.now_ms();
        let expires = now.saturating_add(millis(self.inner.ttl));
        match &self.inner.store {
            Store::Memory(rooms) => {
                let mut rooms = rooms.lock().unwrap_or_else(|e| e.into_inner());
                let entries = rooms.entry(room.to_owned()).or_default();
                entries.insert(entry.to_owned(), expires);
                entries.retain(|_, until| *until > now);
                if entries.len() > self.inner.max {
                    let mut by_expiry: Vec<(u64, String)> =
                        entries.drain().map(|(e, until)| (until, e)).collect();
                    by_expiry.sort_unstable_by(|a, b| b.cmp(a));
                    by_expiry.truncate(self.inner.max);
                    entries.extend(by_expiry.into_iter().map(|(until, e)| (e, until)));
                }
                Ok(())
            }
            Store::Redis(backend) => {
                let key = Self::key(backend, room);
                let keep = i64::try_from(self.inner.max).unwrap_or(i64::MAX);
                let mut pipe = redis::pipe();
                pipe.cmd("ZADD")
                    .arg(&key)
                    .arg(expires)
                    .arg(entry)
                    .ignore()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now)
                    .ignore()
                    .cmd("ZREMRANGEBYRANK")
                    .arg(&key)
                    .arg(0)
                    .arg(-keep - 1)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(millis(self.inner.ttl).max(1))
                    .ignore();
                backend.query_pipeline::<()>(&pipe).await
            }
        }
    }

    /// Forgets `entry` in `room` (it left, or its connection closed).
    pub async fn forget(&self, room: &str, entry: &str) -> Result<(), Error> {
        match &self.inner.store {
            Store::Memory(rooms) => {
                let mut rooms = rooms.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(entries) = rooms.get_mut(room) {
                    entries.remove(entry);
                    if entries.is_empty() {
                        rooms.remove(room);
                    }
                }
                Ok(())
            }
            Store::Redis(backend) => {
                let key = Self::key(backend, room);
                backend
                    .query::<()>(redis::cmd("ZREM").arg(&key).arg(entry))
                    .await
            }
        }
    }

    /// The users present in `room`, sorted, each once (at most `max`).
    pub async fn users(&self, room: &str) -> Result<Vec<String>, Error> {
        let now = self.inner.clock.now_ms();
        let entries: Vec<String> = match &self.inner.store {
            Store::Memory(rooms) => {
                let rooms = rooms.lock().unwrap_or_else(|e| e.into_inner());
                rooms.get(room).map_or_else(Vec::new, |entries| {
                    entries
                        .iter()
                        .filter(|(_, until)| **until > now)
                        .map(|(entry, _)| entry.clone())
                        .collect()
                })
            }
            Store::Redis(backend) => {
                let key = Self::key(backend, room);
                backend
                    .query(
                        redis::cmd("ZRANGEBYSCORE")
                            .arg(&key)
                            .arg(format!("({now}"))
                            .arg("+inf")
                            .arg("LIMIT")
                            .arg(0)
                            .arg(self.inner.max),
                    )
                    .await?
            }
        };
        let mut users: Vec<String> = entries
            .into_iter()
            .map(|mut entry| {
                if let Some(slash) = entry.rfind('/') {
                    entry.truncate(slash);
                }
                entry
            })
            .collect();
        users.sort_unstable();
        users.dedup();
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_scale_core::ManualClock;

    #[tokio::test]
    async fn memory_presence_expires_and_is_bounded() {
        let clock = ManualClock::new(1_000_000);
        let presence = Presence::memory(Duration::from_secs(10), 3, clock.clone());
        presence.mark("r", "alice/1").await.unwrap();
        presence.mark("r", "alice/2").await.unwrap();
        presence.mark("r", "bob/1").await.unwrap();
        assert_eq!(presence.users("r").await.unwrap(), ["alice", "bob"]);
        presence.forget("r", "alice/1").await.unwrap();
        assert_eq!(presence.users("r").await.unwrap(), ["alice", "bob"]);
        presence.forget("r", "alice/2").await.unwrap();
        assert_eq!(presence.users("r").await.unwrap(), ["bob"]);
        clock.advance(Duration::from_secs(10));
        assert!(presence.users("r").await.unwrap().is_empty());
        for i in 0..5 {
            clock.advance(Duration::from_millis(1));
            presence.mark("r", &format!("u{i}/1")).await.unwrap();
        }
        assert_eq!(presence.users("r").await.unwrap(), ["u2", "u3", "u4"]);
    }
}
