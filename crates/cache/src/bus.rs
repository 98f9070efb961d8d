//! The invalidation bus of the local tier: Redis pub/sub with acknowledgements.
//!
//! Every cache with a local tier subscribes to `<prefix>:cache:{bus}:inv`; every cache that
//! purges subscribes to its own `<prefix>:cache:{bus}:ack:<id>`. A purge deletes from the store,
//! publishes the purged groups, and waits until as many instances acknowledged as `PUBLISH`
//! reported receivers. An instance acknowledges after it dropped the groups from its local
//! tier. On Redis Cluster the channels are sharded (`SPUBLISH`/`SSUBSCRIBE`, one hash tag),
//! so the receiver count is exact there as well.
//!
//! A subscriber that loses its connection stops using its local tier and empties it; it uses
//! it again only after a probe published on its own channel came back through the new
//! subscription.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, watch};
use tower_scale_core::Backoff;
use tower_scale_redis::RedisBackend;
use tower_scale_redis::redis::{self, PushInfo, PushKind, Value};

use crate::Error;
use crate::l1::L1;
use crate::names;
use crate::store::{redis_error, token};

const ACK: u8 = 1;
const PROBE: u8 = 2;
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// Delays between reconnections: 50 ms, doubling up to 1 s.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Bus {
    backend: RedisBackend,
    id: u64,
    inv_channel: String,
    own_ack: String,
    seq: AtomicU64,
    waiters: Mutex<HashMap<u64, watch::Sender<usize>>>,
    l1: Option<Arc<L1>>,
    subscribed: watch::Sender<bool>,
}

/// Owns the subscriber task: dropping it stops the task.
#[derive(Debug)]
pub(crate) struct BusHandle {
    pub(crate) bus: Arc<Bus>,
    _stop: oneshot::Sender<()>,
}

fn ack_channel(backend: &RedisBackend, id: u64) -> String {
    backend
        .keys()
        .tagged(crate::store::CONCERN, "bus", &format!("ack:{id:016x}"))
}

impl Bus {
    /// Starts the subscriber task. Must be called inside a tokio runtime.
    pub(crate) fn start(backend: RedisBackend, l1: Option<Arc<L1>>) -> BusHandle {
        let id = token();
        let bus = Arc::new(Self {
            inv_channel: backend.keys().tagged(crate::store::CONCERN, "bus", "inv"),
            own_ack: ack_channel(&backend, id),
            backend,
            id,
            seq: AtomicU64::new(0),
            waiters: Mutex::default(),
            l1,
            subscribed: watch::Sender::new(false),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(run(Arc::clone(&bus), stop_rx));
        BusHandle {
            bus,
            _stop: stop_tx,
        }
    }

    pub(crate) fn subscribed_watch(&self) -> watch::Receiver<bool> {
        self.subscribed.subscribe()
    }

    fn publish_cmd(&self) -> &'static str {
        if self.backend.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    fn set_subscribed(&self, up: bool) {
        if let Some(l1) = &self.l1 {
            l1.set_healthy(up);
        }
        self.subscribed
            .send_if_modified(|s| std::mem::replace(s, up) != up);
    }

    /// Publishes a purge (`None`: everything) and waits for every subscribed instance to
    /// confirm, at most `timeout`.
    pub(crate) async fn purge(
        &self,
        groups: Option<&[String]>,
        timeout: Duration,
    ) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Our own subscription receives the acknowledgements: wait for it (bounded).
        let mut sub = self.subscribed.subscribe();
        let _ = tokio::time::timeout_at(deadline, sub.wait_for(|s| *s)).await;

        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = watch::channel(0usize);
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(seq, tx);
        let _remove = RemoveWaiter { bus: self, seq };
        let message = encode_purge(self.id, seq, groups);
        let expected: usize = self
            .backend
            .query(
                redis::cmd(self.publish_cmd())
                    .arg(&self.inv_channel)
                    .arg(message.as_ref()),
            )
            .await
            .map_err(|e| redis_error("Redis PUBLISH (purge)", e))?;
        names::purge_sent();
        let confirmed = matches!(
            tokio::time::timeout_at(deadline, rx.wait_for(|n| *n >= expected)).await,
            Ok(Ok(_))
        );
        if confirmed {
            Ok(())
        } else {
            Err(Error::PurgeUnconfirmed {
                expected,
                acknowledged: *rx.borrow(),
            })
        }
    }

    fn on_message(self: &Arc<Self>, channel: &[u8], payload: Bytes) {
        if channel == self.inv_channel.as_bytes() {
            let Some((sender, seq, groups)) = decode_purge(payload) else {
                tracing::debug!("ignoring a malformed cache invalidation");
                return;
            };
            if let Some(l1) = &self.l1 {
                l1.invalidate(groups.as_deref());
            }
            names::purge_received();
            let bus = Arc::clone(self);
            tokio::spawn(async move {
                let ack = encode_signal(ACK, seq);
                let sent = bus
                    .backend
                    .query::<()>(
                        redis::cmd(bus.publish_cmd())
                            .arg(ack_channel(&bus.backend, sender))
                            .arg(ack.as_ref()),
                    )
                    .await;
                if let Err(e) = sent {
                    tracing::debug!(error = %e, "cache invalidation not acknowledged");
                }
            });
        } else if channel == self.own_ack.as_bytes()
            && let Some(signal) = decode_signal(&payload)
        {
            match signal {
                (ACK, seq) => {
                    if let Some(w) = self
                        .waiters
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&seq)
                    {
                        w.send_modify(|n| *n += 1);
                    }
                }
                (PROBE, _) => self.set_subscribed(true),
                _ => {}
            }
        }
    }
}

