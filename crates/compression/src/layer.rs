use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body::Body;
use tower::ServiceExt;
use tower_http::compression::CompressionLevel;
use tower_layer::Layer;
use tower_scale_metrics::LagWatch;
use tower_scale_offload::Offload;
use tower_service::Service;

use crate::adaptive::{LagSignal, Load, LoadSignal};
use crate::body::Fuse;
use crate::config::{lookup, shared_pool};
use crate::future::ResponseFuture;
use crate::predicate::{DefaultPredicate, VariantPredicate, negotiate_index};
use crate::{BoxError, CompressionBody, CompressionConfig, ConfigError, Encoding};

/// Compresses responses; see the [crate docs](crate).
///
/// Cloning is cheap; clones share the offload pool and the load signal.
#[derive(Clone)]
pub struct CompressionLayer {
    config: CompressionConfig,
    offload: Offload,
    signal: Option<SignalSource>,
}

#[derive(Clone)]
enum SignalSource {
    Lag(LagWatch),
    Custom(Arc<dyn LoadSignal>),
}

impl fmt::Debug for CompressionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressionLayer")
            .field("config", &self.config)
            .field("offload", &self.offload)
            .field(
                "signal",
                &match self.signal {
                    None => "none",
                    Some(SignalSource::Lag(_)) => "scheduling lag",
                    Some(SignalSource::Custom(_)) => "custom",
                },
            )
            .finish()
    }
}

impl Default for CompressionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CompressionLayer {
    /// The defaults of [`CompressionConfig`].
    pub fn new() -> Self {
        Self {
            config: CompressionConfig::default(),
            offload: shared_pool(),
            signal: None,
        }
    }

    /// From a config; an invalid one is an error naming the field.
    pub fn from_config(config: CompressionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let offload = match &config.offload.pool {
            None => shared_pool(),
            Some(pool) => {
                Offload::from_config(pool).map_err(|e| ConfigError(format!("offload.pool: {e}")))?
            }
        };
        Ok(Self {
            config,
            offload,
            signal: None,
        })
    }

    /// The config in force.
    pub fn config(&self) -> &CompressionConfig {
        &self.config
    }

    /// Enabled encodings, most preferred first (a repeated one counts once).
    #[must_use]
    pub fn encodings(mut self, encodings: &[Encoding]) -> Self {
        self.config.encodings.clear();
        for e in encodings {
            if !self.config.encodings.contains(e) {
                self.config.encodings.push(*e);
            }
        }
        self
    }

    /// The level of one encoding, clamped to [`Encoding::levels`].
    #[must_use]
    pub fn level(mut self, encoding: Encoding, level: i32) -> Self {
        self.config.levels.retain(|(e, _)| *e != encoding);
        self.config.levels.push((encoding, encoding.clamp(level)));
        self
    }

    /// The minimum body size compressed.
    #[must_use]
    pub fn min_size(mut self, bytes: u16) -> Self {
        self.config.min_size = bytes;
        self
    }

    /// Bodies of known length from `bytes` on are encoded on the pool (default 64 KiB).
    #[must_use]
    pub fn offload_above(mut self, bytes: u64) -> Self {
        self.config.offload.min_size = bytes;
        self
    }

    /// Every body is encoded on the async workers, by tower-http.
    #[must_use]
    pub fn no_offload(mut self) -> Self {
        self.config.offload.enabled = false;
        self
    }

    /// Encodes on this pool (for example the application's own rayon pool) instead of the one
    /// built from [`OffloadPolicy::pool`](crate::OffloadPolicy::pool).
    #[must_use]
    pub fn offload_with(mut self, offload: Offload) -> Self {
        self.offload = offload;
        self
    }

    /// Lowers the levels while the tokio scheduling lag measured by a
    /// `tower_scale_metrics::RuntimeProbe` is high: busy from
    /// [`AdaptiveConfig::busy_lag`](crate::AdaptiveConfig::busy_lag), saturated from
    /// [`saturated_lag`](crate::AdaptiveConfig::saturated_lag).
    #[must_use]
    pub fn adapt_to_lag(mut self, watch: LagWatch) -> Self {
        self.signal = Some(SignalSource::Lag(watch));
        self
    }

    /// Lowers the levels following any [`LoadSignal`] (a closure returning a [`Load`] works).
    #[must_use]
    pub fn adapt_with(mut self, signal: impl LoadSignal) -> Self {
        self.signal = Some(SignalSource::Custom(Arc::new(signal)));
        self
    }

    /// The level of `encoding` under `load`.
    fn level_at(&self, encoding: Encoding, load: Load) -> i32 {
        let normal = self.config.level_of(encoding);
        let adaptive = &self.config.adaptive;
        let busy = lookup(&adaptive.busy_levels, encoding).map_or(normal, |l| normal.min(l));
        match load {
            Load::Normal => normal,
            Load::Busy => busy,
            Load::Saturated => {
                lookup(&adaptive.saturated_levels, encoding).map_or(busy, |l| busy.min(l))
            }
        }
    }
}

