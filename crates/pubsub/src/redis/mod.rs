//! The Redis backplane: `PUBLISH` through the shared backend, one subscriber connection for the
//! pub/sub rooms of the instance, one reader connection for its stream rooms.

mod listener;
mod parse;
mod reader;
#[cfg(test)]
mod wire_tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use redis::Script;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_scale_core::Backoff;
use tower_scale_redis::RedisBackend;

use self::listener::{Listener, ListenerCmd};
use self::reader::{Reader, Target};
use crate::broadcaster::Inner;
use crate::rooms::{Registry, Room, Subscription};
use crate::{ConfigError, Delivery, Error, Message, MessageId, PubSubConfig};

/// The key concern of this crate: channels `<prefix>:pubsub:<room>`, streams
/// `<prefix>:pubsub:{<room>}:stream` on one server (see [`room_key`] for rooms with braces) and `<prefix>:pubsub:{<prefix>:<tag>}:<room>`
/// on a cluster (one slot for every stream room, see [`PubSubConfig::cluster_stream_tag`]).
const CONCERN: &str = "pubsub";
/// First wait before reconnecting; doubles up to `reconnect_max_delay`.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// How many recent entries a retried stream publish looks through for its own message.
const DEDUP_WINDOW: usize = 100;

/// Adds a message to a stream (`XADD MAXLEN ~`) and refreshes the stream's expiry; a retry
/// after an ambiguous failure never adds it twice. See `append.lua`.
static APPEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("append.lua")));

pub(crate) struct RedisPlane {
    backend: RedisBackend,
    clients: Arc<[redis::Client]>,
    registry: Arc<Registry>,
    config: PubSubConfig,
    /// On a cluster, the hash tag of every stream key (`<prefix>:<tag>`); `None` on one
    /// server, where each room's stream has its own tag.
    stream_tag: Option<String>,
    listener: OnceLock<mpsc::UnboundedSender<ListenerCmd>>,
    reader: OnceLock<Arc<Notify>>,
    /// Tells retried stream publishes of this instance apart from those of others.
    instance: String,
    counter: AtomicU64,
    stop: CancellationToken,
    links: Arc<Links>,
}

