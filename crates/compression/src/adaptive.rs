#[cfg(feature = "adaptive")]
use std::{fmt, time::Duration};

#[cfg(feature = "adaptive")]
use tower_scale_metrics::LagWatch;

/// How loaded the service is, as the adaptive mode sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Load {
    /// The configured levels.
    #[default]
    Normal,
    /// The `busy_levels` of [`AdaptiveConfig`](crate::AdaptiveConfig).
    Busy,
    /// The `saturated_levels` of [`AdaptiveConfig`](crate::AdaptiveConfig).
    Saturated,
}

impl Load {
    pub(crate) const ALL: [Self; 3] = [Self::Normal, Self::Busy, Self::Saturated];

    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Normal => 0,
            Self::Busy => 1,
            Self::Saturated => 2,
        }
    }
}

/// A source of [`Load`], read once per compressed request: keep it to a few atomic loads.
///
/// Implemented for closures, so any signal can drive the adaptive mode: the requests in
/// flight, a pool's queue, a flag set by an operator.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use tower_scale_compression::{CompressionLayer, Load};
///
/// let in_flight = Arc::new(AtomicUsize::new(0)); // maintained by your own layer
/// let seen = Arc::clone(&in_flight);
/// let layer = CompressionLayer::new().adapt_with(move || match seen.load(Ordering::Relaxed) {
///     0..=63 => Load::Normal,
///     64..=255 => Load::Busy,
///     _ => Load::Saturated,
/// });
/// ```
pub trait LoadSignal: Send + Sync + 'static {
    /// The load now.
    fn load(&self) -> Load;
}

impl<F> LoadSignal for F
where
    F: Fn() -> Load + Send + Sync + 'static,
{
    fn load(&self) -> Load {
        self()
    }
}

/// The scheduling lag of a `tower_scale_metrics::RuntimeProbe` as a [`LoadSignal`]: busy from
/// `busy` on, saturated from `saturated` on, judged on
/// [`LagWatch::recent_max`] (the largest lag of the probe's last window, so one late wake-up
/// keeps the levels low for a while instead of flapping).
#[cfg(feature = "adaptive")]
#[derive(Clone)]
pub struct LagSignal {
    watch: LagWatch,
    busy: Duration,
    saturated: Duration,
}

#[cfg(feature = "adaptive")]
impl LagSignal {
    /// Lag thresholds over a running probe's watch.
    pub fn new(watch: LagWatch, busy: Duration, saturated: Duration) -> Self {
        Self {
            watch,
            busy,
            saturated,
        }
    }
}

#[cfg(feature = "adaptive")]
impl fmt::Debug for LagSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LagSignal")
            .field("busy", &self.busy)
            .field("saturated", &self.saturated)
            .field("recent_lag", &self.watch.recent_max())
            .finish()
    }
}

#[cfg(feature = "adaptive")]
impl LoadSignal for LagSignal {
    fn load(&self) -> Load {
        let lag = self.watch.recent_max();
        if lag >= self.saturated {
            Load::Saturated
        } else if lag >= self.busy {
            Load::Busy
        } else {
            Load::Normal
        }
    }
}
