//! [`SessionManager`]: the middleware service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_scale_core::{DefaultRefusal, PrivateMark, Refuse};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::SessionManagerLayer;
use crate::session::Session;
use crate::shared::Shared;
use crate::store::Store;

/// The service of [`SessionManagerLayer`]: puts a lazy [`Session`] in each request and writes
/// its changes after the handler.
///
/// ```
/// use std::convert::Infallible;
/// use tower_scale_session::{MemoryStore, Session, SessionManager};
///
/// let service = tower::ServiceBuilder::new()
///     .layer(SessionManager::layer(MemoryStore::new()))
///     .service(tower::service_fn(|req: http::Request<()>| async move {
///         let session = req.extensions().get::<Session>().expect("the layer put it there");
///         session.insert("seen", &true).expect("not a reserved name");
///         Ok::<_, Infallible>(http::Response::new(String::new()))
///     }));
/// let _handler = service.get_ref();
/// ```
#[derive(Clone)]
pub struct SessionManager<S, R = DefaultRefusal> {
    inner: S,
    shared: Arc<Shared>,
    refuse: R,
}

impl<S: fmt::Debug, R> fmt::Debug for SessionManager<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl SessionManager<()> {
    /// A [`SessionManagerLayer`] over `store` with the default config.
    pub fn layer(store: impl Store) -> SessionManagerLayer {
        SessionManagerLayer::new(store)
    }
}

impl<S, R> SessionManager<S, R> {
    pub(crate) fn from_parts(inner: S, shared: Arc<Shared>, refuse: R) -> Self {
        Self {
            inner,
            shared,
            refuse,
        }
    }

    tower_scale_core::inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for SessionManager<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: Refuse<ResBody>,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let presented = self.shared.cookie().read(req.headers());
        // A shared cache outside (or inside) this layer must not store a response that
        // changes the session: reuse the mark an outer layer put there, or put one for the
        // inner layers.
        let mark = PrivateMark::get_or_insert(req.extensions_mut());
        let session = Session::new(self.shared.clone(), presented, mark);
        req.extensions_mut().insert(session.clone());
        ResponseFuture::new(self.inner.call(req), session, self.refuse.clone())
    }
}
