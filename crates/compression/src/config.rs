use std::time::Duration;

#[cfg(feature = "config")]
use serde::{Deserialize, Serialize};
#[cfg(feature = "pool")]
use std::sync::OnceLock;

#[cfg(feature = "pool")]
use tower_scale_offload::{Offload, OffloadConfig, PoolKind};

use crate::ConfigError;

/// A content coding.
///
/// gzip and deflate are always compiled in; brotli and zstd only with the crate's `br` and
/// `zstd` features (both on by default). An encoding that is not compiled in is never
/// negotiated; a config that names it is refused by
/// [`CompressionLayer::from_config`](crate::CompressionLayer::from_config), and the builder's
/// setters ignore it. See [`is_compiled_in`](Self::is_compiled_in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "config", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "config", serde(rename_all = "lowercase"))]
pub enum Encoding {
    /// zstd.
    Zstd,
    /// Brotli (`br`).
    Br,
    /// gzip.
    Gzip,
    /// deflate (the zlib format, as HTTP's `deflate` is).
    Deflate,
}

impl Encoding {
    pub(crate) const ALL: [Self; 4] = [Self::Zstd, Self::Br, Self::Gzip, Self::Deflate];

    /// Whether this build can encode (and, with the `decompression` feature, decode) it: gzip
    /// and deflate always, brotli with the `br` feature, zstd with the `zstd` feature.
    ///
    /// ```
    /// use tower_scale_compression::Encoding;
    ///
    /// assert!(Encoding::Gzip.is_compiled_in());
    /// assert_eq!(Encoding::Br.is_compiled_in(), cfg!(feature = "br"));
    /// ```
    pub const fn is_compiled_in(self) -> bool {
        match self {
            Self::Zstd => cfg!(feature = "zstd"),
            Self::Br => cfg!(feature = "br"),
            Self::Gzip | Self::Deflate => true,
        }
    }

    /// The encodings compiled in, in the default preference order.
    pub(crate) fn compiled_in() -> impl Iterator<Item = Self> {
        Self::ALL.into_iter().filter(|e| e.is_compiled_in())
    }

    /// `Err` naming `field` when `self` is not compiled in.
    pub(crate) fn check_compiled_in(self, field: &'static str) -> Result<(), ConfigError> {
        if self.is_compiled_in() {
            return Ok(());
        }
        let token = self.token();
        Err(ConfigError::new(
            field,
            format!(
                "{token} is not compiled in: enable the `{token}` feature of tower-scale-compression"
            ),
        ))
    }

    /// The position in [`Self::ALL`].
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Zstd => 0,
            Self::Br => 1,
            Self::Gzip => 2,
            Self::Deflate => 3,
        }
    }

    /// The encoding of a token of `Accept-Encoding`, in any case.
    pub(crate) fn from_token(token: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|e| e.token().eq_ignore_ascii_case(token))
    }

    /// The token in `Accept-Encoding` / `Content-Encoding`.
    pub const fn token(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Br => "br",
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
        }
    }

    /// The level used when the config names none: zstd 3, brotli 4, gzip and deflate 6.
    ///
    /// These are the libraries' own defaults, except brotli's (11, which costs far more CPU
    /// per byte saved); 4 is also what tower-http and nginx use for on-the-fly brotli.
    pub const fn default_level(self) -> i32 {
        match self {
            Self::Zstd => 3,
            Self::Br => 4,
            Self::Gzip | Self::Deflate => 6,
        }
    }

    /// The levels the algorithm accepts.
    pub const fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Self::Zstd => 1..=22,
            Self::Br => 0..=11,
            Self::Gzip | Self::Deflate => 0..=9,
        }
    }

    pub(crate) fn clamp(self, level: i32) -> i32 {
        let range = self.levels();
        level.clamp(*range.start(), *range.end())
    }
}

