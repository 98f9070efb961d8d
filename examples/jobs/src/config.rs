use std::net::SocketAddr;
use std::time::Duration;

/// A setting with a bad value; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    name: &'static str,
    message: String,
}

impl ConfigError {
    fn new(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            message: message.into(),
        }
    }
}

/// How a failed job is retried: up to `max_retries` times after the first attempt, the
/// `n`-th retry after `base_delay × factorⁿ`, capped at `max_delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: a failure is final).
    pub max_retries: u32,
    /// Delay before the first retry.
    pub base_delay: Duration,
    /// Multiplier of the delay for each further retry (1: constant delay).
    pub factor: u32,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_secs(5),
            factor: 2,
            max_delay: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retries + 1` (`retries` retries already done), whole
    /// seconds (the queue schedules retries by the second), at least 1.
    pub fn delay_secs(&self, retries: u32) -> u64 {
        let factor = u64::from(self.factor).max(1);
        let mut delay = self.base_delay.as_secs().max(1);
        for _ in 0..retries {
            delay = delay.saturating_mul(factor);
            if delay >= self.max_delay.as_secs() {
                break;
            }
        }
        delay.min(self.max_delay.as_secs().max(1))
    }
}

/// Settings of both binaries, from the environment ([`Settings::from_env`]). `Debug` hides
/// the Redis password.
#[derive(Clone)]
pub struct Settings {
    /// `REDIS_URL` (default `redis://127.0.0.1:6379`): the queue and the job statuses.
    pub redis_url: String,
    /// `JOBS_NAMESPACE` (default `example-jobs`): prefix of every key in Redis.
    pub namespace: String,
    /// `HOST` (default `127.0.0.1`) and `PORT` (default 3000): where `jobs-server` listens.
    pub addr: SocketAddr,
    /// `JOBS_CONCURRENCY` (default: the number of CPUs): jobs one worker runs at once; it is
    /// also the size of the worker's offload pool.
    pub concurrency: usize,
    /// `JOBS_MAX_RETRIES` (3), `JOBS_RETRY_DELAY_SECS` (5), `JOBS_RETRY_FACTOR` (2),
    /// `JOBS_RETRY_MAX_DELAY_SECS` (600).
    pub retry: RetryPolicy,
    /// `JOBS_DRAIN_TIMEOUT_SECS` (default 30): on SIGTERM, how long the worker lets the jobs in
    /// progress finish; past it they are left to the queue, which hands them to another worker.
    pub drain_timeout: Duration,
    /// `JOBS_PRE_STOP_DELAY_SECS` (default 0): the server's pre-stop delay (see
    /// tower-scale-shutdown); use 5 behind a load balancer.
    pub pre_stop_delay: Duration,
    /// `JOBS_HEARTBEAT_MS` (default 500): how often a worker tells the queue it is alive.
    pub heartbeat: Duration,
    /// `JOBS_DEAD_AFTER_MS` (default 5000): a worker silent for this long is dead, and the jobs
    /// it held go back to the queue.
    pub dead_after: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("redis_url", &tower_scale_redis::redact_url(&self.redis_url))
            .field("namespace", &self.namespace)
            .field("addr", &self.addr)
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .field("drain_timeout", &self.drain_timeout)
            .field("pre_stop_delay", &self.pre_stop_delay)
            .field("heartbeat", &self.heartbeat)
            .field("dead_after", &self.dead_after)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            namespace: "example-jobs".to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            concurrency: std::thread::available_parallelism().map_or(2, usize::from),
            retry: RetryPolicy::default(),
            drain_timeout: Duration::from_secs(30),
            pre_stop_delay: Duration::ZERO,
            heartbeat: Duration::from_millis(500),
            dead_after: Duration::from_secs(5),
        }
    }
}

