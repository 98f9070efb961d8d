//! Where sessions live: the [`Store`] trait, its value types, and the stores.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use tower_scale_core::{BoxFuture, StoreError};

use crate::SessionId;

#[cfg(feature = "redis")]
mod local;
pub(crate) mod memory;
#[cfg(feature = "redis")]
mod record;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// Field names starting with this prefix are the store's own (expiry, user binding); a
/// handler cannot write them.
pub const RESERVED_PREFIX: &str = "__";
/// Field holding the absolute expiry time, in milliseconds since the Unix epoch.
#[cfg(feature = "redis")]
pub(crate) const EXPIRES_FIELD: &str = "__exp";
/// Field holding the session's absolute end (ms since the epoch), see [`Save::ends_at`].
#[cfg(feature = "redis")]
pub(crate) const ENDS_FIELD: &str = "__end";
/// Field holding the user the session is bound to.
#[cfg(feature = "redis")]
pub(crate) const USER_FIELD: &str = "__user";
/// Field holding when the user's index was last made to live until (ms since the epoch), so
/// that saves refresh the index only about once per TTL.
#[cfg(feature = "redis")]
pub(crate) const INDEXED_FIELD: &str = "__idx";

/// A stored session, as loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The handler's fields: name to JSON text.
    pub fields: HashMap<String, String>,
    /// When the session expires, in milliseconds since the Unix epoch.
    pub expires_at: u64,
    /// The user the session is bound to, if any (see `Session::set_user`).
    pub user: Option<String>,
    /// For a store that keeps an index of each user's sessions with an expiry: until when
    /// (ms since the epoch) that index was last made to live, as recorded in the session.
    /// `None`: not recorded (every save of a bound session then refreshes the index).
    pub user_indexed_until: Option<u64>,
    /// When the session ends whatever its activity (ms since the epoch), if it has an
    /// absolute lifetime; `expires_at` never lies beyond it.
    pub ends_at: Option<u64>,
}

impl Record {
    /// A record from its parts.
    pub fn new(fields: HashMap<String, String>, expires_at: u64, user: Option<String>) -> Self {
        Self {
            fields,
            expires_at,
            user,
            user_indexed_until: None,
            ends_at: None,
        }
    }

    /// The record, with its absolute end (see [`Record::ends_at`]).
    #[must_use]
    pub fn with_ends_at(mut self, ends_at: Option<u64>) -> Self {
        self.ends_at = ends_at;
        self
    }

    /// The record, with the user index's recorded expiry.
    #[must_use]
    pub fn with_user_indexed_until(mut self, until: Option<u64>) -> Self {
        self.user_indexed_until = until;
        self
    }
}

/// What a request changes in a session, handed to [`Store::save`].
///
/// Only changed fields are listed: a store writes these and leaves every other field as it
/// is, so two requests of one user that change different fields both keep their change.
#[derive(Debug)]
#[non_exhaustive]
pub struct Save<'a> {
    /// The session written.
    pub id: &'a SessionId,
    /// `true`: a new session, which must not exist yet ([`SaveOutcome::Collision`] if it
    /// does). `false`: an update of an existing session, which must not be recreated if it
    /// is gone ([`SaveOutcome::Missing`]): a logout elsewhere wins over a late write.
    pub create: bool,
    /// Fields set: name and JSON text.
    pub set: &'a [(String, String)],
    /// Fields removed.
    pub remove: &'a [String],
    /// Bind the session to this user (kept in the user-to-sessions index).
    pub user: Option<&'a str>,
    /// The session's time to live from now.
    pub ttl: Duration,
    /// Now plus `ttl`, in milliseconds since the Unix epoch (stored for sliding expiry).
    pub expires_at: u64,
    /// For an update: `Some(user binding)` when the caller read the session in this request,
    /// so it existed moments ago and its user is known; `None` when it did not read it.
    /// Stores may take a cheaper path with this knowledge.
    pub loaded_user: Option<Option<&'a str>>,
    /// With `loaded_user`: the loaded record's
    /// [`user_indexed_until`](Record::user_indexed_until).
    pub user_indexed_until: Option<u64>,
    /// For an update: the whole session as the caller read it in this request, when it did.
    /// A store that writes whole sessions merges the changes into it instead of reading the
    /// session again.
    pub loaded_record: Option<&'a Record>,
    /// For a create: when the session ends whatever its activity (ms since the epoch), its
    /// absolute lifetime; stored with it. The store caps `expires_at` and the TTL of this save
    /// and of every later save of the session by the stored end (the TTL shortened by as
    /// much as the expiry). Ignored by updates.
    pub ends_at: Option<u64>,
}

