use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body::Body;
use tower_http::compression::CompressionLevel;
use tower_layer::Layer;
use tower_scale_metrics::LagWatch;
use tower_scale_offload::Offload;
use tower_service::Service;

use crate::adaptive::{LagSignal, Load, LoadSignal};
use crate::body::Lend;
use crate::config::{lookup, shared_pool};
use crate::future::ResponseFuture;
use crate::predicate::{DefaultPredicate, VariantPredicate, negotiate_index};
use crate::{BoxError, CompressionBody, CompressionConfig, ConfigError, Encoding};

/// Compresses responses; see the [crate docs](crate).
///
/// Cloning is cheap (a few reference counts); clones share the config, the offload pool, the
/// load signal and the tower-http variants, which the builder methods prepare, so that
/// [`layer`](Layer::layer) only wraps the inner service (axum applies a router's layers again for
/// each request to a router without state, and for each connection when serving).
#[derive(Clone)]
pub struct CompressionLayer {
    config: Arc<CompressionConfig>,
    /// `None`: the pool shared by the process, built on the first encode that needs it.
    offload: Option<Offload>,
    signal: Option<SignalSource>,
    shared: Arc<Shared>,
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
            .field("offload", &OffloadDebug(self.offload.as_ref()))
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
        Self::build(CompressionConfig::default(), None, None)
    }

    /// From a config; an invalid one is an error naming the field.
    pub fn from_config(config: CompressionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let offload = match &config.offload.pool {
            None => None,
            Some(pool) => Some(
                Offload::from_config(pool)
                    .map_err(|e| ConfigError(format!("offload.pool: {e}")))?,
            ),
        };
        Ok(Self::build(config, offload, None))
    }

    /// The config in force.
    pub fn config(&self) -> &CompressionConfig {
        &self.config
    }

    /// Enabled encodings, most preferred first (a repeated one counts once).
    #[must_use]
    pub fn encodings(self, encodings: &[Encoding]) -> Self {
        self.with_config(|config| {
            config.encodings.clear();
            for e in encodings {
                if !config.encodings.contains(e) {
                    config.encodings.push(*e);
                }
            }
        })
    }

    /// The level of one encoding, clamped to [`Encoding::levels`].
    #[must_use]
    pub fn level(self, encoding: Encoding, level: i32) -> Self {
        self.with_config(|config| {
            config.levels.retain(|(e, _)| *e != encoding);
            config.levels.push((encoding, encoding.clamp(level)));
        })
    }

    /// The minimum body size compressed.
    #[must_use]
    pub fn min_size(self, bytes: u16) -> Self {
        self.with_config(|config| config.min_size = bytes)
    }

    /// Bodies of known length from `bytes` on are encoded on the pool (default 64 KiB).
    #[must_use]
    pub fn offload_above(self, bytes: u64) -> Self {
        self.with_config(|config| config.offload.min_size = bytes)
    }

    /// Every body is encoded on the async workers, by tower-http.
    #[must_use]
    pub fn no_offload(self) -> Self {
        self.with_config(|config| config.offload.enabled = false)
    }

    /// Encodes on this pool (for example the application's own rayon pool) instead of the one
    /// built from [`OffloadPolicy::pool`](crate::OffloadPolicy::pool).
    #[must_use]
    pub fn offload_with(self, offload: Offload) -> Self {
        Self::build(
            Arc::unwrap_or_clone(self.config),
            Some(offload),
            self.signal,
        )
    }

    /// Lowers the levels while the tokio scheduling lag measured by a
    /// `tower_scale_metrics::RuntimeProbe` is high: busy from
    /// [`AdaptiveConfig::busy_lag`](crate::AdaptiveConfig::busy_lag), saturated from
    /// [`saturated_lag`](crate::AdaptiveConfig::saturated_lag).
    #[must_use]
    pub fn adapt_to_lag(self, watch: LagWatch) -> Self {
        let signal = Some(SignalSource::Lag(watch));
        Self::build(Arc::unwrap_or_clone(self.config), self.offload, signal)
    }

    /// Lowers the levels following any [`LoadSignal`] (a closure returning a [`Load`] works).
    #[must_use]
    pub fn adapt_with(self, signal: impl LoadSignal) -> Self {
        let signal = Some(SignalSource::Custom(Arc::new(signal)));
        Self::build(Arc::unwrap_or_clone(self.config), self.offload, signal)
    }

    /// The config changed by `change`, everything derived from it prepared again.
    fn with_config(self, change: impl FnOnce(&mut CompressionConfig)) -> Self {
        let mut config = Arc::unwrap_or_clone(self.config);
        change(&mut config);
        Self::build(config, self.offload, self.signal)
    }

    /// A layer with the variants, predicates and load signal of `config` prepared once.
    fn build(
        config: CompressionConfig,
        offload: Option<Offload>,
        signal: Option<SignalSource>,
    ) -> Self {
        let shared = Arc::new(Shared::new(&config, offload.as_ref(), signal.as_ref()));
        Self {
            config: Arc::new(config),
            offload,
            signal,
            shared,
        }
    }
}

