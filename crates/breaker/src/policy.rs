//! What a response means for the downstream's health: [`ClassifyResponse`] and its default,
//! [`ServerErrorsAsFailures`].

use std::time::Duration;

use http::{HeaderMap, StatusCode, header};

use crate::outcome::Outcome;

/// Decides what a response means for the downstream's health.
pub trait ClassifyResponse: Clone {
    /// The outcome of a call that returned `status` and `headers`. (Errors of the inner
    /// service are always failures.)
    fn classify(&self, status: StatusCode, headers: &HeaderMap) -> Outcome;
}

/// The default classifier: 5xx responses are failures, carrying their `Retry-After` (in
/// seconds) so it can set the open period; every other response is a success.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerErrorsAsFailures;

impl ClassifyResponse for ServerErrorsAsFailures {
    fn classify(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        if status.is_server_error() {
            Outcome::Failure {
                retry_after: retry_after(headers),
            }
        } else {
            Outcome::Success
        }
    }
}

impl<F> ClassifyResponse for F
where
    F: Fn(StatusCode, &HeaderMap) -> Outcome + Clone,
{
    fn classify(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        self(status, headers)
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the services this protects).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
