//! [`CircuitBreaker`], the state machine: admission, recording, transitions, operator
//! switches, and the [`Permit`] of one call.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower_scale_core::ConfigError;

use crate::config::{BreakerConfig, SlidingWindow};
use crate::group::{Group, Metrics};
use crate::outcome::{CallError, Outcome, Rejected, Snapshot};
use crate::state::{
    CLOSED, DISABLED, FORCED_OPEN, HALF_OPEN, OPEN, State, init_tagged, pack, unpack, update_tagged,
};
use crate::window::Window;

/// A circuit breaker: closed, open, half-open, plus forced-open and disabled switches.
///
/// Cloning is cheap and clones share one state. Admission and recording in the closed state
/// are lock-free (atomics) for a count window; a time window takes a short lock to record.
/// Time is tokio time, so tests can pause and advance it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use tower_scale_breaker::{BreakerConfig, CallError, CircuitBreaker, SlidingWindow, State};
///
/// let mut config = BreakerConfig::default();
/// config.sliding_window = SlidingWindow::Count { size: 4 };
/// config.minimum_calls = 4;
/// let breaker = CircuitBreaker::new(config).unwrap();
/// for _ in 0..4 {
///     let _ = breaker.call(async { Err::<(), _>("down") }).await;
/// }
/// assert_eq!(breaker.state(), State::Open);
/// // Open: the call is not even made.
/// let err = breaker.call(async { Ok::<_, &str>(()) }).await.unwrap_err();
/// assert!(matches!(err, CallError::Rejected(_)));
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    config: BreakerConfig,
    name: Arc<str>,
    state: AtomicU64,
    base: Instant,
    open_until: AtomicU64,
    half_open_since: AtomicU64,
    /// Probes left in the half-open state, tagged with its generation (see `state::tagged`).
    half_open_permits: AtomicU64,
    /// Successful probes of the half-open state, tagged with its generation.
    half_open_successes: AtomicU64,
    consecutive_opens: AtomicU32,
    window: Window,
    on_open: std::sync::OnceLock<OpenListener>,
    metrics: Metrics,
}

