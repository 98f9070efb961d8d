//! Test helpers: the server and the worker as real child processes, an HTTP client, and polling
//! helpers that wait on conditions (with generous deadlines), never on fixed sleeps.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use example_jobs::{VideoSpec, frame_digest, video_digest};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::process::{Child, Command};
use tower_scale_testkit::RedisServer;

/// Worker settings of the tests: one job at a time, a dead worker noticed after 1 s, retries
/// after 1 s, two retries.
pub const WORKER_ENV: &[(&str, &str)] = &[
    ("JOBS_CONCURRENCY", "1"),
    ("JOBS_HEARTBEAT_MS", "100"),
    ("JOBS_DEAD_AFTER_MS", "1000"),
    ("JOBS_RETRY_DELAY_SECS", "1"),
    ("JOBS_RETRY_FACTOR", "1"),
    ("JOBS_MAX_RETRIES", "2"),
];

/// Long enough for a whole run of one test.
pub const DEADLINE: Duration = Duration::from_secs(240);

/// A child process, killed when dropped, with its output in a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    name: &'static str,
}

impl Proc {
    fn spawn(bin: &str, name: &'static str, dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.path().join(format!("{name}-{n}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        Self { child, log, name }
    }

    /// The last lines of the process's output, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!("--- {} log ---\n{}", self.name, lines[from..].join("\n"))
    }

    pub fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("process still running");
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), signal).expect("kill");
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn sigkill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("wait");
    }

    /// Waits for the exit, up to `limit`.
    pub async fn exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!(
                "{} did not exit within {limit:?}\n{}",
                self.name,
                self.tail()
            ),
        }
    }
}

/// Redis, the server, and the workers of one test.
pub struct Env {
    pub redis: RedisServer,
    pub dir: tempfile::TempDir,
    pub server: Proc,
    pub base: String,
    pub http: reqwest::Client,
    redis_url: String,
}

impl Env {
    pub async fn start() -> Self {
        let redis = RedisServer::start();
        let redis_url = redis.url();
        let dir = tempfile::tempdir().expect("temp dir");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port");
            let addr = format!("127.0.0.1:{port}");
            let port_text = port.to_string();
            let mut server = Proc::spawn(
                env!("CARGO_BIN_EXE_jobs-server"),
                "server",
                &dir,
                &[
                    ("REDIS_URL", redis_url.as_str()),
                    ("PORT", port_text.as_str()),
                ],
            );
            let base = format!("http://{addr}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(r) = http.get(format!("{base}/readyz")).send().await
                    && r.status().is_success()
                {
                    return Self {
                        redis,
                        dir,
                        server,
                        base,
                        http,
                        redis_url,
                    };
                }
                if server.child.try_wait().expect("try_wait").is_some() || Instant::now() > deadline
                {
                    break; // the port was taken in between: try another
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("jobs-server did not start");
    }

    pub fn worker(&self, extra: &[(&str, &str)]) -> Proc {
        let mut env: Vec<(&str, &str)> = vec![("REDIS_URL", self.redis_url.as_str())];
        env.extend_from_slice(WORKER_ENV);
        env.extend_from_slice(extra);
        Proc::spawn(env!("CARGO_BIN_EXE_jobs-worker"), "worker", &self.dir, &env)
    }

    pub async fn enqueue(&self, spec: VideoSpec) -> String {
        let res = self
            .http
            .post(format!("{}/videos", self.base))
            .json(&spec)
            .send()
            .await
            .expect("POST /videos");
        assert_eq!(res.status(), 202, "POST /videos");
        let body: Value = res.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn status(&self, id: &str) -> Value {
        let res = self
            .http
            .get(format!("{}/videos/{id}", self.base))
            .send()
            .await
            .expect("GET /videos/{id}");
        assert_eq!(res.status(), 200, "GET /videos/{id}");
        res.json().await.unwrap()
    }

    pub async fn statuses(&self, ids: &[String]) -> HashMap<String, Value> {
        let mut all = HashMap::new();
        for id in ids {
            all.insert(id.clone(), self.status(id).await);
        }
        all
    }

    /// Polls until `pick` chooses a video from the statuses, up to [`DEADLINE`].
    pub async fn wait_for<T>(
        &self,
        ids: &[String],
        what: &str,
        mut pick: impl FnMut(&HashMap<String, Value>) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let all = self.statuses(ids).await;
            if let Some(v) = pick(&all) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {all:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A video in the middle of its transcoding (running, at least one frame done and at most
    /// `max_done`), skipping the videos of `stale` whose attempts have not passed the given
    /// count (a status left `running` by a killed worker).
    pub async fn mid_job(
        &self,
        ids: &[String],
        max_done: u64,
        stale: &HashMap<String, u64>,
    ) -> String {
        self.wait_for(ids, "a job in progress", |all| {
            all.iter().find_map(|(id, s)| {
                let done = s["frames_done"].as_u64()?;
                let attempts = s["attempts"].as_u64()?;
                let fresh = stale.get(id).is_none_or(|a| attempts > *a);
                (fresh && s["state"] == "running" && (1..=max_done).contains(&done))
                    .then(|| id.clone())
            })
        })
        .await
    }

    /// Waits until every video is done or failed.
    pub async fn all_finished(&self, ids: &[String]) -> HashMap<String, Value> {
        self.wait_for(ids, "every job to finish", |all| {
            all.values()
                .all(|s| s["state"] == "done" || s["state"] == "failed")
                .then(|| all.clone())
        })
        .await
    }
}

/// Hash rounds per frame such that a frame takes about `target` with this build's profile (the
/// binaries are built like the tests): keeps the jobs long enough to be caught mid-way in a
/// debug and in a release build alike. Only picks a size; nothing is asserted on time.
pub fn calibrated_rounds(target: Duration) -> u32 {
    // The fastest of several probes: a probe the scheduler preempted (other tests, builds on
    // the machine) reads slow, and rounds computed from it would make frames far shorter than
    // `target`. From the fastest, a frame lasts at least `target` on this machine, longer when
    // it is loaded; the tests need frames no shorter than asked.
    let probe = 200u32;
    let per_round = (0..10)
        .map(|i| {
            let start = Instant::now();
            std::hint::black_box(frame_digest("calibration", i, probe));
            start.elapsed().as_secs_f64() / f64::from(probe)
        })
        .fold(f64::INFINITY, f64::min);
    let rounds = (target.as_secs_f64() / per_round.max(1e-9)).round();
    (rounds as u32).clamp(10, 1_000_000)
}

/// The digest the worker must have computed for this video.
pub fn expected_digest(id: &str, spec: &VideoSpec) -> String {
    let frames: Vec<[u8; 32]> = (0..spec.frames)
        .map(|f| frame_digest(id, f, spec.rounds))
        .collect();
    video_digest(&frames)
}
