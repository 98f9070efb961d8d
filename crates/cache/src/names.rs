//! Every metric the cache emits, through the [`metrics`] facade: names, kinds, labels and what
//! each counts. Label values are bounded (fixed words, never a key, a path or a tag).
//!
//! The request's decisions are also `debug` events (in the request's span, so in its trace),
//! with the labels' words as fields: `cache lookup` (`outcome`: `hit`, `stale`, `miss`,
//! `bypass`, and the bypass `reason`), `cache revalidation` (`outcome`), `cache store
//! refused` (`reason`) and `cache stored` (`bytes`).
//!
//! ```
//! use tower_scale_cache::names;
//!
//! assert!(names::METRICS.iter().any(|m| m.name == "cache_requests_total"));
//! assert_eq!(names::CACHE_REQUESTS_TOTAL.labels, ["result"]);
//! ```

use metrics::{Key, Label, Level, Metadata};
use tower_scale_core::{MetricDef, MetricKind};

/// Requests the response cache answered, by `result`: `hit` (fresh from the store), `stale`
/// (a stale entry served: stale-while-revalidate, stale-if-error, another instance
/// refreshing), `miss` (no fresh entry: sent to the origin, revalidations included, or waiting
/// for another request's fetch), `bypass` (not looked up). A miss that ends up served a stale
/// entry because another instance holds the lock (or the origin failed) counts as `miss` and
/// as `stale`.
pub const CACHE_REQUESTS_TOTAL: MetricDef = MetricDef::new(
    "cache_requests_total",
    MetricKind::Counter,
    &["result"],
    "Requests the response cache answered, by result (`hit`, `stale`, `miss`, `bypass`).",
);

/// Conditional requests sent to the origin for stale entries, by `outcome`: `not_modified`
/// (a `304` refreshed the entry), `modified` (another answer), `error` (the origin failed).
pub const CACHE_REVALIDATIONS_TOTAL: MetricDef = MetricDef::new(
    "cache_revalidations_total",
    MetricKind::Counter,
    &["outcome"],
    "Revalidations of stale entries, by outcome (`not_modified`, `modified`, `error`).",
);

/// Requests not looked up, by `reason`: `cookie`, `authorization`, `key` (the key policy
/// returned none), `key-too-long`, `too-many-params`.
pub const CACHE_BYPASSES_TOTAL: MetricDef = MetricDef::new(
    "cache_bypasses_total",
    MetricKind::Counter,
    &["reason"],
    "Requests the cache did not look up, by reason (`cookie`, `authorization`, `key`, `key-too-long`, `too-many-params`).",
);

/// Origin responses not stored, by `reason`: the `Cache-Status` detail (`status`,
/// `no-store`, `private`, `no-cache`, `set-cookie`, `vary`, `authorization`, `no-ttl`,
/// `header-too-large`, `content-encoding`, `too-many-variants`, `too-large`, `trailers`,
/// `body-error`).
pub const CACHE_STORES_REFUSED_TOTAL: MetricDef = MetricDef::new(
    "cache_stores_refused_total",
    MetricKind::Counter,
    &["reason"],
    "Origin responses not stored, by reason (the `Cache-Status` detail: `no-store`, `private`, `no-ttl`, `too-large`, ...).",
);

/// Requests that joined another request's fetch of the same entry in this instance
/// (single flight) instead of calling the origin.
pub const CACHE_FLIGHT_JOINS_TOTAL: MetricDef = MetricDef::new(
    "cache_flight_joins_total",
    MetricKind::Counter,
    &[],
    "Requests that waited for another request's fetch of the same entry (single flight).",
);

/// Lookups answered by the local tier (process memory) without reading the store.
pub const CACHE_L1_HITS_TOTAL: MetricDef = MetricDef::new(
    "cache_l1_hits_total",
    MetricKind::Counter,
    &[],
    "Lookups answered by the local tier without reading the store.",
);

/// Purges this instance published to the other instances' local tiers.
pub const CACHE_PURGES_SENT_TOTAL: MetricDef = MetricDef::new(
    "cache_purges_sent_total",
    MetricKind::Counter,
    &[],
    "Purges published to the other instances' local tiers.",
);

/// Purges this instance received and applied to its local tier.
pub const CACHE_PURGES_RECEIVED_TOTAL: MetricDef = MetricDef::new(
    "cache_purges_received_total",
    MetricKind::Counter,
    &[],
    "Purges received from an instance and applied to the local tier.",
);

