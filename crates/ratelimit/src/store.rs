use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::ops::Add;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;

use crate::{Key, Quota};

/// A boxed future, as returned by [`Store`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The answer to one rate-limit check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// When rejected, how long until the same request would be admitted.
    pub retry_after: Duration,
    /// Requests still admissible right now under the most restrictive quota.
    pub remaining: u32,
    /// Time until the most restrictive quota is fully replenished.
    pub reset: Duration,
    /// The cost can never be admitted (it exceeds a quota's burst): retrying will not help.
    pub never: bool,
}

impl Decision {
    /// Admitted with nothing spent yet: the start of a decision over several quotas, each of
    /// which lowers `remaining` and raises `reset`; also the answer for a cost of zero.
    pub(crate) fn unlimited() -> Self {
        Self {
            allowed: true,
            retry_after: Duration::ZERO,
            remaining: u32::MAX,
            reset: Duration::ZERO,
            never: false,
        }
    }

    /// A rejection with this wait.
    pub(crate) fn rejected(retry_after: Duration) -> Self {
        Self {
            allowed: false,
            retry_after,
            remaining: 0,
            reset: retry_after,
            never: false,
        }
    }

    fn never() -> Self {
        Self {
            allowed: false,
            retry_after: Duration::ZERO,
            remaining: 0,
            reset: Duration::ZERO,
            never: true,
        }
    }
}

/// A store failed (Redis down, slow, or answering garbage).
#[derive(Debug, thiserror::Error)]
#[error("rate-limit store: {0}")]
pub struct StoreError(pub String);

/// Where rate-limit state lives. [`MemoryStore`] for one instance, `RedisStore` (feature
/// `redis`) for a limit shared by every instance.
pub trait Store: Send + Sync + 'static {
    /// Checks `cost` units of `key` against every quota; all must admit. The key already
    /// names the policy.
    fn check<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>>;

    /// Decides as [`check`](Self::check) would, without counting anything: the first half of
    /// a policy that counts a request only after its response
    /// ([`count_if`](crate::RateLimitLayer::count_if)); [`consume`](Self::consume) is the second.
    fn peek<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>>;

    /// Counts `cost` units of `key` after a response that counts, for a policy that decides
    /// with [`peek`](Self::peek). Like `check`, it counts only what fits: requests admitted
    /// together by `peek` may overshoot the quota by those in flight, never more. By default
    /// the same as `check`.
    fn consume<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.check(key, quotas, cost)
    }

    /// What the layer asks first for a request of the policy named `policy`: a decision made
    /// in this process without waiting when the store can make one (memory: always;
    /// [`HybridStore`](crate::HybridStore): while a lease lasts), else `None` and the layer
    /// calls [`check_key`](Self::check_key). By default `None` (a store that does I/O).
    fn check_local(
        &self,
        policy: &str,
        key: &Key,
        quotas: &[Quota],
        cost: u32,
    ) -> Option<Decision> {
        let _ = (policy, key, quotas, cost);
        None
    }

    /// [`check_local`](Self::check_local) for a caller that needs only the verdict: whether
    /// the request is admitted and, when not, `retry_after` and `never`. The layer asks this
    /// instead when its `RateLimit` header fields are off; a store may then leave `remaining`
    /// and `reset` unset (as [`MemoryStore`] does, to spare their arithmetic). By default
    /// `check_local`.
    fn admit_local(
        &self,
        policy: &str,
        key: &Key,
        quotas: &[Quota],
        cost: u32,
    ) -> Option<Decision> {
        self.check_local(policy, key, quotas, cost)
    }

    /// [`check`](Self::check) for `key` of the policy named `policy`, as the layer calls it:
    /// stores may build their own key from the parts instead of the `"<policy>:<key>"` text
    /// `check` is given (which this default builds).
    fn check_key<'a>(
        &'a self,
        policy: &'a str,
        key: &'a Key,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(async move {
            let key = policy_key(policy, key);
            self.check(&key, quotas, cost).await
        })
    }
}

/// `"<policy>:<key>"`, the key a policy's requests are counted under in a shared store.
pub(crate) fn policy_key(policy: &str, key: &Key) -> String {
    let mut out = String::with_capacity(policy.len() + 1 + 40);
    out.push_str(policy);
    out.push(':');
    key.write_to(&mut out);
    out
}

