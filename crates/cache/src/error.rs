use crate::StoreError;

/// An error of the cache.
///
/// The request paths never return it: a failing store makes the cache fail open (the origin
/// answers). It is returned by the explicit operations: [`invalidate`](crate::Cache::invalidate),
/// [`invalidate_tag`](crate::Cache::invalidate_tag), [`get`](crate::Cache::get),
/// [`set`](crate::Cache::set). Building a cache or a layer returns a
/// [`ConfigError`](crate::ConfigError).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (Redis down, slow or answering garbage).
    #[error("cache store: {0}")]
    Store(#[from] StoreError),
    /// A value could not be encoded or decoded.
    #[error("cache value codec: {0}")]
    Codec(String),
    /// The entries were deleted from the store, but not every instance confirmed in time
    /// that it dropped them from its local tier. Those instances drop them at the latest
    /// when their local entries expire (`l1_ttl`).
    #[error(
        "purge not confirmed: {acknowledged} of {expected} instances acknowledged within the timeout"
    )]
    PurgeUnconfirmed {
        /// Instances that were subscribed when the purge was published.
        expected: usize,
        /// Instances that confirmed.
        acknowledged: usize,
    },
}
