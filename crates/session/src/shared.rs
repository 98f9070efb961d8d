//! What the layer shares with every request's session: the store and the settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tower_scale_core::{Clock, TokioClock, millis};

use crate::config::SessionConfig;
use crate::cookie::CookieSettings;
use crate::store::Store;

/// What the layer shares with every request's [`Session`](crate::Session).
pub(crate) struct Shared {
    store: Arc<dyn Store>,
    cookie: CookieSettings,
    ttl: Duration,
    ttl_ms: u64,
    touch_after_ms: u64,
    load_error_status: StatusCode,
    save_error_status: StatusCode,
    /// The absolute session lifetime, in ms.
    absolute_ms: Option<u64>,
    /// Wall-clock time that follows tokio's (paused in tests).
    clock: TokioClock,
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
    /// The state for `store` and a config already [validated](SessionConfig::validate).
    pub(crate) fn new(store: Arc<dyn Store>, config: &SessionConfig) -> Self {
        let status =
            |code: u16| StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let ttl = Duration::from_secs(config.ttl.as_secs());
        Self {
            store,
            cookie: CookieSettings::new(config),
            ttl,
            ttl_ms: millis(ttl),
            touch_after_ms: millis(config.touch_after),
            load_error_status: status(config.load_error_status),
            save_error_status: status(config.save_error_status),
            absolute_ms: config.absolute_timeout.map(millis),
            clock: TokioClock::new(),
        }
    }

    /// The store, shared.
    pub(crate) fn store_arc(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store.
    pub(crate) fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// How the session cookie is read and written.
    pub(crate) fn cookie(&self) -> &CookieSettings {
        &self.cookie
    }

    /// The session TTL (whole seconds).
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The session TTL in ms.
    pub(crate) fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// How long after its last write or refresh a read refreshes a session's expiry, in ms.
    pub(crate) fn touch_after_ms(&self) -> u64 {
        self.touch_after_ms
    }

    /// The status of a failed read's [`SessionError`](crate::SessionError).
    pub(crate) fn load_error_status(&self) -> StatusCode {
        self.load_error_status
    }

    /// The status of the refusal that replaces the response when the write fails.
    pub(crate) fn save_error_status(&self) -> StatusCode {
        self.save_error_status
    }

    /// The absolute session lifetime, in ms.
    pub(crate) fn absolute_ms(&self) -> Option<u64> {
        self.absolute_ms
    }

    /// Now, in ms since the Unix epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}