struct RemoveWaiter<'a> {
    bus: &'a Bus,
    seq: u64,
}

impl Drop for RemoveWaiter<'_> {
    fn drop(&mut self) {
        self.bus
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.seq);
    }
}

/// A message on a cache's own channel: its kind (`ACK` of a purge, `PROBE` of the
/// subscription) and a `u64` (the purge's sequence number).
fn encode_signal(kind: u8, seq: u64) -> [u8; 9] {
    let mut out = [0; 9];
    out[0] = kind;
    out[1..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// The kind and number of a message of [`encode_signal`]; `None` unless it is 9 bytes.
fn decode_signal(payload: &[u8]) -> Option<(u8, u64)> {
    let (&kind, seq) = payload.split_first()?;
    Some((kind, u64::from_be_bytes(seq.try_into().ok()?)))
}

fn encode_purge(sender: u64, seq: u64, groups: Option<&[String]>) -> Bytes {
    let len = groups.map_or(0, |g| g.iter().map(|s| s.len() + 4).sum());
    let mut out = BytesMut::with_capacity(22 + len);
    out.put_u64(sender);
    out.put_u64(seq);
    match groups {
        None => out.put_u8(0),
        Some(groups) => {
            out.put_u8(1);
            out.put_u32(groups.len() as u32);
            for g in groups {
                out.put_u32(g.len() as u32);
                out.put_slice(g.as_bytes());
            }
        }
    }
    out.freeze()
}

fn decode_purge(mut p: Bytes) -> Option<(u64, u64, Option<Vec<String>>)> {
    if p.remaining() < 17 {
        return None;
    }
    let sender = p.get_u64();
    let seq = p.get_u64();
    // Exactly what `encode_purge` writes: kind 0 (everything) ends the message, kind 1 lists
    // the groups and nothing follows them.
    match p.get_u8() {
        0 if !p.has_remaining() => return Some((sender, seq, None)),
        1 => {}
        _ => return None,
    }
    if p.remaining() < 4 {
        return None;
    }
    let n = p.get_u32() as usize;
    let mut groups = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        if p.remaining() < 4 {
            return None;
        }
        let len = p.get_u32() as usize;
        if p.remaining() < len {
            return None;
        }
        groups.push(String::from_utf8(p.split_to(len).to_vec()).ok()?);
    }
    if p.has_remaining() {
        return None;
    }
    Some((sender, seq, Some(groups)))
}

enum SubConn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl SubConn {
    async fn connect(bus: &Bus, tx: mpsc::UnboundedSender<PushInfo>) -> redis::RedisResult<Self> {
        let config = bus.backend.config();
        let mut channels = vec![bus.own_ack.clone()];
        if bus.l1.is_some() {
            channels.push(bus.inv_channel.clone());
        }
        if bus.backend.is_cluster() {
            let urls: Vec<String> = std::iter::once(config.url.clone())
                .chain(config.nodes.iter().cloned())
                .collect();
            let client = redis::cluster::ClusterClient::builder(urls)
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(tx)
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.command_timeout)
                .build()?;
            let mut conn = client.get_async_connection().await?;
            conn.ssubscribe(&channels).await?;
            Ok(Self::Cluster(conn))
        } else {
            let sep = if config.url.contains('?') { '&' } else { '?' };
            let client = redis::Client::open(format!("{}{sep}protocol=resp3", config.url))?;
            let cfg = redis::AsyncConnectionConfig::new()
                .set_push_sender(tx)
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.command_timeout));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await?;
            conn.subscribe(&channels).await?;
            Ok(Self::Single(conn))
        }
    }

    async fn probe(&mut self, channel: &str) -> redis::RedisResult<()> {
        let msg = encode_signal(PROBE, 0);
        match self {
            Self::Single(c) => {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(msg.as_ref())
                    .query_async(c)
                    .await
            }
            Self::Cluster(c) => {
                redis::cmd("SPUBLISH")
                    .arg(channel)
                    .arg(msg.as_ref())
                    .query_async(c)
                    .await
            }
        }
    }
}