/// Called with the open period each time the breaker opens by itself.
pub(crate) type OpenListener = Box<dyn Fn(Duration) + Send + Sync>;

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A breaker with this config, named `default` in metrics.
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::named("default", config)
    }

    /// A breaker whose metrics carry `breaker = name`.
    pub fn named(name: impl Into<Arc<str>>, config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::build(name.into(), config, Metrics::Own)
    }

    /// A breaker of a [`KeyedBreakers`](crate::KeyedBreakers) group: counted in its group's
    /// metrics, with no series of its own.
    pub(crate) fn in_group(
        key: &str,
        config: BreakerConfig,
        group: Arc<Group>,
    ) -> Result<Self, ConfigError> {
        Self::build(key.into(), config, Metrics::in_group(group))
    }

    /// Stops counting this breaker in its group's metrics (it was evicted).
    pub(crate) fn retire(&self) {
        if let Metrics::Group { group, counted } = &self.inner.metrics {
            group.moved(counted, None);
        }
    }

    fn build(name: Arc<str>, config: BreakerConfig, metrics: Metrics) -> Result<Self, ConfigError> {
        config.validate()?;
        let window = Window::new(config.sliding_window);
        let breaker = Self {
            inner: Arc::new(Inner {
                config,
                name,
                state: AtomicU64::new(pack(0, CLOSED)),
                base: Instant::now(),
                open_until: AtomicU64::new(0),
                half_open_since: AtomicU64::new(0),
                half_open_permits: AtomicU64::new(0),
                half_open_successes: AtomicU64::new(0),
                consecutive_opens: AtomicU32::new(0),
                window,
                on_open: std::sync::OnceLock::new(),
                metrics,
            }),
        };
        breaker.inner.report_state(State::Closed);
        Ok(breaker)
    }

    /// The config.
    pub fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }

    /// The current state. An open breaker whose wait is over reports `Open` until the next
    /// call moves it to half-open.
    pub fn state(&self) -> State {
        State::from_bits(unpack(self.inner.state.load(Ordering::Acquire)).1)
    }

    /// The window's counts.
    pub fn snapshot(&self) -> Snapshot {
        let (calls, failures, slow_calls) = self.inner.window.counts(self.inner.now());
        Snapshot {
            state: self.state(),
            calls,
            failures,
            slow_calls,
        }
    }

    /// Asks to make a call. The [`Permit`] records the call's outcome; dropping it unrecorded
    /// counts as [`Outcome::Ignored`].
    pub fn try_acquire(&self) -> Result<Permit, Rejected> {
        self.inner.acquire().map(|(generation, kind)| Permit {
            breaker: Some(Arc::clone(&self.inner)),
            generation,
            kind,
            start: self.inner.start(),
        })
    }

    /// Runs `fut` through the breaker: `Ok` is a success, `Err` a failure.
    pub async fn call<F, T, E>(&self, fut: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_classified(fut, |r: &Result<T, E>| match r {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::FAILURE,
        })
        .await
    }

    /// Runs `fut` through the breaker, with `classify` deciding what its result means.
    pub async fn call_classified<F, T, E, C>(&self, fut: F, classify: C) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
        C: FnOnce(&Result<T, E>) -> Outcome,
    {
        // A borrowed permit: no reference-count traffic on the shared state per call.
        let (generation, kind) = self.inner.acquire().map_err(CallError::Rejected)?;
        let mut guard = CallGuard {
            inner: &self.inner,
            generation,
            kind,
            done: false,
        };
        let start = self.inner.start();
        let result = fut.await;
        guard.done = true;
        self.inner
            .on_outcome(generation, kind, classify(&result), elapsed(start));
        result.map_err(CallError::Inner)
    }

    /// Operator switch: open now, until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.inner.force(FORCED_OPEN);
    }

    /// Operator switch: let everything through and record nothing, until
    /// [`reset`](Self::reset).
    pub fn disable(&self) {
        self.inner.force(DISABLED);
    }

    /// Back to closed with an empty window, from any state.
    pub fn reset(&self) {
        self.inner.force(CLOSED);
    }

    /// Registers the one listener told of every opening (with its open period); used by
    /// [`SharedBreaker`](crate::SharedBreaker). Returns `false` if one was already set.
    pub(crate) fn set_on_open(&self, listener: OpenListener) -> bool {
        self.inner.on_open.set(listener).is_ok()
    }

    /// The breaker's name (the `breaker` label of its metrics).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Opens now for `wait` (or the configured wait), then probes as usual. For an external
    /// signal that the downstream is down (a health check, a peer instance's report).
    pub fn trip(&self, wait: Option<Duration>) {
        let inner = &self.inner;
        let word = inner.state.load(Ordering::Acquire);
        inner.transition_to_open(word, wait);
    }
}

/// Records a cancelled [`CircuitBreaker::call`] (its future dropped mid-call) as ignored.
struct CallGuard<'a> {
    inner: &'a Inner,
    generation: u64,
    kind: u64,
    done: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.inner
                .on_outcome(self.generation, self.kind, Outcome::Ignored, Duration::ZERO);
        }
    }
}

/// Permission to make one call; record its outcome with [`record`](Self::record).
#[must_use = "a permit records the call's outcome; dropping it counts as ignored"]
pub struct Permit {
    breaker: Option<Arc<Inner>>,
    generation: u64,
    kind: u64,
    start: Option<Instant>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("generation", &self.generation)
            .field("state", &State::from_bits(self.kind))
            .finish()
    }
}

