//! Where rate-limit state lives: the [`Store`] trait and its [`Decision`]s, and the stores.

use std::time::Duration;

use crate::{BoxFuture, Key, Quota, StoreError};

mod clock;
mod hybrid;
mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use self::clock::{LimiterClock, LimiterInstant};
pub use self::hybrid::HybridStore;
pub use self::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, gcra_script_hash};

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

    pub(crate) fn never() -> Self {
        Self {
            allowed: false,
            retry_after: Duration::ZERO,
            remaining: 0,
            reset: Duration::ZERO,
            never: true,
        }
    }
}

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