impl<'a> Save<'a> {
    /// A save from its parts (for store implementers' tests; the layer builds these).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &'a SessionId,
        create: bool,
        set: &'a [(String, String)],
        remove: &'a [String],
        user: Option<&'a str>,
        ttl: Duration,
        expires_at: u64,
    ) -> Self {
        Self {
            id,
            create,
            set,
            remove,
            user,
            ttl,
            expires_at,
            loaded_user: None,
            user_indexed_until: None,
            loaded_record: None,
            ends_at: None,
        }
    }

    /// Gives a new session an absolute end (see [`Save::ends_at`]).
    #[must_use]
    pub fn ends_at(mut self, ends_at: Option<u64>) -> Self {
        self.ends_at = ends_at;
        self
    }

    /// Declares that the caller read the session in this request, bound to `user`.
    #[must_use]
    pub fn loaded(mut self, user: Option<&'a str>) -> Self {
        self.loaded_user = Some(user);
        self
    }

    /// Declares that the caller read the session in this request, as `record`: sets
    /// [`loaded_record`](Save::loaded_record), and [`loaded`](Save::loaded) and
    /// [`user_indexed_until`](Save::user_indexed_until) from it.
    #[must_use]
    pub fn loaded_record(mut self, record: &'a Record) -> Self {
        self.loaded_record = Some(record);
        self.loaded_user = Some(record.user.as_deref());
        self.user_indexed_until = record.user_indexed_until;
        self
    }

    /// Declares that the session read in this request recorded its user's index as living
    /// until `until` (ms since the epoch), see [`Record::user_indexed_until`].
    #[must_use]
    pub fn user_indexed_until(mut self, until: Option<u64>) -> Self {
        self.user_indexed_until = until;
        self
    }
}

/// A save's expiry and TTL (ms), capped by the session's absolute end: `(expires_at,
/// ttl_ms)`, the TTL shortened by as much as the expiry (at least 1 ms).
pub(crate) fn capped(expires_at: u64, ttl_ms: u64, ends_at: Option<u64>) -> (u64, u64) {
    match ends_at {
        Some(end) if end < expires_at => (end, ttl_ms.saturating_sub(expires_at - end).max(1)),
        _ => (expires_at, ttl_ms),
    }
}

/// Result of a [`Store::save`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaveOutcome {
    /// Written.
    Saved,
    /// An update found no session (expired, or destroyed elsewhere): nothing written.
    Missing,
    /// A create found the id taken: nothing written.
    Collision,
}

/// Where sessions live.
///
/// Implemented by [`MemoryStore`](crate::MemoryStore) (one instance) and `RedisStore`
/// (feature `redis`, every instance). Every method is bounded in time by the store itself
/// (the Redis store by the backend's command timeout).
pub trait Store: fmt::Debug + Send + Sync + 'static {
    /// Loads a session; `None` when unknown or expired.
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;

    /// Writes the changed fields and sets the expiry (see [`Save`] for the rules).
    fn save<'a>(&'a self, save: Save<'a>) -> BoxFuture<'a, Result<SaveOutcome, StoreError>>;

    /// Deletes a session (and its entry in its user's index). Deleting an unknown session
    /// is not an error.
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes every session bound to `user`; returns how many were deleted.
    fn delete_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<usize, StoreError>>;
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        (**self).load(id)
    }
    fn save<'a>(&'a self, save: Save<'a>) -> BoxFuture<'a, Result<SaveOutcome, StoreError>> {
        (**self).save(save)
    }
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).delete(id)
    }
    fn delete_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        (**self).delete_user(user)
    }
}
