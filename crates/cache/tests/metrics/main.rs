//! Each metric of `tower_scale_cache::names` moves when its event happens, read from a
//! Prometheus recorder installed for the test's thread (the tests run on a current-thread
//! runtime, so the cache's tasks report to it too).

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use http_body_util::BodyExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use support::{T0, fetch, patient_backend, request, send};
use tower::ServiceExt;
use tower_scale_cache::{
    Cache, ManualClock, RedisStore, ResponseCacheConfig, ResponseCacheLayer, names,
};
use tower_scale_testkit::RedisServer;

/// The value of the series `series` (`name{label="value"}` as the exporter writes it), 0 when
/// absent.
fn value(recorder: &PrometheusRecorder, series: &str) -> f64 {
    tower_scale_testkit::metric_value(&recorder.handle().render(), series).unwrap_or(0.0)
}

/// `/r` answering with `cache-control` (and an `ETag`), behind `layer`.
fn app(layer: ResponseCacheLayer, cache_control: &'static str) -> Router {
    Router::new()
        .route(
            "/r",
            get(move || async move {
                (
                    [
                        (
                            header::CACHE_CONTROL,
                            HeaderValue::from_static(cache_control),
                        ),
                        (header::ETAG, HeaderValue::from_static("\"e\"")),
                    ],
                    "body",
                )
            }),
        )
        .layer(layer)
}

fn memory(clock: &ManualClock) -> Cache {
    Cache::builder(tower_scale_cache::MemoryStore::default())
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn requests_by_result_bytes_stored_and_refusals() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let clock = ManualClock::new(T0);
    let layer =
        ResponseCacheLayer::new(memory(&clock)).stale_while_revalidate(Duration::from_secs(60));
    let a = app(layer.clone(), "max-age=10");
    let hits = r#"cache_requests_total{result="hit"}"#;
    let misses = r#"cache_requests_total{result="miss"}"#;
    let stale = r#"cache_requests_total{result="stale"}"#;
    fetch(&a, "/r").await;
    assert_eq!(value(&recorder, misses), 1.0);
    assert!(
        value(&recorder, names::CACHE_STORED_BYTES_TOTAL.name) > 4.0,
        "the entry's bytes"
    );
    fetch(&a, "/r").await;
    fetch(&a, "/r").await;
    assert_eq!(value(&recorder, hits), 2.0);
    clock.advance(Duration::from_secs(11));
    fetch(&a, "/r").await;
    assert_eq!(value(&recorder, stale), 1.0, "stale-while-revalidate");

    let refused = r#"cache_stores_refused_total{reason="no-store"}"#;
    let b = app(ResponseCacheLayer::new(memory(&clock)), "no-store");
    fetch(&b, "/r").await;
    assert_eq!(value(&recorder, refused), 1.0);
}

#[tokio::test]
async fn bypasses_by_reason() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let a = app(
        ResponseCacheLayer::new(memory(&ManualClock::new(T0))),
        "max-age=10",
    );
    send(&a, request("GET", "/r", &[("cookie", "a=1")])).await;
    send(&a, request("GET", "/r", &[("authorization", "Bearer x")])).await;
    send(&a, request("GET", "/r", &[("cookie", "a=1")])).await;
    assert_eq!(
        value(&recorder, r#"cache_bypasses_total{reason="cookie"}"#),
        2.0
    );
    assert_eq!(
        value(&recorder, r#"cache_bypasses_total{reason="authorization"}"#),
        1.0
    );
    assert_eq!(
        value(&recorder, r#"cache_requests_total{result="bypass"}"#),
        3.0
    );
}

#[tokio::test]
async fn revalidations_by_outcome() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let clock = ManualClock::new(T0);
    let layer =
        ResponseCacheLayer::from_config(memory(&clock), &ResponseCacheConfig::standards()).unwrap();
    // The origin always answers 200 with the same ETag: not a 304, so `modified`.
    let a = app(layer, "max-age=10");
    fetch(&a, "/r").await;
    clock.advance(Duration::from_secs(11));
    fetch(&a, "/r").await;
    assert_eq!(
        value(
            &recorder,
            r#"cache_revalidations_total{outcome="modified"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn single_flight_joins() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let cache = memory(&ManualClock::new(T0));
    let slow = Router::new()
        .route(
            "/r",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                ([(header::CACHE_CONTROL, "max-age=10")], "x")
            }),
        )
        .layer(ResponseCacheLayer::new(cache));
    futures_util::future::join_all((0..5).map(|_| fetch(&slow, "/r"))).await;
    assert_eq!(value(&recorder, names::CACHE_FLIGHT_JOINS_TOTAL.name), 4.0);
}

#[tokio::test]
async fn local_tier_hits_and_purges_sent_and_received() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let server = RedisServer::start();
    let instance = || {
        Cache::builder(RedisStore::new(patient_backend(&server)))
            .l1(1 << 20)
            .build()
            .unwrap()
    };
    let (one, two) = (instance(), instance());
    for c in [&one, &two] {
        assert!(c.ready(Duration::from_secs(10)).await, "subscribed");
    }
    let a = app(ResponseCacheLayer::new(one.clone()), "max-age=60");
    fetch(&a, "/r").await;
    fetch(&a, "/r").await;
    assert!(value(&recorder, names::CACHE_L1_HITS_TOTAL.name) >= 1.0);
    one.invalidate("/r").await.unwrap();
    assert_eq!(value(&recorder, names::CACHE_PURGES_SENT_TOTAL.name), 1.0);
    // Both instances (the sender's own subscription included) apply it.
    assert_eq!(
        value(&recorder, names::CACHE_PURGES_RECEIVED_TOTAL.name),
        2.0
    );
}

