//! The policies a user picks: which outcomes count, keyless requests, a failing store.

use http::StatusCode;

/// Decides, once the response is known, whether a request counts against the quota: for a
/// policy set with [`count_if`](crate::RateLimitLayer::count_if), such as counting only failed
/// logins. Implemented for closures `Fn(StatusCode) -> bool`. A request whose service returns
/// an error (no response) does not count.
pub trait CountPolicy: Clone + Send + Sync + 'static {
    /// Whether a request answered with `status` counts.
    fn counts(&self, status: StatusCode) -> bool;
}

/// The default: every request counts, when it is admitted (before the service is called).
#[derive(Clone, Copy, Debug, Default)]
pub struct CountAll;

impl CountPolicy for CountAll {
    fn counts(&self, _status: StatusCode) -> bool {
        true
    }
}

impl<F> CountPolicy for F
where
    F: Fn(StatusCode) -> bool + Clone + Send + Sync + 'static,
{
    fn counts(&self, status: StatusCode) -> bool {
        self(status)
    }
}

/// What to do with a request that has no key (no API key header, no user id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingKey {
    /// Answer with this status (e.g. 400 or 401) without calling the service (a refusal with
    /// reason `"missing-key"`).
    Reject(StatusCode),
    /// Count it in one bucket shared by every keyless request.
    Shared,
}

/// What to do when the store fails (Redis down, slow, or answering garbage).
///
/// A failing store costs a request at most the backend's `command_timeout` (and nothing once
/// the backend's circuit breaker has opened), whichever mode is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnStoreError {
    /// The default: decide locally, in an in-memory limiter (governor) holding this
    /// instance's share of each quota: its rate and burst divided by
    /// [`fallback_instances`](crate::RateLimitLayer::fallback_instances) (default 1: the whole
    /// quota on every instance). With the instance count set, the fleet as a whole stays near
    /// the quota while Redis is away; once Redis answers again, it decides again.
    #[default]
    FailOpen,
    /// Admit every request while the store fails (availability first, no limit at all).
    Admit,
    /// Answer `503 Service Unavailable` (a refusal with reason `"store-unavailable"`).
    FailClosed,
}
