//! A signal that arrives as soon as `listen_for_signals` has returned starts the shutdown: the
//! handlers are in place when the call returns, not once a background task first runs. (On a
//! failure the default action of SIGTERM ends this test binary.)

use std::time::Duration;

use nix::sys::signal::{Signal, raise};
use tower_scale_shutdown::{Shutdown, ShutdownConfig};

#[tokio::test(flavor = "current_thread")]
async fn a_sigterm_right_after_listen_for_signals_starts_the_shutdown() {
    let shutdown = Shutdown::new(ShutdownConfig::default());
    shutdown.listen_for_signals();
    // No `.await` in between: on a current-thread runtime no spawned task has run yet.
    raise(Signal::SIGTERM).expect("raise SIGTERM");
    tokio::time::timeout(Duration::from_secs(30), shutdown.requested())
        .await
        .expect("SIGTERM did not start the shutdown");
    assert!(!shutdown.is_ready());
}
