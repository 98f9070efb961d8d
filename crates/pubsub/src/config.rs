use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// How the messages of a room travel between instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Redis pub/sub (`PUBLISH`/`SUBSCRIBE`): the lowest latency and no storage, at most once.
    /// A message published while an instance is disconnected from Redis does not reach that
    /// instance's subscribers; they get [`Event::Interrupted`](crate::Event::Interrupted)
    /// once it reconnects. A publish that fails is reported to the caller, not retried. The
    /// in-memory backend keeps no history for these rooms.
    #[default]
    PubSub,
    /// Redis Streams (`XADD` with `MAXLEN ~`, `XREAD`): at least once, with history. Every
    /// message gets a [`MessageId`](crate::MessageId); an instance that loses Redis resumes
    /// reading after the last id it delivered, so nothing is missed while the stream still
    /// holds it. A publish is retried until `publish_retry` runs out, and a retry never adds a
    /// message twice. Costs one stream per room in Redis, bounded by `history_len` and expiring
    /// `history_ttl` after the room's last message.
    Stream,
}

/// Chooses the [`Delivery`] of each room.
///
/// Implemented for every `Fn(&str) -> Delivery` closure and for [`Delivery`] itself (the same
/// for every room).
///
/// ```
/// use tower_scale_pubsub::{Delivery, DeliveryPolicy};
///
/// let policy = |room: &str| {
///     if room.starts_with("chat:") { Delivery::Stream } else { Delivery::PubSub }
/// };
/// assert_eq!(policy.delivery("chat:lobby"), Delivery::Stream);
/// assert_eq!(policy.delivery("presence"), Delivery::PubSub);
/// ```
pub trait DeliveryPolicy: Send + Sync + 'static {
    /// The delivery of `room`. Must give the same answer for a room on every call and on every
    /// instance.
    fn delivery(&self, room: &str) -> Delivery;
}

impl Delivery {
    /// The value of the metrics' `delivery` label: `pubsub` or `stream`.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Self::PubSub => "pubsub",
            Self::Stream => "stream",
        }
    }
}

impl DeliveryPolicy for Delivery {
    fn delivery(&self, _room: &str) -> Delivery {
        *self
    }
}

impl<F> DeliveryPolicy for F
where
    F: Fn(&str) -> Delivery + Send + Sync + 'static,
{
    fn delivery(&self, room: &str) -> Delivery {
        self(room)
    }
}

/// Settings of a [`Broadcaster`](crate::Broadcaster).
///
/// Every field has a default, so a config file only names what it changes; durations are
/// humantime strings (`"250ms"`, `"5s"`).
///
/// ```
/// use tower_scale_pubsub::{Delivery, PubSubConfig};
///
/// let config: PubSubConfig = toml::from_str(r#"
///     delivery = "stream"
///     queue_capacity = 256
///     history_len = 500
///     history_ttl = "1h"
///     publish_retry = "10s"
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.delivery, Delivery::Stream);
/// assert_eq!(config.ping_interval.as_secs(), 5); // a default
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PubSubConfig {
    /// How many messages each subscriber may have queued before the oldest are dropped for it
    /// (it then receives [`Event::Lagged`](crate::Event::Lagged)). Default 1024; 1..=1 000 000.
    pub queue_capacity: usize,
    /// The delivery of every room, unless a [`DeliveryPolicy`] is set. Default `pub_sub`.
    pub delivery: Delivery,
    /// How many messages a stream room keeps (approximately, `XADD MAXLEN ~`): the history
    /// that new subscribers can ask for and that reconnecting instances replay from. Default
    /// 1000; at least 1.
    pub history_len: usize,
    /// How long a stream room's history is kept after its last message: every publish sets
    /// the stream's expiry in Redis (`PEXPIRE`) to this, so the stream of a room nobody
    /// publishes to disappears; the in-memory backend drops the history likewise. Default
    /// 24 h; at least 1 ms.
    #[serde(with = "humantime_serde")]
    pub history_ttl: Duration,
    /// In-memory backend: how many stream rooms keep a history; past it, the history of the
    /// room published to least recently is dropped. Redis bounds its streams by `history_len`
    /// and `history_ttl` alone. Default 10 000; at least 1.
    pub max_history_rooms: usize,
    /// How long a publish to a stream room keeps retrying while Redis is unavailable before it
    /// fails. Default 5 s; zero means one attempt.
    #[serde(with = "humantime_serde")]
    pub publish_retry: Duration,
    /// How long `subscribe` waits for Redis to confirm a new pub/sub room before it returns
    /// anyway (the room is then subscribed as soon as Redis is back, and its subscribers get
    /// [`Event::Interrupted`](crate::Event::Interrupted)). Default 1 s.
    #[serde(with = "humantime_serde")]
    pub subscribe_timeout: Duration,
    /// How often the subscriber connection is checked with a `PING` (a hung Redis is noticed
    /// within this plus the command timeout). Default 5 s.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// The longest wait between two reconnection attempts (the wait doubles from 50 ms).
    /// Default 1 s.
    #[serde(with = "humantime_serde")]
    pub reconnect_max_delay: Duration,
    /// How long one blocking `XREAD` of stream rooms waits for new entries. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub read_block: Duration,
    /// On Redis Cluster, the hash tag shared by every stream room of this broadcaster: its
    /// streams are `<prefix>:pubsub:{<prefix>:<tag>}:<room>`, all in one slot, so that one
    /// reader connection to the node owning that slot reads every room with one `XREAD`.
    /// Broadcasters with different tags (or key prefixes) may land on different nodes.
    /// Unused on one Redis server, where each room keeps its own key
    /// (`<prefix>:pubsub:{<room>}:stream`). Default `streams`; 1..=64 bytes, no braces.
    pub cluster_stream_tag: String,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            delivery: Delivery::PubSub,
            history_len: 1000,
            history_ttl: Duration::from_secs(24 * 3600),
            max_history_rooms: 10_000,
            publish_retry: Duration::from_secs(5),
            subscribe_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_secs(5),
            reconnect_max_delay: Duration::from_secs(1),
            read_block: Duration::from_secs(5),
            cluster_stream_tag: "streams".to_owned(),
        }
    }
}

impl PubSubConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_000_000).contains(&self.queue_capacity) {
            return Err(ConfigError::new(
                "queue_capacity",
                format!("{}: expected 1..=1000000", self.queue_capacity),
            ));
        }
        for (name, value) in [
            ("history_len", self.history_len),
            ("max_history_rooms", self.max_history_rooms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(name, "0: expected at least 1"));
            }
        }
        if self.history_ttl < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "history_ttl",
                format!("{:?}: expected at least 1ms", self.history_ttl),
            ));
        }
        for (name, value) in [
            ("ping_interval", self.ping_interval),
            ("reconnect_max_delay", self.reconnect_max_delay),
            ("read_block", self.read_block),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(name, "0: expected a positive duration"));
            }
        }
        let tag = &self.cluster_stream_tag;
        if tag.is_empty() || tag.len() > MAX_TAG_LEN || tag.contains(['{', '}']) {
            return Err(ConfigError::new(
                "cluster_stream_tag",
                format!("{tag:?}: expected 1..={MAX_TAG_LEN} bytes without braces"),
            ));
        }
        Ok(())
    }
}

/// The longest [`PubSubConfig::cluster_stream_tag`].
const MAX_TAG_LEN: usize = 64;
