//! Response compression that is right by default, as a preset over tower-http's
//! `CompressionLayer` (which does the encoding), plus bounded request decompression.
//!
//! # Overview
//!
//! [`CompressionLayer`] adds to tower-http what it leaves to the user:
//!
//! - **Negotiation with a server preference order**: `Accept-Encoding` q-values decide, ties go
//!   to the server's order (default zstd, br, gzip, deflate), `*` and `identity;q=0` are
//!   honoured.
//! - **A level per algorithm** (e.g. brotli 4 and gzip 6), where tower-http has one for all.
//! - **Skipped responses**: below a minimum size (default 1 KiB), already-compressed types
//!   (images, video, audio, archives, woff2), server-sent events, `Cache-Control:
//!   no-transform`, already encoded bodies, and `HEAD` requests.
//! - **Headers right**: `Vary: Accept-Encoding` on every response whose body depends on it,
//!   `Content-Length` dropped when the body is encoded (tower-http), and the `ETag` of an
//!   encoded variant made weak.
//!
//! [`RequestDecompressionLayer`] decompresses request bodies with a hard limit on the
//! decompressed size: a zip bomb is answered `413 Payload Too Large` and never allocated past
//! the limit.
//!
//! Place a response cache **outside** this layer: the cache then stores the encoded variant
//! (keyed by `Vary: Accept-Encoding`) and serves it without compressing again.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{Router, body::Body, http::Request, routing::get};
//! use tower::ServiceExt;
//! use tower_scale_compression::{CompressionLayer, Encoding};
//!
//! let app = Router::new()
//!     .route("/json", get(|| async { "{\"data\":\"".to_owned() + &"x".repeat(4096) + "\"}" }))
//!     .layer(CompressionLayer::new().level(Encoding::Gzip, 6));
//! let req = Request::get("/json").header("accept-encoding", "gzip;q=1, br;q=0.5").body(Body::empty()).unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["content-encoding"], "gzip");
//! assert_eq!(res.headers()["vary"], "accept-encoding");
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use tower::util::Oneshot;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::{CompressionBody, CompressionLevel};
use tower_layer::Layer;
use tower_service::Service;

/// A content coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// zstd.
    Zstd,
    /// Brotli (`br`).
    Br,
    /// gzip.
    Gzip,
    /// deflate.
    Deflate,
}

impl Encoding {
    /// The token in `Accept-Encoding` / `Content-Encoding`.
    pub const fn token(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Br => "br",
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
        }
    }
}

/// Types already compressed, or streamed, that are never compressed.
const SKIPPED_TYPES: &[&str] = &[
    "image/",
    "video/",
    "audio/",
    "font/woff",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "application/x-7z-compressed",
    "application/x-rar-compressed",
    "application/x-bzip2",
    "application/x-xz",
    "application/octet-stream",
    "application/grpc",
    "text/event-stream",
];

/// The layer's decision on a response: large enough, of a compressible type, and not marked
/// `Cache-Control: no-transform`.
#[derive(Clone, Debug)]
pub struct DefaultPredicate {
    min_size: u64,
    size: SizeAbove,
    skipped: Arc<[NotForContentType]>,
}

