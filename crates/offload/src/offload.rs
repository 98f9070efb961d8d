//! [`Offload`]: CPU-bound work on a bounded pool, and its builder.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};
use tower_scale_core::ConfigError;

use crate::config::{OffloadConfig, PoolKind};
use crate::error::{OffloadError, Overloaded};

/// Runs CPU-bound closures off the async runtime's workers, on a bounded pool with a bounded
/// queue, so one heavy handler cannot stall every other request on its worker.
///
/// Cloning is cheap; clones share the pool. When `threads + queue` jobs are already admitted,
/// [`run`](Self::run) fails at once with [`OffloadError::Overloaded`], which answers
/// `503 Service Unavailable` with `Retry-After` as an axum response.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tower_scale_offload::Offload;
///
/// let offload = Offload::builder().threads(2).queue(8).build().unwrap();
/// let sum = offload.run(|| (0..1_000_000u64).sum::<u64>()).await.unwrap();
/// assert_eq!(sum, 499_999_500_000);
/// # }
/// ```
#[derive(Clone)]
pub struct Offload {
    inner: Arc<Inner>,
}

struct Inner {
    admitted: Arc<Semaphore>,
    capacity: usize,
    threads: usize,
    retry_after: Duration,
    pool: Pool,
}

enum Pool {
    Rayon(rayon::ThreadPool),
    Tokio(Arc<Semaphore>),
}

impl fmt::Debug for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offload")
            .field(
                "pool",
                &match self.inner.pool {
                    Pool::Rayon(_) => PoolKind::Rayon,
                    Pool::Tokio(_) => PoolKind::TokioBlocking,
                },
            )
            .field("threads", &self.inner.threads)
            .field("capacity", &self.inner.capacity)
            .field("admitted", &self.admitted())
            .finish()
    }
}

/// Builder of [`Offload`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct OffloadBuilder {
    config: OffloadConfig,
}

impl OffloadBuilder {
    /// Pool kind.
    pub fn pool(mut self, pool: PoolKind) -> Self {
        self.config.pool = pool;
        self
    }

    /// Jobs running at once (at least 1).
    pub fn threads(mut self, threads: usize) -> Self {
        self.config.threads = Some(threads);
        self
    }

    /// Jobs allowed to wait beyond those running.
    pub fn queue(mut self, queue: usize) -> Self {
        self.config.queue = Some(queue);
        self
    }

    /// `Retry-After` suggested to rejected callers.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.config.retry_after = retry_after;
        self
    }

    /// Builds the pool; a bad value is an error naming it.
    pub fn build(self) -> Result<Offload, ConfigError> {
        Offload::from_config(&self.config)
    }
}

impl Offload {
    /// A builder with the defaults of [`OffloadConfig`].
    pub fn builder() -> OffloadBuilder {
        OffloadBuilder::default()
    }

    /// Builds a pool from a config.
    pub fn from_config(config: &OffloadConfig) -> Result<Self, ConfigError> {
        let threads = config.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        if threads == 0 {
            return Err(ConfigError::new("threads", "must be at least 1"));
        }
        let queue = config.queue.unwrap_or(threads * 64);
        let capacity = threads
            .checked_add(queue)
            .filter(|c| *c <= Semaphore::MAX_PERMITS)
            .ok_or_else(|| ConfigError::new("queue", format!("{queue} is too large")))?;
        let pool = match config.pool {
            PoolKind::Rayon => Pool::Rayon(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("offload-{i}"))
                    .build()
                    .map_err(|e| ConfigError::new("pool", format!("rayon pool: {e}")))?,
            ),
            PoolKind::TokioBlocking => Pool::Tokio(Arc::new(Semaphore::new(threads))),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                admitted: Arc::new(Semaphore::new(capacity)),
                capacity,
                threads,
                retry_after: config.retry_after,
                pool,
            }),
        })
    }

    /// Jobs admitted now (running or queued).
    pub fn admitted(&self) -> usize {
        self.inner.capacity - self.inner.admitted.available_permits()
    }

    /// The most jobs admitted at once: `threads + queue`.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Runs `job` on the pool and returns its result.
    ///
    /// Fails at once with [`OffloadError::Overloaded`] when the pool and its queue are full,
    /// and with [`OffloadError::Panicked`] when the job panics (the pool keeps working). If the
    /// caller stops waiting, a job already started still runs to completion and keeps its place
    /// in the bound until then.
    pub async fn run<F, T>(&self, job: F) -> Result<T, OffloadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let Ok(permit) = Arc::clone(&self.inner.admitted).try_acquire_owned() else {
            metrics::counter!(crate::names::OFFLOAD_REJECTED_TOTAL.name).increment(1);
            return Err(OffloadError::Overloaded(Overloaded::new(
                self.inner.retry_after,
            )));
        };
        match &self.inner.pool {
            Pool::Rayon(pool) => {
                let (tx, rx) = oneshot::channel();
                pool.spawn(move || {
                    let result = std::panic::catch_unwind(AssertUnwindSafe(job));
                    drop(permit);
                    let _ = tx.send(result);
                });
                match rx.await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(_)) | Err(_) => Err(OffloadError::Panicked),
                }
            }
            Pool::Tokio(running) => {
                let running = Arc::clone(running)
                    .acquire_owned()
                    .await
                    .map_err(|_| OffloadError::Panicked)?;
                let handle = tokio::task::spawn_blocking(move || {
                    let value = job();
                    drop((running, permit));
                    value
                });
                handle.await.map_err(|_| OffloadError::Panicked)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_config_is_named() {
        let err = Offload::builder().threads(0).build().unwrap_err();
        assert!(err.to_string().contains("threads"), "{err}");
        let err = Offload::builder().queue(usize::MAX).build().unwrap_err();
        assert!(err.to_string().contains("queue"), "{err}");
    }
}
