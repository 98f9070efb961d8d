//! A WebSocket chat with rooms, built to run as many instances behind a load balancer: a
//! message sent to one instance reaches the users of every instance through
//! [`tower_scale_pubsub`].
//!
//! - Login (`POST /login {"name": ..}`) starts a session ([`auth`], `tower-scale-session`:
//!   in Redis with several instances, so the login holds on every instance); `GET /me` says
//!   who is logged in (the page asks it after a reload), `POST /logout` ends the session.
//! - `GET /ws` upgrades to the chat protocol ([`protocol`]): join and leave rooms, send
//!   messages (rate limited per user, across instances with Redis), receive them with the
//!   latest history first, and who is in each room ([`presence`], across instances).
//! - `GET /rooms/{room}/history` returns a room's latest messages (compressed).
//! - `/livez`, `/readyz` (not ready while draining or while Redis is away), `/metrics`.
//! - On shutdown every WebSocket is closed with `1001 Going Away` and awaited.
//!
//! The binary (`src/main.rs`) reads its settings from the environment; the tests start
//! several instances in-process with [`Chat::router`].

pub mod auth;
pub mod presence;
pub mod protocol;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tower_scale_compression::CompressionLayer;
use tower_scale_core::SystemClock;
use tower_scale_metrics::MetricsLayer;
use tower_scale_pubsub::{Broadcaster, Delivery};
use tower_scale_ratelimit::{MemoryStore, Quota, RedisStore, Store};
use tower_scale_redis::RedisBackend;
use tower_scale_session::{MemoryStore as SessionMemory, RedisStore as SessionRedis};
use tower_scale_session::{Session, SessionConfig, SessionManagerLayer};
use tower_scale_shutdown::Shutdown;

pub use tower_scale_pubsub;

use crate::presence::Presence;

/// Counter of chat messages published by this instance.
pub const CHAT_MESSAGES_TOTAL: &str = "chat_messages_total";
/// Gauge of open chat WebSockets on this instance.
pub const CHAT_CONNECTIONS: &str = "chat_connections";

/// Settings of one chat instance.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// Redis, for several instances; `None` keeps everything in this process.
    pub redis: Option<RedisBackend>,
    /// Sessions (the login): cookie settings and signing keys. In Redis when `redis` is set.
    pub sessions: SessionConfig,
    /// How rooms travel: `Stream` (history, nothing lost across a Redis restart) or `PubSub`.
    pub delivery: Delivery,
    /// Messages per user, across all rooms (and all instances, with Redis).
    pub rate: Quota,
    /// The most rooms one connection may join.
    pub max_rooms: usize,
    /// The longest message, in bytes.
    pub max_text: usize,
    /// How long a stream publish may retry while Redis is away.
    pub publish_retry: Duration,
    /// How often a connection marks itself present in its rooms and reports changes of who
    /// is there.
    pub presence_refresh: Duration,
    /// How long a presence entry lasts without being marked again (an instance that died
    /// leaves its users listed this long); at least twice `presence_refresh`.
    pub presence_ttl: Duration,
    /// The most presence entries kept per room.
    pub presence_max: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            redis: None,
            sessions: {
                // Served over plain HTTP on loopback by default; behind TLS turn it back on.
                let mut sessions = SessionConfig::default();
                sessions.secure = false;
                sessions
            },
            delivery: Delivery::Stream,
            rate: Quota::per_second(5).burst(10),
            max_rooms: 32,
            max_text: 2000,
            publish_retry: Duration::from_secs(10),
            presence_refresh: Duration::from_secs(5),
            presence_ttl: Duration::from_secs(15),
            presence_max: 200,
        }
    }
}

/// One chat instance: its broadcaster, rate limiter and signing key. Cheap to clone.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    broadcaster: Broadcaster,
    limiter: Box<dyn Store>,
    quotas: [Quota; 1],
    sessions: SessionManagerLayer,
    shutdown: Shutdown,
    redis: Option<RedisBackend>,
    presence: Presence,
    presence_refresh: Duration,
    max_rooms: usize,
    max_text: usize,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("broadcaster", &self.inner.broadcaster)
            .finish_non_exhaustive()
    }
}

/// A setting is invalid.
#[derive(Debug, thiserror::Error)]
#[error("chat config: {0}")]
pub struct ConfigError(String);

