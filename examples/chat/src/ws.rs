//! One chat WebSocket: commands in, room events out.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, close_code};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tower_scale_core::SystemClock;
use tower_scale_pubsub::{Event, Message};

use crate::protocol::{ClientMsg, Post, ServerMsg};
use crate::{CHAT_CONNECTIONS, CHAT_MESSAGES_TOTAL, Chat};

/// How many room events may wait for a slow socket before the rooms' own queues fill (and
/// their oldest messages are dropped for this connection, reported as `lagged`).
const OUTBOX: usize = 256;

/// A valid room name: 1 to 64 letters, digits, `_`, `-`, `:` or `.`.
pub(crate) fn valid_room(room: &str) -> bool {
    (1..=64).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'))
}

/// The client's view of a published message; `None` for a payload that is not a chat post.
pub(crate) fn to_server_msg(m: &Message) -> Option<ServerMsg> {
    let post: Post = serde_json::from_slice(m.payload()).ok()?;
    Some(ServerMsg::Message {
        room: m.room().to_owned(),
        from: post.from,
        text: post.text,
        id: post.id,
        seq: m.id().map(|id| id.to_string()),
        at: post.at,
    })
}

fn error(id: Option<String>, reason: &str, retry_after_ms: Option<u64>) -> ServerMsg {
    ServerMsg::Error {
        id,
        reason: reason.to_owned(),
        retry_after_ms,
    }
}

/// A joined room: the task forwarding its events, and who was last reported present.
struct Room {
    forward: JoinHandle<()>,
    people: Vec<String>,
}

struct Connection {
    chat: Chat,
    user: String,
    /// This connection's presence entry: `<user>/<connection id>`.
    entry: String,
    rooms: HashMap<String, Room>,
    outbox: mpsc::Sender<ServerMsg>,
}

/// A connection id unique across the instances: process id, start time, and a counter.
fn connection_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: LazyLock<u64> = LazyLock::new(SystemClock::now_ms);
    format!(
        "{:x}.{:x}.{:x}",
        std::process::id(),
        *START,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Drop for Connection {
    fn drop(&mut self) {
        let rooms: Vec<String> = self
            .rooms
            .drain()
            .map(|(room, joined)| {
                joined.forward.abort();
                room
            })
            .collect();
        // Leave the presence lists now rather than when the entries expire (best effort).
        if !rooms.is_empty()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let presence = self.chat.inner.presence.clone();
            let entry = std::mem::take(&mut self.entry);
            runtime.spawn(async move {
                for room in rooms {
                    if let Err(e) = presence.forget(&room, &entry).await {
                        tracing::debug!(error = %e, room, "presence not cleared; it expires");
                    }
                }
            });
        }
        metrics::gauge!(CHAT_CONNECTIONS).decrement(1.0);
    }
}

