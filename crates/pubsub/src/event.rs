use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;

/// The position of a message in a room's history: `<milliseconds>-<sequence>`, as Redis
/// Streams write it.
///
/// Ids grow with every message of a room, so a subscriber can tell which messages it has seen.
/// Only rooms with [`Delivery::Stream`](crate::Delivery::Stream) give their messages an id.
///
/// ```
/// use tower_scale_pubsub::MessageId;
///
/// let id: MessageId = "1700000000000-3".parse().unwrap();
/// assert_eq!(id.to_string(), "1700000000000-3");
/// assert!(id > MessageId::new(1700000000000, 2));
/// assert!("12".parse::<MessageId>().is_ok()); // a bare timestamp means sequence 0
/// assert!("x-1".parse::<MessageId>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId {
    ms: u64,
    seq: u64,
}

impl MessageId {
    /// The id before every message (`0-0`).
    pub const ZERO: Self = Self::new(0, 0);

    /// An id from its two parts.
    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The milliseconds part (for Redis Streams, the server's clock when the message was added).
    pub const fn ms(&self) -> u64 {
        self.ms
    }

    /// The sequence part.
    pub const fn seq(&self) -> u64 {
        self.seq
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A string that is not a message id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a message id (expected <ms>-<seq>): {0:?}")]
pub struct ParseMessageIdError(String);

impl FromStr for MessageId {
    type Err = ParseMessageIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseMessageIdError(s.to_owned());
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Ok(Self {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

impl MessageId {
    #[cfg(feature = "redis")]
    pub(crate) fn parse_bytes(b: &[u8]) -> Option<Self> {
        std::str::from_utf8(b).ok()?.parse().ok()
    }
}

/// A message published to a room.
///
/// Cloning is cheap: the room name and the payload are shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub(crate) room: Arc<str>,
    pub(crate) payload: Bytes,
    pub(crate) id: Option<MessageId>,
}

impl Message {
    /// The room the message was published to.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// The bytes as published.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The payload, consuming the message.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// The message's position in the room's history, for rooms with
    /// [`Delivery::Stream`](crate::Delivery::Stream); `None` for pub/sub rooms.
    pub fn id(&self) -> Option<MessageId> {
        self.id
    }
}

/// What a [`Subscription`](crate::Subscription) yields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message of the room.
    Message(Message),
    /// This subscriber fell behind by more than its queue holds: the given number of the
    /// oldest queued messages were dropped for it (other subscribers are not affected). The
    /// messages that follow are the newest ones.
    Lagged(u64),
    /// The instance lost its connection to Redis and got it back: messages published in
    /// between may be missing (pub/sub rooms), or were trimmed from or lost with the room's
    /// history (stream rooms). Messages received before and after are complete in themselves.
    Interrupted,
}

impl Event {
    /// The message, when this event is one.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Self::Message(m) => Some(m),
            _ => None,
        }
    }

    /// The message, consuming the event.
    pub fn into_message(self) -> Option<Message> {
        match self {
            Self::Message(m) => Some(m),
            _ => None,
        }
    }
}