impl Permit {
    /// Records the call's outcome; its duration (since the permit was given) decides whether
    /// it was slow.
    pub fn record(mut self, outcome: Outcome) {
        if let Some(inner) = self.breaker.take() {
            inner.on_outcome(self.generation, self.kind, outcome, elapsed(self.start));
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(inner) = self.breaker.take() {
            inner.on_outcome(self.generation, self.kind, Outcome::Ignored, Duration::ZERO);
        }
    }
}

/// The time since `start`, or zero when slow calls are not tracked.
fn elapsed(start: Option<Instant>) -> Duration {
    start.map_or(Duration::ZERO, |s| s.elapsed())
}

impl Inner {
    /// The start of a call, read only when slow calls are tracked.
    fn start(&self) -> Option<Instant> {
        self.config.slow_call_duration.map(|_| Instant::now())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A call's permission (its generation and the state that gave it), or the refusal: as a
    /// `debug` event, `circuit breaker decision`, with the breaker's name, its `state` and the
    /// `outcome` (`permitted` or `rejected`). Nothing is formatted while the level is off.
    #[inline]
    fn acquire(&self) -> Result<(u64, u64), Rejected> {
        let decided = self.decide();
        // The fields are evaluated only when the event is enabled.
        tracing::debug!(
            breaker = %self.name,
            state = match &decided {
                Ok((_, kind)) => State::from_bits(*kind),
                Err(rejected) => rejected.state(),
            }
            .as_str(),
            outcome = if decided.is_ok() { "permitted" } else { "rejected" },
            "circuit breaker decision"
        );
        decided
    }

    fn decide(&self) -> Result<(u64, u64), Rejected> {
        loop {
            let word = self.state.load(Ordering::Acquire);
            let (generation, state) = unpack(word);
            match state {
                CLOSED | DISABLED => return Ok((generation, state)),
                FORCED_OPEN => return Err(Rejected::new(State::ForcedOpen, None)),
                OPEN => {
                    let now = self.now();
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        return Err(Rejected::new(
                            State::Open,
                            Some(Duration::from_nanos(until - now)),
                        ));
                    }
                    // Several callers may get here for the same open state. The counters of
                    // the half-open generation are set once (by whichever caller comes first,
                    // before its state change is visible), never reset after probes began.
                    let next = generation + 1;
                    init_tagged(
                        &self.half_open_permits,
                        next,
                        self.config.permitted_calls_in_half_open,
                    );
                    init_tagged(&self.half_open_successes, next, 0);
                    self.half_open_since.store(now, Ordering::Release);
                    self.cas(word, pack(next, HALF_OPEN), State::HalfOpen);
                }
                _ => {
                    let since = self.half_open_since.load(Ordering::Acquire);
                    let max = self.config.max_wait_in_half_open.as_nanos();
                    if u128::from(self.now().saturating_sub(since)) > max {
                        self.transition_to_open(word, None);
                        continue;
                    }
                    let took =
                        update_tagged(&self.half_open_permits, generation, |n| n.checked_sub(1));
                    if took.is_none() {
                        return Err(Rejected::new(State::HalfOpen, None));
                    }
                    // The state may have moved while taking the permit; the outcome then
                    // carries a stale generation and is ignored.
                    return Ok((generation, HALF_OPEN));
                }
            }
        }
    }

