//! The error of building a [`ReadWriteLayer`](crate::ReadWriteLayer).

/// An error building the layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The signing key is shorter than 32 bytes.
    #[error("the read-your-writes signing key must be at least 32 bytes, got {0}")]
    KeyTooShort(usize),
    /// The cookie name is empty or not a valid token.
    #[error("invalid cookie name {0:?}")]
    CookieName(String),
}
