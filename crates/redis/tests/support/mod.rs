//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

/// A safety net so a regression shows up as a failed test, not a hung suite.
pub(crate) async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("the backend hung: no answer within 20 s")
}
