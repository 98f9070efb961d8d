//! The rooms of one instance: a bounded broadcast queue per room, shared by its local
//! subscribers, and the subscriptions that read them.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::broadcast::{self, Receiver, error::RecvError};
use tokio_util::sync::ReusableBoxFuture;

use crate::broadcaster::Inner;
use crate::history::Histories;
use crate::{Delivery, Event, Message, MessageId, PubSubConfig};

/// The local rooms, shared by the broadcaster, its subscriptions and its background tasks.
#[derive(Debug)]
pub(crate) struct Registry {
    state: Mutex<State>,
    capacity: usize,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) rooms: HashMap<Arc<str>, Room>,
    /// The room of each open pub/sub room's Redis channel: a channel is mapped back to its
    /// room by lookup, never by decoding it, whatever escaping the key layout applies.
    pub(crate) by_channel: HashMap<Arc<str>, Arc<str>>,
    /// History of stream rooms of the in-memory backend.
    pub(crate) history: Histories,
    /// Last id given by the in-memory backend.
    pub(crate) last_seq: u64,
}

#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) name: Arc<str>,
    pub(crate) tx: broadcast::Sender<Event>,
    pub(crate) subscribers: usize,
    pub(crate) delivery: Delivery,
    /// The Redis channel or stream key of the room (Redis backend only).
    pub(crate) key: Option<Arc<str>>,
    /// Pub/sub rooms: Redis confirmed the subscription on the current connection.
    pub(crate) confirmed: bool,
    /// Stream rooms: the id of the last entry delivered; `None` until it is known.
    pub(crate) position: Option<MessageId>,
}

impl Room {
    /// Delivers entries read from a stream room's key: those after the room's position,
    /// which moves to the last one delivered.
    ///
    /// A room whose position is not known yet gets none. It opened (or opened again after its
    /// last subscriber left) while the read was running, and the read was for the room as it
    /// was before; the subscribe that opened it sets where it starts, and the entries up to
    /// there were published before it subscribed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn deliver_stream(&mut self, entries: impl IntoIterator<Item = (MessageId, Bytes)>) {
        for (id, payload) in entries {
            match self.position {
                Some(position) if id > position => self.position = Some(id),
                _ => continue,
            }
            let _ = self.tx.send(Event::Message(Message {
                room: self.name.clone(),
                payload,
                id: Some(id),
            }));
        }
    }
}

/// What joining a room found.
pub(crate) struct Joined {
    pub(crate) rx: Receiver<Event>,
    pub(crate) name: Arc<str>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) key: Option<Arc<str>>,
    /// Pub/sub: the room is subscribed on Redis. Streams: the read position is known.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) ready: bool,
}

impl Registry {
    pub(crate) fn new(config: &PubSubConfig) -> Self {
        Self {
            state: Mutex::new(State {
                rooms: HashMap::new(),
                by_channel: HashMap::new(),
                history: Histories::new(config),
                last_seq: 0,
            }),
            capacity: config.queue_capacity,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is one
        // statement), so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a subscriber to `room`, creating the room when it has none.
    pub(crate) fn join(
        &self,
        room: &str,
        delivery: Delivery,
        make_key: impl FnOnce() -> Option<Arc<str>>,
    ) -> Joined {
        let mut state = self.lock();
        if let Some(r) = state.rooms.get_mut(room) {
            r.subscribers += 1;
            return Joined {
                rx: r.tx.subscribe(),
                name: r.name.clone(),
                key: r.key.clone(),
                ready: match r.delivery {
                    Delivery::PubSub => r.confirmed,
                    Delivery::Stream => r.position.is_some(),
                },
            };
        }
        let name: Arc<str> = Arc::from(room);
        let (tx, rx) = broadcast::channel(self.capacity);
        let key = make_key();
        if let (Delivery::PubSub, Some(key)) = (delivery, &key) {
            state.by_channel.insert(key.clone(), name.clone());
        }
        state.rooms.insert(
            name.clone(),
            Room {
                name: name.clone(),
                tx,
                subscribers: 1,
                delivery,
                key: key.clone(),
                confirmed: false,
                position: None,
            },
        );
        Joined {
            rx,
            name,
            key,
            ready: false,
        }
    }

    /// Removes a subscriber; returns the room when it was the last one (the room is gone).
    pub(crate) fn leave(&self, room: &str) -> Option<Room> {
        let mut state = self.lock();
        let r = state.rooms.get_mut(room)?;
        r.subscribers -= 1;
        if r.subscribers > 0 {
            return None;
        }
        let gone = state.rooms.remove(room)?;
        if let (Delivery::PubSub, Some(key)) = (gone.delivery, &gone.key) {
            state.by_channel.remove(key);
        }
        Some(gone)
    }

    /// Delivers a pub/sub message of `channel` to the local subscribers of its room, if it has
    /// any and Redis confirmed its subscription (a message that comes before the confirmation
    /// was published before the room opened).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn dispatch(&self, channel: &str, payload: Bytes) {
        let state = self.lock();
        if let Some(r) = state
            .by_channel
            .get(channel)
            .and_then(|room| state.rooms.get(room))
            .filter(|r| r.delivery == Delivery::PubSub && r.confirmed)
        {
            let _ = r.tx.send(Event::Message(Message {
                room: r.name.clone(),
                payload,
                id: None,
            }));
        }
    }

    /// Sends [`Event::Interrupted`] to the rooms of `delivery` that `pick` selects.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn interrupt(&self, delivery: Delivery, mut pick: impl FnMut(&str) -> bool) {
        let state = self.lock();
        for r in state.rooms.values() {
            if r.delivery == delivery && pick(&r.name) {
                let _ = r.tx.send(Event::Interrupted);
            }
        }
    }