/// The time a [`MemoryStore`] counts in, as a governor clock.
///
/// Two sources:
/// - [`system`](Self::system): the CPU's time-stamp counter read through quanta (the clock
///   governor and tower_governor use by default; quanta falls back to the OS's monotonic clock
///   where the counter is not reliable). The cheapest to read: a decision reads it once.
/// - [`tokio`](Self::tokio): tokio's clock, which follows `tokio::time::pause` and `advance`,
///   so tests of time-based behaviour run without sleeping.
///
/// The [`default`](Self::default) is `system`, or `tokio` when this crate's `test-util`
/// feature is on: enable it in your `[dev-dependencies]` to test limits with paused time, as
/// tokio's own `test-util` does for `tokio::time`.
///
/// ```
/// use tower_scale_ratelimit::{LimiterClock, MemoryStore};
///
/// // Follows tokio's paused time, whatever the features.
/// let store = MemoryStore::new(100_000).with_clock(LimiterClock::tokio());
/// # let _ = store;
/// ```
#[derive(Clone, Debug)]
pub struct LimiterClock {
    source: ClockSource,
}

#[derive(Clone, Debug)]
enum ClockSource {
    System {
        clock: governor::clock::QuantaClock,
        base: governor::clock::QuantaInstant,
    },
    Tokio {
        base: tokio::time::Instant,
    },
}

impl LimiterClock {
    /// The CPU's time-stamp counter (quanta), starting now.
    pub fn system() -> Self {
        let clock = governor::clock::QuantaClock::default();
        let base = clock.now();
        Self {
            source: ClockSource::System { clock, base },
        }
    }

    /// tokio's clock (pausable in tests), starting now.
    pub fn tokio() -> Self {
        Self {
            source: ClockSource::Tokio {
                base: tokio::time::Instant::now(),
            },
        }
    }

    /// Whether this clock follows tokio's (pausable) time.
    pub fn is_tokio(&self) -> bool {
        matches!(self.source, ClockSource::Tokio { .. })
    }
}

impl Default for LimiterClock {
    /// [`system`](Self::system), or [`tokio`](Self::tokio) with feature `test-util`.
    fn default() -> Self {
        if cfg!(feature = "test-util") {
            Self::tokio()
        } else {
            Self::system()
        }
    }
}

/// An instant of [`LimiterClock`]: nanoseconds since the clock was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LimiterInstant(u64);

impl Add<Nanos> for LimiterInstant {
    type Output = Self;

    fn add(self, rhs: Nanos) -> Self {
        Self(self.0.saturating_add(rhs.as_u64()))
    }
}

impl Reference for LimiterInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_sub(earlier.0))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.saturating_sub(duration.as_u64()))
    }
}

impl Clock for LimiterClock {
    type Instant = LimiterInstant;

    #[inline]
    fn now(&self) -> LimiterInstant {
        LimiterInstant(match &self.source {
            ClockSource::System { clock, base } => clock.now().duration_since(*base).as_u64(),
            ClockSource::Tokio { base } => {
                u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
            }
        })
    }
}

type Limiter = governor::RateLimiter<
    Key,
    governor::state::keyed::DashMapStateStore<Key, foldhash::quality::RandomState>,
    LimiterClock,
    StateInformationMiddleware,
>;

/// In-memory store on governor's GCRA (its keyed limiter over a `DashMap`, one per quota),
/// with memory bounded: when more than `max_keys` keys are held, the keys whose quota is fully
/// replenished are dropped (forgetting them changes no decision). A client spraying keys (IP
/// addresses) therefore holds at most the keys it used within one quota period, not every key
/// it ever used (governor#171), and never escapes the limit by eviction.
///
/// Several quotas are checked in order; if a later one rejects, the earlier ones have already
/// counted the request (stricter than exact, never looser). Give each policy (each
/// `RateLimitLayer`) its own `MemoryStore`: it takes its quotas from its first check.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<MemoryInner>,
}

/// One quota's limiter, with the figures the decision needs precomputed (a `Duration`
/// division per request is not free).
struct QuotaLimiter {
    limiter: Limiter,
    /// The emission interval, in nanoseconds.
    interval_ns: u64,
    burst: u32,
}

