//! The stream reader of the instance: one connection reading every stream room with a
//! blocking `XREAD`, resuming from the last delivered id after a reconnect.
//!
//! On a cluster every stream key shares one hash tag, so the read goes to the master owning
//! that slot: the reader asks a seed node where the slot lives (`CLUSTER KEYSLOT`,
//! `CLUSTER SLOTS`) on every (re)connection, and wakes its blocked read through a second
//! connection to that node. A `MOVED` reply, a failed node or a down cluster ends the session
//! like a lost connection, and the next one looks the owner up again.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_scale_redis::RedisBackend;

use super::{Exit, parse, reconnect_backoff};
use crate::rooms::Registry;
use crate::{Delivery, MessageId, PubSubConfig};

/// The most entries one `XREAD` returns per stream.
const READ_COUNT: usize = 512;

pub(crate) struct Reader {
    pub(crate) registry: Arc<Registry>,
    pub(crate) target: Target,
    pub(crate) backend: RedisBackend,
    pub(crate) config: PubSubConfig,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) stop: CancellationToken,
    pub(crate) links: Arc<super::Links>,
    /// Woken when a stream room opens, to read it at once.
    pub(crate) wake: Arc<Notify>,
}

/// Where the reader connects.
pub(crate) enum Target {
    /// One server. `CLIENT UNBLOCK` goes through the backend, which talks to the same server.
    Server(redis::Client),
    /// A cluster: the master owning the slot of `slot_key`, found through `seeds` (tried in
    /// turn, starting after the last one that answered).
    Cluster {
        seeds: Arc<[redis::Client]>,
        slot_key: String,
    },
}

/// The reader's connections of one session.
struct Session {
    /// Carries the blocking `XREAD`.
    read: MultiplexedConnection,
    /// On a cluster, a second connection to the same node for `CLIENT UNBLOCK`.
    unblock: Option<MultiplexedConnection>,
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
        let mut backoff = reconnect_backoff(&self.config);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // Blocking reads are bounded here, per read.
            .set_response_timeout(None);
        let mut next_seed = 0;
        loop {
            let connected = tokio::select! {
                () = self.stop.cancelled() => return,
                r = self.connect(&config, &mut next_seed) => r,
            };
            match connected {
                Ok(session) => {
                    match self.serve(session, failed).await {
                        Exit::Stop => return,
                        Exit::Lost => {}
                    }
                    backoff.reset();
                    tracing::warn!("pubsub: lost the Redis stream reader connection; reconnecting");
                }
                Err(error) => tracing::debug!(%error, "pubsub: stream reader cannot connect"),
            }
            failed = true;
            self.links.set(Delivery::Stream, false);
            if !backoff.wait_or(self.stop.cancelled()).await {
                return;
            }
        }
    }

    /// Opens the connections of a session: to the server, or to the master that owns the
    /// stream rooms' slot.
    async fn connect(
        &self,
        config: &AsyncConnectionConfig,
        next_seed: &mut usize,
    ) -> Result<Session, String> {
        match &self.target {
            Target::Server(client) => Ok(Session {
                read: self.open(client, config).await?,
                unblock: None,
            }),
            Target::Cluster { seeds, slot_key } => {
                let owner = self.locate(seeds, slot_key, config, next_seed).await?;
                Ok(Session {
                    read: self.open(&owner, config).await?,
                    unblock: Some(self.open(&owner, config).await?),
                })
            }
        }
    }

    async fn open(
        &self,
        client: &redis::Client,
        config: &AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, String> {
        match tokio::time::timeout(
            self.connect_timeout,
            client.get_multiplexed_async_connection_with_config(config),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(error)) => Err(format!("cannot connect to Redis: {error}")),
            Err(_) => Err("connecting to Redis timed out".to_owned()),
        }
    }

    /// A client for the master that owns `slot_key`'s slot, asked of the seeds in turn; it
    /// keeps the seed URL's settings (TLS, user, password) with the owner's address.
    async fn locate(
        &self,
        seeds: &[redis::Client],
        slot_key: &str,
        config: &AsyncConnectionConfig,
        next_seed: &mut usize,
    ) -> Result<redis::Client, String> {
        let mut last = String::from("no seed node");
        for _ in 0..seeds.len() {
            let seed = &seeds[*next_seed % seeds.len()];
            match self.ask_owner(seed, slot_key, config).await {
                Ok(owner) => return Ok(owner),
                Err(error) => last = error,
            }
            *next_seed = next_seed.wrapping_add(1);
        }
        Err(format!("cannot find the node of the stream rooms: {last}"))
    }

    async fn ask_owner(
        &self,
        seed: &redis::Client,
        slot_key: &str,
        config: &AsyncConnectionConfig,
    ) -> Result<redis::Client, String> {
        let mut conn = self.open(seed, config).await?;
        let ask = async {
            let slot = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(slot_key)
                .query_async::<i64>(&mut conn)
                .await?;
            let slots = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<redis::Value>(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>((slot, slots))
        };
        let (slot, slots) = match tokio::time::timeout(self.command_timeout, ask).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => return Err(format!("CLUSTER SLOTS failed: {error}")),
            Err(_) => return Err("CLUSTER SLOTS timed out".to_owned()),
        };
        let (host, port) = parse::slot_owner(slots, slot)
            .ok_or_else(|| format!("no master serves slot {slot}"))?;
        let info = seed.get_connection_info().clone();
        let mut addr = info.addr().clone();
        match &mut addr {
            ConnectionAddr::Tcp(h, p)
            | ConnectionAddr::TcpTls {
                host: h, port: p, ..
            } => {
                // An empty host means "the address you reached me at".
                if !host.is_empty() {
                    *h = host;
                }
                *p = port;
            }
            _ => return Err(format!("seed {addr} is not a TCP address")),
        }
        tracing::debug!(%addr, slot, "pubsub: stream rooms are on this node");
        redis::Client::open(info.set_addr(addr)).map_err(|e| e.to_string())
    }

    async fn serve(&self, session: Session, failed: bool) -> Exit {
        let Session {
            read: mut conn,
            unblock,
        } = session;
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
                    let cmd = redis::cmd("CLIENT").arg("UNBLOCK").arg(client_id).clone();
                    if let Some(unblock) = &unblock {
                        let mut unblock = unblock.clone();
                        let _ = tokio::time::timeout(
                            self.command_timeout,
                            cmd.query_async::<i64>(&mut unblock),
                        )
                        .await;
                    } else {
                        let _ = self.backend.query::<i64>(&cmd).await;
                    }
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
            room.deliver_stream(entries);
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
                // "no such key": the stream is gone. A down cluster or a moving slot is not
                // an answer about the stream: reconnect and ask again.
                Ok(Err(e)) if !crate::error::transient_reply(&e) => None,
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
            metrics::counter!(crate::PUBSUB_INTERRUPTIONS_TOTAL.name, "delivery" => Delivery::Stream.label())
                .increment(1);
            self.registry.interrupt(Delivery::Stream, |room| {
                interrupted.iter().any(|r| **r == *room)
            });
        }
        true
    }
}
