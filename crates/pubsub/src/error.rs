/// An error of the broadcaster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The room name is empty or too long ([`MAX_ROOM_LEN`](crate::MAX_ROOM_LEN) bytes).
    #[error("invalid room name: {0}")]
    InvalidRoom(String),
    /// The configuration is invalid; the message names the field.
    #[error("invalid pubsub config: {0}")]
    Config(String),
    /// Redis failed (down, hung, circuit open, or an error reply). For stream rooms, a publish
    /// returns this only once its retries are exhausted.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[error(transparent)]
    Redis(#[from] tower_scale_redis::Error),
}

impl Error {
    /// Redis could not be reached, timed out, or its circuit breaker is open: the operation
    /// may succeed later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(e) => e.is_unavailable(),
            _ => false,
        }
    }
}
