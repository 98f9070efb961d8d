//! The routing decision a request carries: [`DbRoute`], its [`Target`] and [`Reason`].

/// Which database a request should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// The primary (writes, and reads that must see the latest writes).
    Primary,
    /// A read replica.
    Replica,
}

impl Target {
    /// `primary` or `replica`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

/// Why a request was routed where it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A safe method: a read.
    Read,
    /// An unsafe method: a write.
    Write,
    /// A read by a client that wrote within the window.
    RecentWrite,
    /// Set by [`ForceTargetLayer`](crate::ForceTargetLayer).
    Forced,
}

impl Reason {
    /// `read`, `write`, `recent_write` or `forced`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::RecentWrite => "recent_write",
            Self::Forced => "forced",
        }
    }
}

/// The routing decision, in the request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DbRoute {
    /// Where to send the request's queries.
    pub target: Target,
    /// Why.
    pub reason: Reason,
}