impl Settings {
    /// Reads the settings from the process's environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut s = Self::default();
        if let Some(url) = get("REDIS_URL") {
            s.redis_url = url;
        }
        if let Some(ns) = get("JOBS_NAMESPACE") {
            if !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(ConfigError::new(
                    "JOBS_NAMESPACE",
                    "letters, digits, '-', '_' and '.' only",
                ));
            }
            s.namespace = ns;
        }
        s.addr = example_support::listen_addr_from(get, s.addr.port())
            .map_err(|e| ConfigError::new(e.variable(), e.to_string()))?;
        let num = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            get(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|e| ConfigError::new(name, format!("{v:?}: {e}")))
                })
                .transpose()
        };
        let u32_of = |name: &'static str, v: u64| {
            u32::try_from(v).map_err(|_| ConfigError::new(name, "too large"))
        };
        if let Some(n) = num("JOBS_CONCURRENCY")? {
            if n == 0 || n > 1024 {
                return Err(ConfigError::new("JOBS_CONCURRENCY", "must be 1..=1024"));
            }
            s.concurrency = usize::try_from(n).unwrap_or(1);
        }
        if let Some(n) = num("JOBS_MAX_RETRIES")? {
            s.retry.max_retries = u32_of("JOBS_MAX_RETRIES", n)?;
        }
        if let Some(n) = num("JOBS_RETRY_DELAY_SECS")? {
            if n == 0 {
                return Err(ConfigError::new(
                    "JOBS_RETRY_DELAY_SECS",
                    "must be at least 1",
                ));
            }
            s.retry.base_delay = Duration::from_secs(n);
        }
        if let Some(n) = num("JOBS_RETRY_FACTOR")? {
            if n == 0 {
                return Err(ConfigError::new("JOBS_RETRY_FACTOR", "must be at least 1"));
            }
            s.retry.factor = u32_of("JOBS_RETRY_FACTOR", n)?;
        }
        if let Some(n) = num("JOBS_RETRY_MAX_DELAY_SECS")? {
            s.retry.max_delay = Duration::from_secs(n.max(1));
        }
        if let Some(n) = num("JOBS_DRAIN_TIMEOUT_SECS")? {
            s.drain_timeout = Duration::from_secs(n);
        }
        if let Some(n) = num("JOBS_PRE_STOP_DELAY_SECS")? {
            s.pre_stop_delay = Duration::from_secs(n);
        }
        if let Some(n) = num("JOBS_HEARTBEAT_MS")? {
            if n == 0 {
                return Err(ConfigError::new("JOBS_HEARTBEAT_MS", "must be at least 1"));
            }
            s.heartbeat = Duration::from_millis(n);
        }
        if let Some(n) = num("JOBS_DEAD_AFTER_MS")? {
            s.dead_after = Duration::from_millis(n);
        }
        if s.dead_after <= s.heartbeat * 2 {
            return Err(ConfigError::new(
                "JOBS_DEAD_AFTER_MS",
                format!(
                    "must be more than twice JOBS_HEARTBEAT_MS ({} ms), or live workers would \
                     look dead",
                    s.heartbeat.as_millis()
                ),
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("JOBS_CONCURRENCY", "0"),
            ("JOBS_CONCURRENCY", "two"),
            ("HOST", "nowhere"),
            ("PORT", "70000"),
            ("JOBS_RETRY_DELAY_SECS", "0"),
            ("JOBS_RETRY_FACTOR", "0"),
            ("JOBS_MAX_RETRIES", "-1"),
            ("JOBS_NAMESPACE", "a b"),
            ("JOBS_DEAD_AFTER_MS", "600"),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn reads_every_setting() {
        let s = settings(&[
            ("REDIS_URL", "redis://127.0.0.1:7000"),
            ("JOBS_CONCURRENCY", "3"),
            ("JOBS_MAX_RETRIES", "0"),
            ("JOBS_RETRY_DELAY_SECS", "2"),
            ("JOBS_RETRY_FACTOR", "3"),
            ("JOBS_DRAIN_TIMEOUT_SECS", "7"),
            ("JOBS_HEARTBEAT_MS", "100"),
            ("JOBS_DEAD_AFTER_MS", "1000"),
        ])
        .unwrap();
        assert_eq!(s.redis_url, "redis://127.0.0.1:7000");
        assert_eq!(s.concurrency, 3);
        assert_eq!(s.retry.max_retries, 0);
        assert_eq!(s.retry.delay_secs(0), 2);
        assert_eq!(s.retry.delay_secs(2), 18);
        assert_eq!(s.drain_timeout, Duration::from_secs(7));
        assert_eq!(s.dead_after, Duration::from_secs(1));
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_secs(5),
            factor: 2,
            max_delay: Duration::from_secs(60),
        };
        let delays: Vec<u64> = (0..6).map(|n| policy.delay_secs(n)).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(policy.delay_secs(u32::MAX), 60);
    }
}