impl Chat {
    /// An instance; `shutdown` closes its WebSockets when it starts.
    pub fn new(config: ChatConfig, shutdown: Shutdown) -> Result<Self, ConfigError> {
        config
            .rate
            .validate()
            .map_err(|e| ConfigError(e.to_string()))?;
        if config.presence_refresh.is_zero() || config.presence_ttl < 2 * config.presence_refresh {
            return Err(ConfigError(format!(
                "presence_ttl ({:?}) must be at least twice presence_refresh ({:?}), which \
                 is not zero",
                config.presence_ttl, config.presence_refresh
            )));
        }
        let presence = match &config.redis {
            Some(backend) => Presence::redis(
                backend.clone(),
                config.presence_ttl,
                config.presence_max,
                SystemClock,
            ),
            None => Presence::memory(config.presence_ttl, config.presence_max, SystemClock),
        };
        let builder = Broadcaster::builder()
            .delivery(config.delivery)
            .publish_retry(config.publish_retry);
        let (broadcaster, limiter, sessions): (_, Box<dyn Store>, _) = match &config.redis {
            Some(backend) => (
                builder.redis(backend.clone()).build(),
                Box::new(RedisStore::new(backend.clone())),
                SessionManagerLayer::from_config(
                    SessionRedis::new(backend.clone()),
                    &config.sessions,
                ),
            ),
            None => (
                builder.build(),
                Box::new(MemoryStore::new(100_000)),
                SessionManagerLayer::from_config(SessionMemory::new(), &config.sessions),
            ),
        };
        let sessions = sessions.map_err(|e| ConfigError(e.to_string()))?;
        let broadcaster = broadcaster.map_err(|e| ConfigError(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                broadcaster,
                limiter,
                quotas: [config.rate],
                sessions,
                shutdown,
                redis: config.redis,
                presence,
                presence_refresh: config.presence_refresh,
                max_rooms: config.max_rooms,
                max_text: config.max_text,
            }),
        })
    }

    /// The broadcaster of this instance.
    pub fn broadcaster(&self) -> &Broadcaster {
        &self.inner.broadcaster
    }

    /// The routes of the chat, health routes included (add `/metrics` and the metrics
    /// recorder in `main`, once per process).
    pub fn router(&self) -> Router {
        let redis = self.inner.redis.clone();
        let broadcaster = self.inner.broadcaster.clone();
        let health = self
            .inner
            .shutdown
            .health()
            .check("redis", move || {
                let redis = redis.clone();
                let connected = broadcaster.is_connected();
                async move {
                    if !connected {
                        return Err("the pub/sub connection is reconnecting".to_owned());
                    }
                    match redis {
                        Some(redis) => redis.ping().await.map(drop).map_err(|e| e.to_string()),
                        None => Ok(()),
                    }
                }
            })
            .routes();
        let http = Router::new()
            .route(
                "/",
                get(|| async { Html(include_str!("../static/index.html")) }),
            )
            .route("/me", get(me))
            .route("/login", post(login))
            .route("/logout", post(logout))
            .route("/rooms/{room}/history", get(history))
            .layer(CompressionLayer::new());
        Router::new()
            .route("/ws", get(upgrade))
            .merge(http)
            .layer(self.inner.sessions.clone())
            .with_state(self.clone())
            .layer(MetricsLayer::new())
            .merge(health)
            .layer(self.inner.shutdown.layer())
    }
}

#[derive(Deserialize)]
struct Login {
    name: String,
}

async fn login(session: Session, Json(login): Json<Login>) -> Response {
    if !auth::valid_name(&login.name) {
        return (
            StatusCode::BAD_REQUEST,
            "a name is 1 to 32 letters, digits, _ or -",
        )
            .into_response();
    }
    match auth::log_in(&session, &login.name) {
        Ok(()) => Json(serde_json::json!({ "name": login.name })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /me`: who is logged in (`"name": null` when nobody is: the page asks after every
/// reload and before every reconnect, so this is not an error), and the longest message.
async fn me(State(chat): State<Chat>, session: Session) -> Response {
    let name = match session.get::<String>(auth::USER).await {
        Ok(name) => name.filter(|name| auth::valid_name(name)),
        Err(e) => return e.into_response(),
    };
    Json(serde_json::json!({ "name": name, "max_text": chat.inner.max_text })).into_response()
}

async fn logout(session: Session) -> StatusCode {
    session.destroy();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default = "default_history")]
    limit: usize,
}

fn default_history() -> usize {
    50
}

async fn history(
    State(chat): State<Chat>,
    Path(room): Path<String>,
    Query(query): Query<HistoryQuery>,
    session: Session,
) -> Response {
    if let Err(response) = auth::user(&session).await {
        return response;
    }
    if !ws::valid_room(&room) {
        return (StatusCode::BAD_REQUEST, "bad room name").into_response();
    }
    match chat
        .inner
        .broadcaster
        .history(&room, query.limit.min(500))
        .await
    {
        Ok(messages) => Json(
            messages
                .iter()
                .filter_map(ws::to_server_msg)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "history unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "history unavailable").into_response()
        }
    }
}

async fn upgrade(State(chat): State<Chat>, session: Session, ws: WebSocketUpgrade) -> Response {
    let user = match auth::user(&session).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    if !chat.inner.shutdown.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let tracker = chat.inner.shutdown.tracker().clone();
    ws.on_upgrade(move |socket| tracker.track_future(ws::run(chat, user, socket)))
}
