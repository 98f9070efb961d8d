//! W3C trace context (`traceparent`, `tracestate`) across services, through `tracing` and
//! OpenTelemetry (feature `otel`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::instrument::Instrumented;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Opens one `tracing` span per request whose OpenTelemetry parent is the request's W3C
/// `traceparent`/`tracestate` (a new trace when absent or malformed), so a service called by
/// another reports its spans in the caller's trace. Every layer and handler inside logs into
/// that span: their events carry its trace id. The response carries the span's own
/// `traceparent` (and `tracestate`), so a client learns the trace its request is in.
///
/// The span is named `request` with `otel.name` = the method (set `http.route` by a span of
/// your own inside the router when you want the matched path). Outgoing calls made inside it
/// carry the context on with [`inject_context`].
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_scale_metrics::TraceContextLayer;
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .layer(TraceContextLayer::new());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextLayer {
    _priv: (),
}

impl TraceContextLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for TraceContextLayer {
    type Service = TraceContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContext { inner }
    }
}

/// The service of [`TraceContextLayer`].
#[derive(Debug, Clone)]
pub struct TraceContext<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for TraceContext<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TraceContextFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let parent = TraceContextPropagator::new().extract(&Headers(req.headers()));
        let span = tracing::info_span!(
            "request",
            otel.name = %req.method(),
            http.request.method = %req.method(),
        );
        // Without an OpenTelemetry layer in the subscriber there is nothing to parent.
        let _ = span.set_parent(parent);
        TraceContextFuture {
            inner: tracing::Instrument::instrument(self.inner.call(req), span),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`TraceContext`]: the inner future, inside the request's span;
    /// then the span's context written into the response's headers.
    pub struct TraceContextFuture<F> {
        #[pin]
        inner: Instrumented<F>,
    }
}

impl<F, B, E> Future for TraceContextFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = self.project().inner;
        let mut result = std::task::ready!(inner.as_mut().poll(cx));
        if let Ok(res) = &mut result {
            let context = inner.span().context();
            TraceContextPropagator::new()
                .inject_context(&context, &mut HeadersMut(res.headers_mut()));
        }
        Poll::Ready(result)
    }
}

/// Writes the current span's trace context as `traceparent` (and `tracestate` when there is
/// one) into the headers of an outgoing request, so the service it calls joins the trace.
/// Nothing is written outside a span exported through OpenTelemetry.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// tower_scale_metrics::inject_context(&mut headers);
/// assert!(headers.get("traceparent").is_none(), "no span, no context");
/// ```
pub fn inject_context(headers: &mut HeaderMap) {
    let cx = Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(headers));
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
