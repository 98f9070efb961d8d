//! `[tracing]`: one trace across two services built from the stack. A request with a W3C
//! `traceparent` goes to service A, whose handler calls service B with the context injected
//! (`inject_context`). Each service is another process's worth (its own thread, runtime,
//! tracing subscriber and in-memory OpenTelemetry exporter; B is reached over TCP), both in
//! front of one real redis-server (the rate limit, the sessions and the cache in Redis). Both
//! report spans of the client's trace, and every layer's decision is in that trace with its
//! outcome: the rate limit, the session load and save, the cache lookup, the circuit breaker,
//! and a span per Redis command.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::ServiceExt;
use tower_scale::metrics::inject_context;
use tower_scale::session::Session;
use tower_scale::stack::{Stack, StackConfig};
use tower_scale_testkit::{RedisServer, cookie_pair};
use tracing_subscriber::layer::SubscriberExt;

/// The client's trace and span.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// The rate-limit key: an API key, which no span or event may show.
const API_KEY: &str = "k-7f3a9c-secret";

/// Both services' config; `prefix` keeps their Redis keys apart.
fn config(redis: &RedisServer, prefix: &str) -> StackConfig {
    StackConfig::from_toml(&format!(
        r#"
[redis]
url = "{url}"
key_prefix = "{prefix}"

[tracing]

[rate_limit]
quotas = [{{ count = 100, period = "10s" }}]
key = {{ type = "header", name = "x-api-key" }}

[session]
secure = false

[cache]
ttl = "30s"

[breaker.routes."/"]
"#,
        url = redis.url()
    ))
    .unwrap()
}

/// A subscriber exporting every span (and event, at every level) through `exporter`.
fn subscriber(
    exporter: InMemorySpanExporter,
) -> (impl tracing::Subscriber + Send + Sync, SdkTracerProvider) {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    let tracer = provider.tracer("traces-test");
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    (subscriber, provider)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Service B, serving `/items/{id}` over TCP on a thread of its own.
struct ServiceB {
    addr: SocketAddr,
    exporter: InMemorySpanExporter,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<SdkTracerProvider>,
}

impl ServiceB {
    fn start(config: StackConfig) -> Self {
        let exporter = InMemorySpanExporter::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn({
            let exporter = exporter.clone();
            move || {
                let (subscriber, provider) = subscriber(exporter);
                let _guard = tracing::subscriber::set_default(subscriber);
                runtime().block_on(async {
                    let stack = Stack::build(&config).unwrap();
                    let routes = Router::new().route(
                        "/items/{id}",
                        get(|Path(id): Path<u32>| async move { format!("item {id}") }),
                    );
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    axum::serve(listener, stack.apply(routes))
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                        .unwrap();
                });
                provider.force_flush().unwrap();
                // Dropping the provider would shut the exporter down, which clears its spans.
                provider
            }
        });
        Self {
            addr: addr_rx.recv().unwrap(),
            exporter,
            stop,
            thread,
        }
    }

    /// Stops the server; the spans B exported.
    fn finish(self) -> Vec<SpanData> {
        self.stop.send(()).unwrap();
        let _provider = self.thread.join().unwrap();
        self.exporter.get_finished_spans().unwrap()
    }
}

/// Service A: `/login` starts a session; `/front` reads and writes it, then calls B.
fn service_a(stack: &Stack, b: SocketAddr) -> Router {
    let routes = Router::new()
        .route(
            "/login",
            get(|session: Session| async move {
                session.insert("user", "u1").unwrap();
                "in"
            }),
        )
        .route("/front", get(move |session: Session| front(session, b)));
    stack.apply(routes)
}

async fn front(session: Session, b: SocketAddr) -> Result<String, StatusCode> {
    let visits: u64 = session
        .get("visits")
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
        .unwrap_or(0)
        + 1;
    session.insert("visits", &visits).unwrap();
    let mut headers = HeaderMap::new();
    inject_context(&mut headers);
    headers.insert("x-api-key", HeaderValue::from_static(API_KEY));
    let res = reqwest::Client::new()
        .get(format!("http://{b}/items/7"))
        .headers(headers)
        .send()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    let item = res.text().await.map_err(|_| StatusCode::BAD_GATEWAY)?;
    Ok(format!("{item}, visit {visits}"))
}

fn get_request(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::get(uri).header("x-api-key", API_KEY);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::empty()).unwrap()
}