impl Drop for RedisPlane {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RedisPlane {
    pub(crate) fn new(
        backend: RedisBackend,
        registry: Arc<Registry>,
        config: &PubSubConfig,
    ) -> Result<Self, Error> {
        let cfg = backend.config();
        // On a cluster, a regular PUBLISH reaches every node: the subscriber connection may
        // use any of them, and moves to the next one when its node fails. The clients carry
        // the backend's TLS settings (CA, client certificate) and credentials.
        let clients = std::iter::once(&cfg.url)
            .chain(&cfg.nodes)
            .map(|url| {
                cfg.client(url)
                    .map_err(|e| ConfigError::new("redis url", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stream_tag = backend
            .is_cluster()
            .then(|| format!("{}:{}", backend.keys().prefix(), config.cluster_stream_tag));
        Ok(Self {
            backend,
            clients: clients.into(),
            stream_tag,
            registry,
            config: config.clone(),
            listener: OnceLock::new(),
            reader: OnceLock::new(),
            instance: format!("{:016x}", rand::random::<u64>()),
            counter: AtomicU64::new(0),
            stop: CancellationToken::new(),
            links: Arc::default(),
        })
    }

    fn key(&self, room: &str, delivery: Delivery) -> String {
        room_key(
            self.backend.keys(),
            self.stream_tag.as_deref(),
            room,
            delivery,
        )
    }

    /// Whether the subscriber and reader connections in use are up.
    pub(crate) fn is_connected(&self) -> bool {
        self.links.up()
    }

    pub(crate) async fn publish(
        &self,
        room: &str,
        delivery: Delivery,
        payload: Bytes,
    ) -> Result<Option<MessageId>, Error> {
        let key = self.key(room, delivery);
        match delivery {
            Delivery::PubSub => {
                self.backend
                    .query::<i64>(redis::cmd("PUBLISH").arg(&key).arg(payload.as_ref()))
                    .await?;
                Ok(None)
            }
            Delivery::Stream => Ok(Some(self.append(&key, &payload).await?)),
        }
    }

    /// [`APPEND`], retried while Redis is unavailable until `publish_retry` runs out; retries
    /// look through the stream's latest entries for their own message first.
    async fn append(&self, key: &str, payload: &[u8]) -> Result<MessageId, Error> {
        let mid = format!(
            "{}:{}",
            self.instance,
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let ttl_ms = u64::try_from(self.config.history_ttl.as_millis()).unwrap_or(u64::MAX);
        let deadline = Instant::now() + self.config.publish_retry;
        let mut backoff = reconnect_backoff(&self.config);
        let mut dedup_window = 0;
        loop {
            let mut invocation = APPEND.prepare_invoke();
            invocation
                .key(key)
                .arg(&mid)
                .arg(payload)
                .arg(self.config.history_len)
                .arg(dedup_window)
                .arg(ttl_ms);
            let error = match self.backend.invoke::<String>(&invocation).await {
                Ok(id) => {
                    return id.parse().map_err(|e| {
                        Error::Redis(tower_scale_redis::Error::Redis(redis::RedisError::from((
                            redis::ErrorKind::Client,
                            "XADD returned an invalid id",
                            format!("{e}"),
                        ))))
                    });
                }
                Err(e) => e,
            };
            let now = Instant::now();
            if !crate::error::transient(&error) || now >= deadline {
                return Err(error.into());
            }
            tracing::debug!(%error, key, "stream publish failed; retrying");
            tokio::time::sleep(backoff.next_delay().min(deadline - now)).await;
            dedup_window = DEDUP_WINDOW;
        }
    }

    pub(crate) async fn subscribe(
        &self,
        inner: &Arc<Inner>,
        room: &str,
        delivery: Delivery,
        limit: usize,
    ) -> Result<Subscription, Error> {
        let joined = self
            .registry
            .join(room, delivery, || Some(self.key(room, delivery).into()));
        let key = joined
            .key
            .clone()
            .unwrap_or_else(|| self.key(room, delivery).into());
        // Made first, so that leaving on an error below is the subscription's drop.
        let mut subscription =
            Subscription::new(inner.clone(), joined.name.clone(), joined.rx, Vec::new());
        match delivery {
            Delivery::PubSub => {
                if !joined.ready {
                    let (tx, rx) = oneshot::channel();
                    let _ = self.listener().send(ListenerCmd::Subscribe(key, Some(tx)));
                    // Confirmed, or Redis is unavailable: the room is subscribed as soon as
                    // it is back.
                    let _ = tokio::time::timeout(self.config.subscribe_timeout, rx).await;
                }
            }
            Delivery::Stream => {
                if !joined.ready || limit > 0 {
                    let latest = self.latest(&key, limit.max(1)).await?;
                    if !joined.ready {
                        let start = latest.first().map_or(MessageId::ZERO, |e| e.0);
                        let mut state = self.registry.lock();
                        if let Some(r) = state.rooms.get_mut(room) {
                            r.position.get_or_insert(start);
                        }
                        drop(state);
                        self.reader().notify_one();
                    }
                    if limit > 0 {
                        subscription.set_backlog(to_messages(&joined.name, latest));
                    }
                }
            }
        }
        Ok(subscription)
    }

    pub(crate) async fn history(&self, room: &str, limit: usize) -> Result<Vec<Message>, Error> {
        let latest = self
            .latest(&self.key(room, Delivery::Stream), limit)
            .await?;
        Ok(to_messages(&Arc::from(room), latest))
    }

    /// The latest `count` entries of a stream, newest first.
    async fn latest(&self, key: &str, count: usize) -> Result<Vec<parse::Entry>, Error> {
        let reply: redis::Value = self
            .backend
            .query(
                redis::cmd("XREVRANGE")
                    .arg(key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        Ok(parse::entries(reply))
    }

    /// The last local subscriber of `room` left.
    pub(crate) fn room_closed(&self, room: &Room) {
        if let (Delivery::PubSub, Some(key), Some(listener)) =
            (room.delivery, &room.key, self.listener.get())
        {
            let _ = listener.send(ListenerCmd::Unsubscribe(key.clone()));
        }
        // A stream room simply drops out of the reader's next XREAD.
    }

    fn listener(&self) -> &mpsc::UnboundedSender<ListenerCmd> {
        self.listener.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let listener = Listener {
                registry: self.registry.clone(),
                clients: self.clients.clone(),
                config: self.config.clone(),
                connect_timeout: self.backend.config().connect_timeout,
                command_timeout: self.backend.config().command_timeout,
                stop: self.stop.clone(),
                links: self.links.clone(),
            };
            tokio::spawn(listener.run(rx));
            tx
        })
    }

    fn reader(&self) -> &Notify {
        self.reader.get_or_init(|| {
            let notify = Arc::new(Notify::new());
            let reader = Reader {
                registry: self.registry.clone(),
                target: match &self.stream_tag {
                    None => Target::Server(self.clients[0].clone()),
                    // Any key with the tag names the slot.
                    Some(_) => Target::Cluster {
                        seeds: self.clients.clone(),
                        slot_key: self.key("", Delivery::Stream),
                    },
                },
                backend: self.backend.clone(),
                config: self.config.clone(),
                connect_timeout: self.backend.config().connect_timeout,
                command_timeout: self.backend.config().command_timeout,
                stop: self.stop.clone(),
                wake: notify.clone(),
                links: self.links.clone(),
            };
            tokio::spawn(reader.run());
            notify
        })
    }
}

/// The Redis key of `room`: its channel for [`Delivery::PubSub`], its stream for
/// [`Delivery::Stream`] (`stream_tag` is the cluster's shared hash tag, `None` on one server).
/// Distinct rooms always get distinct keys.
///
/// On one server the room itself is the hash tag, and a brace would end the tag early, so a
/// room with a brace has it escaped (`%` as `%25`, `{` as `%7B`, `}` as `%7D`) and its key ends
/// in `:escaped-stream`, where a brace-free room's ends in `:stream` as it always has.
pub(crate) fn room_key(
    keys: &tower_scale_redis::Keys,
    stream_tag: Option<&str>,
    room: &str,
    delivery: Delivery,
) -> String {
    match (delivery, stream_tag) {
        (Delivery::PubSub, _) => keys.key(CONCERN, room),
        (Delivery::Stream, Some(tag)) => keys.tagged(CONCERN, tag, room),
        (Delivery::Stream, None) if !room.contains(['{', '}']) => {
            keys.tagged(CONCERN, room, "stream")
        }
        (Delivery::Stream, None) => {
            let mut tag = String::with_capacity(room.len() + 8);
            for c in room.chars() {
                match c {
                    '%' => tag.push_str("%25"),
                    '{' => tag.push_str("%7B"),
                    '}' => tag.push_str("%7D"),
                    c => tag.push(c),
                }
            }
            keys.tagged(CONCERN, &tag, "escaped-stream")
        }
    }
}

fn to_messages(room: &Arc<str>, newest_first: Vec<parse::Entry>) -> Vec<Message> {
    newest_first
        .into_iter()
        .rev()
        .map(|(id, payload)| Message {
            room: room.clone(),
            payload,
            id: Some(id),
        })
        .collect()
}

/// The waits between reconnection attempts (and stream publish retries): 50 ms doubling up to
/// `reconnect_max_delay` (that delay throughout when it is shorter than 50 ms).
fn reconnect_backoff(config: &PubSubConfig) -> Backoff {
    let max = config.reconnect_max_delay;
    Backoff::new(FIRST_RETRY_DELAY.min(max), max)
}

/// Whether the subscriber and reader connections are down (each `false` until it first fails).
#[derive(Debug, Default)]
pub(crate) struct Links {
    pubsub_down: AtomicBool,
    stream_down: AtomicBool,
}

impl Links {
    /// Records the state of one connection, in the metrics too.
    pub(crate) fn set(&self, delivery: Delivery, up: bool) {
        let flag = match delivery {
            Delivery::PubSub => &self.pubsub_down,
            Delivery::Stream => &self.stream_down,
        };
        flag.store(!up, Ordering::Relaxed);
        metrics::gauge!(crate::PUBSUB_CONNECTED.name, "delivery" => delivery.label()).set(if up {
            1.0
        } else {
            0.0
        });
    }

    fn up(&self) -> bool {
        !self.pubsub_down.load(Ordering::Relaxed) && !self.stream_down.load(Ordering::Relaxed)
    }
}

/// How a connection's session ended.
enum Exit {
    /// The broadcaster was dropped.
    Stop,
    /// The connection failed; reconnect.
    Lost,
}
