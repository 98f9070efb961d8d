use std::collections::HashMap;
use std::sync::LazyLock;

use tower_scale_redis::redis::{self, Script};
use tower_scale_redis::{Error as RedisError, RedisBackend};

use tower_scale_core::{BoxFuture, StoreError};

use super::local::LocalCopy;
use super::record::{self, Encoded};
use super::{
    ENDS_FIELD, EXPIRES_FIELD, INDEXED_FIELD, Record, Save, SaveOutcome, Store, USER_FIELD, capped,
};
use crate::{LocalCopyConfig, RedisLayout, RedisStoreConfig, SessionId};
use tower_scale_core::ConfigError;
use tower_scale_redis::Invalidations;

/// Updates the changed fields of an existing session hash, in one round trip; a session that
/// is gone is never recreated.
///
/// `KEYS[1]` the session hash. `ARGV`: TTL in ms, expiry in ms since the epoch, user to bind
/// (`''`: none), number of fields set `n`, then `n` name and value pairs, then the names of
/// removed fields. The expiry and TTL are capped by the session's absolute end (`__end`), if
/// it has one. Returns `{status, user}`: status 1 saved, 0 missing; `user` is the user the
/// session was bound to before this write.
static SAVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("save.lua")));

/// Deletes a session hash and returns the user it was bound to.
static DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("delete.lua")));

/// What a write did, and the user the session was bound to before it (when known).
type Written = (SaveOutcome, Option<String>);

/// Lua's `unpack` stops near 8,000 values; a save of more fields than this is refused.
const MAX_FIELDS_PER_SAVE: usize = 3_000;

/// A user's index is refreshed only when the expiry recorded in the session would leave it
/// less than this beyond the session's new expiry: room for clock differences between
/// instances and Redis.
const INDEX_MARGIN_MS: u64 = 60_000;

/// Sessions in Redis, shared by every instance, through the shared [`RedisBackend`].
///
/// Two layouts ([`layout`](Self::layout)): one hash per session (the default, described
/// here), or the whole session as one string ([`RedisLayout::Record`]: a new session one
/// `SET .. NX`, a read one `GET`, an update of a session read in the same request one
/// `SET .. XX`, a logout one `GETDEL`; concurrent writers of one session: the last wins). The
/// user index, log-out-everywhere, the absolute lifetime and the local copy work the same
/// with both.
///
/// Hash layout: one hash per session, `<prefix>:session:<id>`, one field per session value (JSON
/// text) plus `__exp` (expiry, ms since the epoch) and `__user` (the bound user), with the
/// key's TTL equal to the session's. A set per user, `<prefix>:session-user:<user>`, lists
/// the user's sessions for [`delete_user`](Store::delete_user).
///
/// Round trips: a load is one `HGETALL`; a new session is one `MULTI`/`EXEC` transaction
/// (`HSET`, `PEXPIRE`); an update is one `EVALSHA` writing only the changed fields
/// and refreshing the TTL, and never recreating a session that is gone. For a session bound
/// to a user, the user's set must outlive every session it lists: a save that names the user
/// sends one `SADD`/`PEXPIRE` transaction (after a create, before an update), setting the set's TTL to twice the
/// session's and recording that expiry in the session (`__idx`); a later save of a session
/// read in the same request skips it while the recorded expiry is more than a minute beyond
/// the session's new one, so a session saved on every request refreshes its index about once
/// per TTL. A save that does not name the user (a write without a read) refreshes the set's
/// TTL with one `PEXPIRE` after the save. A delete is one `EVALSHA`, plus one `SREM` when the
/// session had a user. A log-out-everywhere reads the user's set (`SMEMBERS`), deletes each
/// session listed, then removes exactly those ids from the set (`SREM`): a login in between
/// stays listed.
///
/// Every command is bounded by the backend's command timeout; failures come back as
/// [`StoreError`]. Works unchanged on Redis Cluster: every command touches one key.
///
/// With [`local_copy`](Self::local_copy), a session read on this instance is served from
/// memory, with no Redis command, until Redis reports that any instance changed or deleted
/// it; while the report channel is down, every load is an `HGETALL` again.
#[derive(Clone, Debug)]
pub struct RedisStore {
    backend: RedisBackend,
    local: Option<LocalCopy>,
    layout: RedisLayout,
}

impl RedisStore {
    /// A store on the shared backend, in the hash layout.
    pub fn new(backend: RedisBackend) -> Self {
        Self {
            backend,
            local: None,
            layout: RedisLayout::Hash,
        }
    }