    fn on_outcome(&self, generation: u64, kind: u64, outcome: Outcome, elapsed: Duration) {
        let word = self.state.load(Ordering::Acquire);
        if unpack(word).0 != generation {
            return; // a late result never moves a newer state
        }
        let slow = self
            .config
            .slow_call_duration
            .is_some_and(|limit| elapsed >= limit);
        match (kind, outcome) {
            (DISABLED, _) | (CLOSED, Outcome::Ignored) => {}
            (CLOSED, outcome) => {
                let failed = matches!(outcome, Outcome::Failure { .. });
                // Rates only change when the window's counts do: a success replacing a
                // success (the steady state) costs no evaluation.
                let Some((calls, failures, slow_calls)) =
                    self.window.record(|| self.now(), failed, slow)
                else {
                    return;
                };
                if self.exceeded(calls, failures, slow_calls) {
                    let retry_after = match outcome {
                        Outcome::Failure { retry_after } => retry_after,
                        _ => None,
                    };
                    self.transition_to_open(word, retry_after);
                }
            }
            (HALF_OPEN, Outcome::Ignored) => {
                update_tagged(&self.half_open_permits, generation, |n| n.checked_add(1));
            }
            (HALF_OPEN, Outcome::Failure { retry_after }) => {
                self.transition_to_open(word, retry_after);
            }
            (HALF_OPEN, Outcome::Success) => {
                let done =
                    update_tagged(&self.half_open_successes, generation, |n| n.checked_add(1))
                        .unwrap_or(0);
                if done >= self.config.permitted_calls_in_half_open
                    && self.cas(word, pack(generation + 1, CLOSED), State::Closed)
                {
                    self.consecutive_opens.store(0, Ordering::Release);
                    self.window.reset();
                }
            }
            _ => {}
        }
    }

    fn exceeded(&self, calls: u32, failures: u32, slow: u32) -> bool {
        let minimum = match self.config.sliding_window {
            SlidingWindow::Count { size } => self.config.minimum_calls.min(size),
            SlidingWindow::Time { .. } => self.config.minimum_calls,
        };
        if calls < minimum || calls == 0 {
            return false;
        }
        let rate = |n: u32| n as f32 * 100.0 / calls as f32;
        rate(failures) >= self.config.failure_rate_threshold
            || rate(slow) >= self.config.slow_call_rate_threshold
    }

    fn transition_to_open(&self, word: u64, retry_after: Option<Duration>) {
        let (generation, state) = unpack(word);
        if state == FORCED_OPEN || state == DISABLED {
            return;
        }
        let opens = self.consecutive_opens.load(Ordering::Acquire);
        let wait = match retry_after {
            Some(d) => d,
            None => {
                let factor = self.config.wait_multiplier.powi(opens.min(64) as i32);
                self.config.wait_in_open.mul_f64(factor.min(1e9))
            }
        }
        .min(self.config.max_wait_in_open);
        let until = self
            .now()
            .saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
        self.open_until.store(until, Ordering::Release);
        if self.cas(word, pack(generation + 1, OPEN), State::Open) {
            self.consecutive_opens.fetch_add(1, Ordering::AcqRel);
            if let Some(listener) = self.on_open.get() {
                listener(wait);
            }
        }
    }

    fn force(&self, target: u64) {
        let word = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(pack(unpack(w).0 + 1, target))
            });
        if target == CLOSED {
            self.window.reset();
            self.consecutive_opens.store(0, Ordering::Release);
        }
        if let Ok(old) = word {
            self.report_transition(State::from_bits(unpack(old).1), State::from_bits(target));
        }
    }

    fn cas(&self, from: u64, to: u64, to_state: State) -> bool {
        let ok = self
            .state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if ok {
            self.report_transition(State::from_bits(unpack(from).1), to_state);
        }
        ok
    }

    fn report_transition(&self, from: State, to: State) {
        tracing::info!(breaker = %self.name, from = from.as_str(), to = to.as_str(), "circuit breaker transition");
        let label = match &self.metrics {
            Metrics::Own => &self.name,
            Metrics::Group { group, .. } => group.name(),
        };
        metrics::counter!(
            crate::names::BREAKER_TRANSITIONS_TOTAL.name,
            "breaker" => label.to_string(),
            "from" => from.as_str(),
            "to" => to.as_str(),
        )
        .increment(1);
        self.report_state(to);
    }

    fn report_state(&self, state: State) {
        match &self.metrics {
            Metrics::Own => metrics::gauge!(crate::names::BREAKER_STATE.name, "breaker" => self.name.to_string())
                .set(f64::from(state.code())),
            Metrics::Group { group, counted } => group.moved(counted, Some(state)),
        }
    }
}
