//! The middleware as a tower service: readiness, the inner service held once, clones of a layer
//! configured apart, and what a passed-through response keeps.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;
use tower::{Layer, Service, ServiceExt};
use tower_scale_compression::{CompressionLayer, Encoding};

const TEXT: &str = "a line of text that compresses well, repeated many times over\n";

/// A service that is ready only while its gate is open, counts its clones and its calls, and
/// answers `body` as `text/plain`.
#[derive(Debug)]
struct Gated {
    open: Arc<AtomicBool>,
    clones: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    body: Bytes,
}

impl Clone for Gated {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Self {
            open: Arc::clone(&self.open),
            clones: Arc::clone(&self.clones),
            calls: Arc::clone(&self.calls),
            body: self.body.clone(),
        }
    }
}

impl Service<Request<Body>> for Gated {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.open.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _req: Request<Body>) -> Self::Future {
        assert!(self.open.load(Ordering::SeqCst), "called while not ready");
        self.calls.fetch_add(1, Ordering::SeqCst);
        let res = Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::CONTENT_LENGTH, self.body.len())
            .body(Body::from(self.body.clone()))
            .unwrap();
        ready(Ok(res))
    }
}

fn gated(body: impl Into<Bytes>) -> Gated {
    Gated {
        open: Arc::new(AtomicBool::new(false)),
        clones: Arc::new(AtomicUsize::new(0)),
        calls: Arc::new(AtomicUsize::new(0)),
        body: body.into(),
    }
}

fn get(accept: Option<&str>) -> Request<Body> {
    let mut req = Request::get("/");
    if let Some(accept) = accept {
        req = req.header(header::ACCEPT_ENCODING, accept);
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn readiness_is_the_inner_services_and_no_request_clones_it() {
    let inner = gated(TEXT.repeat(100));
    let (open, clones, calls) = (
        Arc::clone(&inner.open),
        Arc::clone(&inner.clones),
        Arc::clone(&inner.calls),
    );
    let mut svc = CompressionLayer::new().layer(inner);
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(
        svc.poll_ready(&mut cx).is_pending(),
        "an inner service that is not ready makes the layer not ready"
    );
    open.store(true, Ordering::SeqCst);
    for accept in [Some("gzip"), None, Some("br;q=0.5, zstd;q=0")] {
        let res = svc.ready().await.unwrap().call(get(accept)).await.unwrap();
        assert_eq!(
            res.headers()
                .get(header::CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap()),
            accept.map(|_| if accept == Some("gzip") { "gzip" } else { "br" }),
        );
        res.into_body().collect().await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        clones.load(Ordering::SeqCst),
        0,
        "the inner service is lent to the encoder, never cloned per request"
    );
}

#[tokio::test]
async fn clones_of_a_layer_configured_apart_stay_apart() {
    let base = CompressionLayer::new().encodings(&[Encoding::Gzip]);
    let fast = base.clone().level(Encoding::Gzip, 1);
    let best = base.clone().level(Encoding::Gzip, 9).min_size(u16::MAX);
    assert_eq!(base.config().level_of(Encoding::Gzip), 6);
    assert_eq!(fast.config().level_of(Encoding::Gzip), 1);
    assert_eq!(best.config().min_size, u16::MAX);
    assert_eq!(base.config().min_size, 1024);

    let body = TEXT.repeat(200);
    let fetch = |layer: &CompressionLayer| {
        let inner = gated(body.clone());
        inner.open.store(true, Ordering::SeqCst);
        layer.layer(inner).oneshot(get(Some("gzip")))
    };
    let res = fetch(&fast).await.unwrap();
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
    let encoded = res.into_body().collect().await.unwrap().to_bytes();
    // The level is in the gzip header: XFL 4 is "fastest", 2 "best" (and 0 for the rest).
    assert_eq!(encoded[8], 4, "gzip level 1 from the clone that set it");
    let mut decoded = String::new();
    async_compression::tokio::bufread::GzipDecoder::new(&encoded[..])
        .read_to_string(&mut decoded)
        .await
        .unwrap();
    assert_eq!(decoded, body);

    let res = fetch(&best).await.unwrap();
    assert!(
        res.headers().get(header::CONTENT_ENCODING).is_none(),
        "its own min_size: too small"
    );
    let res = fetch(&base).await.unwrap();
    let encoded = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(encoded[8], 0, "the base keeps level 6");
}

#[tokio::test]
async fn a_passed_through_response_keeps_its_length_and_bytes() {
    // Below the threshold with an encoding accepted, and with none accepted.
    for (body, accept) in [
        ("hello".to_owned(), Some("gzip")),
        (TEXT.repeat(100), None),
        (TEXT.repeat(100), Some("identity")),
    ] {
        let inner = gated(body.clone());
        inner.open.store(true, Ordering::SeqCst);
        let res = CompressionLayer::new()
            .layer(inner)
            .oneshot(get(accept))
            .await
            .unwrap();
        assert!(res.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(
            res.headers()[header::CONTENT_LENGTH],
            body.len().to_string().as_str()
        );
        assert_eq!(
            res.body().size_hint().exact(),
            Some(body.len() as u64),
            "the body's exact size is still known (hyper sends Content-Length from it)"
        );
        let got = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got, body.as_bytes());
    }
}