impl DefaultPredicate {
    /// Whether a response with these headers is one whose body depends on `Accept-Encoding`
    /// (content type, `no-transform`, and the body's size when known).
    fn varies(&self, headers: &http::HeaderMap, body_size: Option<u64>) -> bool {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let small = body_size
            .or_else(|| {
                headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .is_some_and(|len| len < self.min_size);
        !small
            && !SKIPPED_TYPES.iter().any(|t| content_type.starts_with(t))
            && !no_transform_headers(headers)
    }

    fn new(min_size: u16) -> Self {
        Self {
            min_size: u64::from(min_size),
            size: SizeAbove::new(u64::from(min_size)),
            skipped: SKIPPED_TYPES
                .iter()
                .map(|t| NotForContentType::const_new(t))
                .collect(),
        }
    }
}

fn no_transform<B>(response: &Response<B>) -> bool {
    no_transform_headers(response.headers())
}

fn no_transform_headers(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

impl Predicate for DefaultPredicate {
    fn should_compress<B>(&self, response: &Response<B>) -> bool
    where
        B: Body,
    {
        self.size.should_compress(response)
            && self.skipped.iter().all(|p| p.should_compress(response))
            && !no_transform(response)
    }
}

/// Settings of [`CompressionLayer`] (serde).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressionConfig {
    /// Enabled encodings, most preferred first. Default zstd, br, gzip, deflate.
    pub encodings: Vec<Encoding>,
    /// Bodies smaller than this are sent as they are. Default 1024 bytes.
    pub min_size: u16,
    /// Level per encoding (algorithm-specific numbers); missing ones use tower-http's default.
    /// Default: brotli 4 (brotli's own default, 11, costs far more CPU per byte saved).
    pub levels: Vec<(Encoding, i32)>,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            encodings: vec![
                Encoding::Zstd,
                Encoding::Br,
                Encoding::Gzip,
                Encoding::Deflate,
            ],
            min_size: 1024,
            levels: vec![(Encoding::Br, 4)],
        }
    }
}

/// Compresses responses; see the [crate docs](crate).
#[derive(Clone, Debug, Default)]
pub struct CompressionLayer {
    config: CompressionConfig,
}

impl CompressionLayer {
    /// The defaults of [`CompressionConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// From a config.
    pub fn from_config(config: CompressionConfig) -> Self {
        Self { config }
    }

    /// Enabled encodings, most preferred first.
    #[must_use]
    pub fn encodings(mut self, encodings: &[Encoding]) -> Self {
        self.config.encodings = encodings.to_vec();
        self
    }

    /// The level of one encoding.
    #[must_use]
    pub fn level(mut self, encoding: Encoding, level: i32) -> Self {
        self.config.levels.retain(|(e, _)| *e != encoding);
        self.config.levels.push((encoding, level));
        self
    }

    /// The minimum body size compressed.
    #[must_use]
    pub fn min_size(mut self, bytes: u16) -> Self {
        self.config.min_size = bytes;
        self
    }
}

type Inner<S> = tower_http::compression::Compression<S, DefaultPredicate>;

fn variant<S>(inner: S, encoding: Option<Encoding>, config: &CompressionConfig) -> Inner<S> {
    let predicate = DefaultPredicate::new(config.min_size);
    let mut layer = tower_http::compression::CompressionLayer::new()
        .no_br()
        .no_deflate()
        .no_gzip()
        .no_zstd();
    if let Some(encoding) = encoding {
        layer = match encoding {
            Encoding::Zstd => layer.zstd(true),
            Encoding::Br => layer.br(true),
            Encoding::Gzip => layer.gzip(true),
            Encoding::Deflate => layer.deflate(true),
        };
        if let Some((_, level)) = config.levels.iter().find(|(e, _)| *e == encoding) {
            layer = layer.quality(CompressionLevel::Precise(*level));
        }
    }
    layer.compress_when(predicate).layer(inner)
}

impl<S: Clone> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let variants = self
            .config
            .encodings
            .iter()
            .map(|e| (*e, variant(inner.clone(), Some(*e), &self.config)))
            .collect::<Vec<_>>();
        Compression {
            preference: self.config.encodings.iter().copied().collect(),
            identity: variant(inner, None, &self.config),
            variants: variants.into(),
            predicate: DefaultPredicate::new(self.config.min_size),
        }
    }
}

/// The middleware built by [`CompressionLayer`].
#[derive(Clone)]
pub struct Compression<S> {
    preference: Arc<[Encoding]>,
    variants: Arc<[(Encoding, Inner<S>)]>,
    identity: Inner<S>,
    predicate: DefaultPredicate,
}

impl<S> std::fmt::Debug for Compression<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compression")
            .field(
                "encodings",
                &self.variants.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
            )
            .field("predicate", &self.predicate)
            .finish()
    }
}

