//! The request's session handle: lazy reads, changes recorded until the write.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

#[cfg(feature = "axum")]
use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use tower_scale_core::{PrivateMark, StoreError};

use crate::SessionId;
use crate::error::SessionError;
use crate::shared::Shared;
use crate::store::{RESERVED_PREFIX, Record};

mod commit;

fn count(op: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!(crate::names::SESSION_OPERATIONS_TOTAL.name, "op" => op, "result" => result)
        .increment(1);
}

/// The `debug` event of a session read (`found`, `not_found`, `expired`, `error`, or
/// `no_cookie`: nothing to read); never the session id.
fn trace_load(outcome: &'static str) {
    tracing::debug!(outcome, "session load");
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
/// [`SessionManagerLayer`](crate::SessionManagerLayer).
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
            status: self.inner.shared.load_error_status(),
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
                    trace_load("no_cookie");
                    return Ok(None);
                };
                let record = handle.shared.store().load(id).await;
                count("load", record.is_ok());
                let record = record.inspect_err(|_| trace_load("error"))?;
                let now = handle.shared.now_ms();
                let found = record.is_some();
                let record =
                    record.filter(|r| r.expires_at > now && r.ends_at.is_none_or(|end| end > now));
                trace_load(match (found, record.is_some()) {
                    (_, true) => "found",
                    (true, false) => "expired",
                    (false, false) => "not_found",
                });
                if record.as_ref().is_some_and(|r| self.touch_due(r)) {
                    // The refresh sends a Set-Cookie.
                    handle.mark.set();
                }
                Ok::<_, StoreError>(record)
            })
            .await?;
        Ok(record.as_ref())
    }

    fn touch_due(&self, record: &Record) -> bool {
        if record.ends_at.is_some_and(|end| end <= record.expires_at) {
            // Capped by the absolute timeout: the expiry cannot move.
            return false;
        }
        let shared = &self.inner.shared;
        let remaining = record.expires_at.saturating_sub(shared.now_ms());
        shared.ttl_ms().saturating_sub(remaining) >= shared.touch_after_ms()
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
            .store()
            .delete_user(user)
            .await
            .map_err(|e| self.load_error(e))
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
            "no session: the route is not wrapped in SessionManagerLayer",
        ))
    }
}
