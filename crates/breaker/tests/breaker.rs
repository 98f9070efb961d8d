//! Every transition and threshold with paused tokio time; a property test against a reference
//! model; a concurrency test of half-open admission.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::{advance, sleep};
use tower_scale_breaker::{
    BreakerConfig, CallError, CircuitBreaker, Outcome, SlidingWindow, State,
};

fn count_breaker(size: u32, minimum: u32) -> CircuitBreaker {
    CircuitBreaker::new({
        let mut config = BreakerConfig::default();
        config.sliding_window = SlidingWindow::Count { size };
        config.minimum_calls = minimum;
        config.failure_rate_threshold = 50.0;
        config.wait_in_open = Duration::from_secs(10);
        config.permitted_calls_in_half_open = 3;
        config
    })
    .unwrap()
}

fn record(b: &CircuitBreaker, outcome: Outcome) {
    b.try_acquire().expect("admitted").record(outcome);
}

fn fail(b: &CircuitBreaker) {
    record(b, Outcome::FAILURE);
}

fn ok(b: &CircuitBreaker) {
    record(b, Outcome::Success);
}

#[tokio::test(start_paused = true)]
async fn closed_opens_at_the_failure_rate_threshold() {
    let b = count_breaker(10, 10);
    for _ in 0..6 {
        ok(&b);
    }
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.state(), State::Closed, "4/10 failures is below 50%");
    fail(&b); // the window now holds 5 successes and 5 failures: 50%
    assert_eq!(b.state(), State::Open);
    let snap = b.snapshot();
    assert_eq!((snap.calls, snap.failures), (10, 5));
}

#[tokio::test(start_paused = true)]
async fn rates_wait_for_the_minimum_number_of_calls() {
    let b = count_breaker(100, 5);
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.state(), State::Closed, "4 calls < minimum 5");
    fail(&b);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_until_the_wait_is_over_then_half_opens() {
    let b = count_breaker(2, 2);
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), State::Open);
    let rejected = b.try_acquire().unwrap_err();
    assert_eq!(rejected.state(), State::Open);
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(10)));
    advance(Duration::from_secs(4)).await;
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(6))
    );
    // The call through `call` is not made at all while open.
    let made = AtomicUsize::new(0);
    let err = b
        .call(async {
            made.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Rejected(_)));
    assert_eq!(made.load(Ordering::SeqCst), 0);
    advance(Duration::from_secs(6)).await;
    let probe = b.try_acquire().expect("a probe after the wait");
    assert_eq!(b.state(), State::HalfOpen);
    probe.record(Outcome::Success);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_the_permitted_probes_and_closes_on_their_success() {
    let b = count_breaker(2, 2);
    fail(&b);
    fail(&b);
    advance(Duration::from_secs(10)).await;
    let probes: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
    let extra = b.try_acquire().unwrap_err();
    assert_eq!(extra.state(), State::HalfOpen);
    for p in probes {
        assert_eq!(b.state(), State::HalfOpen);
        p.record(Outcome::Success);
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().calls, 0, "closing starts a fresh window");
}

