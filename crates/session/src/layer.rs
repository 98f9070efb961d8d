//! [`SessionManagerLayer`]: its constructors, setters and `impl Layer`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tower_layer::Layer;
use tower_scale_core::{ConfigError, DefaultRefusal};

use crate::config::{SameSite, SessionConfig};
use crate::service::SessionManager;
use crate::sessions::Sessions;
use crate::shared::Shared;
use crate::store::Store;

/// Puts a lazy [`Session`](crate::Session) in every request's extensions and writes its
/// changes, before the response is sent. Applies the [`SessionManager`] middleware.
///
/// It also makes sure the request carries a [`PrivateMark`](tower_scale_core::PrivateMark)
/// (reusing one an outer layer put there) and sets it as soon as the handler creates, changes,
/// cycles or destroys the session, or a read refreshes its expiry: whenever the response gets
/// a `Set-Cookie`. A shared response cache, inside or outside this layer, then does not store
/// that response. Reading a session without changing it leaves the mark alone.
///
/// When the write fails, the handler's response is replaced by the refusal `R` (reason
/// `"session-unavailable"`, status [`save_error_status`](SessionConfig::save_error_status),
/// the [`StoreError`](crate::StoreError) as its detail): by default that status with an empty
/// body; [`refuse_with`](Self::refuse_with) changes it.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_scale_session::{MemoryStore, Session, SessionError, SessionManagerLayer};
///
/// async fn counter(session: Session) -> Result<String, SessionError> {
///     let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
///     session.insert("n", &n)?;
///     Ok(n.to_string())
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sessions = SessionManagerLayer::new(MemoryStore::new())
///     .secure(false)?; // local development over plain HTTP only
/// let app: Router = Router::new().route("/", get(counter)).layer(sessions);
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct SessionManagerLayer<R = DefaultRefusal> {
    // Behind an `Arc`: axum clones a handler's layer for every request (`Handler::layer`).
    config: Arc<SessionConfig>,
    shared: Arc<Shared>,
    refuse: R,
}

impl<R> fmt::Debug for SessionManagerLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManagerLayer")
            .field("config", &self.config)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl SessionManagerLayer {
    /// A layer over `store` with the [default config](SessionConfig::default).
    pub fn new(store: impl Store) -> Self {
        let config = SessionConfig::default();
        Self {
            shared: Arc::new(Shared::new(Arc::new(store), &config)),
            config: Arc::new(config),
            refuse: DefaultRefusal::new(),
        }
    }

    /// A layer over `store` with `config`, after [validating](SessionConfig::validate) it.
    pub fn from_config(store: impl Store, config: &SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared::new(Arc::new(store), config)),
            config: Arc::new(config.clone()),
            refuse: DefaultRefusal::new(),
        })
    }
}

impl<R> SessionManagerLayer<R> {
    /// The layer's config.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Session operations outside a request (e.g. an admin ending a user's sessions).
    pub fn sessions(&self) -> Sessions {
        Sessions::new(self.shared.clone())
    }

    /// Answers a failed session write with `refuse` instead of the configured status and an
    /// empty body (see [`tower_scale_core::Refuse`]).
    pub fn refuse_with<R2>(self, refuse: R2) -> SessionManagerLayer<R2> {
        SessionManagerLayer {
            config: self.config,
            shared: self.shared,
            refuse,
        }
    }

    /// Changes one config field, validates the whole config, and rebuilds the shared state.
    fn set(mut self, change: impl FnOnce(&mut SessionConfig)) -> Result<Self, ConfigError> {
        change(Arc::make_mut(&mut self.config));
        self.config.validate()?;
        self.shared = Arc::new(Shared::new(self.shared.store_arc().clone(), &self.config));
        Ok(self)
    }

    /// Sets [`cookie_name`](SessionConfig::cookie_name).
    pub fn cookie_name(self, name: impl Into<String>) -> Result<Self, ConfigError> {
        let name = name.into();
        self.set(|c| c.cookie_name = name)
    }

    /// Sets [`ttl`](SessionConfig::ttl); it must stay longer than
    /// [`touch_after`](SessionConfig::touch_after) (set that first to go below 60 s).
    pub fn ttl(self, ttl: Duration) -> Result<Self, ConfigError> {
        self.set(|c| c.ttl = ttl)
    }

    /// Sets [`touch_after`](SessionConfig::touch_after), shorter than the TTL.
    pub fn touch_after(self, touch_after: Duration) -> Result<Self, ConfigError> {
        self.set(|c| c.touch_after = touch_after)
    }

    /// Sets the cookie's [`Secure`](SessionConfig::secure) attribute (`SameSite=None`
    /// requires it).
    pub fn secure(self, secure: bool) -> Result<Self, ConfigError> {
        self.set(|c| c.secure = secure)
    }

    /// Sets the cookie's [`SameSite`](SessionConfig::same_site) attribute.
    pub fn same_site(self, same_site: SameSite) -> Result<Self, ConfigError> {
        self.set(|c| c.same_site = same_site)
    }

    /// Sets the cookie's [`Path`](SessionConfig::path).
    pub fn path(self, path: impl Into<String>) -> Result<Self, ConfigError> {
        let path = path.into();
        self.set(|c| c.path = path)
    }

    /// Sets the cookie's [`Domain`](SessionConfig::domain).
    pub fn domain(self, domain: impl Into<String>) -> Result<Self, ConfigError> {
        let domain = domain.into();
        self.set(|c| c.domain = Some(domain))
    }

    /// Sets the [signing secrets](SessionConfig::signing_keys): the first signs, all verify.
    pub fn signing_keys<I>(self, keys: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let keys = keys.into_iter().map(Into::into).collect();
        self.set(|c| c.signing_keys = keys)
    }

    /// Sets [`load_error_status`](SessionConfig::load_error_status), a 4xx or 5xx.
    pub fn load_error_status(self, status: StatusCode) -> Result<Self, ConfigError> {
        self.set(|c| c.load_error_status = status.as_u16())
    }

    /// Sets [`save_error_status`](SessionConfig::save_error_status), a 4xx or 5xx: the
    /// status of the refusal.
    pub fn save_error_status(self, status: StatusCode) -> Result<Self, ConfigError> {
        self.set(|c| c.save_error_status = status.as_u16())
    }

    /// Sets the absolute session lifetime (see [`SessionConfig::absolute_timeout`]): sessions
    /// created from now on end `timeout` after their creation, whatever their activity. At
    /// least 1 s.
    pub fn absolute_timeout(self, timeout: Duration) -> Result<Self, ConfigError> {
        self.set(|c| c.absolute_timeout = Some(timeout))
    }
}

impl<S, R: Clone> Layer<S> for SessionManagerLayer<R> {
    type Service = SessionManager<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionManager::from_parts(inner, self.shared.clone(), self.refuse.clone())
    }
}