    /// A store on the shared backend with these settings.
    ///
    /// # Errors
    ///
    /// None yet: every setting of [`RedisStoreConfig`] is valid; the `Result` leaves room for
    /// settings that can be wrong.
    pub fn from_config(
        backend: RedisBackend,
        config: &RedisStoreConfig,
    ) -> Result<Self, ConfigError> {
        Ok(Self::new(backend).layout(config.layout))
    }

    /// How sessions are laid out in Redis (see [`RedisLayout`]). Both layouts use the same
    /// keys: switch on an empty store, as a session written in one layout reads as corrupt
    /// (`503`) in the other.
    #[must_use]
    pub fn layout(mut self, layout: RedisLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Keeps a local copy of recently read sessions, served without a Redis round trip and
    /// dropped as soon as Redis reports (server-assisted client-side caching, RESP3
    /// `CLIENT TRACKING ON BCAST PREFIX <prefix>:session:`) that any instance changed or
    /// deleted the session. One extra connection per Redis master (standalone: one; Redis
    /// Cluster: one per master), opened in the background; until it is up, and whenever it
    /// is down (closed, killed, Redis restarted, a missed heartbeat), loads read Redis and
    /// nothing local is served. See the [session guide](https://github.com/tower-scale/tower-scale/blob/main/docs/session.md) for the guarantees.
    ///
    /// # Errors
    ///
    /// A bad setting (naming the field), a Redis URL that is not `redis://` over TCP, or a
    /// call outside a tokio runtime.
    pub fn local_copy(mut self, config: &LocalCopyConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let prefix = self.backend.keys().key("session", "");
        let local = LocalCopy::start(&self.backend, prefix, config)
            .map_err(|e| ConfigError::new("local_copy", e))?;
        self.local = Some(local);
        Ok(self)
    }

    /// The channel through which Redis reports changed sessions, when
    /// [`local_copy`](Self::local_copy) is on (its state, its connections' client ids).
    pub fn invalidations(&self) -> Option<&Invalidations> {
        self.local.as_ref().map(LocalCopy::invalidations)
    }

    /// The backend.
    pub fn backend(&self) -> &RedisBackend {
        &self.backend
    }

    /// The key of a session's hash.
    pub fn session_key(&self, id: &SessionId) -> String {
        self.backend.keys().key("session", id.as_str())
    }

    /// The key of a user's set of session ids.
    pub fn user_key(&self, user: &str) -> String {
        self.backend.keys().key("session-user", user)
    }

    async fn load_now(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        let key = self.session_key(id);
        let Some(local) = &self.local else {
            return self.read(&key).await;
        };
        let Some(stamp) = local.ticket(&key) else {
            // The channel is down: Redis only.
            return self.read(&key).await;
        };
        if let Some(record) = local.get(&key, stamp) {
            return Ok(Some(record));
        }
        let record = self.read(&key).await?;
        if let Some(record) = &record {
            local.keep(&key, record, stamp);
        }
        Ok(record)
    }

    /// This instance changed or deleted the session at `key`: its local copy goes now.
    fn changed(&self, key: &str) {
        if let Some(local) = &self.local {
            local.changed(key);
        }
    }

    async fn read(&self, key: &str) -> Result<Option<Record>, StoreError> {
        if self.layout == RedisLayout::Record {
            let value: Option<Vec<u8>> = self
                .backend
                .query(redis::cmd("GET").arg(key))
                .await
                .map_err(|e| store_error("load", e))?;
            return value.as_deref().map(record::decode).transpose();
        }
        let mut fields: HashMap<String, String> = self
            .backend
            .query(redis::cmd("HGETALL").arg(key))
            .await
            .map_err(|e| store_error("load", e))?;
        if fields.is_empty() {
            return Ok(None);
        }
        let expires_at = match fields.remove(EXPIRES_FIELD).map(|v| v.parse::<u64>()) {
            Some(Ok(at)) => at,
            // A hash without a readable expiry was not written by this store.
            _ => {
                return Err(StoreError::corrupt(
                    "session hash without a valid `__exp` field: not written by tower-scale-session",
                ));
            }
        };
        let user = fields.remove(USER_FIELD);
        let ends_at = fields
            .remove(ENDS_FIELD)
            .and_then(|v| v.parse::<u64>().ok());
        // A missing or unreadable value only means the next save refreshes the index.
        let indexed = fields
            .remove(INDEXED_FIELD)
            .and_then(|v| v.parse::<u64>().ok());
        Ok(Some(
            Record::new(fields, expires_at, user)
                .with_user_indexed_until(indexed)
                .with_ends_at(ends_at),
        ))
    }

    async fn save_now(&self, save: Save<'_>) -> Result<SaveOutcome, StoreError> {
        if save.set.len() + save.remove.len() > MAX_FIELDS_PER_SAVE {
            return Err(StoreError::new(format!(
                "a save may change at most {MAX_FIELDS_PER_SAVE} fields"
            )));
        }
        let key = self.session_key(save.id);
        // The record layout rewrites whole sessions: an update of a session not read in this
        // request reads it first (from the local copy when it holds it), then goes on as an
        // update after a read.
        let fetched;
        let save =
            if self.layout == RedisLayout::Record && !save.create && save.loaded_record.is_none() {
                fetched = match self.load_now(save.id).await? {
                    Some(record) => record,
                    None => return Ok(SaveOutcome::Missing),
                };
                let user = save.user.or(fetched.user.as_deref());
                Save { user, ..save }.loaded_record(&fetched)
            } else {
                save
            };
        let ttl_ms = u64::try_from(save.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        // The user's index, when this save must refresh it: its TTL and the expiry recorded.
        let index_user = save.user.filter(|user| {
            let indexed = save.loaded_user == Some(Some(*user))
                && save
                    .user_indexed_until
                    .is_some_and(|until| until >= save.expires_at.saturating_add(INDEX_MARGIN_MS));
            !indexed
        });
        let indexed_until = index_user.map(|_| save.expires_at.saturating_add(ttl_ms));
        // The index lives in another slot: its own transaction. `__idx` records the index as
        // refreshed, so the index is written first when the session exists already (an
        // update): a failed index write then records nothing, and the next save retries it.
        // A new session is indexed once written, never before: a log-out-everywhere that reads
        // the index in between either misses the id (the SADD then keeps it listed for the
        // next one) or sees it once the session exists, and deletes it.
        let index = index_user.map(|user| self.index_pipe(user, save.id, ttl_ms.saturating_mul(2)));
        if !save.create
            && let Some(index) = &index
        {
            self.write_index(index).await?;
        }
        let saved = match (save.create, self.layout) {
            (true, RedisLayout::Hash) => self
                .create(&key, &save, ttl_ms, indexed_until)
                .await
                .map_err(|e| store_error("save", e)),
            (true, RedisLayout::Record) => {
                self.write_record(&key, &save, ttl_ms, indexed_until).await
            }
            (false, layout) => {
                let saved = if layout == RedisLayout::Record {
                    self.write_record(&key, &save, ttl_ms, indexed_until).await
                } else {
                    self.update(&key, &save, ttl_ms, indexed_until)
                        .await
                        .map_err(|e| store_error("save", e))
                };
                self.changed(&key);
                saved
            }
        };
        let (outcome, previous) = saved?;
        if outcome != SaveOutcome::Saved {
            if !save.create
                && let Some(user) = index_user
            {
                // Gone since (logged out elsewhere): take back the index entry just written.
                // Should that fail, the entry names no session: harmless.
                if let Err(error) = self.unindex(user, save.id).await {
                    tracing::warn!(%error, "could not take a missing session out of its user's index");
                }
            }
            return Ok(outcome);
        }
        if save.create
            && let Some(index) = &index
        {
            self.write_index(index).await?;
        }
        match (previous.as_deref(), save.user) {
            // Bound to another user before: leave that user's index.
            (Some(previous), Some(user)) if previous != user => {
                self.unindex(previous, save.id).await?;
            }
            // Bound, but the caller did not know it (a write without a read): keep the
            // index alive as long as the session it lists.
            (Some(previous), None) => {
                self.backend
                    .query::<()>(
                        redis::cmd("PEXPIRE")
                            .arg(self.user_key(previous))
                            .arg(ttl_ms.saturating_mul(2)),
                    )
                    .await
                    .map_err(|e| store_error("index user", e))?;
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// A new session: the fields, `__exp` and `__end` (the absolute end, if any, which caps
    /// `__exp` and the TTL) and the TTL in one `MULTI`/`EXEC` (`HSET`, `PEXPIRE`), cheaper for
    /// Redis than a script. `HSET` reports how many fields it
    /// created: fewer than written means the id was taken (two random 128-bit ids colliding,
    /// practically impossible); the other session's fields were then overwritten, and the
    /// save reports the collision.
    async fn create(
        &self,
        key: &str,
        save: &Save<'_>,
        ttl_ms: u64,
        indexed_until: Option<u64>,
    ) -> Result<Written, RedisError> {
        let (expires_at, ttl_ms) = capped(save.expires_at, ttl_ms, save.ends_at);
        let mut pipe = redis::pipe();
        pipe.atomic();
        let hset = pipe.cmd("HSET").arg(key).arg(EXPIRES_FIELD).arg(expires_at);
        let mut written = 1;
        if let Some(user) = save.user {
            hset.arg(USER_FIELD).arg(user);
            written += 1;
        }
        if let Some(until) = indexed_until {
            hset.arg(INDEXED_FIELD).arg(until);
            written += 1;
        }
        if let Some(end) = save.ends_at {
            hset.arg(ENDS_FIELD).arg(end);
            written += 1;
        }
        for (k, v) in save.set {
            hset.arg(k).arg(v);
            written += 1;
        }
        pipe.cmd("PEXPIRE").arg(key).arg(ttl_ms).ignore();
        let (created,): (i64,) = self.backend.query_pipeline(&pipe).await?;
        let outcome = if created == written {
            SaveOutcome::Saved
        } else {
            SaveOutcome::Collision
        };
        Ok((outcome, None))
    }

    /// A save in the record layout: a new session (`SET .. NX`), the sliding refresh of a
    /// session read in this request and otherwise unchanged (the refresh script), or an update
    /// of a session read in this request (or just fetched by the save): its record with the
    /// changes merged in, `SET .. XX`, so a session gone since is never recreated.
    async fn write_record(
        &self,
        key: &str,
        save: &Save<'_>,
        ttl_ms: u64,
        indexed_until: Option<u64>,
    ) -> Result<Written, StoreError> {
        let error = |e| store_error("save", e);
        let Some(loaded) = save.loaded_record.filter(|_| !save.create) else {
            let (expires_at, ttl_ms) = capped(save.expires_at, ttl_ms, save.ends_at);
            let meta = Encoded {
                expires_at,
                indexed_until,
                ends_at: save.ends_at,
                user: save.user,
            };
            let value = meta.encode(std::iter::empty(), save.set)?;
            let outcome = record::set(&self.backend, key, &value, ttl_ms, true).await;
            return Ok((outcome.map_err(error)?, None));
        };
        let (expires_at, ttl_ms) = capped(save.expires_at, ttl_ms, loaded.ends_at);
        let user = save.user.or(loaded.user.as_deref());
        let previous = loaded.user.clone();
        if save.set.is_empty() && save.remove.is_empty() && user == loaded.user.as_deref() {
            let outcome =
                record::refresh(&self.backend, key, expires_at, indexed_until, ttl_ms).await;
            return Ok((outcome.map_err(error)?, previous));
        }
        let meta = Encoded {
            expires_at,
            indexed_until: indexed_until.or(loaded.user_indexed_until),
            ends_at: loaded.ends_at,
            user,
        };
        let changed = |name: &str| {
            save.remove.iter().any(|r| r == name) || save.set.iter().any(|(s, _)| s == name)
        };
        let kept = loaded
            .fields
            .iter()
            .filter(|(name, _)| !changed(name))
            .map(|(name, json)| (name.as_str(), json.as_str()));
        let value = meta.encode(kept, save.set)?;
        let outcome = record::set(&self.backend, key, &value, ttl_ms, false).await;
        Ok((outcome.map_err(error)?, previous))
    }

    /// An update, read in this request or not: the save script checks that the session exists
    /// and writes in one atomic step, so a session gone since (logged out elsewhere, expired)
    /// is never recreated, not even for a moment, and no clean-up is needed.
    async fn update(
        &self,
        key: &str,
        save: &Save<'_>,
        ttl_ms: u64,
        indexed_until: Option<u64>,
    ) -> Result<Written, RedisError> {
        let mut invocation = SAVE.key(key);
        invocation
            .arg(ttl_ms)
            .arg(save.expires_at)
            .arg(save.user.unwrap_or(""))
            .arg(save.set.len() + usize::from(indexed_until.is_some()));
        if let Some(until) = indexed_until {
            invocation.arg(INDEXED_FIELD).arg(until);
        }
        for (k, v) in save.set {
            invocation.arg(k).arg(v);
        }
        for k in save.remove {
            invocation.arg(k);
        }
        let (status, previous): (i64, Option<String>) = self.backend.invoke(&invocation).await?;
        match status {
            1 => Ok((SaveOutcome::Saved, previous)),
            0 => Ok((SaveOutcome::Missing, None)),
            other => Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "unexpected reply from the session save script",
                other.to_string(),
            ))
            .into()),
        }
    }

    /// The transaction adding `id` to `user`'s index and setting the index's TTL.
    fn index_pipe(&self, user: &str, id: &SessionId, ttl_ms: u64) -> redis::Pipeline {
        let user_key = self.user_key(user);
        let mut index = redis::pipe();
        index
            .atomic()
            .cmd("SADD")
            .arg(&user_key)
            .arg(id.as_str())
            .ignore()
            .cmd("PEXPIRE")
            .arg(&user_key)
            .arg(ttl_ms)
            .ignore();
        index
    }

    async fn write_index(&self, index: &redis::Pipeline) -> Result<(), StoreError> {
        self.backend
            .query_pipeline::<()>(index)
            .await
            .map_err(|e| store_error("index user", e))
    }

    async fn unindex(&self, user: &str, id: &SessionId) -> Result<(), StoreError> {
        self.backend
            .query::<()>(redis::cmd("SREM").arg(self.user_key(user)).arg(id.as_str()))
            .await
            .map_err(|e| store_error("unindex user", e))
    }

    async fn delete_now(&self, id: &SessionId) -> Result<(), StoreError> {
        let key = self.session_key(id);
        let user: Result<Option<String>, _> = match self.layout {
            RedisLayout::Hash => {
                (self.backend.invoke(&DELETE.key(&key)).await).map_err(|e| store_error("delete", e))
            }
            RedisLayout::Record => self.delete_record(&key).await,
        };
        self.changed(&key);
        let user = user?;
        if let Some(user) = user {
            self.unindex(&user, id).await?;
        }
        Ok(())
    }

    /// `GETDEL` of a record: the user it was bound to. A value that is not a record is
    /// deleted all the same (it was no session).
    async fn delete_record(&self, key: &str) -> Result<Option<String>, StoreError> {
        let value: Option<Vec<u8>> = self
            .backend
            .query(redis::cmd("GETDEL").arg(key))
            .await
            .map_err(|e| store_error("delete", e))?;
        Ok(value
            .as_deref()
            .and_then(|v| record::decode(v).ok())
            .and_then(|r| r.user))
    }

    async fn delete_user_now(&self, user: &str) -> Result<usize, StoreError> {
        let user_key = self.user_key(user);
        let ids: Vec<String> = self
            .backend
            .query(redis::cmd("SMEMBERS").arg(&user_key))
            .await
            .map_err(|e| store_error("list user sessions", e))?;
        let keys: Vec<String> = ids
            .iter()
            .filter_map(|id| SessionId::parse(id))
            .map(|id| self.session_key(&id))
            .collect();
        let commands: Vec<redis::Cmd> = keys
            .iter()
            .map(|key| {
                let mut del = redis::cmd("DEL");
                del.arg(key);
                del
            })
            .collect();
        // Each session key hashes to its own slot: one DEL per key, all in flight at once.
        let deletes = commands.iter().map(|del| self.backend.query::<usize>(del));
        let results = futures_util::future::join_all(deletes).await;
        keys.iter().for_each(|key| self.changed(key));
        let mut deleted = 0;
        for result in results {
            deleted += result.map_err(|e| store_error("delete user sessions", e))?;
        }
        // Only the ids read leave the index: a login since the SMEMBERS stays listed, for
        // the next log-out-everywhere.
        if !ids.is_empty() {
            self.backend
                .query::<()>(redis::cmd("SREM").arg(&user_key).arg(&ids))
                .await
                .map_err(|e| store_error("unindex user sessions", e))?;
        }
        Ok(deleted)
    }
}

fn store_error(op: &str, e: RedisError) -> StoreError {
    let unavailable = e.is_unavailable();
    StoreError::with_source(format!("Redis {op} failed"), unavailable, e)
}

impl Store for RedisStore {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(self.load_now(id))
    }

    fn save<'a>(&'a self, save: Save<'a>) -> BoxFuture<'a, Result<SaveOutcome, StoreError>> {
        Box::pin(self.save_now(save))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.delete_now(id))
    }

    fn delete_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(self.delete_user_now(user))
    }
}
