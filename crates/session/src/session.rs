use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use tower_scale_core::PrivateMark;

use crate::SessionId;
use crate::clock::Clock;
use crate::cookie::CookieSettings;
use crate::store::{RESERVED_PREFIX, Record, Save, SaveOutcome, SessionStore, StoreError};

/// Counter of session store operations; labels `op` (`load`, `save`, `destroy`) and
/// `result` (`ok`, `error`). Requests that do not touch the session count nothing.
pub const SESSION_OPERATIONS_TOTAL: &str = "session_operations_total";

fn count(op: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!(SESSION_OPERATIONS_TOTAL, "op" => op, "result" => result).increment(1);
}

/// What the layer shares with every request's [`Session`].
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) cookie: CookieSettings,
    pub(crate) ttl: Duration,
    pub(crate) touch_after_ms: u64,
    pub(crate) load_error_status: StatusCode,
    pub(crate) save_error_status: StatusCode,
    /// The absolute session lifetime, in ms.
    pub(crate) absolute_ms: Option<u64>,
    pub(crate) clock: Clock,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("store", &self.store)
            .field("cookie", &self.cookie)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

/// An error of a [`Session`] call.
///
/// With the `axum` feature it is a response: a failed read answers the configured
/// `load_error_status` (503 by default), so a handler can use `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed (down, timed out, or answered garbage).
    #[error("{source}")]
    Store {
        /// The store's error.
        source: StoreError,
        /// The status this error answers with.
        status: StatusCode,
    },
    /// Field names starting with `__` belong to the store.
    #[error("session field {0:?} is reserved: names starting with `__` belong to the store")]
    ReservedKey(String),
    /// The value could not be serialized.
    #[error("session field {key:?} could not be serialized: {source}")]
    Serialize {
        /// The field.
        key: String,
        /// serde_json's error.
        source: serde_json::Error,
    },
    /// The stored value does not deserialize into the requested type.
    #[error("session field {key:?} does not hold the requested type: {source}")]
    Deserialize {
        /// The field.
        key: String,
        /// serde_json's error.
        source: serde_json::Error,
    },
}

impl SessionError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Store { status, .. } => *status,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for SessionError {
    fn into_response(self) -> axum::response::Response {
        tracing::warn!(error = %self, "session error");
        self.status().into_response()
    }
}

#[derive(Default)]
struct State {
    /// Changed fields: `Some(json)` set, `None` removed. After a destroy: the fields of the
    /// new session.
    changes: BTreeMap<String, Option<String>>,
    user: Option<String>,
    cycle: bool,
    /// With `cycle`: the only fields the new id keeps from the stored session (`None`: all).
    keep: Option<Vec<String>>,
    /// The presented session is ended; whatever is written afterwards goes to a new session.
    destroy: bool,
}

struct Handle {
    shared: Arc<Shared>,
    /// The id the request's cookie presented, not yet checked against the store.
    presented: Option<SessionId>,
    /// The stored session, once loaded (`None`: unknown or expired, never adopted).
    loaded: OnceCell<Option<Record>>,
    state: Mutex<State>,
    /// The request's mark: set as soon as the request changes the session (or its expiry is
    /// refreshed), so that no shared cache stores the response.
    mark: PrivateMark,
}

