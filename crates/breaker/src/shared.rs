//! [`SharedBreaker`]: a local breaker's open periods shared with other instances through a
//! [`SharedState`].

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tower_scale_core::{BoxFuture, SystemClock};

use crate::breaker::CircuitBreaker;
use crate::state::State;

/// Where instances share their breakers' open periods, so that ten instances open together
/// instead of each paying its own failures. `tower-scale-redis` implements it on Redis
/// (feature `breaker`); this crate depends on no store.
///
/// Times are wall-clock milliseconds since the Unix epoch, as every instance must read them
/// the same way.
pub trait SharedState: Send + Sync + 'static {
    /// Records that breaker `name` is open until `until_ms`.
    fn publish_open(&self, name: &str, until_ms: u64) -> BoxFuture<'_, Result<(), String>>;
    /// The end of the open period another instance published for `name`, if any.
    fn open_until(&self, name: &str) -> BoxFuture<'_, Result<Option<u64>, String>>;
}

/// Couples a local [`CircuitBreaker`] with a [`SharedState`]: every opening is published, and
/// a background task polls the shared state every `interval` and trips the local breaker when
/// another instance opened it. The local breaker keeps deciding on its own when the store is
/// unreachable (errors are logged at debug level and ignored).
#[derive(Debug)]
pub struct SharedBreaker {
    task: JoinHandle<()>,
}

impl SharedBreaker {
    /// Starts sharing `breaker` through `store`, polling every `interval`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn<S: SharedState>(breaker: &CircuitBreaker, store: S, interval: Duration) -> Self {
        let store = Arc::new(store);
        let publisher = Arc::clone(&store);
        let name: Arc<str> = Arc::from(breaker.name());
        let runtime = tokio::runtime::Handle::current();
        let publish_name = Arc::clone(&name);
        breaker.set_on_open(Box::new(move |wait| {
            let store = Arc::clone(&publisher);
            let name = Arc::clone(&publish_name);
            let until =
                SystemClock::now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(0));
            runtime.spawn(async move {
                if let Err(e) = store.publish_open(&name, until).await {
                    tracing::debug!(breaker = %name, error = %e, "could not share the open state");
                }
            });
        }));
        let breaker = breaker.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if breaker.state() != State::Closed {
                    continue;
                }
                match store.open_until(&name).await {
                    Ok(Some(until)) => {
                        let now = SystemClock::now_ms();
                        if until > now {
                            tracing::info!(breaker = %name, "opened by another instance");
                            breaker.trip(Some(Duration::from_millis(until - now)));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(breaker = %name, error = %e, "shared state unreachable; deciding locally");
                    }
                }
            }
        });
        Self { task }
    }

    /// Stops polling (openings are still published).
    pub fn stop(self) {
        self.task.abort();
    }
}
