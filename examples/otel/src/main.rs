//! tower-scale with OpenTelemetry: every request gets a tracing span (tower-http's
//! `TraceLayer`), exported as an OpenTelemetry span through tracing-opentelemetry; metrics go to
//! Prometheus through `MetricsLayer`. `TraceContextLayer` joins the caller's trace (W3C
//! `traceparent`/`tracestate`), and `/chain` calls another instance with the context injected
//! (`inject_context`), so both services' spans land in one trace. Spans are printed to stdout
//! here; swap the exporter for OTLP (`opentelemetry-otlp`) to send them to a collector.
//!
//! Run with
//!
//! ```not_rust
//! PORT=3001 cargo run -p example-otel &
//! DOWNSTREAM=http://127.0.0.1:3001 cargo run -p example-otel
//! curl -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' \
//!   http://127.0.0.1:3000/chain
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
use std::future::IntoFuture;
use std::time::Duration;
use tower_http::trace::TraceLayer;

use tower_scale::metrics::{MetricsLayer, PrometheusMetrics, TraceContextLayer, inject_context};
use tower_scale::shutdown::{Shutdown, ShutdownConfig};
use tracing_subscriber::layer::SubscriberExt;

/// Calls `{downstream}/users/1` with the current trace context in its headers.
async fn call_downstream(downstream: String) -> Result<String, String> {
    let mut headers = axum::http::HeaderMap::new();
    inject_context(&mut headers);
    let url = format!("{downstream}/users/1");
    tracing::info!(%url, "calling downstream");
    let res = reqwest::Client::new()
        .get(url)
        .headers(headers)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body = res.text().await.map_err(|e| e.to_string())?;
    Ok(format!("{body} via downstream"))
}

/// The app: a traced, measured route, `/chain` (calls `downstream`, when given) and `/metrics`.
fn app(metrics: &PrometheusMetrics, downstream: Option<String>) -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move {
                tracing::info!(user = id, "loading user");
                format!("user {id}")
            }),
        )
        .route(
            "/chain",
            get(move || {
                let downstream = downstream.clone();
                async move {
                    match downstream {
                        Some(d) => call_downstream(d).await,
                        None => Err("no DOWNSTREAM configured".to_owned()),
                    }
                }
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
        // Outermost: the request span joins the caller's trace before anything else runs.
        .layer(TraceContextLayer::new())
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
    let downstream = std::env::var("DOWNSTREAM").ok();
    // No `/readyz` here for a load balancer to watch: no pre-stop delay. SIGTERM or Ctrl-C
    // drains through the serve loop, which closes no connection a client may be sending on.
    let shutdown = Shutdown::new({
        let mut config = ShutdownConfig::default();
        config.pre_stop_delay = Duration::ZERO;
        config
    });
    shutdown.listen_for_signals();
    let serve = shutdown.serve(listener, app(&metrics, downstream));
    let report = shutdown.run(serve.into_future()).await;
    provider.shutdown()?;
    Ok(std::process::ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
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
        let res = app(&metrics, None)
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

    /// A span-per-service trace: the `traceparent` a client sends to service A is the parent
    /// of A's spans, and the request A makes to service B (another process's worth: its own
    /// thread, runtime, subscriber and in-memory exporter, reached over TCP) carries A's span
    /// as B's parent. Both services report spans of the client's trace.
    #[test]
    fn a_traceparent_crosses_two_services() {
        const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
        const CLIENT_SPAN: &str = "00f067aa0ba902b7";
        let b_exporter = InMemorySpanExporter::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let b = std::thread::spawn({
            let exporter = b_exporter.clone();
            move || {
                let (subscriber, provider) = subscriber(exporter);
                let _guard = tracing::subscriber::set_default(subscriber);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let (_recorder, metrics) = PrometheusMetrics::builder().build().unwrap();
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    axum::serve(listener, app(&metrics, None))
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await
                        .unwrap();
                });
                provider.force_flush().unwrap();
                // Dropping the provider shuts the exporter down, which clears its spans.
                provider
            }
        });
        let b_addr = addr_rx.recv().unwrap();

        let a_exporter = InMemorySpanExporter::default();
        let (subscriber, provider) = subscriber(a_exporter.clone());
        let guard = tracing::subscriber::set_default(subscriber);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let body = rt.block_on(async {
            let (_recorder, metrics) = PrometheusMetrics::builder().build().unwrap();
            let req = Request::get("/chain")
                .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"))
                .body(Body::empty())
                .unwrap();
            let res = app(&metrics, Some(format!("http://{b_addr}")))
                .oneshot(req)
                .await
                .unwrap();
            assert!(res.status().is_success(), "{}", res.status());
            axum::body::to_bytes(res.into_body(), 1024).await.unwrap()
        });
        assert_eq!(&body[..], b"user 1 via downstream");
        provider.force_flush().unwrap();
        drop(guard);
        stop_tx.send(()).unwrap();
        let _b_provider = b.join().unwrap();

        let a_spans = a_exporter.get_finished_spans().unwrap();
        let b_spans = b_exporter.get_finished_spans().unwrap();
        assert!(!a_spans.is_empty(), "service A reported no span");
        assert!(!b_spans.is_empty(), "service B reported no span");
        for span in a_spans.iter().chain(&b_spans) {
            assert_eq!(
                span.span_context.trace_id().to_string(),
                TRACE,
                "{} is not in the client's trace",
                span.name
            );
        }
        // A's outermost span is the client's child; B's outermost is a child of one of A's.
        let outermost = |spans: &[opentelemetry_sdk::trace::SpanData]| {
            let own: Vec<_> = spans.iter().map(|s| s.span_context.span_id()).collect();
            let roots: Vec<_> = spans
                .iter()
                .filter(|s| !own.contains(&s.parent_span_id))
                .map(|s| s.parent_span_id)
                .collect();
            assert_eq!(roots.len(), 1, "one entry span: {spans:?}");
            roots[0]
        };
        assert_eq!(outermost(&a_spans).to_string(), CLIENT_SPAN);
        let b_parent = outermost(&b_spans);
        assert!(
            a_spans.iter().any(|s| s.span_context.span_id() == b_parent),
            "B's parent {b_parent} is none of A's spans: {a_spans:?}"
        );
        assert!(b_spans.iter().any(|s| s.name == "GET /users/{id}"));
    }
}
