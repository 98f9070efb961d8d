//! The mark that keeps personal responses out of shared caches.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Marks the response to a request as personal to its client: a shared cache must not store
/// it (as if it said `Cache-Control: private`).
///
/// Clones share the flag. A layer that personalises responses (sessions) sets it; a shared
/// cache takes the request's mark (or inserts one) before calling the inner service and does
/// not store the response when the mark is set once the response is there.
#[derive(Clone, Default)]
pub struct PrivateMark(Arc<AtomicBool>);

impl PrivateMark {
    /// A new, unset mark.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The mark in `extensions`, inserting an unset one when there is none.
    pub fn get_or_insert(extensions: &mut http::Extensions) -> Self {
        extensions.get_or_insert_with(Self::new).clone()
    }

    /// Marks the response as personal.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the response is personal.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl fmt::Debug for PrivateMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PrivateMark").field(&self.is_set()).finish()
    }
}
