//! The write after the handler: what the request changed goes to the store.

use std::time::Duration;

use http::{HeaderValue, StatusCode};
use tower_scale_core::StoreError;

use super::{Session, count, lock};
use crate::SessionId;
use crate::store::{Save, SaveOutcome};

impl Session {
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

    /// Writes what the request changed; returns the `Set-Cookie` to send, if any.
    pub(crate) async fn commit(&self) -> Result<Option<HeaderValue>, StoreError> {
        let destroy = lock(&self.inner.state).destroy;
        let result = self.write().await;
        let op = if destroy { "destroy" } else { "save" };
        count(op, result.is_ok());
        // Never the session id: whether a cookie goes out (a new id, a refresh, a removal).
        tracing::debug!(
            op,
            outcome = if result.is_ok() { "ok" } else { "error" },
            set_cookie = matches!(result, Ok(Some(_))),
            "session save"
        );
        result
    }

    async fn write(&self) -> Result<Option<HeaderValue>, StoreError> {
        let state = std::mem::take(&mut *lock(&self.inner.state));
        let shared = &*self.inner.shared;
        let presented = self.inner.presented.as_ref();
        let ttl = shared.ttl();
        let now = shared.now_ms();
        let expires_at = now.saturating_add(shared.ttl_ms());
        // The absolute end of a session created now.
        let ends_at = shared.absolute_ms().map(|ms| now.saturating_add(ms));
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
                shared.store().delete(id).await?;
            }
            if !set.is_empty() || state.user.is_some() {
                let id = self
                    .create(&set, state.user.as_deref(), ttl, expires_at, ends_at)
                    .await?;
                return Ok(Some(shared.cookie().set(&id)));
            }
            return Ok(presented.map(|_| shared.cookie().removal()));
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
                shared.store().delete(old).await?;
            }
            return Ok(Some(shared.cookie().set(&id)));
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

        // The update of the session the client holds (for a refresh, with nothing changed).
        let update = known.map(|id| Save {
            id,
            create: false,
            set: &set,
            remove: &remove,
            user,
            ttl,
            expires_at,
            loaded_user: loaded.map(|r| r.user.as_deref()),
            user_indexed_until: loaded.and_then(|r| r.user_indexed_until),
            loaded_record: loaded,
            ends_at: None,
        });

        if !set.is_empty() || !remove.is_empty() || state.user.is_some() {
            if let Some(save) = update {
                let id = save.id;
                match shared.store().save(save).await? {
                    SaveOutcome::Saved => return Ok(Some(shared.cookie().set(id))),
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
            return Ok(Some(shared.cookie().set(&id)));
        }

        // Only a sliding-expiry refresh is due.
        if let Some(save) = update {
            let id = save.id;
            if shared.store().save(save).await? == SaveOutcome::Saved {
                return Ok(Some(shared.cookie().set(id)));
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
                loaded_record: None,
                ends_at,
            };
            if self.inner.shared.store().save(save).await? == SaveOutcome::Saved {
                return Ok(id);
            }
        }
        Err(StoreError::new(
            "the store reported three id collisions in a row",
        ))
    }

    /// The status of the refusal that replaces the response when the write fails.
    pub(crate) fn save_error_status(&self) -> StatusCode {
        self.inner.shared.save_error_status()
    }
}
