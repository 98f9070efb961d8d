//! One chat WebSocket: commands in, room events out.

use std::collections::HashMap;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, close_code};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
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
    })
}

fn error(id: Option<String>, reason: &str, retry_after_ms: Option<u64>) -> ServerMsg {
    ServerMsg::Error {
        id,
        reason: reason.to_owned(),
        retry_after_ms,
    }
}

struct Connection {
    chat: Chat,
    user: String,
    rooms: HashMap<String, JoinHandle<()>>,
    outbox: mpsc::Sender<ServerMsg>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        for (_, forward) in self.rooms.drain() {
            forward.abort();
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
    let mut conn = Connection {
        chat,
        user,
        rooms: HashMap::new(),
        outbox,
    };
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
        };
        if let Some(reply) = reply {
            let Ok(json) = serde_json::to_string(&reply) else {
                continue;
            };
            if sink.send(WsMessage::Text(json.into())).await.is_err() {
                return;
            }
        }
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
                if let Some(forward) = self.rooms.remove(&room) {
                    forward.abort();
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
        // before the history.
        self.rooms.insert(room.clone(), forward);
        ServerMsg::Joined { room }
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