#[tokio::test(start_paused = true)]
async fn any_failure_in_half_open_reopens() {
    let b = count_breaker(2, 2);
    fail(&b);
    fail(&b);
    advance(Duration::from_secs(10)).await;
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    p1.record(Outcome::Success);
    p2.record(Outcome::FAILURE);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn an_ignored_outcome_gives_its_half_open_permit_back() {
    let b = count_breaker(2, 2);
    fail(&b);
    fail(&b);
    advance(Duration::from_secs(10)).await;
    let permits: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
    assert!(b.try_acquire().is_err());
    let mut permits = permits.into_iter();
    permits.next().unwrap().record(Outcome::Ignored);
    // A dropped permit (a cancelled call) counts as ignored too.
    drop(permits.next().unwrap());
    let again: Vec<_> = (0..2).map(|_| b.try_acquire().unwrap()).collect();
    assert!(b.try_acquire().is_err());
    for p in again.into_iter().chain(permits) {
        p.record(Outcome::Success);
    }
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_late_result_never_moves_a_newer_state() {
    let b = count_breaker(2, 2);
    // A slow call admitted while closed...
    let late = b.try_acquire().unwrap();
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), State::Open);
    advance(Duration::from_secs(10)).await;
    let probe = b.try_acquire().unwrap();
    assert_eq!(b.state(), State::HalfOpen);
    // ...answers during half-open: its failure is not a half-open failure.
    late.record(Outcome::FAILURE);
    assert_eq!(b.state(), State::HalfOpen);
    probe.record(Outcome::Success);
    assert_eq!(b.state(), State::HalfOpen);

    // A half-open probe that answers after the breaker was reset does not touch the new
    // closed window.
    let stale_probe = b.try_acquire().unwrap();
    b.reset();
    stale_probe.record(Outcome::FAILURE);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_the_breaker() {
    let b = CircuitBreaker::new({
        let mut config = BreakerConfig::default();
        config.sliding_window = SlidingWindow::Count { size: 4 };
        config.minimum_calls = 4;
        config.slow_call_duration = Some(Duration::from_secs(2));
        config.slow_call_rate_threshold = 50.0;
        config
    })
    .unwrap();
    for i in 0..4u64 {
        // Two fast, then two slow successes.
        let d = if i < 2 { 1 } else { 3 };
        b.call(async move {
            sleep(Duration::from_secs(d)).await;
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
    }
    // 2 of 4 calls took 3 s > 2 s: a slow-call rate of 50% opens the breaker, although every
    // call succeeded.
    assert_eq!(b.state(), State::Open);
    let snap = b.snapshot();
    assert_eq!((snap.calls, snap.failures, snap.slow_calls), (4, 0, 2));
}

#[tokio::test(start_paused = true)]
async fn open_wait_grows_on_repeated_openings_up_to_the_maximum() {
    let b = CircuitBreaker::new({
        let mut config = BreakerConfig::default();
        config.sliding_window = SlidingWindow::Count { size: 1 };
        config.minimum_calls = 1;
        config.wait_in_open = Duration::from_secs(1);
        config.wait_multiplier = 2.0;
        config.max_wait_in_open = Duration::from_secs(5);
        config.permitted_calls_in_half_open = 1;
        config
    })
    .unwrap();
    fail(&b);
    let mut waits = Vec::new();
    for _ in 0..4 {
        let wait = b.try_acquire().unwrap_err().retry_after().unwrap();
        waits.push(wait.as_secs());
        advance(wait).await;
        fail(&b); // the probe fails: reopen
    }
    assert_eq!(waits, [1, 2, 4, 5]);
    // Closing resets the growth.
    advance(Duration::from_secs(5)).await;
    ok(&b);
    assert_eq!(b.state(), State::Closed);
    fail(&b);
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_of_the_failure_sets_the_open_period() {
    let b = count_breaker(1, 1);
    record(
        &b,
        Outcome::Failure {
            retry_after: Some(Duration::from_secs(42)),
        },
    );
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(42))
    );
    // Capped by max_wait_in_open (5 min by default).
    b.reset();
    record(
        &b,
        Outcome::Failure {
            retry_after: Some(Duration::from_secs(100_000)),
        },
    );
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(300))
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_cannot_stay_stuck() {
    let b = CircuitBreaker::new({
        let mut config = BreakerConfig::default();
        config.sliding_window = SlidingWindow::Count { size: 1 };
        config.minimum_calls = 1;
        config.wait_in_open = Duration::from_secs(1);
        config.permitted_calls_in_half_open = 1;
        config.max_wait_in_half_open = Duration::from_secs(30);
        config
    })
    .unwrap();
    fail(&b);
    advance(Duration::from_secs(1)).await;
    let hung_probe = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    advance(Duration::from_secs(31)).await;
    // The probe never answered: the breaker opens again instead of waiting forever.
    assert_eq!(b.try_acquire().unwrap_err().state(), State::Open);
    advance(Duration::from_secs(1)).await;
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    drop(hung_probe);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn operator_switches() {
    let b = count_breaker(10, 10);
    b.force_open();
    assert_eq!(b.state(), State::ForcedOpen);
    advance(Duration::from_secs(3600)).await;
    assert_eq!(b.try_acquire().unwrap_err().state(), State::ForcedOpen);
    // Failures cannot move a forced-open breaker.
    b.disable();
    for _ in 0..20 {
        fail(&b);
    }
    assert_eq!(b.state(), State::Disabled);
    assert_eq!(b.snapshot().calls, 0, "disabled records nothing");
    b.reset();
    assert_eq!(b.state(), State::Closed);
    b.trip(Some(Duration::from_secs(3)));
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(3))
    );
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_calls() {
    let b = CircuitBreaker::new({
        let mut config = BreakerConfig::default();
        config.sliding_window = SlidingWindow::Time { seconds: 10 };
        config.minimum_calls = 4;
        config
    })
    .unwrap();
    fail(&b);
    fail(&b);
    ok(&b);
    advance(Duration::from_secs(11)).await;
    // The two failures fell out of the window: 1 failure in 4 calls.
    ok(&b);
    ok(&b);
    ok(&b);
    fail(&b);
    assert_eq!(b.snapshot().calls, 4);
    assert_eq!(b.state(), State::Closed);
    fail(&b); // 2 of 5
    fail(&b); // 3 of 6 = 50%
    assert_eq!(b.state(), State::Open);
}

#[test]
fn bad_config_is_an_error() {
    let err = CircuitBreaker::new({
        let mut config = BreakerConfig::default();
        config.failure_rate_threshold = 150.0;
        config
    })
    .unwrap_err();
    assert!(err.to_string().contains("failure_rate_threshold"), "{err}");
}

/// Many tasks race for half-open permits on a multi-threaded runtime: exactly the permitted
/// number get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_permitted_probes_pass_under_contention() {
    for _ in 0..20 {
        let b = CircuitBreaker::new({
            let mut config = BreakerConfig::default();
            config.permitted_calls_in_half_open = 5;
            config
        })
        .unwrap();
        b.trip(Some(Duration::from_nanos(1)));
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let b = b.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    b.try_acquire().ok()
                })
            })
            .collect();
        let mut permits = Vec::new();
        for t in tasks {
            permits.extend(t.await.unwrap());
        }
        assert_eq!(permits.len(), 5);
        assert_eq!(b.state(), State::HalfOpen);
        for p in permits {
            p.record(Outcome::Success);
        }
        assert_eq!(b.state(), State::Closed);
    }
}

