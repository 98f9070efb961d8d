use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, oneshot};

/// Which threads run offloaded work.
///
/// Both are bounded to [`OffloadBuilder::threads`] concurrent jobs; `docs/benchmarks.md`
/// compares them. The default is [`PoolKind::Rayon`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    /// A dedicated rayon thread pool of `threads` threads: no thread is created per job, and
    /// the pool's threads never compete with tokio's blocking I/O.
    #[default]
    Rayon,
    /// tokio's blocking pool, with at most `threads` jobs running at once.
    TokioBlocking,
}

/// Configuration of an [`Offload`] pool (serde, for config files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OffloadConfig {
    /// Pool kind. Default rayon.
    pub pool: PoolKind,
    /// Jobs running at once. Default: the number of CPUs.
    pub threads: Option<usize>,
    /// Jobs allowed to wait for a thread; past `threads + queue` jobs, [`Offload::run`] fails
    /// at once with [`OffloadError::Overloaded`]. Default 64 per thread.
    pub queue: Option<usize>,
    /// The `Retry-After` suggested to rejected callers. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for OffloadConfig {
    fn default() -> Self {
        Self {
            pool: PoolKind::Rayon,
            threads: None,
            queue: None,
            retry_after: Duration::from_secs(1),
        }
    }
}

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
    pub fn build(self) -> Result<Offload, OffloadError> {
        Offload::from_config(&self.config)
    }
}

impl Offload {
    /// A builder with the defaults of [`OffloadConfig`].
    pub fn builder() -> OffloadBuilder {
        OffloadBuilder::default()
    }

    /// Builds a pool from a config.
    pub fn from_config(config: &OffloadConfig) -> Result<Self, OffloadError> {
        let threads = config.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        if threads == 0 {
            return Err(OffloadError::Config(
                "threads must be at least 1".to_owned(),
            ));
        }
        let queue = config.queue.unwrap_or(threads * 64);
        let capacity = threads
            .checked_add(queue)
            .filter(|c| *c <= Semaphore::MAX_PERMITS)
            .ok_or_else(|| OffloadError::Config(format!("queue {queue} is too large")))?;
        let pool = match config.pool {
            PoolKind::Rayon => Pool::Rayon(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("offload-{i}"))
                    .build()
                    .map_err(|e| OffloadError::Config(format!("rayon pool: {e}")))?,
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
            metrics::counter!(OFFLOAD_REJECTED_TOTAL).increment(1);
            return Err(OffloadError::Overloaded(Overloaded {
                retry_after: self.inner.retry_after,
            }));
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

/// Counter of jobs rejected because the pool and its queue were full.
pub const OFFLOAD_REJECTED_TOTAL: &str = tower_scale_metrics::names::OFFLOAD_REJECTED_TOTAL;

/// The pool and its queue are full: try again after [`retry_after`](Self::retry_after).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overloaded {
    retry_after: Duration,
}

impl Overloaded {
    /// The suggested wait before retrying.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offload pool overloaded; retry after {}s",
            retry_after_secs(self.retry_after)
        )
    }
}

impl std::error::Error for Overloaded {}

/// An error of [`Offload`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// The pool and its queue are full.
    #[error(transparent)]
    Overloaded(Overloaded),
    /// The job panicked.
    #[error("offloaded job panicked")]
    Panicked,
    /// The configuration is invalid.
    #[error("invalid offload config: {0}")]
    Config(String),
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.is_zero()))
}

#[cfg(feature = "axum")]
mod axum_impl {
    use axum::response::{IntoResponse, Response};
    use http::{HeaderValue, StatusCode, header};

    use super::{OffloadError, Overloaded, retry_after_secs};

    impl IntoResponse for Overloaded {
        fn into_response(self) -> Response {
            let mut res = (StatusCode::SERVICE_UNAVAILABLE, self.to_string()).into_response();
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(self.retry_after)),
            );
            res
        }
    }

    impl IntoResponse for OffloadError {
        fn into_response(self) -> Response {
            match self {
                Self::Overloaded(o) => o.into_response(),
                other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()).into_response(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2500)), 3);
    }

    #[test]
    fn bad_config_is_named() {
        let err = Offload::builder().threads(0).build().unwrap_err();
        assert!(err.to_string().contains("threads"), "{err}");
        let err = Offload::builder().queue(usize::MAX).build().unwrap_err();
        assert!(err.to_string().contains("queue"), "{err}");
    }
}
