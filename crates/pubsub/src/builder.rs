//! Building a [`Broadcaster`]: its settings, its delivery policy, its backend.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::rooms::Registry;
use crate::{Broadcaster, Delivery, DeliveryPolicy, Error, PubSubConfig};

/// Builds a [`Broadcaster`]; see [`Broadcaster::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_scale_pubsub::{Broadcaster, Delivery};
///
/// let broadcaster = Broadcaster::builder()
///     .queue_capacity(256)
///     .delivery_with(|room: &str| {
///         if room.starts_with("chat:") { Delivery::Stream } else { Delivery::PubSub }
///     })
///     .history_len(200)
///     .publish_retry(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// assert_eq!(broadcaster.delivery("chat:lobby"), Delivery::Stream);
/// ```
#[must_use]
pub struct BroadcasterBuilder {
    config: PubSubConfig,
    policy: Option<Box<dyn DeliveryPolicy>>,
    #[cfg(feature = "redis")]
    redis: Option<tower_scale_redis::RedisBackend>,
}

impl fmt::Debug for BroadcasterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcasterBuilder")
            .field("config", &self.config)
            .field("custom_policy", &self.policy.is_some())
            .finish_non_exhaustive()
    }
}

impl BroadcasterBuilder {
    /// The default settings, in memory.
    pub(crate) fn new() -> Self {
        Self {
            config: PubSubConfig::default(),
            policy: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// Replaces every setting with `config`.
    pub fn config(mut self, config: PubSubConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`PubSubConfig::queue_capacity`].
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.config.queue_capacity = capacity;
        self
    }

    /// The delivery of every room (see [`PubSubConfig::delivery`]).
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.config.delivery = delivery;
        self.policy = None;
        self
    }

    /// Chooses the delivery per room.
    pub fn delivery_with(mut self, policy: impl DeliveryPolicy) -> Self {
        self.policy = Some(Box::new(policy));
        self
    }

    /// See [`PubSubConfig::history_len`].
    pub fn history_len(mut self, len: usize) -> Self {
        self.config.history_len = len;
        self
    }

    /// See [`PubSubConfig::history_ttl`].
    pub fn history_ttl(mut self, ttl: Duration) -> Self {
        self.config.history_ttl = ttl;
        self
    }

    /// See [`PubSubConfig::max_history_rooms`].
    pub fn max_history_rooms(mut self, rooms: usize) -> Self {
        self.config.max_history_rooms = rooms;
        self
    }

    /// See [`PubSubConfig::publish_retry`].
    pub fn publish_retry(mut self, retry: Duration) -> Self {
        self.config.publish_retry = retry;
        self
    }

    /// See [`PubSubConfig::subscribe_timeout`].
    pub fn subscribe_timeout(mut self, timeout: Duration) -> Self {
        self.config.subscribe_timeout = timeout;
        self
    }

    /// See [`PubSubConfig::ping_interval`].
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// See [`PubSubConfig::read_block`].
    pub fn read_block(mut self, block: Duration) -> Self {
        self.config.read_block = block;
        self
    }

    /// See [`PubSubConfig::cluster_stream_tag`].
    pub fn cluster_stream_tag(mut self, tag: impl Into<String>) -> Self {
        self.config.cluster_stream_tag = tag.into();
        self
    }

    /// Carries messages between instances through Redis.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, backend: tower_scale_redis::RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// Builds the broadcaster. Opens no connection.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid setting.
    pub fn build(self) -> Result<Broadcaster, Error> {
        self.config.validate()?;
        let registry = Arc::new(Registry::new(&self.config));
        #[cfg(feature = "redis")]
        let redis = match self.redis {
            Some(backend) => Some(crate::redis::RedisPlane::new(
                backend,
                registry.clone(),
                &self.config,
            )?),
            None => None,
        };
        let policy = self
            .policy
            .unwrap_or_else(|| Box::new(self.config.delivery));
        Ok(Broadcaster::from_parts(
            self.config,
            policy,
            registry,
            #[cfg(feature = "redis")]
            redis,
        ))
    }
}