/// Many tasks call through one breaker while it trips: it opens once, and after it opened no
/// call is admitted until the wait is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tripping_under_concurrent_calls() {
    let b = CircuitBreaker::new({
        let mut config = BreakerConfig::default();
        config.sliding_window = SlidingWindow::Count { size: 50 };
        config.minimum_calls = 50;
        config.wait_in_open = Duration::from_secs(3600);
        config.max_wait_in_open = Duration::from_secs(3600);
        config
    })
    .unwrap();
    let admitted = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let b = b.clone();
            let admitted = Arc::clone(&admitted);
            tokio::spawn(async move {
                for _ in 0..500 {
                    if let Ok(p) = b.try_acquire() {
                        admitted.fetch_add(1, Ordering::SeqCst);
                        p.record(Outcome::FAILURE);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b.state(), State::Open);
    let n = admitted.load(Ordering::SeqCst);
    // At least the 50 calls that filled the window; at most those plus the calls already
    // admitted by the other tasks when the window filled (one in flight per task).
    assert!((50..=57).contains(&n), "{n} calls admitted");
}

/// A sequential reference model of the breaker (count window, no slow calls).
#[derive(Debug)]
struct Model {
    size: usize,
    minimum: usize,
    permitted: u32,
    wait: u64,
    state: State,
    window: std::collections::VecDeque<bool>,
    open_until: u64,
    half_open_left: u32,
    half_open_ok: u32,
}

impl Model {
    fn admit(&mut self, now: u64) -> bool {
        match self.state {
            State::Closed => true,
            State::Open if now >= self.open_until => {
                self.state = State::HalfOpen;
                self.half_open_left = self.permitted - 1;
                self.half_open_ok = 0;
                true
            }
            State::HalfOpen if self.half_open_left > 0 => {
                self.half_open_left -= 1;
                true
            }
            _ => false,
        }
    }

    fn outcome(&mut self, now: u64, outcome: Outcome) {
        match (self.state, outcome) {
            (_, Outcome::Ignored) if self.state == State::HalfOpen => self.half_open_left += 1,
            (_, Outcome::Ignored) => {}
            (State::Closed, o) => {
                self.window.push_back(matches!(o, Outcome::Failure { .. }));
                if self.window.len() > self.size {
                    self.window.pop_front();
                }
                let failures = self.window.iter().filter(|f| **f).count();
                if self.window.len() >= self.minimum.min(self.size)
                    && failures * 100 >= self.window.len() * 50
                {
                    self.open(now);
                }
            }
            (State::HalfOpen, Outcome::Failure { .. }) => self.open(now),
            (State::HalfOpen, Outcome::Success) => {
                self.half_open_ok += 1;
                if self.half_open_ok == self.permitted {
                    self.state = State::Closed;
                    self.window.clear();
                }
            }
            _ => {}
        }
    }

    fn open(&mut self, now: u64) {
        self.state = State::Open;
        self.open_until = now + self.wait;
    }
}

#[derive(Clone, Debug)]
enum Op {
    Call(u8), // 0 success, 1 failure, 2 ignored
    Advance(u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0u8..3).prop_map(Op::Call),
            1 => (0u64..15).prop_map(Op::Advance),
        ],
        1..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn matches_the_reference_model(
        size in 1usize..12,
        minimum in 1usize..12,
        permitted in 1u32..4,
        ops in ops(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let b = CircuitBreaker::new({ let mut config = BreakerConfig::default(); config.sliding_window = SlidingWindow::Count { size: size as u32 }; config.minimum_calls = minimum as u32; config.failure_rate_threshold = 50.0; config.wait_in_open = Duration::from_secs(10); config.permitted_calls_in_half_open = permitted; config.max_wait_in_half_open = Duration::from_secs(1_000_000); config })
            .unwrap();
            let mut model = Model {
                size, minimum, permitted, wait: 10, state: State::Closed,
                window: Default::default(), open_until: 0, half_open_left: 0, half_open_ok: 0,
            };
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Advance(s) => {
                        now += s;
                        advance(Duration::from_secs(s)).await;
                    }
                    Op::Call(kind) => {
                        let outcome = match kind {
                            0 => Outcome::Success,
                            1 => Outcome::FAILURE,
                            _ => Outcome::Ignored,
                        };
                        let admitted = b.try_acquire();
                        prop_assert_eq!(admitted.is_ok(), model.admit(now), "admission at {}", now);
                        if let Ok(permit) = admitted {
                            permit.record(outcome);
                            model.outcome(now, outcome);
                        }
                    }
                }
                prop_assert_eq!(b.state(), model.state);
            }
            Ok(())
        })?;
    }
}
