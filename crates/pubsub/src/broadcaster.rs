use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::rooms::{Registry, Subscription};
use crate::{
    BroadcasterBuilder, Delivery, DeliveryPolicy, Error, Event, Message, MessageId, PubSubConfig,
};

/// The longest room name accepted, in bytes.
pub const MAX_ROOM_LEN: usize = 1024;

/// Publishes messages to rooms and subscribes to them, on one instance or across many.
///
/// Cloning is cheap (an `Arc`); build one per process and clone it into handlers.
///
/// - In memory ([`Broadcaster::memory`]): rooms live in this process; for one instance, tests
///   and development.
/// - Over Redis ([`Broadcaster::redis`] or [`BroadcasterBuilder::redis`]): a message published
///   on any instance reaches the subscribers of its room on every instance. Each instance holds
///   one Redis subscriber connection for all its pub/sub rooms, subscribing to a room when its
///   first local subscriber arrives and unsubscribing when the last one leaves, and one reader
///   connection for all its stream rooms. Both reconnect by themselves.
///
/// See the [crate docs](crate) for delivery guarantees and failure behaviour.
///
/// ```
/// use tower_scale_pubsub::{Broadcaster, Event};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_scale_pubsub::Error> {
/// let broadcaster = Broadcaster::memory();
/// let mut lobby = broadcaster.subscribe("lobby").await?;
/// broadcaster.publish("lobby", "hello").await?;
/// let Some(Event::Message(message)) = lobby.recv().await else { panic!() };
/// assert_eq!(message.payload(), "hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Broadcaster {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: PubSubConfig,
    policy: Box<dyn DeliveryPolicy>,
    pub(crate) registry: Arc<Registry>,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis::RedisPlane>,
}

impl fmt::Debug for Broadcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broadcaster")
            .field("backend", &if self.is_redis() { "redis" } else { "memory" })
            .field("rooms", &self.inner.registry.len())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Default for Broadcaster {
    fn default() -> Self {
        Self::memory()
    }
}

impl Broadcaster {
    /// An in-memory broadcaster with the default settings: rooms live in this process only.
    pub fn memory() -> Self {
        Self::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the default config is valid"))
    }

