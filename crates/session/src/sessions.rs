//! [`Sessions`]: session operations outside a request.

use std::fmt;
use std::sync::Arc;

use tower_scale_core::StoreError;

use crate::shared::Shared;
use crate::store::Store;

/// Session operations outside a request, from
/// [`SessionManagerLayer::sessions`](crate::SessionManagerLayer::sessions).
#[derive(Clone)]
pub struct Sessions {
    shared: Arc<Shared>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Sessions").field(&self.shared).finish()
    }
}

impl Sessions {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Ends every session bound to `user` (log out everywhere); returns how many ended.
    pub async fn destroy_all_for_user(&self, user: &str) -> Result<usize, StoreError> {
        self.shared.store().delete_user(user).await
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.shared.store()
    }
}
