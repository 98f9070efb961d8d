//! The error of a [`Session`](crate::Session) call.

use http::StatusCode;
use tower_scale_core::StoreError;

/// An error of a [`Session`](crate::Session) call.
///
/// With the `axum` feature it is a response: a failed read answers the configured
/// `load_error_status` (503 by default), so a handler can use `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed (down, timed out, or answered garbage).
    #[error("{source}")]
    Store {
        /// The store's error.
        source: StoreError,
        /// The status this error answers with.
        status: StatusCode,
    },
    /// Field names starting with `__` belong to the store.
    #[error("session field {0:?} is reserved: names starting with `__` belong to the store")]
    ReservedKey(String),
    /// The value could not be serialized.
    #[error("session field {key:?} could not be serialized: {source}")]
    Serialize {
        /// The field.
        key: String,
        /// serde_json's error.
        source: serde_json::Error,
    },
    /// The stored value does not deserialize into the requested type.
    #[error("session field {key:?} does not hold the requested type: {source}")]
    Deserialize {
        /// The field.
        key: String,
        /// serde_json's error.
        source: serde_json::Error,
    },
}

impl SessionError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Store { status, .. } => *status,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for SessionError {
    fn into_response(self) -> axum::response::Response {
        tracing::warn!(error = %self, "session error");
        self.status().into_response()
    }
}