/// The request's session: an axum extractor (feature `axum`) and a request extension set by
/// [`SessionLayer`](crate::SessionLayer).
///
/// Lazy: nothing is read from the store until the first [`get`](Self::get), and nothing is
/// written unless a field changed, the id was cycled, the session was destroyed, or its
/// sliding expiry is due. Changes are written, changed fields only, after the handler
/// returns and before the response is sent.
///
/// ```
/// use tower_scale_session::{Session, SessionError};
///
/// async fn counter(session: Session) -> Result<String, SessionError> {
///     let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
///     session.insert("n", &n)?;
///     Ok(n.to_string())
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Handle>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("presented", &self.inner.presented)
            .field("loaded", &self.inner.loaded.initialized())
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        presented: Option<SessionId>,
        mark: PrivateMark,
    ) -> Self {
        Self {
            inner: Arc::new(Handle {
                shared,
                presented,
                loaded: OnceCell::new(),
                state: Mutex::new(State::default()),
                mark,
            }),
        }
    }

    /// The state, to change it: the response becomes personal (see [`PrivateMark`]).
    fn change(&self) -> MutexGuard<'_, State> {
        self.inner.mark.set();
        lock(&self.inner.state)
    }

    fn load_error(&self, source: StoreError) -> SessionError {
        SessionError::Store {
            source,
            status: self.inner.shared.load_error_status,
        }
    }

    /// The stored session, loaded once per request (one store read); `None` for a new
    /// session, or when the presented id is unknown or expired.
    async fn record(&self) -> Result<Option<&Record>, StoreError> {
        let handle = &*self.inner;
        let record = handle
            .loaded
            .get_or_try_init(|| async {
                let Some(id) = &handle.presented else {
                    return Ok(None);
                };
                let record = handle.shared.store.load(id).await;
                count("load", record.is_ok());
                let record = record?;
                let now = handle.shared.clock.now_millis();
                let record =
                    record.filter(|r| r.expires_at > now && r.ends_at.is_none_or(|end| end > now));
                if record.as_ref().is_some_and(|r| self.touch_due(r)) {
                    // The refresh sends a Set-Cookie.
                    handle.mark.set();
                }
                Ok::<_, StoreError>(record)
            })
            .await?;
        Ok(record.as_ref())
    }

    /// Reads a field; `None` when absent. The first read of a request loads the session
    /// (one store call); later reads, and reads of fields this request changed, do not.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let decode = |json: &str| {
            serde_json::from_str(json).map_err(|source| SessionError::Deserialize {
                key: key.to_owned(),
                source,
            })
        };
        {
            let state = lock(&self.inner.state);
            if let Some(change) = state.changes.get(key) {
                return change.as_deref().map(decode).transpose();
            }
            if state.destroy {
                return Ok(None);
            }
        }
        let record = self.record().await.map_err(|e| self.load_error(e))?;
        record
            .and_then(|r| r.fields.get(key))
            .map(|json| decode(json))
            .transpose()
    }

    /// Sets a field (serialized as JSON now, written when the response is ready). Does not
    /// read the session: a handler that only writes costs one store write.
    pub fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), SessionError> {
        if key.starts_with(RESERVED_PREFIX) {
            return Err(SessionError::ReservedKey(key.to_owned()));
        }
        let json = serde_json::to_string(value).map_err(|source| SessionError::Serialize {
            key: key.to_owned(),
            source,
        })?;
        self.change().changes.insert(key.to_owned(), Some(json));
        Ok(())
    }

    /// Removes a field.
    pub fn remove(&self, key: &str) {
        if key.starts_with(RESERVED_PREFIX) {
            return;
        }
        self.change().changes.insert(key.to_owned(), None);
    }

    /// Gives the session a new id, keeping its data; the old id stops working. Call it on
    /// login (and on any privilege change): an id planted by an attacker before the login
    /// is worth nothing after it (session fixation).
    ///
    /// Every field is carried over, including any an attacker wrote before the login through
    /// the planted session (a CSRF token of theirs, for example): use
    /// [`cycle_id_keeping`](Self::cycle_id_keeping) to carry only the fields you name, or
    /// [`destroy`](Self::destroy) then write, to start from an empty session. The session keeps
    /// its creation time (its [absolute timeout](crate::SessionConfig::absolute_timeout)).
    pub fn cycle_id(&self) {
        let mut state = self.change();
        state.cycle = true;
        state.keep = None;
    }

    /// Like [`cycle_id`](Self::cycle_id), but the new id carries over only the stored fields
    /// named in `keep` (and the user binding); every other stored field is dropped. Fields set
    /// in this request are kept.
    ///
    /// ```
    /// use tower_scale_session::Session;
    ///
    /// async fn login(session: Session) {
    ///     // after checking the password: keep the cart, drop anything else planted before
    ///     session.cycle_id_keeping(&["cart"]);
    ///     session.set_user("alice");
    /// }
    /// ```
    pub fn cycle_id_keeping(&self, keep: &[&str]) {
        let mut state = self.change();
        state.cycle = true;
        state.keep = Some(keep.iter().map(|&k| k.to_owned()).collect());
    }

    /// Ends the session (logout): it is deleted from the store (and from its user's index)
    /// and the cookie removed. Whatever the request writes afterwards ([`insert`](Self::insert),
    /// [`set_user`](Self::set_user)) goes to a new session under a new id, which the response's
    /// cookie then carries: a logout that sets a flash message still logs out, and an account
    /// switch never merges the new user into the old session.
    pub fn destroy(&self) {
        let mut state = self.change();
        state.destroy = true;
        state.cycle = false;
        state.user = None;
        state.changes.clear();
    }

    /// Binds the session to a user, so that [`destroy_all_for_user`](Self::destroy_all_for_user)
    /// can end it. Typically called on login, with [`cycle_id`](Self::cycle_id).
    pub fn set_user(&self, user: &str) {
        self.change().user = Some(user.to_owned());
    }

    /// The user the session is bound to.
    pub async fn user(&self) -> Result<Option<String>, SessionError> {
        {
            let state = lock(&self.inner.state);
            if state.user.is_some() || state.destroy {
                return Ok(state.user.clone());
            }
        }
        let record = self.record().await.map_err(|e| self.load_error(e))?;
        Ok(record.and_then(|r| r.user.clone()))
    }

    /// Whether this request's client holds a live stored session (loads it if needed).
    /// `false` once [`destroy`](Self::destroy) was called in this request.
    pub async fn exists(&self) -> Result<bool, SessionError> {
        if lock(&self.inner.state).destroy {
            return Ok(false);
        }
        let record = self.record().await.map_err(|e| self.load_error(e))?;
        Ok(record.is_some())
    }

    /// Ends every session bound to `user`, on every instance (log out everywhere), now;
    /// returns how many were ended. This request's own session, if bound to `user`, ends too.
    pub async fn destroy_all_for_user(&self, user: &str) -> Result<usize, SessionError> {
        self.inner
            .shared
            .store
            .delete_user(user)
            .await
            .map_err(|e| self.load_error(e))
    }

    /// Whether the layer has anything to write for this request (cheap, no store call).
    pub(crate) fn needs_commit(&self) -> bool {
        let state = lock(&self.inner.state);
        if state.destroy && self.inner.presented.is_some() {
            return true;
        }
        if state.cycle || state.user.is_some() || !state.changes.is_empty() {
            return true;
        }
        drop(state);
        match self.inner.loaded.get() {
            Some(Some(record)) => self.touch_due(record),
            _ => false,
        }
    }

    fn touch_due(&self, record: &Record) -> bool {
        if record.ends_at.is_some_and(|end| end <= record.expires_at) {
            // Capped by the absolute timeout: the expiry cannot move.
            return false;
        }
        let shared = &self.inner.shared;
        let remaining = record.expires_at.saturating_sub(shared.clock.now_millis());
        shared.ttl_ms().saturating_sub(remaining) >= shared.touch_after_ms
    }

    /// Writes what the request changed; returns the `Set-Cookie` to send, if any.
    pub(crate) async fn commit(&self) -> Result<Option<HeaderValue>, StoreError> {
        let destroy = lock(&self.inner.state).destroy;
        let result = self.write().await;
        count(if destroy { "destroy" } else { "save" }, result.is_ok());
        result
    }

    async fn write(&self) -> Result<Option<HeaderValue>, StoreError> {
        let state = std::mem::take(&mut *lock(&self.inner.state));
        let shared = &*self.inner.shared;
        let presented = self.inner.presented.as_ref();
        let ttl = shared.ttl;
        let now = shared.clock.now_millis();
        let expires_at = now.saturating_add(shared.ttl_ms());
        // The absolute end of a session created now.
        let ends_at = shared.absolute_ms.map(|ms| now.saturating_add(ms));
        let (set, remove): (Vec<_>, Vec<_>) =
            state.changes.into_iter().partition(|(_, v)| v.is_some());
        let mut set: Vec<(String, String)> = set
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        let remove: Vec<String> = remove.into_iter().map(|(k, _)| k).collect();

        if state.destroy {
            // The old session ends, whatever follows; writes after the destroy start a new one.
            if let Some(id) = presented {
                shared.store.delete(id).await?;
            }
            if !set.is_empty() || state.user.is_some() {
                let id = self
                    .create(&set, state.user.as_deref(), ttl, expires_at, ends_at)
                    .await?;
                return Ok(Some(shared.cookie.set(&id)));
            }
            return Ok(presented.map(|_| shared.cookie.removal()));
        }

        if state.cycle {
            // A new id for the same data: write it all under the new id, then drop the old.
            let record = match presented {
                Some(_) => self.record().await?,
                None => None,
            };
            let mut user = state.user;
            if record.is_none() && set.is_empty() && user.is_none() {
                // Nothing to keep: a session never modified gets no cookie and no write.
                return Ok(None);
            }
            let mut ends_at = ends_at;
            if let Some(record) = record {
                let kept = |k: &String| state.keep.as_ref().is_none_or(|keep| keep.contains(k));
                for (k, v) in &record.fields {
                    if kept(k) && !remove.contains(k) && !set.iter().any(|(s, _)| s == k) {
                        set.push((k.clone(), v.clone()));
                    }
                }
                if user.is_none() {
                    user.clone_from(&record.user);
                }
                // The same session under a new id: it keeps its absolute end.
                ends_at = record.ends_at.or(ends_at);
            }
            let id = self
                .create(&set, user.as_deref(), ttl, expires_at, ends_at)
                .await?;
            if let (Some(old), Some(_)) = (presented, record) {
                shared.store.delete(old).await?;
            }
            return Ok(Some(shared.cookie.set(&id)));
        }

        // The id the client holds, unless a read showed it unknown or expired.
        let known = match self.inner.loaded.get() {
            Some(None) => None,
            Some(Some(_)) | None => presented,
        };
        let loaded = self.inner.loaded.get().and_then(Option::as_ref);
        let user = state
            .user
            .as_deref()
            .or_else(|| loaded.and_then(|r| r.user.as_deref()));

        if !set.is_empty() || !remove.is_empty() || state.user.is_some() {
            if let Some(id) = known {
                let save = Save {
                    id,
                    create: false,
                    set: &set,
                    remove: &remove,
                    user,
                    ttl,
                    expires_at,
                    loaded_user: loaded.map(|r| r.user.as_deref()),
                    user_indexed_until: loaded.and_then(|r| r.user_indexed_until),
                    ends_at: None,
                };
                match shared.store.save(save).await? {
                    SaveOutcome::Saved => return Ok(Some(shared.cookie.set(id))),
                    // Gone since (expired, or logged out elsewhere): a write never brings it
                    // back; the changes start a new session.
                    SaveOutcome::Missing | SaveOutcome::Collision => {}
                }
            }
            if set.is_empty() && state.user.is_none() {
                return Ok(None);
            }
            let id = self
                .create(&set, state.user.as_deref(), ttl, expires_at, ends_at)
                .await?;
            return Ok(Some(shared.cookie.set(&id)));
        }

        // Only a sliding-expiry refresh is due.
        if let Some(id) = known {
            let save = Save {
                id,
                create: false,
                set: &[],
                remove: &[],
                user,
                ttl,
                expires_at,
                loaded_user: loaded.map(|r| r.user.as_deref()),
                user_indexed_until: loaded.and_then(|r| r.user_indexed_until),
                ends_at: None,
            };
            if shared.store.save(save).await? == SaveOutcome::Saved {
                return Ok(Some(shared.cookie.set(id)));
            }
        }
        Ok(None)
    }

    async fn create(
        &self,
        set: &[(String, String)],
        user: Option<&str>,
        ttl: Duration,
        expires_at: u64,
        ends_at: Option<u64>,
    ) -> Result<SessionId, StoreError> {
        // 128 random bits: a collision is practically impossible, but a store that reports one
        // gets another id rather than a shared session.
        for _ in 0..3 {
            let id = SessionId::random();
            let save = Save {
                id: &id,
                create: true,
                set,
                remove: &[],
                user,
                ttl,
                expires_at,
                loaded_user: None,
                user_indexed_until: None,
                ends_at,
            };
            if self.inner.shared.store.save(save).await? == SaveOutcome::Saved {
                return Ok(id);
            }
        }
        Err(StoreError::new(
            "the store reported three id collisions in a row",
        ))
    }

    pub(crate) fn save_error_status(&self) -> StatusCode {
        self.inner.shared.save_error_status
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Session {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no session: the route is not wrapped in SessionLayer",
        ))
    }
}