/// The value of `key` among `kvs`, as text.
fn attr(kvs: &[KeyValue], key: &str) -> Option<String> {
    kvs.iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The spans of the client's trace.
fn in_trace(spans: &[SpanData]) -> Vec<&SpanData> {
    spans
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == TRACE)
        .collect()
}

/// Every event of `spans` as its name and fields, for the assertions' messages.
fn describe(spans: &[&SpanData]) -> String {
    let mut out = String::new();
    for s in spans {
        out.push_str(&format!("span {:?} {:?}\n", s.name, s.attributes));
        for e in s.events.iter() {
            out.push_str(&format!("  event {:?} {:?}\n", e.name, e.attributes));
        }
    }
    out
}

/// Asserts that an event named `name` with these `fields` is in one of `spans`.
fn assert_event(service: &str, spans: &[&SpanData], name: &str, fields: &[(&str, &str)]) {
    let found = spans.iter().flat_map(|s| s.events.iter()).any(|e| {
        e.name == name
            && fields
                .iter()
                .all(|(k, v)| attr(&e.attributes, k).as_deref() == Some(*v))
    });
    assert!(
        found,
        "service {service}: no {name:?} event with {fields:?} in the trace:\n{}",
        describe(spans)
    );
}

/// The one request span of a service in the trace (`TraceContextLayer`'s, named after the
/// method).
fn request_span<'a>(service: &str, spans: &[&'a SpanData]) -> &'a SpanData {
    let requests: Vec<_> = spans.iter().filter(|s| s.name == "GET").collect();
    assert_eq!(
        requests.len(),
        1,
        "service {service}: one request span:\n{}",
        describe(spans)
    );
    requests[0]
}

/// Asserts that the service sent Redis commands in the trace, each a client span under its
/// request span, named (never an argument) and with its outcome and duration.
fn assert_redis_commands(service: &str, spans: &[&SpanData], request: &SpanData) {
    let commands: Vec<_> = spans.iter().filter(|s| s.name == "redis command").collect();
    assert!(
        !commands.is_empty(),
        "service {service}: no Redis command span:\n{}",
        describe(spans)
    );
    for c in commands {
        assert_eq!(c.span_kind, SpanKind::Client);
        assert_eq!(c.parent_span_id, request.span_context.span_id());
        assert_eq!(
            attr(&c.attributes, "db.system.name").as_deref(),
            Some("redis")
        );
        let op = attr(&c.attributes, "db.operation.name").unwrap();
        assert!(
            !op.is_empty() && op.chars().all(|c| c.is_ascii_alphabetic()),
            "service {service}: command named {op:?}"
        );
        assert_eq!(
            attr(&c.attributes, "outcome").as_deref(),
            Some("ok"),
            "{c:?}"
        );
        assert!(attr(&c.attributes, "duration_us").is_some(), "{c:?}");
    }
}

/// Asserts that no span or event of `spans` shows any of `secrets`.
fn assert_no_secret(spans: &[SpanData], secrets: &[&str]) {
    for s in spans {
        let events = s.events.iter().flat_map(|e| e.attributes.iter());
        for kv in s.attributes.iter().chain(events) {
            let value = kv.value.to_string();
            for secret in secrets {
                assert!(
                    !value.contains(secret),
                    "{} = {value:?} shows a secret in {:?}",
                    kv.key,
                    s.name
                );
            }
        }
    }
}

