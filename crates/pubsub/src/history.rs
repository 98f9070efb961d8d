//! The histories of the in-memory backend's stream rooms, bounded three ways: `history_len`
//! messages per room, `max_history_rooms` rooms (the least recently published to goes first),
//! and `history_ttl` after a room's last message.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Message, PubSubConfig};

#[derive(Debug)]
pub(crate) struct Histories {
    rooms: HashMap<Arc<str>, History>,
    /// Every room of `rooms` by the stamp of its last message, oldest first: the order in
    /// which rooms expire, and are dropped past `max_rooms`.
    by_age: BTreeMap<u64, Arc<str>>,
    last_stamp: u64,
    len: usize,
    ttl: Duration,
    max_rooms: usize,
}

#[derive(Debug)]
struct History {
    messages: VecDeque<Message>,
    stamp: u64,
    last_message: Instant,
}

impl Histories {
    pub(crate) fn new(config: &PubSubConfig) -> Self {
        Self {
            rooms: HashMap::new(),
            by_age: BTreeMap::new(),
            last_stamp: 0,
            len: config.history_len,
            ttl: config.history_ttl,
            max_rooms: config.max_history_rooms,
        }
    }

    /// Adds a message to its room's history.
    pub(crate) fn push(&mut self, message: Message) {
        let now = Instant::now();
        self.expire(now);
        self.last_stamp += 1;
        let stamp = self.last_stamp;
        let history = self
            .rooms
            .entry(message.room.clone())
            .or_insert_with(|| History {
                messages: VecDeque::new(),
                stamp,
                last_message: now,
            });
        self.by_age.remove(&history.stamp);
        self.by_age.insert(stamp, message.room.clone());
        history.stamp = stamp;
        history.last_message = now;
        if history.messages.len() >= self.len {
            history.messages.pop_front();
        }
        history.messages.push_back(message);
        while self.rooms.len() > self.max_rooms {
            self.drop_oldest();
        }
    }

    /// Up to `limit` of the latest messages of `room`, oldest first.
    pub(crate) fn latest(&mut self, room: &str, limit: usize) -> Vec<Message> {
        self.expire(Instant::now());
        self.rooms.get(room).map_or_else(Vec::new, |h| {
            let skip = h.messages.len().saturating_sub(limit);
            h.messages.iter().skip(skip).cloned().collect()
        })
    }

    /// The number of rooms with a history.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Drops the histories whose last message is `ttl` old.
    fn expire(&mut self, now: Instant) {
        while let Some((_, room)) = self.by_age.first_key_value() {
            let expired = self
                .rooms
                .get(room)
                .is_none_or(|h| now.duration_since(h.last_message) >= self.ttl);
            if !expired {
                break;
            }
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((_, room)) = self.by_age.pop_first() {
            self.rooms.remove(&room);
        }
    }
}
