//! [`CompressionLayer`]: the settings, and the variants prepared from them.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;
#[cfg(feature = "adaptive")]
use tower_scale_metrics::LagWatch;
#[cfg(feature = "pool")]
use tower_scale_offload::Offload;

use crate::shared::{OffloadDebug, Pool, Shared, SignalSource};
use crate::{Compression, CompressionConfig, ConfigError, Encoding, LoadSignal};

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
    offload: Pool,
    signal: Option<SignalSource>,
    shared: Arc<Shared>,
}

impl fmt::Debug for CompressionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressionLayer")
            .field("config", &self.config)
            .field("offload", &OffloadDebug(&self.offload))
            .field(
                "signal",
                &match self.signal {
                    None => "none",
                    #[cfg(feature = "adaptive")]
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
    pub fn from_config(config: &CompressionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        #[cfg(feature = "pool")]
        let offload = match &config.offload.pool {
            None => None,
            Some(pool) => {
                Some(Offload::from_config(pool).map_err(|e| ConfigError::new("offload.pool", e))?)
            }
        };
        #[cfg(not(feature = "pool"))]
        let offload = None;
        Ok(Self::build(config.clone(), offload, None))
    }

    /// The config in force.
    pub fn config(&self) -> &CompressionConfig {
        &self.config
    }

    /// Enabled encodings, most preferred first (a repeated one counts once, one not
    /// [compiled in](Encoding::is_compiled_in) is left out).
    #[must_use]
    pub fn encodings(self, encodings: &[Encoding]) -> Self {
        self.with_config(|config| {
            config.encodings.clear();
            for e in encodings {
                if e.is_compiled_in() && !config.encodings.contains(e) {
                    config.encodings.push(*e);
                }
            }
        })
    }

    /// The level of one encoding, clamped to [`Encoding::levels`]; ignored for an encoding
    /// not [compiled in](Encoding::is_compiled_in).
    #[must_use]
    pub fn level(self, encoding: Encoding, level: i32) -> Self {
        if !encoding.is_compiled_in() {
            return self;
        }
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
    #[cfg(feature = "pool")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
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
    #[cfg(feature = "adaptive")]
    #[cfg_attr(docsrs, doc(cfg(feature = "adaptive")))]
    #[must_use]
    pub fn adapt_to_lag(self, watch: LagWatch) -> Self {
        let signal = Some(SignalSource::Lag(watch));
        Self::build(Arc::unwrap_or_clone(self.config), self.offload, signal)
    }

    /// Lowers the levels following any [`LoadSignal`] (a closure returning a [`Load`](crate::Load) works).
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
    fn build(config: CompressionConfig, offload: Pool, signal: Option<SignalSource>) -> Self {
        let shared = Arc::new(Shared::new(&config, &offload, signal.as_ref()));
        Self {
            config: Arc::new(config),
            offload,
            signal,
            shared,
        }
    }
}

impl<S> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compression::from_shared(inner, Arc::clone(&self.shared))
    }
}