#[test]
fn one_trace_holds_every_layers_decision_across_two_services() {
    let redis = RedisServer::start();
    let b = ServiceB::start(config(&redis, "b"));

    let a_exporter = InMemorySpanExporter::default();
    let (subscriber, a_provider) = subscriber(a_exporter.clone());
    let guard = tracing::subscriber::set_default(subscriber);
    let (cookie, res_traceparent, body) = runtime().block_on(async {
        let stack = Stack::build(&config(&redis, "a")).unwrap();
        let app = service_a(&stack, b.addr);
        // A session to load (a trace of its own: no traceparent).
        let login = app
            .clone()
            .oneshot(get_request("/login", &[]))
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::OK);
        let cookie = cookie_pair(login.headers()["set-cookie"].to_str().unwrap()).to_owned();
        let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
        let req = get_request(
            "/front",
            &[("traceparent", &traceparent), ("cookie", &cookie)],
        );
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res_traceparent = res.headers()["traceparent"].to_str().unwrap().to_owned();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (cookie, res_traceparent, body)
    });
    assert_eq!(&body[..], b"item 7, visit 1");
    a_provider.force_flush().unwrap();
    drop(guard);
    let b_all = b.finish();
    let a_all = a_exporter.get_finished_spans().unwrap();

    // Both services report spans of the client's trace; B served nothing else.
    let a_spans = in_trace(&a_all);
    let b_spans = in_trace(&b_all);
    assert!(!a_spans.is_empty(), "A reported no span of the trace");
    assert_eq!(
        b_spans.len(),
        b_all.len(),
        "B reported spans of another trace"
    );
    // A's request span is the client's child, B's is A's; the response names A's span.
    let a_request = request_span("A", &a_spans);
    let b_request = request_span("B", &b_spans);
    assert_eq!(a_request.parent_span_id.to_string(), CLIENT_SPAN);
    assert_eq!(b_request.parent_span_id, a_request.span_context.span_id());
    assert_eq!(
        res_traceparent,
        format!("00-{TRACE}-{}-01", a_request.span_context.span_id())
    );

    // Every layer's decision, with its outcome, in the trace.
    for (service, spans) in [("A", &a_spans), ("B", &b_spans)] {
        assert_event(
            service,
            spans,
            "rate limit decision",
            &[
                ("policy", "default"),
                ("outcome", "allowed"),
                ("key_kind", "text"),
            ],
        );
        assert_event(
            service,
            spans,
            "circuit breaker decision",
            &[
                ("breaker", "/"),
                ("state", "closed"),
                ("outcome", "permitted"),
            ],
        );
    }
    assert_event("A", &a_spans, "session load", &[("outcome", "found")]);
    assert_event(
        "A",
        &a_spans,
        "session save",
        &[("op", "save"), ("outcome", "ok"), ("set_cookie", "true")],
    );
    // A's request carries the session cookie: the cache does not look it up.
    assert_event(
        "A",
        &a_spans,
        "cache lookup",
        &[("outcome", "bypass"), ("reason", "cookie")],
    );
    assert_event("B", &b_spans, "cache lookup", &[("outcome", "miss")]);
    assert_event("B", &b_spans, "cache stored", &[]);
    assert_redis_commands("A", &a_spans, a_request);
    assert_redis_commands("B", &b_spans, b_request);

    // Never the API key nor the session id, in any span of either service.
    let session_id = cookie.split_once('=').unwrap().1;
    assert_no_secret(&a_all, &[API_KEY, session_id]);
    assert_no_secret(&b_all, &[API_KEY, session_id]);
}

/// `trace_context` turns the layer on and off (here from the environment): a response
/// carries the request span's `traceparent` only when it is on, though the subscriber exports
/// spans either way.
#[test]
fn trace_context_turns_the_layer_on_and_off() {
    let (subscriber, _provider) = subscriber(InMemorySpanExporter::default());
    let _guard = tracing::subscriber::set_default(subscriber);
    runtime().block_on(async {
        for (value, on) in [("true", true), ("false", false)] {
            let config = StackConfig::from_toml("[tracing]")
                .unwrap()
                .env_overrides_from([("TOWER_SCALE__TRACING__TRACE_CONTEXT", value)])
                .unwrap();
            let stack = Stack::build(&config).unwrap();
            let app = stack.apply(Router::new().route("/", get(|| async { "hi" })));
            let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
            let res = app
                .oneshot(get_request("/", &[("traceparent", &traceparent)]))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let answered = res
                .headers()
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_owned());
            match answered {
                Some(t) => assert!(on && t.starts_with(&format!("00-{TRACE}-")), "{value}: {t}"),
                None => assert!(!on, "trace_context = {value}: no traceparent"),
            }
        }
    });
}
