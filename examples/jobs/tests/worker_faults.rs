//! The worker as a real child process against a real Redis (tower-scale-testkit), killed and
//! stopped in the middle of a job. Every job must complete exactly once (each completion is an
//! `INCR` in Redis, read back as `completions`), or be retried as its policy says; none lost.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use example_jobs::VideoSpec;
use nix::sys::signal::Signal;
use support::{Env, calibrated_rounds, expected_digest};

/// A frame takes about this long, so a job of `frames` frames takes `frames ×` it.
const FRAME: Duration = Duration::from_millis(40);

fn spec(frames: u32, rounds: u32, fail_attempts: u32) -> VideoSpec {
    VideoSpec {
        frames,
        rounds,
        fail_attempts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_job_then_restart_completes_every_job_once_and_retries_by_policy() {
    let env = Env::start().await;
    let rounds = calibrated_rounds(FRAME);
    let normal = spec(20, rounds, 0);
    let flaky = spec(4, rounds, 1); // the first attempt fails, the retry succeeds
    let hopeless = spec(4, rounds, 100); // every attempt fails: 1 + JOBS_MAX_RETRIES (2)

    let mut specs = HashMap::new();
    for s in [normal, normal, normal, normal, flaky, hopeless] {
        specs.insert(env.enqueue(s).await, s);
    }
    let ids: Vec<String> = specs.keys().cloned().collect();

    // Kill workers in the middle of a job until a kill has really interrupted one. With the
    // worker dead, a status still `running` is a job that kill interrupted (only workers write
    // statuses); such a job is skipped as a target until it has been started again.
    let mut killed: HashMap<String, u64> = HashMap::new();
    let mut attempts_at_kill: HashMap<String, u64> = HashMap::new();
    for round in 0.. {
        assert!(round < 3, "no kill landed in the middle of a job");
        let mut worker = env.worker(&[]);
        env.mid_job(&ids, 5, &attempts_at_kill).await;
        worker.sigkill().await;
        let mut interrupted = false;
        for (id, s) in env.statuses(&ids).await {
            if s["state"] == "running" {
                assert_eq!(s["completions"], 0, "{s}");
                *killed.entry(id.clone()).or_default() += 1;
                attempts_at_kill.insert(id, s["attempts"].as_u64().unwrap());
                interrupted = true;
            }
        }
        if interrupted {
            break;
        }
    }

    // A fresh worker picks the interrupted job up again (the dead worker's claim is recovered)
    // and runs the rest.
    let mut worker = env.worker(&[]);
    let all = env.all_finished(&ids).await;
    worker.signal(Signal::SIGTERM);
    let status = worker.exit(Duration::from_secs(60)).await;
    assert!(status.success(), "worker exit {status}\n{}", worker.tail());

    for (id, s) in &all {
        let spec = specs[id];
        let kills = killed.get(id).copied().unwrap_or(0);
        let context = format!("{id}: {s}\n{}", worker.tail());
        if spec.fail_attempts >= 3 {
            assert_eq!(s["state"], "failed", "{context}");
            assert_eq!(s["completions"], 0, "{context}");
            assert_eq!(s["attempts"], 3 + kills, "{context}");
            assert!(
                s["error"].as_str().unwrap().contains("simulated failure"),
                "{context}"
            );
            continue;
        }
        assert_eq!(s["state"], "done", "{context}");
        assert_eq!(s["completions"], 1, "completed exactly once: {context}");
        assert_eq!(s["frames_done"], spec.frames, "{context}");
        let failures = u64::from(spec.fail_attempts);
        assert_eq!(s["attempts"], 1 + failures + kills, "{context}");
        assert_eq!(s["digest"], expected_digest(id, &spec), "{context}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_job_finishes_it_and_leaves_the_rest_queued() {
    let env = Env::start().await;
    let rounds = calibrated_rounds(FRAME);
    let normal = spec(20, rounds, 0);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(env.enqueue(normal).await);
    }

    let mut worker = env.worker(&[("JOBS_DRAIN_TIMEOUT_SECS", "120")]);
    let id = env.mid_job(&ids, 5, &HashMap::new()).await;
    worker.signal(Signal::SIGTERM);
    let status = worker.exit(Duration::from_secs(150)).await;
    assert!(status.success(), "worker exit {status}\n{}", worker.tail());

    // The job in progress was finished before the exit, and nothing else was started.
    let s = env.status(&id).await;
    assert_eq!(s["state"], "done", "{s}\n{}", worker.tail());
    assert_eq!(s["completions"], 1, "{s}");
    assert_eq!(s["attempts"], 1, "{s}");
    for other in ids.iter().filter(|o| **o != id) {
        let s = env.status(other).await;
        assert_eq!(s["state"], "queued", "{s}");
        assert_eq!(s["attempts"], 0, "{s}");
    }

    // The next worker runs the rest; none ran twice, none was lost.
    let mut worker = env.worker(&[]);
    let all = env.all_finished(&ids).await;
    worker.signal(Signal::SIGTERM);
    assert!(worker.exit(Duration::from_secs(60)).await.success());
    for (id, s) in &all {
        assert_eq!(s["state"], "done", "{id}: {s}");
        assert_eq!(s["completions"], 1, "{id}: {s}");
        assert_eq!(s["attempts"], 1, "{id}: {s}");
        assert_eq!(s["digest"], expected_digest(id, &normal), "{id}: {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_drain_deadline_returns_the_job_to_the_queue() {
    let env = Env::start().await;
    let rounds = calibrated_rounds(FRAME);
    // About 4 s of work, caught within its first 5 frames (0.2 s), a 1 s drain deadline.
    let long = spec(100, rounds, 0);
    let ids = vec![env.enqueue(long).await];

    let mut worker = env.worker(&[("JOBS_DRAIN_TIMEOUT_SECS", "1")]);
    let id = env.mid_job(&ids, 5, &HashMap::new()).await;
    worker.signal(Signal::SIGTERM);
    let status = worker.exit(Duration::from_secs(60)).await;
    // Exit code 1: the drain did not finish; the job is not done and not lost.
    assert_eq!(status.code(), Some(1), "{}", worker.tail());
    let s = env.status(&id).await;
    assert_eq!(s["completions"], 0, "{s}");
    assert_ne!(s["state"], "done", "{s}");

    // Another worker gets it back once the stopped one is seen dead, and completes it once.
    let mut worker = env.worker(&[]);
    let all = env.all_finished(&ids).await;
    worker.signal(Signal::SIGTERM);
    assert!(worker.exit(Duration::from_secs(60)).await.success());
    let s = &all[&id];
    assert_eq!(s["state"], "done", "{s}\n{}", worker.tail());
    assert_eq!(s["completions"], 1, "{s}");
    assert_eq!(s["attempts"], 2, "{s}");
    assert_eq!(s["digest"], expected_digest(&id, &long), "{s}");
}