async fn run(bus: Arc<Bus>, mut stop: oneshot::Receiver<()>) {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    loop {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let connected = tokio::select! {
            c = SubConn::connect(&bus, tx) => c,
            _ = &mut stop => return,
        };
        match connected {
            Ok(mut conn) => {
                backoff.reset();
                let mut tick = tokio::time::interval(PROBE_EVERY);
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tick.tick(), if !*bus.subscribed.borrow() => {
                            let sent = tokio::time::timeout(
                                bus.backend.config().command_timeout,
                                conn.probe(&bus.own_ack),
                            ).await;
                            if !matches!(sent, Ok(Ok(()))) {
                                tracing::debug!("cache bus probe not sent");
                            }
                        }
                        push = rx.recv() => match push {
                            None => break,
                            Some(PushInfo { kind: PushKind::Disconnection, .. }) => {
                                tracing::debug!("cache bus disconnected; local tier off until resubscribed");
                                bus.set_subscribed(false);
                                if matches!(conn, SubConn::Single(_)) {
                                    break;
                                }
                            }
                            Some(PushInfo { kind: PushKind::Message | PushKind::SMessage, data }) => {
                                if let [Value::BulkString(channel), Value::BulkString(payload)] = &data[..] {
                                    bus.on_message(channel, Bytes::copy_from_slice(payload));
                                }
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cache bus cannot subscribe"),
        }
        bus.set_subscribed(false);
        if !backoff.wait_or(&mut stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_messages_round_trip_and_garbage_is_rejected() {
        let groups = vec!["/a?x=1".to_owned(), "user:1".to_owned()];
        let (s, q, g) = decode_purge(encode_purge(7, 9, Some(&groups))).unwrap();
        assert_eq!((s, q, g), (7, 9, Some(groups)));
        assert_eq!(decode_purge(encode_purge(1, 2, None)), Some((1, 2, None)));
        let full = encode_purge(7, 9, Some(&["abc".to_owned()]));
        for cut in 0..full.len() {
            assert!(decode_purge(full.slice(..cut)).is_none(), "cut at {cut}");
        }
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn groups() -> impl Strategy<Value = Option<Vec<String>>> {
            prop::option::of(prop::collection::vec(".{0,12}", 0..6))
        }

        fn bytes() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                (any::<u64>(), any::<u64>(), groups()).prop_flat_map(|(s, q, g)| {
                    let bytes = encode_purge(s, q, g.as_deref()).to_vec();
                    let len = bytes.len();
                    (Just(bytes), 0..len, any::<u8>(), any::<bool>()).prop_map(
                        |(mut b, at, x, grow)| {
                            if grow {
                                b.push(x);
                            } else {
                                b[at] = x;
                            }
                            b
                        },
                    )
                }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            #[test]
            fn purges_round_trip(sender in any::<u64>(), seq in any::<u64>(), g in groups()) {
                let back = decode_purge(encode_purge(sender, seq, g.as_deref()));
                prop_assert_eq!(back, Some((sender, seq, g)));
            }

            #[test]
            fn any_purge_bytes_decode_without_panic_and_re_encode_to_themselves(b in bytes()) {
                if let Some((sender, seq, g)) = decode_purge(Bytes::from(b.clone())) {
                    prop_assert_eq!(&encode_purge(sender, seq, g.as_deref())[..], &b[..]);
                }
            }

            #[test]
            fn acknowledgements_round_trip_and_any_bytes_decode_without_panic(
                kind in prop_oneof![Just(ACK), Just(PROBE)],
                seq in any::<u64>(),
                b in prop::collection::vec(any::<u8>(), 0..12),
            ) {
                prop_assert_eq!(decode_signal(&encode_signal(kind, seq)), Some((kind, seq)));
                if let Some((kind, seq)) = decode_signal(&b) {
                    prop_assert_eq!(&encode_signal(kind, seq)[..], &b[..]);
                }
            }
        }
    }
}