/// Every cache metric is a counter with at most one label; that the metrics guide lists each with
/// its kind and labels is checked against `tower_scale::metrics_catalog()` by the umbrella's
/// `metrics_doc` test.
#[test]
fn every_metric_is_a_counter_with_bounded_labels() {
    for m in names::METRICS {
        assert_eq!(m.kind, tower_scale_core::MetricKind::Counter, "{}", m.name);
        assert!(m.labels.len() <= 1, "{}", m.name);
    }
}

/// What [`origin`] answers: status, headers, and how the body ends.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Ending,
}

/// How an [`origin`]'s body ends.
#[derive(Clone, Copy)]
enum Ending {
    /// `"body"` and the end.
    Plain,
    /// `"body"` and trailers.
    Trailers,
    /// `"body"` and a read error.
    Error,
}

/// An origin answering `answer` on every path, behind `layer`.
fn origin<K: tower_scale_cache::MakeCacheKey>(
    layer: ResponseCacheLayer<K>,
    answer: Answer,
) -> Router {
    use axum::body::Body;
    use http_body::Frame;
    use http_body_util::StreamBody;

    Router::new()
        .fallback(move || {
            let answer = answer.clone();
            async move {
                let data = || Ok::<_, std::io::Error>(Frame::data(bytes::Bytes::from("body")));
                let body = match answer.body {
                    Ending::Plain => Body::from("body"),
                    Ending::Trailers => {
                        let mut t = axum::http::HeaderMap::new();
                        t.insert("x-checksum", HeaderValue::from_static("1"));
                        Body::new(StreamBody::new(futures_util::stream::iter([
                            data(),
                            Ok(Frame::trailers(t)),
                        ])))
                    }
                    Ending::Error => Body::new(StreamBody::new(futures_util::stream::iter([
                        data(),
                        Err(std::io::Error::other("origin reset")),
                    ]))),
                };
                let mut res = axum::response::Response::new(body);
                *res.status_mut() = axum::http::StatusCode::from_u16(answer.status).unwrap();
                for (name, value) in answer.headers {
                    res.headers_mut()
                        .append(name, HeaderValue::from_str(&value).unwrap());
                }
                res
            }
        })
        .layer(layer)
}

