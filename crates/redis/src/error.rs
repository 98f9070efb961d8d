use std::time::Duration;

/// An error of the Redis backend.
///
/// Callers decide from it whether to fail open or closed; every variant is cheap to inspect
/// with the `is_*` methods.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the field and the problem.
    #[error("invalid Redis config: {0}")]
    Config(String),
    /// The command (including waiting for a connection) did not finish within the configured
    /// `command_timeout`; in the default multiplexed mode, a command on the connection it
    /// waited on (this one, or one sent before it) was not answered within nine tenths to all
    /// of `command_timeout` and the connection was closed (see
    /// [`RedisBackend`](crate::RedisBackend)).
    #[error("Redis command timed out after {0:?}")]
    Timeout(Duration),
    /// No connection could be had from the pool.
    #[error("Redis pool: {0}")]
    Pool(String),
    /// The backend's circuit breaker is open: Redis was found down or hung and the command was
    /// not sent. Carries how long until the breaker probes Redis again, when known.
    #[error("Redis circuit breaker is open; not calling Redis (retry after {0:?})")]
    CircuitOpen(Option<Duration>),
    /// Redis answered with an error, or the connection failed.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl Error {
    /// The command timed out (the server is slow, paused or unreachable).
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Redis(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// The breaker rejected the command without sending it.
    pub fn is_circuit_open(&self) -> bool {
        matches!(self, Self::CircuitOpen(_))
    }

    /// The server could not be reached, the connection broke, or the breaker is open.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Pool(_) | Self::CircuitOpen(_) => true,
            Self::Redis(e) => e.is_io_error() || e.is_connection_dropped() || e.is_timeout(),
            Self::Config(_) => false,
        }
    }
}

impl From<deadpool_redis::PoolError> for Error {
    fn from(e: deadpool_redis::PoolError) -> Self {
        match e {
            deadpool_redis::PoolError::Backend(e) => Self::Redis(e),
            other => Self::Pool(other.to_string()),
        }
    }
}
