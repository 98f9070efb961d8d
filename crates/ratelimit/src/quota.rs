use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A quota in users' words: `count` requests per `period`, with bursts of up to `burst`
/// (default: `count`). Enforced with GCRA: one request every `period / count`, and up to
/// `burst` at once after a quiet spell.
///
/// ```
/// use std::time::Duration;
/// use tower_scale_ratelimit::Quota;
///
/// let q = Quota::per_second(100).burst(20);
/// assert_eq!(q.emission_interval(), Duration::from_millis(10));
/// assert_eq!(q.policy_header(), "100;w=1;burst=20");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests per period.
    pub count: u32,
    /// The period (humantime in serde: `"1s"`, `"1m"`).
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// The most requests admitted at once; default `count`.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A quota is invalid; the message says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid quota: {0}")]
pub struct QuotaError(String);

impl Quota {
    /// `count` requests per `period`.
    pub const fn new(count: u32, period: Duration) -> Self {
        Self {
            count,
            period,
            burst: None,
        }
    }

    /// `count` requests per second.
    pub const fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` requests per minute.
    pub const fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// `count` requests per hour.
    pub const fn per_hour(count: u32) -> Self {
        Self::new(count, Duration::from_secs(3600))
    }

    /// Sets the burst.
    #[must_use]
    pub const fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The burst in effect.
    pub fn max_burst(&self) -> u32 {
        self.burst.unwrap_or(self.count)
    }

    /// The time between two requests at the sustained rate: `period / count`.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.count.max(1)
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), QuotaError> {
        if self.count == 0 {
            return Err(QuotaError("count must be at least 1".to_owned()));
        }
        if self.period.is_zero() {
            return Err(QuotaError("period must be greater than zero".to_owned()));
        }
        if self.max_burst() == 0 {
            return Err(QuotaError("burst must be at least 1".to_owned()));
        }
        if self.emission_interval() < Duration::from_micros(1) {
            return Err(QuotaError(format!(
                "{} per {:?} is finer than 1 µs per request",
                self.count, self.period
            )));
        }
        Ok(())
    }

    /// The quota as an IETF `RateLimit-Policy` item: `<count>;w=<seconds>;burst=<burst>`.
    pub fn policy_header(&self) -> String {
        format!(
            "{};w={};burst={}",
            self.count,
            self.period.as_secs().max(1),
            self.max_burst()
        )
    }
}
