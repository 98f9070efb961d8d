//! The errors of [`Offload::run`](crate::Offload::run), and their axum responses.

use std::fmt;
use std::time::Duration;

use tower_scale_core::retry_after_secs;

/// The pool and its queue are full: try again after [`retry_after`](Self::retry_after).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overloaded {
    retry_after: Duration,
}

impl Overloaded {
    pub(crate) const fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }

    /// The suggested wait before retrying.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offload pool overloaded; retry after {}s",
            retry_after_secs(self.retry_after)
        )
    }
}

impl std::error::Error for Overloaded {}

/// An error of [`Offload::run`](crate::Offload::run).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// The pool and its queue are full.
    #[error(transparent)]
    Overloaded(Overloaded),
    /// The job panicked.
    #[error("offloaded job panicked")]
    Panicked,
}

#[cfg(feature = "axum")]
mod axum_impl {
    use axum::response::{IntoResponse, Response};
    use http::{StatusCode, header};
    use tower_scale_core::retry_after_value;

    use super::{OffloadError, Overloaded};

    impl IntoResponse for Overloaded {
        fn into_response(self) -> Response {
            let mut res = (StatusCode::SERVICE_UNAVAILABLE, self.to_string()).into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, retry_after_value(self.retry_after));
            res
        }
    }

    impl IntoResponse for OffloadError {
        fn into_response(self) -> Response {
            match self {
                Self::Overloaded(o) => o.into_response(),
                other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()).into_response(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower_scale_core::retry_after_secs;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2500)), 3);
    }
}
