//! tower-scale with OpenTelemetry: every request gets a tracing span (tower-http's
//! `TraceLayer`), exported as an OpenTelemetry span through tracing-opentelemetry; metrics go to
//! Prometheus through `MetricsLayer`. Spans are printed to stdout here; swap the exporter for
//! OTLP (`opentelemetry-otlp`) to send them to a collector.
//!
//! Run with
//!
//! ```not_rust
//! cargo run -p example-otel
//! curl http://127.0.0.1:3000/users/7
//! curl http://127.0.0.1:3000/metrics
//! ```
//!
//! It listens on `HOST` (127.0.0.1) and `PORT` (3000).

use axum::Router;
use axum::extract::{MatchedPath, Path};
use axum::http::Request;
use axum::routing::get;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use tower_http::trace::TraceLayer;
use tower_scale::metrics::{MetricsLayer, PrometheusMetrics};
use tracing_subscriber::layer::SubscriberExt;

/// The app: a traced, measured route and `/metrics`.
fn app(metrics: &PrometheusMetrics) -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move {
                tracing::info!(user = id, "loading user");
                format!("user {id}")
            }),
        )
        .layer(MetricsLayer::new())
        .layer(
            // One span per request, named and labelled like the metrics: the matched route,
            // never the raw path.
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("<unmatched>", MatchedPath::as_str);
                tracing::info_span!(
                    "request",
                    otel.name = %format!("{} {route}", req.method()),
                    http.request.method = %req.method(),
                    http.route = route,
                )
            }),
        )
        .route("/metrics", get(metrics.handler()))
}

/// A tracing subscriber exporting spans through `exporter`.
fn subscriber(
    exporter: impl SpanExporter + 'static,
) -> (impl tracing::Subscriber + Send + Sync, SdkTracerProvider) {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    let tracer = provider.tracer("example-otel");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(tracing_subscriber::fmt::layer());
    (subscriber, provider)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    example_support::exit_code(run().await)
}

async fn run() -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
    let (subscriber, provider) = subscriber(opentelemetry_stdout::SpanExporter::default());
    tracing::subscriber::set_global_default(subscriber)?;
    let metrics = PrometheusMetrics::install()?;
    let addr = example_support::listen_addr(3000)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "listening");
    axum::serve(listener, app(&metrics))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    provider.shutdown()?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use tower::ServiceExt;

    #[tokio::test(flavor = "current_thread")]
    async fn requests_become_opentelemetry_spans() {
        let exporter = InMemorySpanExporter::default();
        let (subscriber, provider) = subscriber(exporter.clone());
        let _guard = tracing::subscriber::set_default(subscriber);
        let (_recorder, metrics) = PrometheusMetrics::builder().build().unwrap();
        let res = app(&metrics)
            .oneshot(Request::get("/users/7").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(res.status().is_success());
        // The span ends when the response body is done.
        drop(res);
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let span = spans
            .iter()
            .find(|s| s.name == "GET /users/{id}")
            .unwrap_or_else(|| panic!("no request span in {spans:?}"));
        let attr = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(attr("http.route").as_deref(), Some("/users/{id}"));
        assert_eq!(attr("http.request.method").as_deref(), Some("GET"));
        // The handler's event is attached to the span.
        assert!(
            span.events.iter().any(|e| e.name == "loading user"),
            "{span:?}"
        );
    }
}