    /// A broadcaster over Redis with the default settings.
    ///
    /// No connection is opened here: the subscriber connection opens with the first
    /// subscription, so a service starts while Redis is down.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(backend: tower_scale_redis::RedisBackend) -> Result<Self, Error> {
        Self::builder().redis(backend).build()
    }

    /// A builder, to change settings or to choose the delivery per room.
    pub fn builder() -> BroadcasterBuilder {
        BroadcasterBuilder::new()
    }

    /// Whether messages travel through Redis (otherwise they stay in this process).
    pub fn is_redis(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.inner.redis.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    /// Whether messages flow: always `true` in memory; over Redis, `false` while the
    /// subscriber or stream-reader connection is reconnecting (for a readiness check, or to
    /// tell users). A connection not opened yet counts as up.
    pub fn is_connected(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.inner.redis {
            return redis.is_connected();
        }
        true
    }

    /// The settings in use.
    pub fn config(&self) -> &PubSubConfig {
        &self.inner.config
    }

    /// The delivery of `room`, as the policy decides.
    pub fn delivery(&self, room: &str) -> Delivery {
        self.inner.policy.delivery(room)
    }

    /// The number of rooms with local subscribers.
    pub fn rooms(&self) -> usize {
        self.inner.registry.len()
    }

    /// The number of local subscribers of `room`.
    pub fn subscribers(&self, room: &str) -> usize {
        self.inner.registry.subscribers(room)
    }

    /// Publishes `payload` to `room`, for the subscribers of every instance.
    ///
    /// Returns the message's id in stream rooms and `None` in pub/sub rooms. Over Redis, the
    /// message has reached Redis when this returns `Ok`; the messages of one publisher that
    /// awaits each publish reach every subscriber in the order they were published.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRoom`] for an empty or too long name; [`Error::Redis`] when Redis fails
    /// (pub/sub rooms: at once, the message is not sent; stream rooms: after retrying for
    /// `publish_retry`, the message was not added).
    pub async fn publish(
        &self,
        room: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Option<MessageId>, Error> {
        check_room(room)?;
        let payload = payload.into();
        let delivery = self.delivery(room);
        #[cfg(feature = "redis")]
        let published = match &self.inner.redis {
            Some(redis) => redis.publish(room, delivery, payload).await?,
            None => self.publish_memory(room, delivery, payload),
        };
        #[cfg(not(feature = "redis"))]
        let published = self.publish_memory(room, delivery, payload);
        metrics::counter!(crate::PUBSUB_PUBLISHED_TOTAL.name, "delivery" => delivery.label())
            .increment(1);
        Ok(published)
    }

    fn publish_memory(&self, room: &str, delivery: Delivery, payload: Bytes) -> Option<MessageId> {
        let mut state = self.inner.registry.lock();
        let state = &mut *state;
        let live = state.rooms.get(room);
        if delivery == Delivery::PubSub {
            if let Some(r) = live {
                let _ = r.tx.send(Event::Message(Message {
                    room: r.name.clone(),
                    payload,
                    id: None,
                }));
            }
            return None;
        }
        state.last_seq += 1;
        let id = MessageId::new(0, state.last_seq);
        let name = live.map_or_else(|| Arc::from(room), |r| r.name.clone());
        let message = Message {
            room: name,
            payload,
            id: Some(id),
        };
        if let Some(r) = live {
            let _ = r.tx.send(Event::Message(message.clone()));
        }
        state.history.push(message);
        Some(id)
    }

    /// Subscribes to `room`: the subscription yields every message published after this returns.
    ///
    /// Over Redis, the first local subscriber of a pub/sub room waits until Redis confirms the
    /// subscription (at most `subscribe_timeout`; if Redis is down, the room is subscribed
    /// when it is back and its subscribers get [`Event::Interrupted`]). The first local
    /// subscriber of a stream room reads the room's last id, which needs Redis.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRoom`]; [`Error::Redis`] for a new stream room while Redis is
    /// unavailable.
    pub async fn subscribe(&self, room: &str) -> Result<Subscription, Error> {
        self.subscribe_with_history(room, 0).await
    }

    /// Subscribes to `room`, starting with up to `limit` of its latest messages (oldest first,
    /// then the live ones, without duplicates or gaps between the two). Only stream rooms have
    /// a history; for pub/sub rooms this is [`subscribe`](Self::subscribe).
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe); [`Error::Redis`] when the history cannot be read.
    pub async fn subscribe_with_history(
        &self,
        room: &str,
        limit: usize,
    ) -> Result<Subscription, Error> {
        check_room(room)?;
        let delivery = self.delivery(room);
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.inner.redis {
            return redis.subscribe(&self.inner, room, delivery, limit).await;
        }
        let joined = self.inner.registry.join(room, delivery, || None);
        let backlog = if delivery == Delivery::Stream && limit > 0 {
            self.memory_history(room, limit)
        } else {
            Vec::new()
        };
        Ok(Subscription::new(
            self.inner.clone(),
            joined.name,
            joined.rx,
            backlog,
        ))
    }

    /// Up to `limit` of the latest messages of a stream room, oldest first (empty for pub/sub
    /// rooms).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRoom`]; [`Error::Redis`] when Redis fails.
    pub async fn history(&self, room: &str, limit: usize) -> Result<Vec<Message>, Error> {
        check_room(room)?;
        if self.delivery(room) != Delivery::Stream || limit == 0 {
            return Ok(Vec::new());
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.inner.redis {
            return redis.history(room, limit).await;
        }
        Ok(self.memory_history(room, limit))
    }

    fn memory_history(&self, room: &str, limit: usize) -> Vec<Message> {
        self.inner.registry.lock().history.latest(room, limit)
    }
}

impl Broadcaster {
    /// A broadcaster over `registry` (see [`BroadcasterBuilder::build`]).
    pub(crate) fn from_parts(
        config: PubSubConfig,
        policy: Box<dyn DeliveryPolicy>,
        registry: Arc<Registry>,
        #[cfg(feature = "redis")] redis: Option<crate::redis::RedisPlane>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                policy,
                registry,
                #[cfg(feature = "redis")]
                redis,
            }),
        }
    }
}