/// The level of `encoding` under `load`.
fn level_at(config: &CompressionConfig, encoding: Encoding, load: Load) -> i32 {
    let normal = config.level_of(encoding);
    let adaptive = &config.adaptive;
    let busy = lookup(&adaptive.busy_levels, encoding).map_or(normal, |l| normal.min(l));
    match load {
        Load::Normal => normal,
        Load::Busy => busy,
        Load::Saturated => {
            lookup(&adaptive.saturated_levels, encoding).map_or(busy, |l| busy.min(l))
        }
    }
}

impl Shared {
    /// The pool bodies are encoded on.
    pub(crate) fn offload(&self) -> Offload {
        self.offload.clone().unwrap_or_else(shared_pool)
    }
}

/// Prints the process-wide pool as such, without building it.
struct OffloadDebug<'a>(Option<&'a Offload>);

impl fmt::Debug for OffloadDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(offload) => offload.fmt(f),
            None => f.write_str("the process's shared pool"),
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

/// A tower-http `CompressionLayer` for one encoding at one level, applied per request to the
/// lent inner service.
pub(crate) type Variant = tower_http::compression::CompressionLayer<VariantPredicate>;

/// State shared by every request through one service.
pub(crate) struct Shared {
    pub(crate) preference: Box<[Encoding]>,
    /// Variants per encoding: 3 with a load signal (one per [`Load`]), else 1.
    pub(crate) tiers: usize,
    /// Indexed like the variants: `preference index * tiers + load index`.
    pub(crate) plans: Box<[Plan]>,
    /// Indexed like the plans.
    pub(crate) variants: Box<[Variant]>,
    pub(crate) predicate: DefaultPredicate,
    /// `None`: [`shared_pool`], fetched when a body is first encoded on it.
    pub(crate) offload: Option<Offload>,
    pub(crate) signal: Option<Arc<dyn LoadSignal>>,
}

impl Shared {
    fn new(
        config: &CompressionConfig,
        offload: Option<&Offload>,
        signal: Option<&SignalSource>,
    ) -> Self {
        let signal: Option<Arc<dyn LoadSignal>> = match signal {
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
                let level = level_at(config, encoding, load);
                let predicate = VariantPredicate {
                    base,
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
                        .compress_when(predicate),
                );
                plans.push(Plan {
                    encoding,
                    level,
                    predicate,
                });
            }
        }
        Self {
            preference: config.encodings.clone().into(),
            tiers: loads.len(),
            plans: plans.into(),
            variants: variants.into(),
            predicate: base,
            offload: offload.cloned(),
            signal,
        }
    }
}

impl<S> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compression {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The middleware built by [`CompressionLayer`].
///
/// It holds the inner service once, as tower-http's `Compression` does (a clone clones the inner
/// service and one `Arc`); each request lends it to the tower-http variant of its encoding and
/// level, so no service is cloned per request.
#[derive(Clone)]
pub struct Compression<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for Compression<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compression")
            .field("encodings", &self.shared.preference)
            .field("plans", &self.shared.plans)
            .field("offload", &OffloadDebug(self.shared.offload.as_ref()))
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
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<CompressionBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let mut values = req.headers().get_all(header::ACCEPT_ENCODING).iter();
        let accept = values.next().and_then(|v| v.to_str().ok());
        let chosen = if req.method() == Method::HEAD {
            None
        } else {
            negotiate_index(accept, &shared.preference)
        };
        let Some(index) = chosen else {
            return ResponseFuture::identity(self.inner.call(req), shared.predicate);
        };
        let load = shared.signal.as_ref().map_or(Load::Normal, |s| s.load());
        let variant = index * shared.tiers + load.index().min(shared.tiers - 1);
        let token = shared.preference[index].token();
        // tower-http negotiates again from this header: the one token leaves it no other choice
        // (already the case when the client sent just that token).
        if accept != Some(token) || values.next().is_some() {
            req.headers_mut()
                .insert(header::ACCEPT_ENCODING, HeaderValue::from_static(token));
        }
        let fut = shared.variants[variant]
            .layer(Lend::new(&mut self.inner))
            .call(req);
        ResponseFuture::encoded(fut, Arc::clone(shared), variant)
    }
}