/// Settings of [`CompressionLayer`](crate::CompressionLayer) (serde). Every field has a
/// default; unknown fields are an error.
///
/// ```
/// use tower_scale_compression::{CompressionConfig, CompressionLayer};
///
/// let config: CompressionConfig = serde_json::from_str(r#"{
///     "encodings": ["br", "gzip"],
///     "levels": [["br", 11]],
///     "offload": { "min_size": 32768 },
///     "adaptive": { "busy_lag": "10ms", "saturated_lag": "50ms" }
/// }"#).unwrap();
/// let layer = CompressionLayer::from_config(&config).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "config", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "config", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct CompressionConfig {
    /// Enabled encodings, most preferred first. Default zstd, br, gzip, deflate (those compiled
    /// in: see [`Encoding::is_compiled_in`]).
    pub encodings: Vec<Encoding>,
    /// Bodies smaller than this are sent as they are. Default 1024 bytes.
    pub min_size: u16,
    /// Level per encoding (algorithm-specific numbers); a missing one uses
    /// [`Encoding::default_level`]. Default: none listed, so zstd 3, br 4, gzip 6, deflate 6.
    pub levels: Vec<(Encoding, i32)>,
    /// Which bodies are encoded on a thread pool instead of the async workers.
    pub offload: OffloadPolicy,
    /// The lower levels used while the service is saturated (needs a load signal:
    /// [`CompressionLayer::adapt_to_lag`](crate::CompressionLayer::adapt_to_lag) or
    /// [`adapt_with`](crate::CompressionLayer::adapt_with)).
    pub adaptive: AdaptiveConfig,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            encodings: Encoding::compiled_in().collect(),
            min_size: 1024,
            levels: Vec::new(),
            offload: OffloadPolicy::default(),
            adaptive: AdaptiveConfig::default(),
        }
    }
}

impl CompressionConfig {
    /// The configured level of `encoding` (or its default), clamped to its range.
    pub fn level_of(&self, encoding: Encoding) -> i32 {
        lookup(&self.levels, encoding).map_or(encoding.default_level(), |l| encoding.clamp(l))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (i, e) in self.encodings.iter().enumerate() {
            e.check_compiled_in("encodings")?;
            if self.encodings[..i].contains(e) {
                let message = format!("{} is listed twice", e.token());
                return Err(ConfigError::new("encodings", message));
            }
        }
        for (field, levels) in [
            ("levels", &self.levels),
            ("adaptive.busy_levels", &self.adaptive.busy_levels),
            ("adaptive.saturated_levels", &self.adaptive.saturated_levels),
            ("offload.expensive_levels", &self.offload.expensive_levels),
        ] {
            for (e, l) in levels {
                e.check_compiled_in(field)?;
                if !e.levels().contains(l) {
                    let r = e.levels();
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "{} level {l} is outside {}..={}",
                            e.token(),
                            r.start(),
                            r.end()
                        ),
                    ));
                }
            }
        }
        if self.adaptive.busy_lag > self.adaptive.saturated_lag {
            return Err(ConfigError::new(
                "adaptive",
                format!(
                    "busy_lag ({:?}) is above saturated_lag ({:?})",
                    self.adaptive.busy_lag, self.adaptive.saturated_lag
                ),
            ));
        }
        Ok(())
    }
}

/// The entries of `levels` whose encoding is compiled in.
fn compiled_in(levels: &[(Encoding, i32)]) -> Vec<(Encoding, i32)> {
    levels
        .iter()
        .copied()
        .filter(|(e, _)| e.is_compiled_in())
        .collect()
}

pub(crate) fn lookup(levels: &[(Encoding, i32)], encoding: Encoding) -> Option<i32> {
    levels
        .iter()
        .rev()
        .find(|(e, _)| *e == encoding)
        .map(|(_, l)| *l)
}

