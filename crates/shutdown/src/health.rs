use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

use crate::coordinator::Shutdown;

type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// `/livez` and `/readyz` for a [`Shutdown`], with pluggable readiness checks (e.g. the Redis
/// backend's `ping`). `/livez` answers 200 while the process runs; `/readyz` answers 503 as
/// soon as the shutdown starts, or while a check fails, and 200 otherwise.
#[derive(Clone)]
pub struct HealthRoutes {
    shutdown: Shutdown,
    checks: Vec<(String, Check)>,
}

impl std::fmt::Debug for HealthRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRoutes")
            .field(
                "checks",
                &self.checks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Shutdown {
    /// Health routes with no extra readiness check.
    pub fn health_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.health().routes()
    }

    /// A builder of health routes, to add readiness checks.
    pub fn health(&self) -> HealthRoutes {
        HealthRoutes {
            shutdown: self.clone(),
            checks: Vec::new(),
        }
    }
}

impl HealthRoutes {
    /// Adds a readiness check; an `Err` makes `/readyz` answer 503 with the message.
    #[must_use]
    pub fn check<F, Fut>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name.into(), Arc::new(move || Box::pin(check()))));
        self
    }

    /// The routes.
    pub fn routes<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let this = Arc::new(self);
        Router::new().route("/livez", get(|| async { "ok" })).route(
            "/readyz",
            get(move || {
                let this = Arc::clone(&this);
                async move {
                    if !this.shutdown.is_ready() {
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("shutting down ({})", this.shutdown.phase().as_str()),
                        );
                    }
                    for (name, check) in &this.checks {
                        if let Err(e) = check().await {
                            return (StatusCode::SERVICE_UNAVAILABLE, format!("{name}: {e}"));
                        }
                    }
                    (StatusCode::OK, "ready".to_owned())
                }
            }),
        )
    }
}
