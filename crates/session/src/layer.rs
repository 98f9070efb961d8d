use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use cookie::Key;
use http::{Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_scale_core::PrivateMark;
use tower_service::Service;

use crate::clock::Clock;
use crate::config::{ConfigError, SessionConfig, validate_absolute_timeout};
use crate::cookie::CookieSettings;
use crate::session::{Session, Shared};
use crate::store::{SessionStore, StoreError};

/// Puts a lazy [`Session`] in every request's extensions and writes its changes, before the
/// response is sent.
///
/// It also makes sure the request carries a [`PrivateMark`] (reusing one an outer layer put
/// there) and sets it as soon as the handler creates, changes, cycles or destroys the session,
/// or a read refreshes its expiry: whenever the response gets a `Set-Cookie`. A shared
/// response cache, inside or outside this layer, then does not store that response. Reading
/// a session without changing it leaves the mark alone.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_scale_session::{MemoryStore, Session, SessionConfig, SessionError, SessionLayer};
///
/// async fn counter(session: Session) -> Result<String, SessionError> {
///     let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
///     session.insert("n", &n)?;
///     Ok(n.to_string())
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sessions = SessionLayer::new(MemoryStore::new()).with_config(&SessionConfig {
///     secure: false, // local development over plain HTTP only
///     ..SessionConfig::default()
/// })?;
/// let app: Router = Router::new().route("/", get(counter)).layer(sessions);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SessionLayer").field(&self.shared).finish()
    }
}

impl SessionLayer {
    /// A layer over `store` with the [default config](SessionConfig::default).
    pub fn new(store: impl SessionStore) -> Self {
        Self::build(Arc::new(store), &SessionConfig::default())
    }

    /// The same layer with another config, after [validating](SessionConfig::validate) it.
    pub fn with_config(self, config: &SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(self.shared.store.clone(), config))
    }

    fn build(store: Arc<dyn SessionStore>, config: &SessionConfig) -> Self {
        let status =
            |code: u16| StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        Self {
            shared: Arc::new(Shared {
                store,
                cookie: CookieSettings {
                    name: config.cookie_name.clone(),
                    path: config.path.clone(),
                    domain: config.domain.clone(),
                    secure: config.secure,
                    same_site: config.same_site,
                    max_age_secs: i64::try_from(config.ttl.as_secs()).unwrap_or(i64::MAX),
                    keys: config
                        .signing_keys
                        .iter()
                        .map(|secret| Key::derive_from(secret.as_bytes()))
                        .collect(),
                },
                ttl: Duration::from_secs(config.ttl.as_secs()),
                touch_after_ms: millis(config.touch_after),
                load_error_status: status(config.load_error_status),
                save_error_status: status(config.save_error_status),
                absolute_ms: config.absolute_timeout.map(millis),
                clock: Clock::new(),
            }),
        }
    }

    /// Sets the absolute session lifetime (see
    /// [`SessionConfig::absolute_timeout`]): sessions created from now on end `timeout` after
    /// their creation, whatever their activity. At least 1 s.
    pub fn absolute_timeout(self, timeout: Duration) -> Result<Self, ConfigError> {
        validate_absolute_timeout(timeout)?;
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.absolute_ms = Some(millis(timeout));
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Session operations outside a request (e.g. an admin ending a user's sessions).
    pub fn sessions(&self) -> Sessions {
        Sessions {
            shared: self.shared.clone(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Session operations outside a request, from [`SessionLayer::sessions`].
#[derive(Clone)]
pub struct Sessions {
    shared: Arc<Shared>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Sessions").field(&self.shared).finish()
    }
}

impl Sessions {
    /// Ends every session bound to `user` (log out everywhere); returns how many ended.
    pub async fn destroy_all_for_user(&self, user: &str) -> Result<usize, StoreError> {
        self.shared.store.delete_user(user).await
    }

    /// The store.
    pub fn store(&self) -> &dyn SessionStore {
        &*self.shared.store
    }
}

/// The service of [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let presented = self.shared.cookie.read(req.headers());
        // A shared cache outside (or inside) this layer must not store a response that
        // changes the session: reuse the mark an outer layer put there, or put one for the
        // inner layers.
        let mark = PrivateMark::get_or_insert(req.extensions_mut());
        let session = Session::new(self.shared.clone(), presented, mark);
        req.extensions_mut().insert(session.clone());
        ResponseFuture {
            state: State::Inner {
                future: self.inner.call(req),
                session: Some(session),
            },
        }
    }
}

type Commit<B> = Pin<Box<dyn Future<Output = Response<B>> + Send>>;

pin_project! {
    /// The response future of [`SessionService`]: the inner response, then the session write.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner { #[pin] future: F, session: Option<Session> },
        Commit { future: Commit<B> },
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default + Send + 'static,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Inner { future, session } => {
                    let response = ready!(future.poll(cx))?;
                    let Some(session) = session.take().filter(Session::needs_commit) else {
                        return Poll::Ready(Ok(response));
                    };
                    let commit = Box::pin(commit(session, response));
                    self.as_mut()
                        .project()
                        .state
                        .set(State::Commit { future: commit });
                }
                StateProj::Commit { future } => {
                    return future.as_mut().poll(cx).map(Ok);
                }
            }
        }
    }
}

async fn commit<B: Default>(session: Session, mut response: Response<B>) -> Response<B> {
    match session.commit().await {
        Ok(Some(cookie)) => {
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Ok(None) => response,
        Err(error) => {
            // The client must not believe the change was kept: the handler's response is
            // replaced by the configured status.
            tracing::error!(%error, "session write failed; answering with the save error status");
            let mut failed = Response::new(B::default());
            *failed.status_mut() = session.save_error_status();
            failed
        }
    }
}
