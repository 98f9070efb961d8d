//! Types shared by the tower-scale middleware crates.
//!
//! # Overview
//!
//! - [`PrivateMark`]: a request-scoped flag saying that the response to this request is
//!   personal to its client (it created or changed a session, for example) and must not be
//!   stored by a shared cache, whatever the order of the layers.
//!
//! # Example
//!
//! A layer that makes a response personal marks the request; a cache outside it checks the
//! mark it found in the request once the response is there.
//!
//! ```
//! use tower_scale_core::PrivateMark;
//!
//! let mut request = http::Request::new(());
//! // The cache, before calling the inner service: make sure a mark is there, keep a clone.
//! let mark = PrivateMark::get_or_insert(request.extensions_mut());
//! // The session layer, inner, when the handler writes to the session:
//! request.extensions().get::<PrivateMark>().unwrap().set();
//! // The cache, with the response: do not store it.
//! assert!(mark.is_set());
//! ```

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
