//! The status of each video, in a Redis hash next to the queue: what `GET /videos/{id}`
//! answers and what the worker updates as a job runs.

use std::collections::HashMap;

use serde::Serialize;
use tower_scale_redis::RedisBackend;
use tower_scale_redis::redis::{self, Pipeline};

use crate::transcode::VideoSpec;

/// How long a video's status is kept after its last change.
const STATUS_TTL_SECS: u64 = 7 * 24 * 3600;

/// Where a video is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// In the queue, not started.
    Queued,
    /// A worker is transcoding it.
    Running,
    /// An attempt failed; the queue retries it after the policy's delay.
    Retrying,
    /// Transcoded; `digest` is set.
    Done,
    /// Every attempt failed.
    Failed,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "retrying" => Self::Retrying,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// A video's status, as `GET /videos/{id}` answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VideoStatus {
    /// The video's id.
    pub id: String,
    /// Where it is.
    pub state: State,
    /// Frames to transcode.
    pub frames: u32,
    /// Frames done by the current (or last) attempt.
    pub frames_done: u32,
    /// Attempts started so far (a retry or a job recovered from a dead worker starts one more).
    pub attempts: u32,
    /// Times the job recorded its completion: 1 once done; more would mean the job ran to its
    /// end twice.
    pub completions: u32,
    /// The transcoding's digest, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The last attempt's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A failed read or write of a status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// Redis failed or timed out.
    #[error("status store: {0}")]
    Redis(#[from] tower_scale_redis::Error),
    /// The stored hash is not a status this program wrote.
    #[error("status of video {0} is corrupt")]
    Corrupt(String),
}

/// Reads and writes video statuses in Redis (keys `<namespace>:video:<id>` and
/// `<namespace>:video:<id>:completions`).
#[derive(Clone, Debug)]
pub struct StatusStore {
    backend: RedisBackend,
}

impl StatusStore {
    /// A store on this backend; its key prefix is the namespace.
    pub fn new(backend: RedisBackend) -> Self {
        Self { backend }
    }

    /// The backend (for its health probe).
    pub fn backend(&self) -> &RedisBackend {
        &self.backend
    }

    fn key(&self, id: &str) -> String {
        self.backend.keys().key("video", id)
    }

    fn completions_key(&self, id: &str) -> String {
        format!("{}:completions", self.key(id))
    }

    /// Records a new video as queued.
    pub async fn create(&self, id: &str, spec: &VideoSpec) -> Result<(), StatusError> {
        let key = self.key(id);
        let mut p = Pipeline::new();
        p.atomic()
            .hset_multiple(
                &key,
                &[
                    ("state", State::Queued.as_str().to_owned()),
                    ("frames", spec.frames.to_string()),
                    ("frames_done", "0".to_owned()),
                    ("attempts", "0".to_owned()),
                ],
            )
            .ignore()
            .expire(&key, STATUS_TTL_SECS as i64)
            .ignore();
        self.backend.query_pipeline::<()>(&p).await?;
        Ok(())
    }

    /// Forgets a video (its job could not be enqueued).
    pub async fn remove(&self, id: &str) -> Result<(), StatusError> {
        self.backend
            .query::<()>(redis::cmd("DEL").arg(self.key(id)))
            .await?;
        Ok(())
    }

    /// An attempt starts: returns its number (1 for the first).
    pub async fn start_attempt(&self, id: &str) -> Result<u32, StatusError> {
        let key = self.key(id);
        let mut p = Pipeline::new();
        p.atomic()
            .hincr(&key, "attempts", 1)
            .hset_multiple(
                &key,
                &[("state", State::Running.as_str()), ("frames_done", "0")],
            )
            .ignore()
            .expire(&key, STATUS_TTL_SECS as i64)
            .ignore();
        let (attempts,): (u32,) = self.backend.query_pipeline(&p).await?;
        Ok(attempts)
    }

    /// Frames done by the current attempt.
    pub async fn progress(&self, id: &str, frames_done: u32) -> Result<(), StatusError> {
        self.backend
            .query::<()>(
                redis::cmd("HSET")
                    .arg(self.key(id))
                    .arg("frames_done")
                    .arg(frames_done),
            )
            .await?;
        Ok(())
    }

    /// The job finished: state `done`, its digest, and one more completion, atomically.
    pub async fn complete(&self, id: &str, frames: u32, digest: &str) -> Result<(), StatusError> {
        let key = self.key(id);
        let mut p = Pipeline::new();
        p.atomic()
            .hset_multiple(
                &key,
                &[
                    ("state", State::Done.as_str().to_owned()),
                    ("frames_done", frames.to_string()),
                    ("digest", digest.to_owned()),
                ],
            )
            .ignore()
            .hdel(&key, "error")
            .ignore()
            .incr(self.completions_key(id), 1)
            .ignore()
            .expire(self.completions_key(id), STATUS_TTL_SECS as i64)
            .ignore();
        self.backend.query_pipeline::<()>(&p).await?;
        Ok(())
    }

    /// An attempt failed; `final_attempt` when the policy allows no more retries.
    pub async fn fail_attempt(
        &self,
        id: &str,
        error: &str,
        final_attempt: bool,
    ) -> Result<(), StatusError> {
        let state = if final_attempt {
            State::Failed
        } else {
            State::Retrying
        };
        self.backend
            .query::<()>(
                redis::cmd("HSET")
                    .arg(self.key(id))
                    .arg("state")
                    .arg(state.as_str())
                    .arg("error")
                    .arg(error),
            )
            .await?;
        Ok(())
    }

    /// A video's status, `None` when unknown.
    pub async fn get(&self, id: &str) -> Result<Option<VideoStatus>, StatusError> {
        let mut p = Pipeline::new();
        p.hgetall(self.key(id)).get(self.completions_key(id));
        let (fields, completions): (HashMap<String, String>, Option<u32>) =
            self.backend.query_pipeline(&p).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let corrupt = || StatusError::Corrupt(id.to_owned());
        let num = |name: &str| -> Result<u32, StatusError> {
            fields
                .get(name)
                .and_then(|v| v.parse().ok())
                .ok_or_else(corrupt)
        };
        Ok(Some(VideoStatus {
            id: id.to_owned(),
            state: fields
                .get("state")
                .and_then(|s| State::parse(s))
                .ok_or_else(corrupt)?,
            frames: num("frames")?,
            frames_done: num("frames_done")?,
            attempts: num("attempts")?,
            completions: completions.unwrap_or(0),
            digest: fields.get("digest").cloned(),
            error: fields.get("error").cloned(),
        }))
    }
}