pub(crate) async fn run(chat: Chat, user: String, socket: WebSocket) {
    metrics::gauge!(CHAT_CONNECTIONS).increment(1.0);
    let shutdown = chat.inner.shutdown.requested();
    tokio::pin!(shutdown);
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut events) = mpsc::channel(OUTBOX);
    let mut presence = tokio::time::interval(chat.inner.presence_refresh);
    presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let welcome = ServerMsg::Welcome { user: user.clone() };
    let mut conn = Connection {
        entry: format!("{user}/{}", connection_id()),
        chat,
        user,
        rooms: HashMap::new(),
        outbox,
    };
    if send_json(&mut sink, &welcome).await.is_err() {
        return;
    }
    loop {
        let reply = tokio::select! {
            () = &mut shutdown => {
                let _ = sink
                    .send(WsMessage::Close(Some(CloseFrame {
                        code: close_code::AWAY,
                        reason: "server shutting down".into(),
                    })))
                    .await;
                // Wait for the client's close reply (bounded), so the close is clean.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                    while let Some(Ok(m)) = stream.next().await {
                        if matches!(m, WsMessage::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
                return;
            }
            incoming = stream.next() => match incoming {
                Some(Ok(WsMessage::Text(text))) => conn.handle(text.as_str()).await,
                Some(Ok(WsMessage::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => None,
            },
            Some(event) = events.recv() => Some(event),
            _ = presence.tick() => {
                conn.refresh_presence().await;
                None
            }
        };
        if let Some(reply) = reply
            && send_json(&mut sink, &reply).await.is_err()
        {
            return;
        }
    }
}

async fn send_json(
    sink: &mut (impl SinkExt<WsMessage, Error = axum::Error> + Unpin),
    msg: &ServerMsg,
) -> Result<(), axum::Error> {
    match serde_json::to_string(msg) {
        Ok(json) => sink.send(WsMessage::Text(json.into())).await,
        Err(_) => Ok(()),
    }
}

impl Connection {
    async fn handle(&mut self, text: &str) -> Option<ServerMsg> {
        let Ok(msg) = serde_json::from_str::<ClientMsg>(text) else {
            return Some(error(None, "bad_request", None));
        };
        match msg {
            ClientMsg::Join { room, history } => Some(self.join(room, history).await),
            ClientMsg::Leave { room } => {
                if let Some(joined) = self.rooms.remove(&room) {
                    joined.forward.abort();
                    if let Err(e) = self.chat.inner.presence.forget(&room, &self.entry).await {
                        tracing::debug!(error = %e, room, "presence not cleared; it expires");
                    }
                }
                Some(ServerMsg::Left { room })
            }
            ClientMsg::Send { room, text, id } => Some(self.send(room, text, id).await),
        }
    }

    async fn join(&mut self, room: String, history: usize) -> ServerMsg {
        if !valid_room(&room) {
            return error(None, "bad_request", None);
        }
        if self.rooms.contains_key(&room) {
            return ServerMsg::Joined { room };
        }
        if self.rooms.len() >= self.chat.inner.max_rooms {
            return error(None, "too_many_rooms", None);
        }
        let subscription = match self
            .chat
            .inner
            .broadcaster
            .subscribe_with_history(&room, history.min(500))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, room, "cannot join");
                return error(None, "unavailable", None);
            }
        };
        let outbox = self.outbox.clone();
        let name = room.clone();
        let forward = tokio::spawn(async move {
            let mut subscription = subscription;
            while let Some(event) = subscription.next().await {
                let msg = match event {
                    Event::Message(m) => match to_server_msg(&m) {
                        Some(msg) => msg,
                        None => continue,
                    },
                    Event::Lagged(missed) => ServerMsg::Lagged {
                        room: name.clone(),
                        missed,
                    },
                    Event::Interrupted => ServerMsg::Interrupted { room: name.clone() },
                    _ => continue,
                };
                if outbox.send(msg).await.is_err() {
                    return;
                }
            }
        });
        // The forwarder's messages go through the outbox, after this reply: `joined` comes
        // before the history (and the presence list).
        self.rooms.insert(
            room.clone(),
            Room {
                forward,
                people: Vec::new(),
            },
        );
        self.report_presence(&room).await;
        ServerMsg::Joined { room }
    }

    /// Marks this connection present in every joined room again, and reports the rooms
    /// whose people changed.
    async fn refresh_presence(&mut self) {
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.report_presence(&room).await;
        }
    }

    /// Marks this connection present in `room` and queues a `presence` message when the
    /// room's people changed since the last one. Redis unavailable: nothing is reported, and
    /// the next refresh tries again.
    async fn report_presence(&mut self, room: &str) {
        let presence = &self.chat.inner.presence;
        let users = match presence.mark(room, &self.entry).await {
            Ok(()) => presence.users(room).await,
            Err(e) => Err(e),
        };
        let users = match users {
            Ok(users) => users,
            Err(e) => {
                tracing::debug!(error = %e, room, "presence unavailable");
                return;
            }
        };
        let Some(joined) = self.rooms.get_mut(room) else {
            return;
        };
        if joined.people != users {
            joined.people.clone_from(&users);
            // Never wait on the outbox (this task is its only reader): when it is full, the
            // next refresh reports the change.
            if self
                .outbox
                .try_send(ServerMsg::Presence {
                    room: room.to_owned(),
                    users,
                })
                .is_err()
            {
                joined.people.clear();
            }
        }
    }

    async fn send(&mut self, room: String, text: String, id: Option<String>) -> ServerMsg {
        if !valid_room(&room) || text.is_empty() || text.len() > self.chat.inner.max_text {
            return error(id, "bad_request", None);
        }
        let inner = &self.chat.inner;
        let key = format!("chat:msg:{}", self.user);
        match inner.limiter.check(&key, &inner.quotas, 1).await {
            Ok(decision) if !decision.allowed => {
                let ms = u64::try_from(decision.retry_after.as_millis()).unwrap_or(u64::MAX);
                return error(id, "rate_limited", Some(ms));
            }
            Ok(_) => {}
            // Fail open: a rate limiter outage does not stop the chat.
            Err(e) => tracing::debug!(error = %e, "rate limiter unavailable; allowing"),
        }
        let post = Post {
            from: self.user.clone(),
            text,
            id,
            at: Some(SystemClock::now_ms()),
        };
        let Ok(payload) = serde_json::to_vec(&post) else {
            return error(post.id, "bad_request", None);
        };
        match inner.broadcaster.publish(&room, payload).await {
            Ok(_) => {
                metrics::counter!(CHAT_MESSAGES_TOTAL).increment(1);
                ServerMsg::Ack { id: post.id }
            }
            Err(e) => {
                tracing::warn!(error = %e, room, "publish failed");
                error(post.id, "unavailable", None)
            }
        }
    }
}
