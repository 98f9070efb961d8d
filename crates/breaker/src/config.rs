//! [`BreakerConfig`] (serde) and its validation, with the [`SlidingWindow`] kinds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_scale_core::ConfigError;

/// The sliding window over which failure and slow-call rates are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum SlidingWindow {
    /// The last `size` calls.
    Count {
        /// Number of calls in the window (1..=65536).
        size: u32,
    },
    /// The calls of the last `seconds` seconds, in one-second buckets.
    Time {
        /// Length of the window in seconds (1..=3600).
        seconds: u32,
    },
}

/// Configuration of a [`CircuitBreaker`](crate::CircuitBreaker), with resilience4j's
/// semantics. Every field has a default; durations are humantime strings in serde
/// (`"30s"`, `"500ms"`).
///
/// ```
/// use tower_scale_breaker::{BreakerConfig, SlidingWindow};
///
/// let config: BreakerConfig = serde_json::from_str(r#"{
///     "sliding_window": {"type": "time", "seconds": 10},
///     "failure_rate_threshold": 25.0,
///     "wait_in_open": "5s"
/// }"#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.sliding_window, SlidingWindow::Time { seconds: 10 });
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The sliding window. Default: the last 100 calls.
    pub sliding_window: SlidingWindow,
    /// Open when at least this percentage of the window's calls failed (0 < x <= 100).
    /// Default 50.
    pub failure_rate_threshold: f32,
    /// A call slower than this is a slow call. Default none: slow calls are not tracked, and
    /// the closed state reads no clock per call (a clock read costs ~25 ns).
    #[serde(with = "humantime_serde")]
    pub slow_call_duration: Option<Duration>,
    /// Open when at least this percentage of the window's calls were slow (0 < x <= 100).
    /// Default 100.
    pub slow_call_rate_threshold: f32,
    /// Rates are only evaluated once the window holds this many calls (at most the window
    /// size for a count window). Default 20.
    pub minimum_calls: u32,
    /// How long the breaker stays open before letting probes through. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub wait_in_open: Duration,
    /// Each consecutive opening (without closing in between) multiplies the wait by this
    /// (>= 1; 1 keeps it fixed). Default 1.
    pub wait_multiplier: f64,
    /// Upper bound of the open wait, also for a downstream's `Retry-After`. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub max_wait_in_open: Duration,
    /// Calls let through in half-open; that many successes close the breaker, any failure
    /// reopens it. Default 5.
    pub permitted_calls_in_half_open: u32,
    /// A breaker half-open for longer than this opens again, so it can never stay stuck there
    /// (probes that never answer). Default 60 s.
    #[serde(with = "humantime_serde")]
    pub max_wait_in_half_open: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            sliding_window: SlidingWindow::Count { size: 100 },
            failure_rate_threshold: 50.0,
            slow_call_duration: None,
            slow_call_rate_threshold: 100.0,
            minimum_calls: 20,
            wait_in_open: Duration::from_secs(30),
            wait_multiplier: 1.0,
            max_wait_in_open: Duration::from_secs(300),
            permitted_calls_in_half_open: 5,
            max_wait_in_half_open: Duration::from_secs(60),
        }
    }
}

impl BreakerConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, msg: String| Err(ConfigError::new(field, msg));
        match self.sliding_window {
            SlidingWindow::Count { size } if !(1..=65_536).contains(&size) => {
                return bad(
                    "sliding_window.size",
                    format!("{size} is out of range 1..=65536"),
                );
            }
            SlidingWindow::Time { seconds } if !(1..=3600).contains(&seconds) => {
                return bad(
                    "sliding_window.seconds",
                    format!("{seconds} is out of range 1..=3600"),
                );
            }
            _ => {}
        }
        for (name, v) in [
            ("failure_rate_threshold", self.failure_rate_threshold),
            ("slow_call_rate_threshold", self.slow_call_rate_threshold),
        ] {
            if !(v > 0.0 && v <= 100.0) {
                return bad(name, format!("{v} is not a percentage in (0, 100]"));
            }
        }
        if self.minimum_calls == 0 {
            return bad("minimum_calls", "must be at least 1".to_owned());
        }
        if self.permitted_calls_in_half_open == 0 {
            return bad(
                "permitted_calls_in_half_open",
                "must be at least 1".to_owned(),
            );
        }
        if !(self.wait_multiplier >= 1.0 && self.wait_multiplier.is_finite()) {
            return bad(
                "wait_multiplier",
                format!("{} must be a finite number >= 1", self.wait_multiplier),
            );
        }
        if self.wait_in_open.is_zero() {
            return bad("wait_in_open", "must be greater than zero".to_owned());
        }
        if self.max_wait_in_open < self.wait_in_open {
            return bad(
                "max_wait_in_open",
                "must be at least wait_in_open".to_owned(),
            );
        }
        if self.max_wait_in_half_open.is_zero() {
            return bad(
                "max_wait_in_half_open",
                "must be greater than zero".to_owned(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_named() {
        let cases: Vec<(BreakerConfig, &str)> = vec![
            (
                BreakerConfig {
                    sliding_window: SlidingWindow::Count { size: 0 },
                    ..Default::default()
                },
                "sliding_window.size",
            ),
            (
                BreakerConfig {
                    sliding_window: SlidingWindow::Time { seconds: 0 },
                    ..Default::default()
                },
                "sliding_window.seconds",
            ),
            (
                BreakerConfig {
                    failure_rate_threshold: 0.0,
                    ..Default::default()
                },
                "failure_rate_threshold",
            ),
            (
                BreakerConfig {
                    slow_call_rate_threshold: 101.0,
                    ..Default::default()
                },
                "slow_call_rate_threshold",
            ),
            (
                BreakerConfig {
                    minimum_calls: 0,
                    ..Default::default()
                },
                "minimum_calls",
            ),
            (
                BreakerConfig {
                    permitted_calls_in_half_open: 0,
                    ..Default::default()
                },
                "permitted_calls_in_half_open",
            ),
            (
                BreakerConfig {
                    wait_multiplier: 0.5,
                    ..Default::default()
                },
                "wait_multiplier",
            ),
            (
                BreakerConfig {
                    max_wait_in_open: Duration::from_secs(1),
                    ..Default::default()
                },
                "max_wait_in_open",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
        BreakerConfig::default().validate().unwrap();
    }
}
