//! What a [`CompressionLayer`](crate::CompressionLayer) prepares once and every request
//! through its services reads: the preference order, one tower-http variant per encoding and
//! load, the pool, the load signal.

use std::fmt;
use std::sync::Arc;

#[cfg(feature = "adaptive")]
use crate::adaptive::LagSignal;
use crate::adaptive::{Load, LoadSignal};
use crate::config::lookup;
#[cfg(feature = "pool")]
use crate::config::shared_pool;
use crate::predicate::{DefaultPredicate, VariantPredicate};
use crate::{CompressionConfig, Encoding};
use tower_http::compression::CompressionLevel;

/// Where the layer's load signal comes from.
#[derive(Clone)]
pub(crate) enum SignalSource {
    #[cfg(feature = "adaptive")]
    Lag(tower_scale_metrics::LagWatch),
    Custom(Arc<dyn LoadSignal>),
}

/// What one tower-http variant does: its encoding, its level, and which bodies it leaves to
/// the pool.
#[cfg_attr(not(feature = "pool"), allow(dead_code))]
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) encoding: Encoding,
    pub(crate) level: i32,
    pub(crate) predicate: VariantPredicate,
}

/// A tower-http `CompressionLayer` for one encoding at one level, applied per request to the
/// lent inner service.
pub(crate) type Variant = tower_http::compression::CompressionLayer<VariantPredicate>;

/// The pool a layer was given: `None` for the process's shared pool. Without the `pool`
/// feature there is no pool, and nothing is offloaded.
#[cfg(feature = "pool")]
pub(crate) type Pool = Option<tower_scale_offload::Offload>;
/// The pool a layer was given: without the `pool` feature there is none.
#[cfg(not(feature = "pool"))]
pub(crate) type Pool = Option<NoPool>;

/// No pool can be built without the `pool` feature: this type has no value.
#[cfg(not(feature = "pool"))]
#[derive(Clone, Debug)]
pub(crate) enum NoPool {}

/// State shared by every request through one service.
pub(crate) struct Shared {
    preference: Box<[Encoding]>,
    /// Variants per encoding: 3 with a load signal (one per [`Load`]), else 1.
    tiers: usize,
    /// Indexed like the variants: `preference index * tiers + load index`.
    plans: Box<[Plan]>,
    /// Indexed like the plans.
    variants: Box<[Variant]>,
    predicate: DefaultPredicate,
    /// `None`: [`shared_pool`], fetched when a body is first encoded on it.
    offload: Pool,
    signal: Option<Arc<dyn LoadSignal>>,
}

impl Shared {
    pub(crate) fn new(
        config: &CompressionConfig,
        offload: &Pool,
        signal: Option<&SignalSource>,
    ) -> Self {
        let signal: Option<Arc<dyn LoadSignal>> = match signal {
            None => None,
            Some(SignalSource::Custom(s)) => Some(Arc::clone(s)),
            #[cfg(feature = "adaptive")]
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
        // `from_config` refuses, and the setters leave out, the encodings not compiled in.
        let preference: Box<[Encoding]> = config
            .encodings
            .iter()
            .copied()
            .filter(|e| e.is_compiled_in())
            .collect();
        let mut plans = Vec::with_capacity(preference.len() * loads.len());
        let mut variants = Vec::with_capacity(plans.capacity());
        for &encoding in &preference {
            for &load in loads {
                let level = level_at(config, encoding, load);
                let predicate = VariantPredicate {
                    base,
                    offload: config
                        .offload
                        .offload_from(encoding, level, config.min_size)
                        .map(|from| (from, config.offload.max_buffered)),
                };
                variants.push(
                    only(encoding)
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
            preference,
            tiers: loads.len(),
            plans: plans.into(),
            variants: variants.into(),
            predicate: base,
            offload: offload.clone(),
            signal,
        }
    }
}

impl Shared {
    /// The enabled encodings, most preferred first.
    #[inline]
    pub(crate) fn preference(&self) -> &[Encoding] {
        &self.preference
    }

    /// Whether a response is compressible at all.
    #[inline]
    pub(crate) fn predicate(&self) -> DefaultPredicate {
        self.predicate
    }

    /// The variant of the encoding at `index` of the preference order, under the load now.
    #[inline]
    pub(crate) fn variant_index(&self, index: usize) -> usize {
        let load = self.signal.as_ref().map_or(Load::Normal, |s| s.load());
        index * self.tiers + load.index().min(self.tiers - 1)
    }

    /// The tower-http layer of variant `variant`.
    #[inline]
    pub(crate) fn variant(&self, variant: usize) -> &Variant {
        &self.variants[variant]
    }

    /// What variant `variant` does.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    #[inline]
    pub(crate) fn plan(&self, variant: usize) -> &Plan {
        &self.plans[variant]
    }

    /// `Debug` of a service named `name` over this state.
    pub(crate) fn fmt_service(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("encodings", &self.preference)
            .field("plans", &self.plans)
            .field("offload", &OffloadDebug(&self.offload))
            .field("adaptive", &self.signal.is_some())
            .finish()
    }

    /// The pool bodies are encoded on.
    #[cfg(feature = "pool")]
    pub(crate) fn offload(&self) -> tower_scale_offload::Offload {
        self.offload.clone().unwrap_or_else(shared_pool)
    }
}

/// A tower-http layer that offers `encoding` alone (one compiled in).
fn only(encoding: Encoding) -> tower_http::compression::CompressionLayer {
    let layer = tower_http::compression::CompressionLayer::new()
        .no_deflate()
        .no_gzip();
    #[cfg(feature = "br")]
    let layer = layer.no_br();
    #[cfg(feature = "zstd")]
    let layer = layer.no_zstd();
    match encoding {
        #[cfg(feature = "zstd")]
        Encoding::Zstd => layer.zstd(true),
        #[cfg(feature = "br")]
        Encoding::Br => layer.br(true),
        Encoding::Gzip => layer.gzip(true),
        Encoding::Deflate => layer.deflate(true),
        // Filtered out by `Shared::new`: nothing to offer.
        #[cfg(not(all(feature = "br", feature = "zstd")))]
        _ => layer,
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

/// Prints the process-wide pool as such, without building it.
pub(crate) struct OffloadDebug<'a>(pub(crate) &'a Pool);

impl fmt::Debug for OffloadDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(offload) => offload.fmt(f),
            None => f.write_str("the process's shared pool"),
        }
    }
}
