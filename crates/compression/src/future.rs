use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_http::compression::predicate::Predicate;
use tower_scale_offload::Offload;
use tower_service::Service;

use crate::body::FuseFuture;
use crate::predicate::{DefaultPredicate, VariantPredicate, add_vary, remove_vary, weaken_etag};
use crate::shared::{Plan, Shared};
use crate::{BoxError, CompressionBody, Encoding};

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
        let plan = shared.plan(variant);
        if !res.headers().contains_key(header::CONTENT_RANGE) {
            let exact = res.body().size_hint().exact();
            if plan.predicate.offloads(exact) && plan.predicate.base.should_compress(&res) {
                // Left alone for us to encode on the pool.
                let (parts, body) = res.into_parts();
                let fut = Box::pin(encode_on_pool(
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

/// Collects the body (on the async worker: it is I/O), encodes it on the pool, and answers
/// with the encoded bytes and their exact `Content-Length`. When the pool is full, or the
/// encoder fails, the collected body goes out as it is: correct, only larger.
async fn encode_on_pool<B>(
    mut parts: http::response::Parts,
    body: B,
    len: u64,
    plan: Plan,
    offload: Offload,
) -> Response<CompressionBody<B>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (data, trailers) = match collect(body, len).await {
        Ok(collected) => collected,
        Err(error) => return Response::from_parts(parts, CompressionBody::failed(error)),
    };
    add_vary(&mut parts.headers);
    let input = data.clone();
    let Plan {
        encoding, level, ..
    } = plan;
    match offload
        .run(move || crate::encode::encode(encoding, level, &input))
        .await
    {
        Ok(Ok(encoded)) => {
            set_encoded_headers(&mut parts.headers, encoding, encoded.len());
            Response::from_parts(
                parts,
                CompressionBody::buffered(Bytes::from(encoded), trailers),
            )
        }
        Ok(Err(_)) | Err(_) => {
            Response::from_parts(parts, CompressionBody::buffered(data, trailers))
        }
    }
}

fn set_encoded_headers(headers: &mut HeaderMap, encoding: Encoding, len: usize) {
    headers.remove(header::ACCEPT_RANGES);
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.token()),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    weaken_etag(headers);
}

/// The whole body: a body of one chunk (the usual `Full` body) is taken without a copy.
async fn collect<B>(body: B, len: u64) -> Result<(Bytes, Option<HeaderMap>), BoxError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = pin!(body);
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    let mut trailers = None;
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(Into::into)?;
        match frame.into_data() {
            Ok(mut data) => {
                let chunk = data.copy_to_bytes(data.remaining());
                if let Some(buf) = joined.as_mut() {
                    buf.extend_from_slice(&chunk);
                } else if first.is_empty() {
                    first = chunk;
                } else if !chunk.is_empty() {
                    let capacity = usize::try_from(len).unwrap_or(0);
                    let mut buf = BytesMut::with_capacity(capacity.max(first.len() + chunk.len()));
                    buf.extend_from_slice(&first);
                    buf.extend_from_slice(&chunk);
                    joined = Some(buf);
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok((joined.map_or(first, BytesMut::freeze), trailers))
}
