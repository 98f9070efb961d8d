//! The stream reader of the instance: one connection reading every stream room with a
//! blocking `XREAD`, resuming from the last delivered id after a reconnect.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_scale_redis::RedisBackend;

use super::{Exit, FIRST_RETRY_DELAY, backoff, parse};
use crate::rooms::Registry;
use crate::{Delivery, Event, Message, MessageId, PubSubConfig};

/// The most entries one `XREAD` returns per stream.
const READ_COUNT: usize = 512;

pub(crate) struct Reader {
    pub(crate) registry: Arc<Registry>,
    pub(crate) client: redis::Client,
    pub(crate) backend: RedisBackend,
    pub(crate) config: PubSubConfig,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) stop: CancellationToken,
    pub(crate) links: Arc<super::Links>,
    /// Woken when a stream room opens, to read it at once.
    pub(crate) wake: Arc<Notify>,
}

/// A stream room as one `XREAD` reads it.
struct Read {
    room: Arc<str>,
    key: Arc<str>,
    position: MessageId,
}

impl Reader {
    pub(crate) async fn run(self) {
        let mut failed = false;
        let mut delay = FIRST_RETRY_DELAY;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // Blocking reads are bounded here, per read.
            .set_response_timeout(None);
        loop {
            let connected = tokio::select! {
                () = self.stop.cancelled() => return,
                r = tokio::time::timeout(
                    self.connect_timeout,
                    self.client.get_multiplexed_async_connection_with_config(&config),
                ) => r,
            };
            match connected {
                Ok(Ok(conn)) => {
                    match self.serve(conn, failed).await {
                        Exit::Stop => return,
                        Exit::Lost => {}
                    }
                    delay = FIRST_RETRY_DELAY;
                    tracing::warn!("pubsub: lost the Redis stream reader connection; reconnecting");
                }
                Ok(Err(error)) => tracing::debug!(%error, "pubsub: cannot connect to Redis"),
                Err(_) => tracing::debug!("pubsub: connecting to Redis timed out"),
            }
            failed = true;
            self.links.set(Delivery::Stream, false);
            if !backoff(&self.stop, &mut delay, self.config.reconnect_max_delay).await {
                return;
            }
        }
    }

    async fn serve(&self, mut conn: MultiplexedConnection, failed: bool) -> Exit {
        let id = redis::cmd("CLIENT").arg("ID").clone();
        let id = id.query_async::<i64>(&mut conn);
        let Ok(Ok(client_id)) = tokio::time::timeout(self.command_timeout, id).await else {
            return Exit::Lost;
        };
        if failed && !self.check_gaps(&mut conn).await {
            return Exit::Lost;
        }
        self.links.set(Delivery::Stream, true);
        let block = self.config.read_block;
        let limit = block + self.command_timeout;
        loop {
            let reads = self.snapshot();
            if reads.is_empty() {
                tokio::select! {
                    () = self.stop.cancelled() => return Exit::Stop,
                    () = self.wake.notified() => continue,
                }
            }
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX))
                .arg("STREAMS");
            for read in &reads {
                cmd.arg(&*read.key);
            }
            for read in &reads {
                cmd.arg(read.position.to_string());
            }
            let mut read_conn = conn.clone();
            let read = cmd.query_async::<redis::Value>(&mut read_conn);
            tokio::pin!(read);
            let reply = tokio::select! {
                () = self.stop.cancelled() => return Exit::Stop,
                r = tokio::time::timeout(limit, &mut read) => r,
                () = self.wake.notified() => {
                    // A room opened: cut the blocking read short to read it too.
                    let unblock = redis::cmd("CLIENT").arg("UNBLOCK").arg(client_id).clone();
                    let _ = self.backend.query::<i64>(&unblock).await;
                    tokio::time::timeout(limit, &mut read).await
                }
            };
            match reply {
                Ok(Ok(value)) => self.deliver(&reads, value),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "pubsub: XREAD failed");
                    return Exit::Lost;
                }
                Err(_) => return Exit::Lost,
            }
        }
    }

    /// The open stream rooms whose read position is known.
    fn snapshot(&self) -> Vec<Read> {
        let state = self.registry.lock();
        state
            .rooms
            .values()
            .filter(|r| r.delivery == Delivery::Stream)
            .filter_map(|r| {
                Some(Read {
                    room: r.name.clone(),
                    key: r.key.clone()?,
                    position: r.position?,
                })
            })
            .collect()
    }

    fn deliver(&self, reads: &[Read], reply: redis::Value) {
        let streams = parse::xread(reply);
        let mut state = self.registry.lock();
        for (key, entries) in streams {
            let Some(read) = reads.iter().find(|r| r.key.as_bytes() == key.as_slice()) else {
                continue;
            };
            let Some(room) = state
                .rooms
                .get_mut(&read.room)
                .filter(|r| r.delivery == Delivery::Stream)
            else {
                continue;
            };
            for (id, payload) in entries {
                if room.position.is_some_and(|p| id <= p) {
                    continue;
                }
                room.position = Some(id);
                let _ = room.tx.send(Event::Message(Message {
                    room: room.name.clone(),
                    payload,
                    id: Some(id),
                }));
            }
        }
    }

    /// After a reconnect: finds the stream rooms whose unread entries were trimmed or lost
    /// and tells their subscribers. `false` when the connection failed again.
    async fn check_gaps(&self, conn: &mut MultiplexedConnection) -> bool {
        let mut interrupted = Vec::new();
        for read in self.snapshot() {
            let info = redis::cmd("XINFO").arg("STREAM").arg(&*read.key).clone();
            let info = info.query_async::<redis::Value>(conn);
            let info = match tokio::time::timeout(self.command_timeout, info).await {
                Ok(Ok(value)) => Some(parse::xinfo(value)),
                // "no such key": the stream is gone.
                Ok(Err(e)) if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) => {
                    None
                }
                _ => return false,
            };
            let (gap, position) = parse::after_reconnect(read.position, info);
            if gap {
                let mut state = self.registry.lock();
                if let Some(room) = state.rooms.get_mut(&read.room) {
                    room.position = Some(position);
                }
                drop(state);
                interrupted.push(read.room);
            }
        }
        if !interrupted.is_empty() {
            tracing::warn!(
                rooms = interrupted.len(),
                "pubsub: stream entries were lost or trimmed while disconnected"
            );
            metrics::counter!(crate::PUBSUB_INTERRUPTIONS_TOTAL, "delivery" => "stream")
                .increment(1);
            self.registry.interrupt(Delivery::Stream, |room| {
                interrupted.iter().any(|r| **r == *room)
            });
        }
        true
    }
}
