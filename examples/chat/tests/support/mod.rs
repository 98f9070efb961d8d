//! What the chat's test binaries share: serving a chat instance in the test's process.

#![allow(unreachable_pub, dead_code)]

use std::time::Duration;

use example_chat::{Chat, ChatConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_scale_shutdown::{Report, Shutdown, ShutdownConfig};

/// Serves a chat built from `config` on `listener`, as `main` does, with a shutdown that
/// starts at once when triggered (no pre-stop delay) and waits at most 10 s for connections
/// and tasks. Returns the shutdown (trigger it to stop the instance) and the serving task.
pub fn serve(listener: TcpListener, config: ChatConfig) -> (Shutdown, JoinHandle<Report>) {
    let shutdown = Shutdown::new({
        let mut config = ShutdownConfig::default();
        config.pre_stop_delay = Duration::ZERO;
        config.drain_timeout = Duration::from_secs(10);
        config.tasks_timeout = Duration::from_secs(10);
        config
    });
    let chat = Chat::new(config, shutdown.clone()).expect("a valid chat config");
    let serve =
        axum::serve(listener, chat.router()).with_graceful_shutdown(shutdown.stop_accepting());
    let served = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.run(async move { serve.await }).await }
    });
    (shutdown, served)
}
