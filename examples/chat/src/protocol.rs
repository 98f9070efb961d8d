//! The JSON messages of the chat's WebSocket.

use serde::{Deserialize, Serialize};

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Join a room, starting with up to `history` of its latest messages.
    Join {
        /// The room.
        room: String,
        /// How many past messages to receive first.
        #[serde(default)]
        history: usize,
    },
    /// Leave a room.
    Leave {
        /// The room.
        room: String,
    },
    /// Say something in a room (joined or not).
    Send {
        /// The room.
        room: String,
        /// The text.
        text: String,
        /// The client's id of this message, echoed in the `ack` and in the message itself.
        #[serde(default)]
        id: Option<String>,
    },
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The first message on every connection: who the server knows this socket as (the
    /// session's user when the socket opened).
    Welcome {
        /// The user's name.
        user: String,
    },
    /// The room is joined: every message published from now on will arrive (after the
    /// history asked for, which comes first).
    Joined {
        /// The room.
        room: String,
    },
    /// The room is left.
    Left {
        /// The room.
        room: String,
    },
    /// A message of a room.
    Message {
        /// The room.
        room: String,
        /// The sender's user name.
        from: String,
        /// The text.
        text: String,
        /// The sender's id for it.
        id: Option<String>,
        /// Its position in the room's history (stream rooms): `<ms>-<n>`, growing with every
        /// message of the room, so a client tells the messages it has already shown.
        seq: Option<String>,
        /// When the server published it, in milliseconds since the Unix epoch.
        #[serde(default)]
        at: Option<u64>,
    },
    /// A `send` was published.
    Ack {
        /// The client's id of the message.
        id: Option<String>,
    },
    /// A request failed.
    Error {
        /// The client's id of the message, for a failed `send`.
        id: Option<String>,
        /// `rate_limited`, `unavailable`, `bad_request`, `too_many_rooms`.
        reason: String,
        /// For `rate_limited`: when to try again.
        retry_after_ms: Option<u64>,
    },
    /// This connection fell behind: `missed` messages of the room were dropped for it.
    Lagged {
        /// The room.
        room: String,
        /// How many.
        missed: u64,
    },
    /// Who is in the room (on every instance): sent on joining, then whenever it changes.
    Presence {
        /// The room.
        room: String,
        /// The users present, sorted, each once.
        users: Vec<String>,
    },
    /// The server lost Redis for a while: messages of the room may be missing.
    Interrupted {
        /// The room.
        room: String,
    },
}

/// What is published to a room (the payload of a pub/sub message).
#[derive(Debug, Serialize, Deserialize)]
pub struct Post {
    /// Sender.
    pub from: String,
    /// Text.
    pub text: String,
    /// Client id.
    pub id: Option<String>,
    /// When it was published (ms since the Unix epoch); absent in older posts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}
