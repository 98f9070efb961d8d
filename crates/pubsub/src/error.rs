use crate::ConfigError;

/// An error of the broadcaster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The room name is empty or too long ([`MAX_ROOM_LEN`](crate::MAX_ROOM_LEN) bytes).
    #[error("invalid room name: {0}")]
    InvalidRoom(String),
    /// The configuration is invalid: [`ConfigError::field`] names the field.
    #[error("invalid pubsub config: {0}")]
    Config(#[from] ConfigError),
    /// Redis failed (down, hung, circuit open, or an error reply). For stream rooms, a publish
    /// returns this only once its retries are exhausted.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[error(transparent)]
    Redis(#[from] tower_scale_redis::Error),
}

impl Error {
    /// Redis could not be reached, timed out, or its circuit breaker is open, or a Redis
    /// Cluster is down or moving the slot (`CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`, a redirect
    /// left over after the client's own retries): the operation may succeed later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(e) => transient(e),
            _ => false,
        }
    }
}

/// Whether a backend error may go away by itself (see [`Error::is_unavailable`]).
#[cfg(feature = "redis")]
pub(crate) fn transient(error: &tower_scale_redis::Error) -> bool {
    match error {
        tower_scale_redis::Error::Redis(e) => transient_reply(e),
        other => other.is_unavailable(),
    }
}

/// [`transient`] for an error of a connection of this crate's own.
#[cfg(feature = "redis")]
pub(crate) fn transient_reply(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading)
        )
}
