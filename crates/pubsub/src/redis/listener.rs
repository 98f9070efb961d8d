//! The subscriber connection of the instance: one `SUBSCRIBE` connection for all its pub/sub
//! rooms, resubscribing after every reconnect.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{PubSub, PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Exit, reconnect_backoff};
use crate::rooms::Registry;
use crate::{Delivery, PubSubConfig};

/// Subscription changes, in the order the rooms opened and closed.
pub(crate) enum ListenerCmd {
    /// Subscribe to a channel; the sender is told once Redis confirmed.
    Subscribe(Arc<str>, Option<oneshot::Sender<()>>),
    /// Unsubscribe from a channel, unless a room of that channel opened again since.
    Unsubscribe(Arc<str>),
}

pub(crate) struct Listener {
    pub(crate) registry: Arc<Registry>,
    pub(crate) clients: Arc<[redis::Client]>,
    pub(crate) config: PubSubConfig,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) stop: CancellationToken,
    pub(crate) links: Arc<super::Links>,
}

impl Listener {
    pub(crate) async fn run(self, mut commands: mpsc::UnboundedReceiver<ListenerCmd>) {
        let mut failed = false;
        let mut backoff = reconnect_backoff(&self.config);
        for attempt in 0usize.. {
            let client = &self.clients[attempt % self.clients.len()];
            let connected = tokio::select! {
                () = self.stop.cancelled() => return,
                r = tokio::time::timeout(self.connect_timeout, client.get_async_pubsub()) => r,
            };
            match connected {
                Ok(Ok(pubsub)) => {
                    match self.serve(pubsub, &mut commands, failed).await {
                        Exit::Stop => return,
                        Exit::Lost => {}
                    }
                    backoff.reset();
                    tracing::warn!("pubsub: lost the Redis subscriber connection; reconnecting");
                }
                Ok(Err(error)) => tracing::debug!(%error, "pubsub: cannot connect to Redis"),
                Err(_) => tracing::debug!("pubsub: connecting to Redis timed out"),
            }
            failed = true;
            self.links.set(Delivery::PubSub, false);
            self.unconfirm_all();
            if !backoff.wait_or(self.stop.cancelled()).await {
                return;
            }
        }
    }

    /// Subscribes every open room, then relays messages and subscription changes until the
    /// connection fails.
    async fn serve(
        &self,
        pubsub: PubSub,
        commands: &mut mpsc::UnboundedReceiver<ListenerCmd>,
        failed: bool,
    ) -> Exit {
        let (mut sink, mut messages) = pubsub.split();
        // Changes queued so far are covered by subscribing what is open now.
        let mut confirms = Vec::new();
        while let Ok(cmd) = commands.try_recv() {
            if let ListenerCmd::Subscribe(_, Some(confirm)) = cmd {
                confirms.push(confirm);
            }
        }
        let open: HashSet<Arc<str>> = {
            let state = self.registry.lock();
            state
                .rooms
                .values()
                .filter(|r| r.delivery == Delivery::PubSub)
                .filter_map(|r| r.key.clone())
                .collect()
        };
        let names: Vec<&str> = open.iter().map(|k| &**k).collect();
        for chunk in names.chunks(1024) {
            if !self.ok(sink.subscribe(chunk)).await {
                return Exit::Lost;
            }
        }
        self.drain(&mut messages);
        self.set_confirmed(|key| open.contains(key));
        for confirm in confirms {
            let _ = confirm.send(());
        }
        self.links.set(Delivery::PubSub, true);
        if failed {
            tracing::info!(rooms = open.len(), "pubsub: resubscribed after a reconnect");
            metrics::counter!(crate::PUBSUB_INTERRUPTIONS_TOTAL.name, "delivery" => Delivery::PubSub.label())
                .increment(1);
            self.registry.interrupt(Delivery::PubSub, |_| true);
        }
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return Exit::Stop,
                message = messages.next() => {
                    let Some(message) = message else { return Exit::Lost };
                    self.dispatch(&message);
                }
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { return Exit::Stop };
                    if !self.apply(&mut sink, &mut messages, cmd).await {
                        return Exit::Lost;
                    }
                }
                _ = ping.tick() => {
                    if !self.ok(sink.ping::<redis::Value>()).await {
                        return Exit::Lost;
                    }
                }
            }
        }
    }

    fn dispatch(&self, message: &redis::Msg) {
        let payload = Bytes::copy_from_slice(message.get_payload_bytes());
        self.registry.dispatch(message.get_channel_name(), payload);
    }

    /// Delivers the messages that arrived before the last confirmation, to the rooms
    /// confirmed before it.
    fn drain(&self, messages: &mut PubSubStream) {
        while let Some(Some(message)) = messages.next().now_or_never() {
            self.dispatch(&message);
        }
    }

    async fn apply(
        &self,
        sink: &mut PubSubSink,
        messages: &mut PubSubStream,
        cmd: ListenerCmd,
    ) -> bool {
        match cmd {
            ListenerCmd::Subscribe(key, confirm) => {
                if !self.ok(sink.subscribe(&*key)).await {
                    return false;
                }
                // Redis sends everything in order: what came before the confirmation was
                // published before the room subscribed, and is not for its subscribers.
                self.drain(messages);
                self.set_confirmed(|k| *k == *key);
                if let Some(confirm) = confirm {
                    let _ = confirm.send(());
                }
                true
            }
            ListenerCmd::Unsubscribe(key) => {
                let reopened = self.registry.lock().by_channel.contains_key(&key);
                reopened || self.ok(sink.unsubscribe(&*key)).await
            }
        }
    }

    /// Marks the pub/sub rooms whose channel `pick` selects as subscribed on Redis.
    fn set_confirmed(&self, pick: impl Fn(&str) -> bool) {
        let mut state = self.registry.lock();
        for room in state.rooms.values_mut() {
            if room.delivery == Delivery::PubSub && room.key.as_deref().is_some_and(&pick) {
                room.confirmed = true;
            }
        }
    }

    fn unconfirm_all(&self) {
        let mut state = self.registry.lock();
        for room in state.rooms.values_mut() {
            room.confirmed = false;
        }
    }

    /// Runs a subscriber-connection command under the command timeout.
    async fn ok<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> bool {
        matches!(
            tokio::time::timeout(self.command_timeout, fut).await,
            Ok(Ok(_))
        )
    }
}