    /// The number of local rooms.
    pub(crate) fn len(&self) -> usize {
        self.lock().rooms.len()
    }

    /// The number of local subscribers of `room`.
    pub(crate) fn subscribers(&self, room: &str) -> usize {
        self.lock().rooms.get(room).map_or(0, |r| r.subscribers)
    }
}

/// A subscription to one room: a [`Stream`] of [`Event`]s.
///
/// Messages come in the order the backend delivered them (for Redis: the order Redis received
/// them, so the messages of one publisher keep their order). Each subscription has its own
/// bounded queue of `queue_capacity` events: a subscriber that falls further behind loses the
/// oldest ones and is told how many by [`Event::Lagged`]; it never slows down the others.
///
/// Dropping the subscription leaves the room; when the last local subscriber of a room leaves,
/// the instance unsubscribes from it on Redis.
pub struct Subscription {
    room: Arc<str>,
    backlog: VecDeque<Message>,
    /// Messages with an id up to this one were delivered already (from the backlog).
    last_id: Option<MessageId>,
    recv: ReusableBoxFuture<'static, (Result<Event, RecvError>, Receiver<Event>)>,
    done: bool,
    inner: Arc<Inner>,
}

async fn next_event(mut rx: Receiver<Event>) -> (Result<Event, RecvError>, Receiver<Event>) {
    let result = rx.recv().await;
    (result, rx)
}

impl Subscription {
    pub(crate) fn new(
        inner: Arc<Inner>,
        room: Arc<str>,
        rx: Receiver<Event>,
        backlog: Vec<Message>,
    ) -> Self {
        let last_id = backlog.last().and_then(Message::id);
        Self {
            room,
            backlog: backlog.into(),
            last_id,
            recv: ReusableBoxFuture::new(next_event(rx)),
            done: false,
            inner,
        }
    }

    /// Makes the subscription begin with `backlog` (oldest first); live messages up to its
    /// last id are then skipped.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_backlog(&mut self, backlog: Vec<Message>) {
        self.last_id = backlog.last().and_then(Message::id);
        self.backlog = backlog.into();
    }

    /// The room this subscription reads.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// The next event; `None` once the broadcaster has closed the room.
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = &mut *self;
        if let Some(message) = this.backlog.pop_front() {
            return Poll::Ready(Some(Event::Message(message)));
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let (result, rx) = std::task::ready!(this.recv.poll(cx));
            this.recv.set(next_event(rx));
            match result {
                Ok(Event::Message(m)) => {
                    if let (Some(id), Some(last)) = (m.id, this.last_id) {
                        if id <= last {
                            // Already delivered from the history this subscription began with.
                            continue;
                        }
                        this.last_id = None;
                    }
                    return Poll::Ready(Some(Event::Message(m)));
                }
                Ok(event) => return Poll::Ready(Some(event)),
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!(crate::PUBSUB_LAGGED_TOTAL.name).increment(n);
                    return Poll::Ready(Some(Event::Lagged(n)));
                }
                Err(RecvError::Closed) => {
                    this.done = true;
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.inner.leave(&self.room);
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("room", &self.room)
            .field("backlog", &self.backlog.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(rx: &mut Receiver<Event>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(Event::into_message)
            .map(|m| String::from_utf8_lossy(m.payload()).into_owned())
            .collect()
    }

    fn entry(seq: u64, text: &'static str) -> (MessageId, Bytes) {
        (MessageId::new(1, seq), Bytes::from_static(text.as_bytes()))
    }

    #[test]
    fn a_stream_room_gets_the_entries_after_its_position() {
        let registry = Registry::new(&PubSubConfig {
            queue_capacity: 16,
            ..PubSubConfig::default()
        });
        let mut joined = registry.join("r", Delivery::Stream, || Some("key".into()));
        let mut state = registry.lock();
        let room = state.rooms.get_mut("r").unwrap();
        room.position = Some(MessageId::new(1, 2));
        room.deliver_stream([entry(1, "old"), entry(2, "last"), entry(3, "new")]);
        assert_eq!(room.position, Some(MessageId::new(1, 3)));
        // A read that ran from an older position delivers nothing twice.
        room.deliver_stream([entry(2, "last"), entry(3, "new"), entry(4, "newer")]);
        drop(state);
        assert_eq!(texts(&mut joined.rx), ["new", "newer"]);
    }

    #[test]
    fn a_stream_room_opening_during_a_read_gets_none_of_it() {
        // The last subscriber left, an entry was published, and a subscriber came back while
        // the reader's XREAD of the room as it was still ran; that read returns the entry.
        let registry = Registry::new(&PubSubConfig {
            queue_capacity: 16,
            ..PubSubConfig::default()
        });
        let mut joined = registry.join("r", Delivery::Stream, || Some("key".into()));
        let mut state = registry.lock();
        let room = state.rooms.get_mut("r").unwrap();
        assert_eq!(room.position, None);
        room.deliver_stream([entry(1, "published before the subscribe")]);
        assert_eq!(
            room.position, None,
            "the subscribe sets where the room starts"
        );
        drop(state);
        assert!(texts(&mut joined.rx).is_empty());
    }
}
