//! The error every store returns.

use std::error::Error as StdError;
use std::fmt;

/// A boxed error, as tower's.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// An error of a store (Redis or memory), opaque like hyper's: a message, the error that caused
/// it (`source()`), and what kind of failure it is.
///
/// [`is_unavailable`](Self::is_unavailable) tells a store that could not be reached (down,
/// timed out, breaker open), which layers treat as "fail open or closed as configured", from
/// one that answered wrongly ([`is_corrupt`](Self::is_corrupt): bytes that do not decode).
///
/// ```
/// use tower_scale_core::StoreError;
///
/// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
/// let e = StoreError::unavailable("GET cache:x", io);
/// assert!(e.is_unavailable());
/// assert_eq!(e.to_string(), "GET cache:x: timed out");
/// assert!(std::error::Error::source(&e).is_some());
/// ```
pub struct StoreError {
    message: Box<str>,
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unavailable,
    Corrupt,
    Other,
}

impl StoreError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self::build(message, Kind::Other, None)
    }

    /// The backend could not be reached (down, timed out, breaker open), because of `source`.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::build(message, Kind::Unavailable, Some(source.into()))
    }

    /// The backend answered with something that is not what was stored.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::build(message, Kind::Corrupt, None)
    }

    /// An error caused by `source`; `unavailable` as in [`unavailable`](Self::unavailable).
    pub fn with_source(
        message: impl Into<String>,
        unavailable: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        let kind = if unavailable {
            Kind::Unavailable
        } else {
            Kind::Other
        };
        Self::build(message, kind, Some(source.into()))
    }

    fn build(message: impl Into<String>, kind: Kind, source: Option<BoxError>) -> Self {
        Self {
            message: message.into().into_boxed_str(),
            kind,
            source,
        }
    }

    /// The backend could not be reached (down, timed out, breaker open).
    pub fn is_unavailable(&self) -> bool {
        self.kind == Kind::Unavailable
    }

    /// The backend answered with bytes that are not a valid stored value.
    pub fn is_corrupt(&self) -> bool {
        self.kind == Kind::Corrupt
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.kind) {
            (Some(source), _) => write!(f, "{}: {source}", self.message),
            (None, Kind::Corrupt) => write!(f, "corrupt entry: {}", self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreError")
            .field("message", &self.message)
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A config value that cannot work, naming the field: `"ttl: must be more than 0"`.
///
/// Every layer's `from_config` and `build` return it; the stack builder adds the section.
///
/// ```
/// use tower_scale_core::ConfigError;
///
/// let e = ConfigError::new("quotas", "at least one quota is needed");
/// assert_eq!(e.field(), "quotas");
/// assert_eq!(e.to_string(), "quotas: at least one quota is needed");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: std::borrow::Cow<'static, str>,
    message: String,
}

impl ConfigError {
    /// `field` cannot be what it is, because of `message`.
    pub fn new(
        field: impl Into<std::borrow::Cow<'static, str>>,
        message: impl fmt::Display,
    ) -> Self {
        Self {
            field: field.into(),
            message: message.to_string(),
        }
    }

    /// The field, e.g. `ttl` or `quotas[1].period`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl StdError for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let e = StoreError::corrupt("a byte after the value");
        assert!(e.is_corrupt() && !e.is_unavailable());
        assert_eq!(e.to_string(), "corrupt entry: a byte after the value");
        let e = StoreError::new("refused");
        assert!(!e.is_corrupt() && !e.is_unavailable());
        assert_eq!(e.to_string(), "refused");
        let e = StoreError::with_source("EVALSHA", false, "NOSCRIPT");
        assert!(!e.is_unavailable());
        assert_eq!(e.to_string(), "EVALSHA: NOSCRIPT");
    }
}