struct MemoryInner {
    limiters: std::sync::OnceLock<Box<[QuotaLimiter]>>,
    /// The state of policies that count after the response (`peek` then `consume`).
    counted: std::sync::Mutex<HashMap<String, Box<[u64]>>>,
    max_keys: usize,
    clock: LimiterClock,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.len())
            .field("max_keys", &self.inner.max_keys)
            .finish()
    }
}

impl MemoryStore {
    /// A store holding at most about `max_keys` keys (100,000 is a sensible default).
    pub fn new(max_keys: u64) -> Self {
        Self::build(
            usize::try_from(max_keys.max(1)).unwrap_or(usize::MAX),
            LimiterClock::default(),
        )
    }

    /// The clock decisions are made in (default: [`LimiterClock::default`]). Meant for
    /// construction: the store returned is a fresh one on the new clock, holding as many keys;
    /// the counts of a store that has decided already are not carried over (they were
    /// measured in the other clock's time), and its clones keep them.
    #[must_use]
    pub fn with_clock(self, clock: LimiterClock) -> Self {
        Self::build(self.inner.max_keys, clock)
    }

    fn build(max_keys: usize, clock: LimiterClock) -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                limiters: std::sync::OnceLock::new(),
                counted: std::sync::Mutex::new(HashMap::new()),
                max_keys,
                clock,
            }),
        }
    }

    /// Keys held now (of the first quota).
    pub fn len(&self) -> u64 {
        self.inner
            .limiters
            .get()
            .and_then(|l| l.first())
            .map_or(0, |l| l.limiter.len() as u64)
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks `cost` units of `key` against every quota. With `DETAIL` false, only the
    /// verdict is filled in (`remaining` and `reset` are left as they start).
    pub(crate) fn decide<const DETAIL: bool>(
        &self,
        key: &Key,
        quotas: &[Quota],
        cost: u32,
    ) -> Decision {
        let Some(cost) = NonZeroU32::new(cost) else {
            return Decision::unlimited();
        };
        let inner = &self.inner;
        let limiters = inner.limiters.get_or_init(|| {
            quotas
                .iter()
                .map(|q| QuotaLimiter {
                    limiter: governor::RateLimiter::dashmap_with_clock_and_hasher(
                        governor_quota(q),
                        inner.clock.clone(),
                        foldhash::quality::RandomState::default(),
                    )
                    .with_middleware::<StateInformationMiddleware>(),
                    interval_ns: u64::try_from(q.emission_interval().as_nanos())
                        .unwrap_or(u64::MAX),
                    burst: q.max_burst(),
                })
                .collect()
        });
        // Every 1,024 checks made on a thread, drop the keys whose quota is fully replenished
        // once more than `max_keys` are held: forgetting them changes no decision. The count
        // is the thread's own, so that deciding writes to no memory other threads share.
        if housekeeping_due()
            && limiters
                .first()
                .is_some_and(|l| l.limiter.len() > inner.max_keys)
        {
            for l in limiters.iter() {
                l.limiter.retain_recent();
                l.limiter.shrink_to_fit();
            }
        }
        let mut decision = Decision::unlimited();
        for l in limiters.iter() {
            // A cost of one (most requests) needs none of `check_key_n`'s capacity check.
            let checked = if cost == NonZeroU32::MIN {
                Ok(l.limiter.check_key(key))
            } else {
                l.limiter.check_key_n(key, cost)
            };
            match checked {
                Err(_) => return Decision::never(),
                Ok(Err(not_until)) => {
                    decision.allowed = false;
                    decision.remaining = 0;
                    decision.retry_after = not_until.wait_time_from(inner.clock.now());
                    decision.reset = decision.reset.max(Duration::from_nanos(
                        l.interval_ns.saturating_mul(u64::from(l.burst)),
                    ));
                    return decision;
                }
                Ok(Ok(_)) if !DETAIL => {}
                Ok(Ok(snapshot)) => {
                    let remaining = snapshot.remaining_burst_capacity();
                    decision.remaining = decision.remaining.min(remaining);
                    let spent = l.burst - remaining.min(l.burst);
                    decision.reset = decision.reset.max(Duration::from_nanos(
                        l.interval_ns.saturating_mul(u64::from(spent)),
                    ));
                }
            }
        }
        decision
    }
}

