use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::names;

/// Measures the scheduling lag of the tokio runtime it runs on, without `tokio_unstable` and on
/// the multi-threaded runtime: a task asks to wake every `interval` and records how late it
/// actually woke up. A worker blocked by CPU work or a blocking call delays it; so does a
/// backlog of runnable tasks. Also records what tokio's stable runtime metrics give: workers,
/// alive tasks, global queue depth.
///
/// | metric | type |
/// |---|---|
/// | `tokio_scheduling_lag_seconds` | histogram |
/// | `tokio_scheduling_lag_last_seconds` | gauge |
/// | `tokio_workers`, `tokio_alive_tasks`, `tokio_global_queue_depth` | gauges |
///
/// The latest and the maximum lag are also readable in process through [`RuntimeProbeHandle`]
/// (for load shedding by lag).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use tower_scale_metrics::RuntimeProbe;
///
/// let probe = RuntimeProbe::new().interval(Duration::from_millis(50)).spawn();
/// assert_eq!(probe.last_lag(), Duration::ZERO); // nothing measured yet
/// probe.stop();
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct RuntimeProbe {
    interval: Duration,
    window: Duration,
}

impl Default for RuntimeProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl RuntimeProbe {
    /// A probe waking every 100 ms.
    pub const fn new() -> Self {
        Self {
            interval: Duration::from_millis(100),
            window: Duration::from_secs(1),
        }
    }

    /// The span of [`LagWatch::recent_max`]: the largest lag of roughly the last `window`
    /// (between `window / 2` and `window`). Default 1 s.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window.max(Duration::from_millis(2));
        self
    }

    /// How often the probe wakes (default 100 ms; at least 1 ms, tokio's timer resolution).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Spawns the probe on the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(self) -> RuntimeProbeHandle {
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(run(self.interval, self.window / 2, Arc::clone(&shared)));
        RuntimeProbeHandle { shared, task }
    }
}

#[derive(Debug, Default)]
struct Shared {
    last_nanos: AtomicU64,
    max_nanos: AtomicU64,
    samples: AtomicU64,
    /// Largest lag of the current and of the previous half-window.
    current_bucket_nanos: AtomicU64,
    previous_bucket_nanos: AtomicU64,
}

/// A running [`RuntimeProbe`]; dropping it does not stop the probe, [`stop`](Self::stop) does.
#[derive(Debug)]
pub struct RuntimeProbeHandle {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// A cloneable, read-only view of a running probe's measurements (for load shedding).
#[derive(Clone, Debug)]
pub struct LagWatch {
    shared: Arc<Shared>,
}

impl LagWatch {
    /// The lag of the latest wake-up.
    pub fn last_lag(&self) -> Duration {
        Duration::from_nanos(self.shared.last_nanos.load(Ordering::Relaxed))
    }

    /// How many wake-ups were measured.
    pub fn samples(&self) -> u64 {
        self.shared.samples.load(Ordering::Relaxed)
    }

    /// The largest lag of roughly the last [window](RuntimeProbe::window): a stall stays
    /// visible for at least half a window after it ends, so a load-shedding decision does not
    /// depend on catching the one late sample, and does not flap.
    pub fn recent_max(&self) -> Duration {
        let current = self.shared.current_bucket_nanos.load(Ordering::Relaxed);
        let previous = self.shared.previous_bucket_nanos.load(Ordering::Relaxed);
        Duration::from_nanos(current.max(previous))
    }
}

impl RuntimeProbeHandle {
    /// A cloneable view of the measurements, e.g. for a load-shedding layer.
    pub fn watch(&self) -> LagWatch {
        LagWatch {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The lag of the latest wake-up.
    pub fn last_lag(&self) -> Duration {
        Duration::from_nanos(self.shared.last_nanos.load(Ordering::Relaxed))
    }

    /// The largest lag seen since the probe started (or since [`reset_max`](Self::reset_max)).
    pub fn max_lag(&self) -> Duration {
        Duration::from_nanos(self.shared.max_nanos.load(Ordering::Relaxed))
    }

    /// Resets the maximum lag to zero.
    pub fn reset_max(&self) {
        self.shared.max_nanos.store(0, Ordering::Relaxed);
    }

    /// How many wake-ups were measured.
    pub fn samples(&self) -> u64 {
        self.shared.samples.load(Ordering::Relaxed)
    }

    /// Stops the probe.
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn run(interval: Duration, half_window: Duration, shared: Arc<Shared>) {
    let lag_hist = metrics::histogram!(names::RUNTIME_SCHEDULING_LAG_SECONDS.name);
    let lag_last = metrics::gauge!(names::RUNTIME_SCHEDULING_LAG_LAST_SECONDS.name);
    let workers = metrics::gauge!(names::RUNTIME_WORKERS.name);
    let alive = metrics::gauge!(names::RUNTIME_ALIVE_TASKS.name);
    let queue = metrics::gauge!(names::RUNTIME_GLOBAL_QUEUE_DEPTH.name);
    let runtime = Handle::current().metrics();
    let mut deadline = Instant::now() + interval;
    let mut bucket_start = Instant::now();
    loop {
        tokio::time::sleep_until(deadline).await;
        let now = Instant::now();
        let lag = now.saturating_duration_since(deadline);
        let nanos = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX);
        shared.last_nanos.store(nanos, Ordering::Relaxed);
        shared.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        if now.duration_since(bucket_start) >= half_window {
            let current = shared.current_bucket_nanos.swap(0, Ordering::Relaxed);
            shared
                .previous_bucket_nanos
                .store(current, Ordering::Relaxed);
            bucket_start = now;
        }
        shared
            .current_bucket_nanos
            .fetch_max(nanos, Ordering::Relaxed);
        shared.samples.fetch_add(1, Ordering::Relaxed);
        lag_hist.record(lag.as_secs_f64());
        lag_last.set(lag.as_secs_f64());
        workers.set(runtime.num_workers() as f64);
        alive.set(runtime.num_alive_tasks() as f64);
        queue.set(runtime.global_queue_depth() as f64);
        deadline = now + interval;
    }
}