impl Inner {
    /// A subscriber left `room`.
    pub(crate) fn leave(&self, room: &str) {
        if let Some(_gone) = self.registry.leave(room) {
            #[cfg(feature = "redis")]
            if let Some(redis) = &self.redis {
                redis.room_closed(&_gone);
            }
        }
    }
}

fn check_room(room: &str) -> Result<(), Error> {
    if room.is_empty() {
        return Err(Error::InvalidRoom("the name is empty".to_owned()));
    }
    if room.len() > MAX_ROOM_LEN {
        return Err(Error::InvalidRoom(format!(
            "the name is {} bytes long, more than {MAX_ROOM_LEN}",
            room.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Any room name a client sends is refused with a clear error (empty, too long) or
        /// carries its messages, payload and name intact, to its own subscribers only.
        #[test]
        fn any_room_name_is_refused_clearly_or_survives(
            room in prop_oneof![".{0,12}", "[{}%:_]{0,4}", Just("r".repeat(MAX_ROOM_LEN + 1))],
            payload in proptest::collection::vec(any::<u8>(), 0..32),
            delivery in prop_oneof![Just(Delivery::PubSub), Just(Delivery::Stream)],
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let broadcaster = Broadcaster::builder().delivery(delivery).build().unwrap();
                let subscribed = broadcaster.subscribe(&room).await;
                if room.is_empty() || room.len() > MAX_ROOM_LEN {
                    let err = subscribed.unwrap_err();
                    prop_assert!(matches!(err, Error::InvalidRoom(_)), "{}", err);
                    prop_assert!(broadcaster.publish(&room, payload).await.is_err());
                    return Ok(());
                }
                let mut sub = subscribed.unwrap();
                let mut other = broadcaster.subscribe(&format!("{room}.")).await.unwrap();
                let id = broadcaster.publish(&room, payload.clone()).await.unwrap();
                let Some(Event::Message(m)) = sub.recv().await else {
                    return Err(TestCaseError::fail("no message"));
                };
                prop_assert_eq!(m.room(), room.as_str());
                prop_assert_eq!(m.payload().as_ref(), payload.as_slice());
                prop_assert_eq!(m.id(), id);
                let other_got_none = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(other.poll_next_unpin(cx).is_pending())
                })
                .await;
                prop_assert!(other_got_none, "another room got the message");
                Ok(())
            })?;
        }
    }

    /// A client publishing to 100,000 made-up stream rooms it never joined cannot make the
    /// in-memory backend keep 100,000 histories, and idle histories go after their time.
    #[tokio::test(start_paused = true)]
    async fn publishing_to_made_up_rooms_cannot_grow_memory_history_forever() {
        let broadcaster = Broadcaster::builder()
            .delivery(Delivery::Stream)
            .build()
            .unwrap();
        for n in 0..100_000 {
            broadcaster
                .publish(&format!("made-up-{n}"), "x")
                .await
                .unwrap();
        }
        let held = broadcaster.inner.registry.lock().history.len();
        assert!(held <= 10_000, "{held} room histories held");
        // Past the default idle time, only the room published to since is left.
        tokio::time::advance(Duration::from_secs(25 * 3600)).await;
        broadcaster.publish("fresh", "x").await.unwrap();
        let held = broadcaster.inner.registry.lock().history.len();
        assert_eq!(held, 1, "{held} room histories held after the idle time");
    }
}