/// What one tower-http variant does: its encoding, its level, and which bodies it leaves to
/// the pool.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) encoding: Encoding,
    pub(crate) level: i32,
    pub(crate) predicate: VariantPredicate,
}

/// State shared by every request through one service.
pub(crate) struct Shared {
    pub(crate) preference: Box<[Encoding]>,
    /// Variants per encoding: 3 with a load signal (one per [`Load`]), else 1.
    pub(crate) tiers: usize,
    /// Indexed like the variants: `preference index * tiers + load index`.
    pub(crate) plans: Box<[Plan]>,
    pub(crate) predicate: DefaultPredicate,
    pub(crate) offload: Offload,
    pub(crate) signal: Option<Arc<dyn LoadSignal>>,
}

pub(crate) type Inner<S> = tower_http::compression::Compression<Fuse<S>, VariantPredicate>;

impl<S: Clone> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let config = &self.config;
        let signal: Option<Arc<dyn LoadSignal>> = match &self.signal {
            None => None,
            Some(SignalSource::Custom(s)) => Some(Arc::clone(s)),
            Some(SignalSource::Lag(watch)) => Some(Arc::new(LagSignal::new(
                watch.clone(),
                config.adaptive.busy_lag,
                config.adaptive.saturated_lag,
            ))),
        };
        let loads: &[Load] = if signal.is_some() {
            &Load::ALL
        } else {
            &[Load::Normal]
        };
        let base = DefaultPredicate::new(config.min_size);
        let mut plans = Vec::with_capacity(config.encodings.len() * loads.len());
        let mut variants = Vec::with_capacity(plans.capacity());
        for &encoding in &config.encodings {
            for &load in loads {
                let level = self.level_at(encoding, load);
                let predicate = VariantPredicate {
                    base: base.clone(),
                    offload: config
                        .offload
                        .offload_from(encoding, level, config.min_size)
                        .map(|from| (from, config.offload.max_buffered)),
                };
                let layer = tower_http::compression::CompressionLayer::new()
                    .no_br()
                    .no_deflate()
                    .no_gzip()
                    .no_zstd();
                let layer = match encoding {
                    Encoding::Zstd => layer.zstd(true),
                    Encoding::Br => layer.br(true),
                    Encoding::Gzip => layer.gzip(true),
                    Encoding::Deflate => layer.deflate(true),
                };
                variants.push(
                    layer
                        .quality(CompressionLevel::Precise(level))
                        .compress_when(predicate.clone())
                        .layer(Fuse::new(inner.clone())),
                );
                plans.push(Plan {
                    encoding,
                    level,
                    predicate,
                });
            }
        }
        Compression {
            inner: Arc::new(inner),
            variants: variants.into(),
            shared: Arc::new(Shared {
                preference: config.encodings.clone().into(),
                tiers: loads.len(),
                plans: plans.into(),
                predicate: base,
                offload: self.offload.clone(),
                signal,
            }),
        }
    }
}

/// The middleware built by [`CompressionLayer`].
pub struct Compression<S> {
    // Behind an `Arc` so that cloning this service (axum does per request) clones no inner
    // service: only the one that serves the request is cloned, in `call`.
    inner: Arc<S>,
    variants: Arc<[Inner<S>]>,
    shared: Arc<Shared>,
}

impl<S> Clone for Compression<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            variants: Arc::clone(&self.variants),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> fmt::Debug for Compression<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compression")
            .field("encodings", &self.shared.preference)
            .field("plans", &self.shared.plans)
            .field("offload", &self.shared.offload)
            .field("adaptive", &self.shared.signal.is_some())
            .finish()
    }
}

/// The encoding to use for `accept` (an `Accept-Encoding` value), given the server's
/// preference order; `None` means identity.
pub fn negotiate(accept: Option<&str>, preference: &[Encoding]) -> Option<Encoding> {
    negotiate_index(accept, preference).map(|i| preference[i])
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Compression<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<CompressionBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is driven per request by `oneshot` on the service that serves it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let chosen = if req.method() == Method::HEAD {
            None
        } else {
            let accept = req
                .headers()
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok());
            negotiate_index(accept, &shared.preference)
        };
        let Some(index) = chosen else {
            return ResponseFuture::identity(
                S::clone(&self.inner).oneshot(req),
                Arc::clone(&self.shared),
            );
        };
        let load = shared.signal.as_ref().map_or(Load::Normal, |s| s.load());
        let variant = index * shared.tiers + load.index().min(shared.tiers - 1);
        let encoding = shared.preference[index];
        req.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static(encoding.token()),
        );
        ResponseFuture::encoded(
            self.variants[variant].clone().oneshot(req),
            Arc::clone(&self.shared),
            variant,
        )
    }
}