impl MemoryStore {
    /// GCRA for policies that count after the response. governor's limiters have no
    /// read-only check (`check_key_n` counts whenever it admits) and keep their state
    /// private, so these keys live in a small GCRA of their own: per key, one theoretical
    /// arrival time (TAT, nanoseconds of the store's clock) per quota.
    pub(crate) fn decide_counted(
        &self,
        key: &str,
        quotas: &[Quota],
        cost: u32,
        count: bool,
    ) -> Decision {
        if quotas.iter().any(|q| cost > q.max_burst()) {
            return Decision::never();
        }
        let now = self.inner.clock.now().0;
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut map = self
            .inner
            .counted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut decision = Decision::unlimited();
        let tats: Vec<u64> = match map.get(key) {
            Some(t) if t.len() == quotas.len() => t.iter().map(|t| (*t).max(now)).collect(),
            _ => vec![now; quotas.len()],
        };
        for (q, tat) in quotas.iter().zip(&tats) {
            let interval = nanos(q.emission_interval());
            let tau = interval.saturating_mul(u64::from(q.max_burst()));
            // Admitted when the TAT after this request is within one burst of now.
            let after = tat.saturating_add(interval.saturating_mul(u64::from(cost)));
            let allow_at = after.saturating_sub(tau);
            if allow_at > now {
                decision.allowed = false;
                decision.retry_after = decision
                    .retry_after
                    .max(Duration::from_nanos(allow_at - now));
            }
        }
        if !decision.allowed {
            decision.remaining = 0;
            decision.reset = decision.retry_after;
            return decision;
        }
        let mut new = tats.clone();
        for ((q, tat), new) in quotas.iter().zip(&tats).zip(new.iter_mut()) {
            let interval = nanos(q.emission_interval()).max(1);
            let tau = interval.saturating_mul(u64::from(q.max_burst()));
            if count {
                *new = tat.saturating_add(interval.saturating_mul(u64::from(cost)));
            }
            let left = (now.saturating_add(tau).saturating_sub(*new)) / interval;
            decision.remaining = decision
                .remaining
                .min(u32::try_from(left).unwrap_or(u32::MAX));
            decision.reset = decision.reset.max(Duration::from_nanos(*new - now));
        }
        if count {
            if housekeeping_due() && map.len() > self.inner.max_keys {
                // Keys whose every quota is replenished change no decision.
                map.retain(|_, tats| tats.iter().any(|t| *t > now));
            }
            map.insert(key.to_owned(), new.into_boxed_slice());
        }
        decision
    }
}

/// Whether this thread's count of in-memory checks (of every store) reached a multiple of
/// 1,024: a thread-local count, no shared write per decision.
#[inline]
fn housekeeping_due() -> bool {
    thread_local! {
        static CHECKS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    CHECKS.with(|c| {
        let n = c.get();
        c.set(n.wrapping_add(1));
        n.is_multiple_of(1024)
    })
}

fn governor_quota(q: &Quota) -> governor::Quota {
    let burst = NonZeroU32::new(q.max_burst()).unwrap_or(NonZeroU32::MIN);
    governor::Quota::with_period(q.emission_interval())
        .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl Store for MemoryStore {
    fn check<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        let decision = self.decide::<true>(&Key::from(key), quotas, cost);
        Box::pin(std::future::ready(Ok(decision)))
    }

    fn peek<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(std::future::ready(Ok(
            self.decide_counted(key, quotas, cost, false)
        )))
    }

    fn consume<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(std::future::ready(Ok(
            self.decide_counted(key, quotas, cost, true)
        )))
    }

    fn check_local(
        &self,
        _policy: &str,
        key: &Key,
        quotas: &[Quota],
        cost: u32,
    ) -> Option<Decision> {
        Some(self.decide::<true>(key, quotas, cost))
    }

    fn admit_local(
        &self,
        _policy: &str,
        key: &Key,
        quotas: &[Quota],
        cost: u32,
    ) -> Option<Decision> {
        Some(self.decide::<false>(key, quotas, cost))
    }
}

#[cfg(feature = "redis")]
pub use self::redis_store::{RedisStore, gcra_script_hash};

#[cfg(feature = "redis")]
mod redis_store {
    use std::sync::LazyLock;
    use std::time::Duration;

