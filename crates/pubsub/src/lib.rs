//! Real-time fan-out across instances for tower/axum services: rooms that every instance of a
//! service can publish to and subscribe to, kept in sync through Redis.
//!
//! # Overview
//!
//! A WebSocket chat on one server only needs an in-process broadcast channel. Behind a load
//! balancer, a message sent to instance A must also reach the users connected to B and C.
//! [`Broadcaster`] does both with one API:
//!
//! - [`Broadcaster::publish`]`(room, message)` and [`Broadcaster::subscribe`]`(room)`, which
//!   returns a [`Subscription`]: a [`Stream`](futures_core::Stream) of [`Event`]s.
//! - In memory ([`Broadcaster::memory`], the default) for one instance, or over Redis
//!   ([`Broadcaster::redis`]) for many. Over Redis, each instance holds **one** subscriber
//!   connection for all its rooms: it subscribes to a room's channel when the room's first
//!   local subscriber arrives and unsubscribes when the last one leaves, and fans each message
//!   out to its local subscribers.
//! - Per room, a [`Delivery`]: [`Delivery::PubSub`] (Redis pub/sub: fastest, at most once) or
//!   [`Delivery::Stream`] (Redis Streams: at least once, with a history that new subscribers
//!   can start from, [`Broadcaster::subscribe_with_history`]).
//!
//! # Example
//!
//! ```
//! use futures_util::StreamExt;
//! use tower_scale_pubsub::{Broadcaster, Delivery, Event};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_scale_pubsub::Error> {
//! // Over Redis: Broadcaster::builder().redis(backend).delivery(Delivery::Stream).build()?
//! let broadcaster = Broadcaster::builder().delivery(Delivery::Stream).build()?;
//! broadcaster.publish("lobby", "first").await?;
//!
//! // The last 10 messages, then the live ones.
//! let mut lobby = broadcaster.subscribe_with_history("lobby", 10).await?;
//! broadcaster.publish("lobby", "second").await?;
//!
//! let mut texts = Vec::new();
//! while let Some(Event::Message(message)) = lobby.next().await {
//!     texts.push(message.payload().clone());
//!     if texts.len() == 2 { break; }
//! }
//! assert_eq!(texts, ["first", "second"]);
//! # Ok(()) }
//! ```
//!
//! # Slow subscribers
//!
//! Each subscription has a bounded queue of `queue_capacity` events (default 1024). Publishing
//! never waits for subscribers: when a subscriber is that far behind, the **oldest** of its
//! queued events are dropped for it alone, and its next event is [`Event::Lagged`]`(n)` with
//! the number dropped, followed by the newest messages. A WebSocket handler can then tell its
//! client to reload (or, in a stream room, fetch [`Broadcaster::history`]).
//!
//! # Failure behaviour (Redis backend)
//!
//! | Redis is… | publish | subscribers |
//! |---|---|---|
//! | up | `Ok` once Redis has the message | every message, in the order Redis received it |
//! | down or hung, pub/sub room | an error at once ([`Error::is_unavailable`]); not sent | keep their subscription; the instance reconnects (50 ms doubling to `reconnect_max_delay`), resubscribes every open room, and sends [`Event::Interrupted`]: messages published meanwhile are missing |
//! | down or hung (or a cluster down), stream room | retried until `publish_retry` (default 5 s), then an error; a retry never adds the message twice | the reader reconnects and resumes after the last id it delivered: nothing is missed while the stream holds it. [`Event::Interrupted`] only when unread entries were trimmed or lost with Redis's data |
//! | restarted without persistence | as above | stream rooms: entries not yet read when Redis lost its data are gone; detected when the stream is gone or older |
//!
//! A hung Redis is noticed by the subscriber connection's `PING` every `ping_interval` (5 s)
//! and by the reader's bounded `XREAD`. No call hangs: every Redis command is bounded by the
//! backend's `command_timeout`, and `subscribe` by `subscribe_timeout`.
//!
//! For stream rooms to lose nothing across a Redis restart, Redis must persist its data
//! (`appendonly yes`); messages published during the outage are delivered once publishers'
//! retries succeed.
//!
//! # Redis Cluster
//!
//! Pub/sub rooms work on a cluster: a regular `PUBLISH` reaches every node, and the subscriber
//! connection uses one seed node (moving to the next when it fails).
//!
//! Stream rooms work too. On a cluster every stream key of a broadcaster shares one hash tag,
//! `<prefix>:pubsub:{<prefix>:<tag>}:<room>` with the tag from
//! [`PubSubConfig::cluster_stream_tag`] (default `streams`), so all its rooms live in one slot
//! and one reader connection to the master owning that slot reads them all with one `XREAD`.
//! The reader asks a seed node which master that is (`CLUSTER SLOTS`) each time it connects,
//! so after a redirect (`MOVED`), a failed node or a down cluster it reconnects to the current
//! owner and resumes after the last id it delivered. Writes (`XADD`) go through the backend's
//! cluster connection. The price: every stream room of one tag is served by one node. Use
//! several tags (one per broadcaster) to spread them. On one server each room keeps its own
//! key, `<prefix>:pubsub:{<room>}:stream` (a room with a brace: `{<room>}:escaped-stream`,
//! the braces escaped); moving to a cluster starts new streams (history is not carried over).
//!
//! # Metrics
//!
//! [`PUBSUB_PUBLISHED_TOTAL`], [`PUBSUB_LAGGED_TOTAL`], [`PUBSUB_INTERRUPTIONS_TOTAL`] and
//! [`PUBSUB_CONNECTED`], through the `metrics` facade.
//!
//! # Feature flags
//!
//! | Name | Description | Default? |
//! |---|---|---|
//! | `redis` | The Redis backend (pub/sub and Streams) through `tower-scale-redis` | yes |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod broadcaster;
mod builder;
mod config;
mod error;
mod event;
mod history;
pub mod names;
#[cfg(feature = "redis")]
mod redis;
mod rooms;

#[doc(inline)]
pub use self::{
    broadcaster::{Broadcaster, MAX_ROOM_LEN},
    builder::BroadcasterBuilder,
    config::{Delivery, DeliveryPolicy, PubSubConfig},
    error::Error,
    event::{Event, Message, MessageId, ParseMessageIdError},
    rooms::Subscription,
};

/// An invalid [`PubSubConfig`] value, naming the field (from `tower-scale-core`).
pub use tower_scale_core::ConfigError;

pub use names::{
    PUBSUB_CONNECTED, PUBSUB_INTERRUPTIONS_TOTAL, PUBSUB_LAGGED_TOTAL, PUBSUB_PUBLISHED_TOTAL,
};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
