//! The job, its queue and its worker, on oxana.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_scale_offload::{Offload, OffloadError};
use tower_scale_shutdown::{Report, Shutdown};

use crate::config::{RetryPolicy, Settings};
use crate::status::{StatusError, StatusStore};
use crate::transcode::{VideoSpec, frame_digest, video_digest};

/// The job's payload, stored in the queue: which video, and how to transcode it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoJob {
    /// The video's id (its status key).
    pub video_id: String,
    /// Frames, rounds and simulated failures.
    pub spec: VideoSpec,
}

impl oxana::Job for VideoJob {
    fn name() -> &'static str {
        "transcode_video"
    }
}

/// The queue of [`VideoJob`]s (key `videos`).
#[derive(Clone, Copy, Debug)]
pub struct VideoQueue;

impl oxana::Queue for VideoQueue {
    fn to_config() -> oxana::QueueConfig {
        oxana::QueueConfig::as_static("videos")
    }
}

/// What a worker needs, shared by every job it runs.
#[derive(Clone, Debug)]
pub struct WorkerDeps {
    /// The pool the frames are hashed on.
    pub offload: Offload,
    /// Where the statuses are.
    pub statuses: StatusStore,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
}

/// Runs [`VideoJob`]s: each frame on the offload pool, the status updated as it goes.
#[derive(Clone, Debug)]
pub struct TranscodeWorker {
    deps: WorkerDeps,
}

impl oxana::FromContext<WorkerDeps> for TranscodeWorker {
    fn from_context(ctx: &WorkerDeps) -> Self {
        Self { deps: ctx.clone() }
    }
}

/// Why an attempt failed; every one is retried by the policy.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The status could not be read or written (Redis down): retried, the work is redone.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The offload pool refused the frame or the hashing panicked.
    #[error("transcoding: {0}")]
    Offload(#[from] OffloadError),
    /// The simulated flaky source (`fail_attempts`).
    #[error("source unavailable (simulated failure of attempt {0})")]
    SourceUnavailable(u32),
}

#[async_trait::async_trait]
impl oxana::Worker<VideoJob> for TranscodeWorker {
    type Error = JobError;

    async fn process(&self, job: VideoJob, ctx: &oxana::JobContext) -> Result<(), JobError> {
        let statuses = &self.deps.statuses;
        let id = job.video_id.as_str();
        let spec = job.spec;
        let final_attempt = ctx.meta.retries >= self.deps.retry.max_retries;
        let attempt = statuses.start_attempt(id).await?;
        tracing::info!(video = id, attempt, frames = spec.frames, "transcoding");
        let mut digests = Vec::with_capacity(spec.frames as usize);
        for frame in 0..spec.frames {
            let video = job.video_id.clone();
            let rounds = spec.rounds;
            let result = self
                .deps
                .offload
                .run(move || frame_digest(&video, frame, rounds))
                .await;
            let digest = match result {
                Ok(d) => d,
                Err(e) => {
                    let err = JobError::from(e);
                    record_failure(statuses, id, &err, final_attempt).await;
                    return Err(err);
                }
            };
            digests.push(digest);
            if frame == 0 && attempt <= spec.fail_attempts {
                let err = JobError::SourceUnavailable(attempt);
                record_failure(statuses, id, &err, final_attempt).await;
                return Err(err);
            }
            if let Err(e) = statuses.progress(id, frame + 1).await {
                // Progress is informational; the job goes on.
                tracing::warn!(video = id, error = %e, "cannot record progress");
            }
        }
        let digest = video_digest(&digests);
        statuses.complete(id, spec.frames, &digest).await?;
        tracing::info!(video = id, attempt, %digest, "transcoded");
        Ok(())
    }

    fn max_retries(&self, _job: &VideoJob) -> u32 {
        self.deps.retry.max_retries
    }

    fn retry_delay(&self, _job: &VideoJob, retries: u32) -> u64 {
        self.deps.retry.delay_secs(retries)
    }
}

async fn record_failure(statuses: &StatusStore, id: &str, err: &JobError, final_attempt: bool) {
    tracing::warn!(video = id, error = %err, final_attempt, "attempt failed");
    if let Err(e) = statuses
        .fail_attempt(id, &err.to_string(), final_attempt)
        .await
    {
        tracing::warn!(video = id, error = %e, "cannot record the failure");
    }
}

/// The queue's storage for these settings (opens no connection yet).
pub fn storage(settings: &Settings) -> Result<oxana::Storage, oxana::OxanaError> {
    oxana::Storage::builder()
        .namespace(settings.namespace.clone())
        .build_from_redis_url(settings.redis_url.clone())
}

/// Runs a worker until `shutdown` is triggered (SIGTERM / SIGINT once
/// [`Shutdown::listen_for_signals`] was called), then lets the jobs in progress finish within
/// `settings.drain_timeout`; jobs still running past it stay claimed in Redis, and the queue
/// hands them to another worker once this one has been silent for `settings.dead_after`.
///
/// The report's exit code is 0 when every job in progress finished.
pub async fn run_worker(
    settings: &Settings,
    deps: WorkerDeps,
    shutdown: &Shutdown,
) -> Result<Report, oxana::OxanaError> {
    let storage = storage(settings)?;
    let requested = shutdown.requested();
    let runtime = storage
        .runtime(deps)
        .queue_with_concurrency::<VideoQueue>(settings.concurrency)
        .worker::<TranscodeWorker, VideoJob>()
        .shutdown_on(async move {
            requested.await;
            Ok(())
        })
        .shutdown_timeout(settings.drain_timeout)
        .heartbeat_interval(settings.heartbeat)
        .dead_process_threshold(settings.dead_after)
        .resurrect_scan_interval((settings.dead_after / 2).max(Duration::from_millis(100)))
        .retry_poll_interval(Duration::from_millis(200));
    Ok(shutdown
        .run(async move {
            runtime
                .run()
                .await
                .map(|stats| tracing::info!(?stats, "worker stopped"))
        })
        .await)
}
