//! [`KeyedBreakers`]: one breaker per key, bounded in number, counted per group in metrics.

use std::fmt;
use std::sync::Arc;

use tower_scale_core::ConfigError;

use crate::breaker::CircuitBreaker;
use crate::config::BreakerConfig;
use crate::group::Group;

/// One breaker per key (downstream host, route), created on first use from one config, with
/// the number of keys bounded: past `max_keys` the least recently used breaker is dropped.
///
/// Metrics are per group, never per key, since keys may come from clients: the gauge
/// [`BREAKER_KEYS`](crate::BREAKER_KEYS)`{breaker=<name>, state=<state>}` counts the group's
/// live breakers in each state (a dropped breaker leaves the count), and
/// `breaker_transitions_total` carries the group's name ([`named`](Self::named); default
/// `keyed`) in its `breaker` label. A keyed breaker registers no `breaker_state` series. The key of a
/// transition is in its `tracing` event.
#[derive(Clone)]
pub struct KeyedBreakers {
    config: BreakerConfig,
    group: Arc<Group>,
    breakers: moka::sync::Cache<String, CircuitBreaker>,
}

impl fmt::Debug for KeyedBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakers")
            .field("keys", &self.breakers.entry_count())
            .finish_non_exhaustive()
    }
}

impl KeyedBreakers {
    /// Breakers built from `config`, at most `max_keys` of them, named `keyed` in metrics.
    pub fn new(config: BreakerConfig, max_keys: u64) -> Result<Self, ConfigError> {
        Self::named("keyed", config, max_keys)
    }

    /// Breakers built from `config`, at most `max_keys` of them, whose metrics carry
    /// `breaker = name` (e.g. the downstream they guard).
    pub fn named(
        name: impl Into<Arc<str>>,
        config: BreakerConfig,
        max_keys: u64,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        Ok(Self {
            config,
            group: Arc::new(Group::new(name.into())),
            breakers: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .eviction_listener(|_key, breaker: CircuitBreaker, _cause| breaker.retire())
                .build(),
        })
    }

    /// The breaker of `key`.
    pub fn get(&self, key: &str) -> CircuitBreaker {
        self.breakers.get_with_by_ref(key, || {
            CircuitBreaker::in_group(key, self.config.clone(), Arc::clone(&self.group))
                .unwrap_or_else(|_| unreachable!("the config was validated in KeyedBreakers::new"))
        })
    }

    /// The number of keys held (approximate until moka's pending work runs).
    pub fn len(&self) -> u64 {
        self.breakers.run_pending_tasks();
        self.breakers.entry_count()
    }

    /// Whether no breaker exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
