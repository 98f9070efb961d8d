//! Background jobs on an existing Redis-backed queue ([oxana](https://docs.rs/oxana)): the
//! `jobs-server` binary answers `POST /videos` by enqueueing a CPU-heavy job (a stand-in for
//! video transcoding: hashing frame buffers many rounds) and reports its status on
//! `GET /videos/{id}`; the `jobs-worker` binary runs the jobs, each frame through
//! tower-scale-offload's [`Offload`](tower_scale_offload::Offload) so the CPU work never
//! blocks the async runtime, with a configurable [`RetryPolicy`] and a graceful shutdown
//! driven by tower-scale-shutdown.
//!
//! See `examples/jobs/README.md` for the guarantees (at-least-once delivery, what a `SIGKILL`
//! or `SIGTERM` does to the job in progress) and why oxana was chosen over apalis-redis.

mod config;
mod job;
mod server;
mod status;
mod transcode;

pub use self::config::{ConfigError, RetryPolicy, Settings};
pub use self::job::{TranscodeWorker, VideoJob, VideoQueue, WorkerDeps, run_worker, storage};
pub use self::server::{AppState, app};
pub use self::status::{State, StatusError, StatusStore, VideoStatus};
pub use self::transcode::{FRAME_BYTES, VideoSpec, VideoSpecError, frame_digest, video_digest};