/// Where encoding runs (part of [`CompressionConfig`], serde).
///
/// A response whose body has a known length (a fully buffered body: `String`, `Vec<u8>`,
/// `Bytes`, JSON, ...) is encoded on a thread pool, off the async workers, when it is at least
/// [`min_size`](Self::min_size) long, or when its level is at least the one in
/// [`expensive_levels`](Self::expensive_levels). Everything else, and every streamed body
/// (unknown length: server-sent events, proxied or generated streams), is encoded on the async
/// worker by tower-http's `CompressionLayer`, chunk by chunk, flushed whenever the body waits.
///
/// Without the crate's `pool` feature there is no pool: every body takes tower-http's path,
/// whatever this policy says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "config", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "config", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct OffloadPolicy {
    /// `false`: every body is encoded on the async workers by tower-http. Default `true`.
    pub enabled: bool,
    /// Bodies of known length from this many bytes are encoded on the pool. Default 64 KiB.
    pub min_size: u64,
    /// From these levels every compressed body of known length is encoded on the pool,
    /// whatever its size. Default brotli 5 and zstd 10 (those compiled in).
    pub expensive_levels: Vec<(Encoding, i32)>,
    /// Bodies longer than this are never buffered: they take tower-http's streaming path.
    /// Default 16 MiB.
    pub max_buffered: u64,
    /// The pool: tower-scale-offload's settings for a pool of this layer's own. Default
    /// `None`: one pool shared by every layer of the process that does not name its own, a
    /// rayon pool of one thread per CPU with 64 encodes waiting per thread. When the pool is
    /// full, a body is sent uncompressed rather than waiting. Replaced by
    /// [`CompressionLayer::offload_with`](crate::CompressionLayer::offload_with).
    #[cfg(feature = "pool")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
    pub pool: Option<OffloadConfig>,
}

impl Default for OffloadPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            min_size: 64 * 1024,
            expensive_levels: compiled_in(&[(Encoding::Br, 5), (Encoding::Zstd, 10)]),
            max_buffered: 16 * 1024 * 1024,
            #[cfg(feature = "pool")]
            pool: None,
        }
    }
}

/// The pool shared by the layers that name none, built on first use.
#[cfg(feature = "pool")]
pub(crate) fn shared_pool() -> Offload {
    static POOL: OnceLock<Offload> = OnceLock::new();
    POOL.get_or_init(|| {
        Offload::from_config(&OffloadConfig::default()).unwrap_or_else(|_| {
            // The rayon pool could not start its threads: tokio's blocking pool, which
            // starts them on demand, cannot fail to build.
            let mut config = OffloadConfig::default();
            config.pool = PoolKind::TokioBlocking;
            Offload::from_config(&config).expect("a tokio blocking pool always builds")
        })
    })
    .clone()
}

impl OffloadPolicy {
    /// The smallest known body length encoded on the pool at `level`, or `None` when nothing
    /// is offloaded.
    pub(crate) fn offload_from(
        &self,
        encoding: Encoding,
        level: i32,
        min_size: u16,
    ) -> Option<u64> {
        if !self.enabled || cfg!(not(feature = "pool")) {
            return None;
        }
        let expensive = lookup(&self.expensive_levels, encoding).is_some_and(|from| level >= from);
        Some(if expensive {
            u64::from(min_size)
        } else {
            self.min_size
        })
    }
}

/// The adaptive mode (part of [`CompressionConfig`], serde): lower levels while the service is
/// saturated.
///
/// The signal is a [`Load`](crate::Load): with
/// [`CompressionLayer::adapt_to_lag`](crate::CompressionLayer::adapt_to_lag), the tokio
/// scheduling lag measured by `tower_scale_metrics::RuntimeProbe`
/// (`LagWatch::recent_max`, the largest lag of
/// the probe's last window) compared with [`busy_lag`](Self::busy_lag) and
/// [`saturated_lag`](Self::saturated_lag); with
/// [`adapt_with`](crate::CompressionLayer::adapt_with), any signal of yours. A level is never
/// raised: while busy, an encoding uses the lower of its level and its `busy_levels` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "config", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "config", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct AdaptiveConfig {
    /// Busy from this scheduling lag on. Default 20 ms.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub busy_lag: Duration,
    /// Saturated from this scheduling lag on. Default 100 ms.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub saturated_lag: Duration,
    /// Levels while busy. Default zstd 3, br 4, gzip 4, deflate 4 (those compiled in).
    pub busy_levels: Vec<(Encoding, i32)>,
    /// Levels while saturated. Default 1 for each encoding compiled in.
    pub saturated_levels: Vec<(Encoding, i32)>,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            busy_lag: Duration::from_millis(20),
            saturated_lag: Duration::from_millis(100),
            busy_levels: compiled_in(&[
                (Encoding::Zstd, 3),
                (Encoding::Br, 4),
                (Encoding::Gzip, 4),
                (Encoding::Deflate, 4),
            ]),
            saturated_levels: Encoding::compiled_in().map(|e| (e, 1)).collect(),
        }
    }
}
