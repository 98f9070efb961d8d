use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
#[cfg(feature = "pool")]
use tower_http::compression::predicate::Predicate;
use tower_service::Service;

use crate::body::FuseFuture;
use crate::predicate::{DefaultPredicate, VariantPredicate, add_vary, remove_vary, weaken_etag};
use crate::shared::Shared;
use crate::{BoxError, CompressionBody};

type Offloaded<B> = Pin<Box<dyn Future<Output = Response<CompressionBody<B>>> + Send>>;

/// What tower-http's `Compression` answers when it is lent the inner service.
type Encoded<F> = tower_http::compression::ResponseFuture<FuseFuture<F>, VariantPredicate>;

pin_project! {
    /// Response future of [`Compression`](crate::Compression).
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Body,
    {
        #[pin]
        state: State<S::Future, ResBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, ResBody>
    where
        ResBody: Body,
    {
        // The client takes no encoding (or `HEAD`): the inner service, untouched.
        Identity {
            #[pin]
            fut: F,
            predicate: DefaultPredicate,
        },
        // Through the tower-http variant of the chosen encoding and level.
        Encoded {
            #[pin]
            fut: Encoded<F>,
            shared: Arc<Shared>,
            variant: usize,
        },
        // Collecting the body, then encoding it on the pool.
        #[cfg_attr(not(feature = "pool"), allow(dead_code))]
        Offloading {
            fut: Offloaded<ResBody>,
        },
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    pub(crate) fn identity(fut: S::Future, predicate: DefaultPredicate) -> Self {
        Self {
            state: State::Identity { fut, predicate },
        }
    }

    pub(crate) fn encoded(fut: Encoded<S::Future>, shared: Arc<Shared>, variant: usize) -> Self {
        Self {
            state: State::Encoded {
                fut,
                shared,
                variant,
            },
        }
    }
}

impl<S, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Identity { .. } => "identity",
            State::Encoded { .. } => "encoded",
            State::Offloading { .. } => "offloading",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<CompressionBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        #[cfg_attr(not(feature = "pool"), allow(unused_variables))]
        let (shared, variant, res) = match self.as_mut().project().state.project() {
            StateProj::Identity { fut, predicate } => {
                let res = ready!(fut.poll(cx))?;
                return Poll::Ready(Ok(pass_through(predicate, res)));
            }
            StateProj::Offloading { fut } => return fut.as_mut().poll(cx).map(Ok),
            StateProj::Encoded {
                fut,
                shared,
                variant,
            } => (&**shared, *variant, ready!(fut.poll(cx))?),
        };
        if res.headers().contains_key(header::CONTENT_ENCODING) {
            // Encoded by tower-http (or by the inner service already).
            let (mut parts, body) = res.into_parts();
            add_vary(&mut parts.headers);
            weaken_etag(&mut parts.headers);
            return Poll::Ready(Ok(Response::from_parts(
                parts,
                CompressionBody::streamed(body),
            )));
        }
        // tower-http left the body as it is: unwrap it, so that what is passed on is the inner
        // body, not tower-http's (which holds room for every encoder's state).
        let res = res.map(|body| body.into_inner().into_inner());
        #[cfg(feature = "pool")]
        if !res.headers().contains_key(header::CONTENT_RANGE) {
            let plan = shared.plan(variant);
            let exact = res.body().size_hint().exact();
            if plan.predicate.offloads(exact) && plan.predicate.base.should_compress(&res) {
                // Left alone for us to encode on the pool.
                let (parts, body) = res.into_parts();
                let fut = Box::pin(crate::encode::encode_on_pool(
                    parts,
                    body,
                    exact.unwrap_or(0),
                    plan.clone(),
                    shared.offload(),
                ));
                self.as_mut().project().state.set(State::Offloading { fut });
                return self.poll(cx);
            }
        }
        Poll::Ready(Ok(pass_through(&shared.predicate(), res)))
    }
}

/// A response sent as the inner service made it, with `Vary: Accept-Encoding` when another
/// request could get it encoded, and without when none could.
fn pass_through<B: Body>(
    predicate: &DefaultPredicate,
    mut res: Response<B>,
) -> Response<CompressionBody<B>> {
    let size = res.body().size_hint().exact();
    if predicate.varies(res.headers(), size) {
        add_vary(res.headers_mut());
    } else {
        remove_vary(res.headers_mut());
    }
    res.map(CompressionBody::identity)
}