    use tower_scale_redis::RedisBackend;
    use tower_scale_redis::redis::{ErrorKind, Script, ServerErrorKind, Value};

    use super::{BoxFuture, Decision, Store, StoreError};
    use crate::Quota;

    /// GCRA over every quota of a policy in one round trip, with Redis's own clock (`TIME`) so
    /// the instances' clocks do not matter. KEYS: one per quota (sharing a hash tag). ARGV, per
    /// quota: the increment (`cost × emission interval`, µs), the window (`burst × emission
    /// interval`, µs) and the expiry step (ms); then optionally `peek` (decide, write nothing).
    ///
    /// Each key holds the quota's theoretical arrival time (TAT, µs since the epoch). The reply
    /// is, per quota, that TAT minus now as left by this call: `d ≥ 0` when admitted, `-1 - d`
    /// (with the TAT before the call) when rejected. One integer for one quota, an array for
    /// several. The client derives `remaining`, `reset` and `retry_after` from it, knowing the
    /// quotas; an integer reply costs neither side any formatting or parsing.
    ///
    /// The script is written for Redis's cost per call, which is most of a decision's CPU (it
    /// was measured under callgrind, per call, against the same server doing `PING`):
    /// - the TAT is advanced with `INCRBY` (in place, keeping the key's expiry), with the
    ///   increment passed as a string when the TAT is ahead of now; Lua's number formatting
    ///   (`string.format`, or a number argument to `redis.call`) costs about as much as a
    ///   command;
    /// - the expiry moves in steps: a key expires at the end of the step after the one its TAT
    ///   falls in (at least one step after the TAT), so it is written only when the TAT crosses
    ///   into a new step, not on every call. The step is the window, between 1 s and 60 s.
    /// - a value `INCRBY` refuses (not an integer) is overwritten, as is a missing key.
    static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_CODE));

    const GCRA_CODE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local n = #KEYS
local peek = ARGV[3 * n + 1] == 'peek'
local function tat_of(i)
  local s = tonumber(redis.call('GET', KEYS[i]))
  if s and s > now then return s, s - now end
  return s, 0
end
local function advance(i, s, d)
  local inc = tonumber(ARGV[3 * i - 2])
  local step = ARGV[3 * i] * 1000
  local tat = now + d + inc
  if s then
    local r
    if d > 0 then
      r = redis.pcall('INCRBY', KEYS[i], ARGV[3 * i - 2])
    else
      r = redis.pcall('INCRBY', KEYS[i], tat - s)
    end
    if type(r) == 'table' then
      s = nil
    elseif math.floor(s / step) ~= math.floor(tat / step) then
      redis.call('PEXPIREAT', KEYS[i], (math.floor(tat / step) + 2) * step / 1000)
    end
  end
  if not s then
    redis.call('SET', KEYS[i], tat, 'PXAT', (math.floor(tat / step) + 2) * step / 1000)
  end
  return d + inc
end
if n == 1 then
  local s, d = tat_of(1)
  if d + ARGV[1] > tonumber(ARGV[2]) then return -1 - d end
  if peek then return d end
  return advance(1, s, d)
end
local ok, stored, ahead, out = true, {}, {}, {}
for i = 1, n do
  stored[i], ahead[i] = tat_of(i)
  if ahead[i] + ARGV[3 * i - 2] > tonumber(ARGV[3 * i - 1]) then ok = false end
end
for i = 1, n do
  if not ok then
    out[i] = -1 - ahead[i]
  elseif peek then
    out[i] = ahead[i]
  else
    out[i] = advance(i, stored[i], ahead[i])
  end