/// A `200` with `headers` and a plain body.
fn ok(headers: &[(&'static str, &str)]) -> Answer {
    Answer {
        status: 200,
        headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
        body: Ending::Plain,
    }
}

/// A refusal case: reason, layer, the origin's answer, the headers of each request sent.
type Refusal<'a> = (
    &'a str,
    ResponseCacheLayer,
    Answer,
    Vec<Vec<(&'a str, &'a str)>>,
);

#[tokio::test]
async fn stores_refused_by_each_reason() {
    let clock = ManualClock::new(T0);
    let layer = || ResponseCacheLayer::new(memory(&clock));
    let fresh = ("cache-control", "max-age=10");
    let long = "x".repeat(usize::from(u16::MAX) + 1);
    // (reason, layer, origin's answer, request headers of each request sent)
    let cases: Vec<Refusal<'_>> = vec![
        (
            "status",
            layer(),
            Answer {
                status: 201,
                ..ok(&[fresh])
            },
            vec![vec![]],
        ),
        (
            "no-store",
            layer(),
            ok(&[("cache-control", "no-store")]),
            vec![vec![]],
        ),
        (
            "private",
            layer(),
            ok(&[("cache-control", "private, max-age=10")]),
            vec![vec![]],
        ),
        (
            "no-cache",
            layer(),
            ok(&[("cache-control", "no-cache, max-age=10"), ("etag", "\"e\"")]),
            vec![vec![]],
        ),
        (
            "set-cookie",
            layer(),
            ok(&[fresh, ("set-cookie", "a=1")]),
            vec![vec![]],
        ),
        ("vary", layer(), ok(&[fresh, ("vary", "*")]), vec![vec![]]),
        (
            "authorization",
            layer().cache_authorized(true),
            ok(&[fresh]),
            vec![vec![("authorization", "Bearer x")]],
        ),
        ("no-ttl", layer(), ok(&[]), vec![vec![]]),
        (
            "header-too-large",
            layer(),
            ok(&[fresh, ("x-long", &long)]),
            vec![vec![]],
        ),
        (
            "content-encoding",
            layer(),
            ok(&[
                fresh,
                ("vary", "accept-encoding"),
                ("content-encoding", "br"),
            ]),
            vec![vec![("accept-encoding", "gzip")]],
        ),
        (
            "too-many-variants",
            layer().max_variants(1),
            ok(&[fresh, ("vary", "accept-language")]),
            vec![
                vec![("accept-language", "en")],
                vec![("accept-language", "fr")],
            ],
        ),
        (
            "too-large",
            layer().max_body_size(2),
            ok(&[fresh]),
            vec![vec![]],
        ),
    ];
    let ending = |reason, body| {
        let answer = Answer {
            body,
            ..ok(&[fresh])
        };
        (reason, layer(), answer, vec![vec![]])
    };
    let cases = cases.into_iter().chain([
        ending("trailers", Ending::Trailers),
        ending("body-error", Ending::Error),
    ]);
    for (reason, layer, answer, requests) in cases {
        let recorder = PrometheusBuilder::new().build_recorder();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let app = origin(layer, answer);
        for headers in requests {
            // Read to the end (where too-large, trailers and body-error are decided), the
            // origin's read error included.
            let res = app.clone().oneshot(request("GET", "/r", &headers)).await;
            let _ = res.unwrap().into_body().collect().await;
        }
        let series = format!("cache_stores_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(value(&recorder, &series), 1.0, "{reason}");
    }
}

#[tokio::test]
async fn revalidations_not_modified_and_error() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let clock = ManualClock::new(T0);
    let standards = || {
        ResponseCacheLayer::from_config(memory(&clock), &ResponseCacheConfig::standards()).unwrap()
    };
    let validated = [("cache-control", "max-age=10"), ("etag", "\"e\"")];
    for (outcome, status) in [("not_modified", 304), ("error", 503)] {
        // The first request stores a 200; the stale entry's revalidation gets `status`.
        let cache = standards();
        let stored = origin(cache.clone(), ok(&validated));
        fetch(&stored, "/r").await;
        clock.advance(Duration::from_secs(11));
        let answering = origin(
            cache,
            Answer {
                status,
                ..ok(&validated)
            },
        );
        let series = format!("cache_revalidations_total{{outcome=\"{outcome}\"}}");
        assert_eq!(value(&recorder, &series), 0.0, "{outcome}");
        fetch(&answering, "/r").await;
        assert_eq!(value(&recorder, &series), 1.0, "{outcome}");
    }
}

#[tokio::test]
async fn bypasses_for_a_long_key_too_many_params_and_no_key() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let clock = ManualClock::new(T0);
    let fresh = [("cache-control", "max-age=10")];
    let layer = ResponseCacheLayer::new(memory(&clock))
        .max_key_length(64)
        .max_query_params(2);
    let app = origin(layer, ok(&fresh));
    fetch(&app, &format!("/{}", "k".repeat(100))).await;
    fetch(&app, "/r?a=1&b=2&c=3").await;
    let no_key = origin(
        ResponseCacheLayer::new(memory(&clock)).key_with(|_: &axum::http::request::Parts| None),
        ok(&fresh),
    );
    fetch(&no_key, "/r").await;
    for reason in ["key-too-long", "too-many-params", "key"] {
        let series = format!("cache_bypasses_total{{reason=\"{reason}\"}}");
        assert_eq!(value(&recorder, &series), 1.0, "{reason}");
    }
}
