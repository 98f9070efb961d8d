//! [`ResponseFuture`]: the inner response, then the session write.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Response, header};
use pin_project_lite::pin_project;
use tower_scale_core::{DefaultRefusal, Refusal, Refuse};

use crate::session::Session;

/// The reason of the refusal that replaces the response when the session write fails.
const REASON: &str = "session-unavailable";

type Commit<B> = Pin<Box<dyn Future<Output = Response<B>> + Send>>;

pin_project! {
    /// The response future of [`SessionManager`](crate::SessionManager): the inner response,
    /// then the session write.
    pub struct ResponseFuture<F, B, R = DefaultRefusal> {
        #[pin]
        state: State<F, B, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, R> {
        Inner { #[pin] future: F, session: Option<Session>, refuse: Option<R> },
        Commit { future: Commit<B> },
    }
}

impl<F, B, R> ResponseFuture<F, B, R> {
    pub(crate) fn new(future: F, session: Session, refuse: R) -> Self {
        Self {
            state: State::Inner {
                future,
                session: Some(session),
                refuse: Some(refuse),
            },
        }
    }
}

impl<F, B, R> fmt::Debug for ResponseFuture<F, B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E, R> Future for ResponseFuture<F, B, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Send + 'static,
    R: Refuse<B>,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Inner {
                    future,
                    session,
                    refuse,
                } => {
                    let response = ready!(future.poll(cx))?;
                    let Some(session) = session.take().filter(Session::needs_commit) else {
                        return Poll::Ready(Ok(response));
                    };
                    let Some(refuse) = refuse.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    let commit = Box::pin(commit(session, response, refuse));
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

async fn commit<B, R: Refuse<B>>(
    session: Session,
    mut response: Response<B>,
    refuse: R,
) -> Response<B> {
    match session.commit().await {
        Ok(Some(cookie)) => {
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Ok(None) => response,
        Err(error) => {
            // The client must not believe the change was kept: the handler's response is
            // replaced by the refusal, with the configured status.
            tracing::error!(%error, "session write failed; answering with the save error status");
            refuse.refuse(&Refusal::new(session.save_error_status(), REASON).detail(&error))
        }
    }
}