end
return out
";

    /// The SHA1 of the GCRA script (for comparing with `redis-benchmark EVALSHA`).
    #[doc(hidden)]
    pub fn gcra_script_hash() -> &'static str {
        GCRA.get_hash()
    }

    /// The Redis store: one limit shared by every instance, one `EVALSHA` per decision.
    /// Keys are `<prefix>:ratelimit:{<key>}:<quota index>`, so a policy's keys share a slot
    /// and the script runs on Redis Cluster.
    #[derive(Clone, Debug)]
    pub struct RedisStore {
        backend: RedisBackend,
    }

    impl RedisStore {
        /// A store on the shared backend.
        pub fn new(backend: RedisBackend) -> Self {
            Self { backend }
        }
    }

    impl RedisStore {
        /// `EVALSHA <gcra> <n> <key 0>… <cost> <interval µs> <burst>… [peek]`, written straight
        /// into one command: the keys `<prefix>:ratelimit:{<tag>}:<i>` (as
        /// [`Keys::tagged`](tower_scale_redis::Keys::tagged) writes them) in one buffer, no
        /// argument allocated on its own.
        fn command(
            &self,
            tag: &str,
            quotas: &[Quota],
            cost: u32,
            peek: bool,
        ) -> tower_scale_redis::redis::Cmd {
            let prefix = self.backend.keys().prefix();
            let mut key = String::with_capacity(prefix.len() + tag.len() + 18);
            self.backend
                .keys()
                .push_tagged_base(&mut key, "ratelimit", tag);
            let base = key.len();
            let mut cmd = tower_scale_redis::redis::Cmd::with_capacity(
                3 + 3 * quotas.len() + 2,
                60 + quotas.len() * (key.len() + 24),
            );
            cmd.arg("EVALSHA").arg(GCRA.get_hash()).arg(quotas.len());
            let mut index = itoa::Buffer::new();
            for i in 0..quotas.len() {
                key.truncate(base);
                key.push_str(index.format(i));
                cmd.arg(key.as_str());
            }
            for q in quotas {
                let g = Gcra::new(q, cost);
                cmd.arg(g.inc).arg(g.window).arg(g.step_ms);
            }
            if peek {
                cmd.arg("peek");
            }
            cmd
        }

        async fn run(
            &self,
            tag: &str,
            quotas: &[Quota],
            cost: u32,
            peek: bool,
        ) -> Result<Decision, StoreError> {
            if quotas.iter().any(|q| cost > q.max_burst()) {
                return Ok(Decision::never());
            }
            let cmd = self.command(tag, quotas, cost, peek);
            let reply: Value = match self.backend.query(&cmd).await {
                Err(tower_scale_redis::Error::Redis(e))
                    if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) =>
                {
                    // First use, restart, failover or `SCRIPT FLUSH`: load it, then again.
                    let load = tower_scale_redis::redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(GCRA_CODE)
                        .to_owned();
                    self.backend
                        .query::<()>(&load)
                        .await
                        .map_err(|e| StoreError(e.to_string()))?;
                    self.backend.query(&cmd).await
                }
                reply => reply,
            }
            .map_err(|e| StoreError(e.to_string()))?;
            decide(&reply, quotas, cost)
                .ok_or_else(|| StoreError(format!("unexpected script reply {reply:?}")))
        }
    }

    /// One quota's figures for the script, in µs (the expiry step in ms).
    struct Gcra {
        interval: u64,
        inc: u64,
        window: u64,
        step_ms: u64,
    }

    impl Gcra {
        fn new(quota: &Quota, cost: u32) -> Self {
            let interval = u64::try_from(quota.emission_interval().as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            let window = interval.saturating_mul(u64::from(quota.max_burst()));
            Self {
                interval,
                inc: interval.saturating_mul(u64::from(cost)),
                window,
                step_ms: (window / 1000).clamp(1_000, 60_000),
            }
        }
    }

    /// The decision from the script's reply (see [`GCRA`]): per quota, its TAT minus now, or
    /// `-1 -` that when rejected. `None` for anything else: another type, a count of values
    /// other than one per quota, signs that disagree, an admitted TAT beyond the window, or a
    /// rejection no quota explains.
    fn decide(reply: &Value, quotas: &[Quota], cost: u32) -> Option<Decision> {
        let mut decision = Decision::unlimited();
        let mut verdict = None;
        let mut each = |quota: &Quota, value: &Value| -> Option<()> {
            let Value::Int(r) = *value else {
                return None;
            };
            let admitted = r >= 0;
            if *verdict.get_or_insert(admitted) != admitted {
                return None;
            }
            let g = Gcra::new(quota, cost);
            let ahead = u64::try_from(if admitted { r } else { -1 - r }).ok()?;
            if admitted && ahead > g.window {
                return None;
            }
            if !admitted {
                decision.allowed = false;
                let wait = ahead.saturating_add(g.inc).saturating_sub(g.window);
                decision.retry_after = decision.retry_after.max(Duration::from_micros(wait));
            }
            let left = (g.window - ahead.min(g.window)) / g.interval;
            decision.remaining = decision
                .remaining
                .min(u32::try_from(left).unwrap_or(u32::MAX));
            decision.reset = decision.reset.max(Duration::from_micros(ahead));
            Some(())
        };
        match (reply, quotas) {
            (Value::Int(_), [quota]) => each(quota, reply)?,
            (Value::Array(values), _) if quotas.len() > 1 && values.len() == quotas.len() => {
                for (quota, value) in quotas.iter().zip(values) {
                    each(quota, value)?;
                }
            }
            _ => return None,
        }
        if !decision.allowed && decision.retry_after.is_zero() {
            return None;
        }
        Some(decision)
    }

    impl Store for RedisStore {
        fn check<'a>(
            &'a self,
            key: &'a str,
            quotas: &'a [Quota],
            cost: u32,
        ) -> BoxFuture<'a, Result<Decision, StoreError>> {
            Box::pin(self.run(key, quotas, cost, false))
        }

        /// Writes the Redis keys from the policy name and the key, with no `"<policy>:<key>"`
        /// string in between.
        fn check_key<'a>(
            &'a self,
            policy: &'a str,
            key: &'a crate::Key,
            quotas: &'a [Quota],
            cost: u32,
        ) -> BoxFuture<'a, Result<Decision, StoreError>> {
            Box::pin(async move {
                let tag = super::policy_key(policy, key);
                self.run(&tag, quotas, cost, false).await
            })
        }

        fn peek<'a>(
            &'a self,
            key: &'a str,
            quotas: &'a [Quota],
            cost: u32,
        ) -> BoxFuture<'a, Result<Decision, StoreError>> {
            Box::pin(self.run(key, quotas, cost, true))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn script_replies_are_decided_or_refused() {
            // 100/s burst 100: one cell every 10 ms, a window of 1 s.
            let q = [Quota::per_second(100)];
            let d = decide(&Value::Int(10_000), &q, 1).unwrap();
            assert!(d.allowed);
            assert_eq!(
                (d.retry_after, d.remaining, d.reset),
                (Duration::ZERO, 99, Duration::from_millis(10))
            );
            // Rejected with the TAT a full window ahead: one cell in 10 ms.
            let d = decide(&Value::Int(-1 - 1_000_000), &q, 1).unwrap();
            assert!(!d.allowed);
            assert_eq!(
                (d.retry_after, d.remaining, d.reset),
                (Duration::from_millis(10), 0, Duration::from_secs(1))
            );
            // A cost of 5 with 3 cells left: 20 ms to wait, 3 remaining.
            let d = decide(&Value::Int(-1 - 970_000), &q, 5).unwrap();
            assert_eq!(
                (d.allowed, d.retry_after, d.remaining),
                (false, Duration::from_millis(20), 3)
            );
            // Two quotas: the tighter one sets remaining, the longer TAT the reset.
            let two = [Quota::per_second(10), Quota::per_hour(1000)];
            let d = decide(
                &Value::Array(vec![Value::Int(900_000), Value::Int(36_000_000)]),
                &two,
                1,
            )
            .unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, 1);
            assert_eq!(d.reset, Duration::from_secs(36));
            let d = decide(
                &Value::Array(vec![Value::Int(-1 - 950_000), Value::Int(-1)]),
                &two,
                1,
            )
            .unwrap();
            assert_eq!(
                (d.allowed, d.retry_after),
                (false, Duration::from_millis(50))
            );

            for (garbage, quotas) in [
                (Value::Int(1_000_001), &q[..]), // admitted beyond the window
                (Value::Int(-1), &q[..]),        // rejected though the quota has room
                (Value::BulkString(b"1 0 99 10000".to_vec()), &q[..]),
                (Value::Nil, &q[..]),
                (Value::Array(vec![Value::Int(1)]), &q[..]),
                (Value::Int(1), &two[..]),
                (Value::Array(vec![Value::Int(1)]), &two[..]),
                (
                    Value::Array(vec![Value::Int(1), Value::Int(-1 - 36_000_000)]),
                    &two[..],
                ),
                (Value::Array(vec![Value::Int(1), Value::Okay]), &two[..]),
            ] {
                assert!(decide(&garbage, quotas, 1).is_none(), "{garbage:?}");
            }
        }
    }
}