/// The encoding to use for `accept` (an `Accept-Encoding` value), given the server's
/// preference order; `None` means identity.
pub fn negotiate(accept: Option<&str>, preference: &[Encoding]) -> Option<Encoding> {
    let accept = accept?;
    let mut star: Option<f32> = None;
    let mut explicit: Vec<(&str, f32)> = Vec::new();
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if coding.is_empty() {
            continue;
        }
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        if coding == "*" {
            star = Some(q);
        } else {
            explicit.push((coding, q));
        }
    }
    let mut best: Option<(Encoding, f32)> = None;
    for &encoding in preference {
        let q = explicit
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(encoding.token()))
            .map(|(_, q)| *q)
            .or(star)
            .unwrap_or(0.0);
        // Strictly greater: on a tie the earlier (preferred) encoding stays.
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((encoding, q));
        }
    }
    best.map(|(e, _)| e)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Compression<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<CompressionBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<Oneshot<Inner<S>, Request<ReqBody>>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is driven per request by `oneshot` on the variant that serves it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let chosen = if req.method() == Method::HEAD {
            None
        } else {
            let accept = req
                .headers()
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok());
            negotiate(accept, &self.preference)
        };
        let service = match chosen {
            Some(encoding) => {
                req.headers_mut().insert(
                    header::ACCEPT_ENCODING,
                    HeaderValue::from_static(encoding.token()),
                );
                self.variants
                    .iter()
                    .find(|(e, _)| *e == encoding)
                    .map_or_else(|| self.identity.clone(), |(_, s)| s.clone())
            }
            None => self.identity.clone(),
        };
        ResponseFuture {
            inner: service.oneshot(req),
            encoded: chosen.is_some(),
            predicate: self.predicate.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`Compression`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        encoded: bool,
        predicate: DefaultPredicate,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<CompressionBody<B>>, E>>,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.inner.poll(cx))?;
        let compressed = *this.encoded && res.headers().contains_key(header::CONTENT_ENCODING);
        let size = res.body().size_hint().exact();
        if compressed || this.predicate.varies(res.headers(), size) {
            add_vary(res.headers_mut());
        } else {
            // tower-http marks every response of a request that accepted an encoding; a body
            // that can never be encoded does not vary, and saying it does splits caches.
            remove_vary(res.headers_mut());
        }
        if compressed {
            weaken_etag(res.headers_mut());
        }
        Poll::Ready(Ok(res))
    }
}

fn add_vary(headers: &mut http::HeaderMap) {
    let present = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            let v = v.trim();
            v == "*" || v.eq_ignore_ascii_case("accept-encoding")
        });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

fn remove_vary(headers: &mut http::HeaderMap) {
    let values: Vec<String> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("accept-encoding"))
        .map(str::to_owned)
        .collect();
    headers.remove(header::VARY);
    if !values.is_empty()
        && let Ok(value) = HeaderValue::from_str(&values.join(", "))
    {
        headers.insert(header::VARY, value);
    }
}

fn weaken_etag(headers: &mut http::HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    let Ok(etag) = etag.to_str() else {
        return;
    };
    if etag.starts_with("W/") {
        return;
    }
    if let Ok(weak) = HeaderValue::from_str(&format!("W/{etag}")) {
        headers.insert(header::ETAG, weak);
    }
}

/// Decompresses request bodies (gzip, br, zstd, deflate) with a hard limit on the decompressed
/// size: past `max_bytes` reading the body fails with tower-http's length-limit error, which
/// axum's extractors answer with `413 Payload Too Large`. tower-http's
/// `RequestDecompressionLayer` inside a `RequestBodyLimitLayer` applied to the decompressed
/// stream.
#[derive(Clone, Copy, Debug)]
pub struct RequestDecompressionLayer {
    max_bytes: usize,
}

impl RequestDecompressionLayer {
    /// Decompressed bodies are limited to `max_bytes`.
    pub const fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

/// The stack built by [`RequestDecompressionLayer`].
pub type RequestDecompression<S> =
    tower_http::decompression::RequestDecompression<tower_http::limit::RequestBodyLimit<S>>;

impl<S> Layer<S> for RequestDecompressionLayer {
    type Service = RequestDecompression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        // The limit wraps the *decompressed* body, so it counts what would be allocated.
        let limited = tower_http::limit::RequestBodyLimitLayer::new(self.max_bytes).layer(inner);
        tower_http::decompression::RequestDecompressionLayer::new().layer(limited)
    }
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
