//! The in-memory store: governor's GCRA, bounded keys.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;

use super::{Decision, LimiterClock, Store};
use crate::{BoxFuture, Key, Quota, StoreError};

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
        let now = self.inner.clock.now().as_nanos();
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