/// Bytes of entries written to the store (encoded, all fields of one write).
pub const CACHE_STORED_BYTES_TOTAL: MetricDef = MetricDef::new(
    "cache_stored_bytes_total",
    MetricKind::Counter,
    &[],
    "Bytes of entries written to the store.",
);

/// Every metric of this crate.
pub const METRICS: &[MetricDef] = &[
    CACHE_REQUESTS_TOTAL,
    CACHE_REVALIDATIONS_TOTAL,
    CACHE_BYPASSES_TOTAL,
    CACHE_STORES_REFUSED_TOTAL,
    CACHE_FLIGHT_JOINS_TOTAL,
    CACHE_L1_HITS_TOTAL,
    CACHE_PURGES_SENT_TOTAL,
    CACHE_PURGES_RECEIVED_TOTAL,
    CACHE_STORED_BYTES_TOTAL,
];

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Adds `n` to the counter `key` (a static key: nothing allocated, the hit path included).
fn add(key: &'static Key, n: u64) {
    metrics::with_recorder(|r| r.register_counter(key, &META).increment(n));
}

/// Adds one to `def`'s counter with `label` set to `value` (a bounded word).
fn add_labelled(def: &MetricDef, label: &'static str, value: &'static str) {
    let key = Key::from_parts(def.name, vec![Label::from_static_parts(label, value)]);
    metrics::with_recorder(|r| r.register_counter(&key, &META).increment(1));
}

macro_rules! static_key {
    ($def:expr) => {{
        static KEY: Key = Key::from_static_name($def.name);
        &KEY
    }};
    ($def:expr, $label:literal => $value:literal) => {{
        static LABELS: [Label; 1] = [Label::from_static_parts($label, $value)];
        static KEY: Key = Key::from_static_parts($def.name, &LABELS);
        &KEY
    }};
}

/// A request answered `result` (`hit`, `stale`, `miss`).
#[inline]
pub(crate) fn request(result: Answered) {
    let key = match result {
        Answered::Hit => static_key!(CACHE_REQUESTS_TOTAL, "result" => "hit"),
        Answered::Stale => static_key!(CACHE_REQUESTS_TOTAL, "result" => "stale"),
        Answered::Miss => static_key!(CACHE_REQUESTS_TOTAL, "result" => "miss"),
    };
    add(key, 1);
    tracing::debug!(outcome = result.as_str(), "cache lookup");
}

/// What `cache_requests_total` counts a request as (bypasses: [`bypass`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answered {
    Hit,
    Stale,
    Miss,
}

impl Answered {
    /// The `result` label's word.
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Stale => "stale",
            Self::Miss => "miss",
        }
    }
}

/// A request not looked up because of `reason`.
pub(crate) fn bypass(reason: &'static str) {
    add(static_key!(CACHE_REQUESTS_TOTAL, "result" => "bypass"), 1);
    add_labelled(&CACHE_BYPASSES_TOTAL, "reason", reason);
    tracing::debug!(outcome = "bypass", reason, "cache lookup");
}

/// A revalidation ended with `outcome` (`not_modified`, `modified`, `error`).
pub(crate) fn revalidation(outcome: &'static str) {
    add_labelled(&CACHE_REVALIDATIONS_TOTAL, "outcome", outcome);
    tracing::debug!(outcome, "cache revalidation");
}

/// An origin response not stored because of `reason`.
pub(crate) fn refused(reason: &'static str) {
    add_labelled(&CACHE_STORES_REFUSED_TOTAL, "reason", reason);
    tracing::debug!(reason, "cache store refused");
}

/// A request joined a flight.
pub(crate) fn flight_join() {
    add(static_key!(CACHE_FLIGHT_JOINS_TOTAL), 1);
}

/// The local tier answered a lookup.
pub(crate) fn l1_hit() {
    add(static_key!(CACHE_L1_HITS_TOTAL), 1);
}

/// A purge was published.
#[cfg(feature = "redis")]
pub(crate) fn purge_sent() {
    add(static_key!(CACHE_PURGES_SENT_TOTAL), 1);
}

/// A purge was received.
#[cfg(feature = "redis")]
pub(crate) fn purge_received() {
    add(static_key!(CACHE_PURGES_RECEIVED_TOTAL), 1);
}

/// `bytes` were written to the store.
pub(crate) fn stored(bytes: usize) {
    add(static_key!(CACHE_STORED_BYTES_TOTAL), bytes as u64);
    tracing::debug!(
        bytes = i64::try_from(bytes).unwrap_or(i64::MAX),
        "cache stored"
    );
}
