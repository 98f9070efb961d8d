//! The response cache layer against real Redis: every storability rule, freshness with a
//! manual clock, stale-while-revalidate, stale-if-error, 304, Vary, tags, unsafe-method
//! purges, stampedes (per instance and across instances), the local tier's purge guarantee,
//! and Redis paused mid-run.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::future::join_all;
use support::{backend, eventually, fetch, send};
use tower_scale_cache::{
    Cache, CacheKey, CacheTags, LockConfig, ManualClock, RedisStore, ResponseCacheLayer,
};
use tower_scale_testkit::{RedisCluster, RedisServer};

const T0: u64 = 1_700_000_000_000;

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// A Redis cache with a manual clock.
fn cache(server: &RedisServer, clock: &ManualClock) -> Cache {
    Cache::builder(RedisStore::new(backend(server)))
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// A Redis server, a manual clock at `T0`, and [`counting_app`] with the default layer on a
/// cache over both; `calls` counts the origin's calls.
struct Setup {
    /// Stops the server when dropped: bind it (`server: _server`) for the test's length.
    server: RedisServer,
    clock: ManualClock,
    calls: Arc<AtomicUsize>,
    app: Router,
}

fn setup(cc: &'static str) -> Setup {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let app = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)),
        calls.clone(),
        cc,
    );
    Setup {
        server,
        clock,
        calls,
        app,
    }
}

/// `/item/{id}`: counts calls and answers `item <id> #<call>` with the given Cache-Control.
fn counting_app(layer: ResponseCacheLayer, calls: Arc<AtomicUsize>, cc: &'static str) -> Router {
    Router::new()
        .route(
            "/item/{id}",
            get(move |Path(id): Path<String>| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move { ([(header::CACHE_CONTROL, cc)], format!("item {id} #{n}")) }
            })
            .post(|| async { "created" }),
        )
        .layer(layer)
}

/// `path` answering `body` with `headers`, counting calls.
fn fixed_route(
    path: &str,
    headers: &'static [(&'static str, &'static str)],
    body: String,
    calls: &Arc<AtomicUsize>,
) -> Router {
    let calls = calls.clone();
    Router::new().route(
        path,
        get(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            async move {
                let mut h = HeaderMap::new();
                for (n, v) in headers {
                    h.append(
                        header::HeaderName::from_static(n),
                        HeaderValue::from_static(v),
                    );
                }
                (h, body)
            }
        }),
    )
}

#[tokio::test]
async fn miss_then_hit_with_age_and_cache_status() {
    let Setup {
        server: _server,
        clock,
        calls,
        app,
        ..
    } = setup("max-age=60");
    let first = fetch(&app, "/item/1").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.cache_status(), "tower-scale; fwd=uri-miss; stored");
    assert_eq!(first.text(), "item 1 #1");
    clock.advance(Duration::from_secs(5));
    let second = fetch(&app, "/item/1").await;
    assert_eq!(second.text(), "item 1 #1");
    assert_eq!(second.cache_status(), "tower-scale; hit; ttl=55");
    assert_eq!(second.headers["age"], "5");
    assert_eq!(second.headers["cache-control"], "max-age=60");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Another URI is another entry; the query is normalised.
    assert_eq!(fetch(&app, "/item/2?b=1&a=2").await.text(), "item 2 #2");
    assert_eq!(fetch(&app, "/item/2?a=2&b=1").await.text(), "item 2 #2");
    // Expired: fetched again.
    clock.advance(Duration::from_secs(56));
    let third = fetch(&app, "/item/1").await;
    assert_eq!(third.text(), "item 1 #3");
    assert_eq!(third.cache_status(), "tower-scale; fwd=uri-miss; stored");
}

#[tokio::test]
async fn entries_are_binary_not_json() {
    let Setup { server, app, .. } = setup("max-age=60");
    fetch(&app, "/item/1").await;
    let raw = server.cli(&["--no-raw", "GET", "ts:cache:{/item/1}:s:GET"]);
    assert!(
        raw.starts_with("\"TSC\\x03"),
        "binary entry with magic and version: {raw}"
    );
    assert!(raw.contains("item 1 #1"), "body stored as is: {raw}");
    assert!(!raw.contains("\"status\""), "not JSON: {raw}");
}

/// Bytes of an entry of an older `version` (1: the hash-field layout; 2: header names written
/// out) of a fresh 200 response with `headers` and `body`: both share the layout.
fn older_entry(version: u8, headers: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut v = vec![b'T', b'S', b'C', version, 1];
    for t in [T0, 60_000, 0, 0] {
        v.extend_from_slice(&t.to_be_bytes());
    }
    v.extend_from_slice(&200u16.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&u16::try_from(headers.len()).unwrap().to_be_bytes());
    for (name, value) in headers {
        for part in [name, value] {
            v.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
            v.extend_from_slice(part);
        }
    }
    v.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[tokio::test]
async fn version_2_entries_are_misses_then_overwritten_by_version_3() {
    use tower_scale_redis::redis;
    let Setup {
        server, calls, app, ..
    } = setup("max-age=60");
    let raw = backend(&server);
    let key = "ts:cache:{/item/1}:s:GET";
    raw.query::<()>(redis::cmd("SET").arg(key).arg(older_entry(
        2,
        &[(b"content-type", b"text/plain")],
        b"v2 body",
    )))
    .await
    .unwrap();
    let first = fetch(&app, "/item/1").await;
    assert_eq!(first.text(), "item 1 #1", "a miss, not the version 2 body");
    assert_eq!(first.cache_status(), "tower-scale; fwd=uri-miss; stored");
    assert!(
        server
            .cli(&["--no-raw", "GET", key])
            .starts_with("\"TSC\\x03"),
        "overwritten in the current layout"
    );
    let second = fetch(&app, "/item/1").await;
    assert_eq!(second.text(), "item 1 #1");
    assert!(second.cache_status().starts_with("tower-scale; hit; ttl="));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn entries_of_an_older_layout_or_type_are_misses_then_overwritten() {
    use tower_scale_redis::redis;
    let Setup {
        server,
        clock,
        calls,
        app,
    } = setup("max-age=60");
    let raw = backend(&server);
    // A version 1 entry where this version keeps its strings, and a version 1 hash at the
    // old key (still written by instances of the old version during a rolling deploy).
    let old = older_entry(1, &[], b"old body");
    raw.query::<()>(redis::cmd("SET").arg("ts:cache:{/item/1}:s:GET").arg(&old))
        .await
        .unwrap();
    raw.query::<()>(
        redis::cmd("HSET")
            .arg("ts:cache:{/item/1}:e")
            .arg("GET")
            .arg(&old),
    )
    .await
    .unwrap();
    let first = fetch(&app, "/item/1").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.text(), "item 1 #1", "a miss, not the old body");
    assert_eq!(first.cache_status(), "tower-scale; fwd=uri-miss; stored");
    let second = fetch(&app, "/item/1").await;
    assert_eq!(second.text(), "item 1 #1");
    assert!(second.cache_status().starts_with("tower-scale; hit; ttl="));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "overwritten by the miss");
    // A purge also deletes the old layout's hash.
    let cache = cache(&server, &clock);
    cache.invalidate("/item/1").await.unwrap();
    assert_eq!(server.cli(&["EXISTS", "ts:cache:{/item/1}:e"]), "0");

    // Something of another type under the entry's key (a hash): a miss, then overwritten.
    server.cli(&["HSET", "ts:cache:{/item/2}:s:GET", "GET", "x"]);
    let third = fetch(&app, "/item/2").await;
    assert_eq!(third.text(), "item 2 #2");
    assert_eq!(third.cache_status(), "tower-scale; fwd=uri-miss; stored");
    assert_eq!(fetch(&app, "/item/2").await.text(), "item 2 #2");
    assert_eq!(server.cli(&["TYPE", "ts:cache:{/item/2}:s:GET"]), "string");

    // Garbage and truncated entries: misses too.
    for bad in [b"garbage".to_vec(), old[..old.len() - 3].to_vec()] {
        raw.query::<()>(redis::cmd("SET").arg("ts:cache:{/item/3}:s:GET").arg(&bad))
            .await
            .unwrap();
        let n = calls.load(Ordering::SeqCst) + 1;
        let r = fetch(&app, "/item/3").await;
        assert_eq!(r.text(), format!("item 3 #{n}"));
        assert_eq!(r.cache_status(), "tower-scale; fwd=uri-miss; stored");
    }
}

#[tokio::test]
async fn a_hit_is_one_get_of_a_string() {
    let Setup {
        server, clock, app, ..
    } = setup("max-age=60");
    fetch(&app, "/item/1").await;
    clock.advance(Duration::from_secs(2));
    server.reset_stats();
    let hit = fetch(&app, "/item/1").await;
    assert_eq!(hit.text(), "item 1 #1");
    assert_eq!(hit.cache_status(), "tower-scale; hit; ttl=58");
    assert_eq!(hit.headers["age"], "2");
    assert_eq!(hit.headers["cache-control"], "max-age=60");
    for name in ["age", "cache-status", "cache-control", "content-type"] {
        assert_eq!(hit.headers.get_all(name).iter().count(), 1, "{name}");
    }
    let calls: Vec<(String, u64)> = server
        .command_calls()
        .into_iter()
        .filter(|(c, _)| c != "info" && !c.starts_with("config"))
        .collect();
    assert_eq!(calls, [("get".to_owned(), 1)]);
}

#[tokio::test]
async fn ttl_from_s_maxage_max_age_or_the_route() {
    let Setup {
        server, clock, app, ..
    } = setup("max-age=60, s-maxage=10");
    fetch(&app, "/item/1").await;
    clock.advance(Duration::from_secs(9));
    assert_eq!(
        fetch(&app, "/item/1").await.cache_status(),
        "tower-scale; hit; ttl=1"
    );
    clock.advance(Duration::from_secs(2));
    assert!(
        fetch(&app, "/item/1")
            .await
            .cache_status()
            .contains("fwd=uri-miss")
    );

    // No lifetime in the response: not stored, unless the route has a TTL.
    let app = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)),
        counter(),
        "public",
    );
    assert_eq!(
        fetch(&app, "/item/9").await.cache_status(),
        "tower-scale; fwd=uri-miss; detail=no-ttl"
    );
    let app = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)).ttl(Duration::from_secs(30)),
        counter(),
        "public",
    );
    fetch(&app, "/item/8").await;
    assert_eq!(
        fetch(&app, "/item/8").await.cache_status(),
        "tower-scale; hit; ttl=30"
    );
    // The route's TTL can override the origin's.
    let app = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock))
            .ttl(Duration::from_secs(5))
            .override_origin_ttl(true),
        counter(),
        "max-age=600",
    );
    fetch(&app, "/item/7").await;
    assert_eq!(
        fetch(&app, "/item/7").await.cache_status(),
        "tower-scale; hit; ttl=5"
    );
}

/// Every response the rules forbid storing is passed through and fetched again next time.
#[tokio::test]
async fn unstorable_responses_are_not_stored() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/{case}",
            get(move |Path(case): Path<String>| {
                c.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut h = HeaderMap::new();
                    let mut status = StatusCode::OK;
                    let cc = |v: &'static str| HeaderValue::from_static(v);
                    match case.as_str() {
                        "no-store" => h.insert(header::CACHE_CONTROL, cc("no-store, max-age=60")),
                        "private" => h.insert(header::CACHE_CONTROL, cc("private, max-age=60")),
                        "no-cache" => h.insert(header::CACHE_CONTROL, cc("no-cache, max-age=60")),
                        "set-cookie" => {
                            h.insert(header::SET_COOKIE, cc("sid=1"));
                            h.insert(header::CACHE_CONTROL, cc("max-age=60"))
                        }
                        "vary-star" => {
                            h.insert(header::VARY, cc("*"));
                            h.insert(header::CACHE_CONTROL, cc("max-age=60"))
                        }
                        "status" => {
                            status = StatusCode::CREATED;
                            h.insert(header::CACHE_CONTROL, cc("max-age=60"))
                        }
                        _ => None,
                    };
                    (status, h, "body")
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    for (case, reason) in [
        ("no-store", "no-store"),
        ("private", "private"),
        ("no-cache", "no-cache"),
        ("set-cookie", "set-cookie"),
        ("vary-star", "vary"),
        ("status", "status"),
    ] {
        let before = calls.load(Ordering::SeqCst);
        for _ in 0..2 {
            let r = fetch(&app, &format!("/{case}")).await;
            assert_eq!(
                r.cache_status(),
                format!("tower-scale; fwd=uri-miss; detail={reason}"),
                "{case}"
            );
            assert_eq!(r.text(), "body");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before + 2,
            "{case} reached the origin twice"
        );
        if case == "set-cookie" {
            assert_eq!(
                fetch(&app, "/set-cookie").await.headers["set-cookie"],
                "sid=1"
            );
        }
    }
    assert_eq!(
        server.cli(&["KEYS", "ts:cache:*"]),
        "",
        "nothing was written to Redis"
    );
}

#[tokio::test]
async fn authorization_and_cookie_bypass_unless_configured() {
    let Setup {
        server,
        clock,
        calls,
        app,
    } = setup("max-age=60");
    let with = |name: &str, value: &str| {
        Request::get("/item/1")
            .header(name, value)
            .body(Body::empty())
            .unwrap()
    };
    fetch(&app, "/item/1").await; // stored
    let r = send(&app, with("authorization", "Bearer x")).await;
    assert_eq!(
        r.cache_status(),
        "tower-scale; fwd=bypass; detail=authorization"
    );
    let r = send(&app, with("cookie", "sid=1")).await;
    assert_eq!(r.cache_status(), "tower-scale; fwd=bypass; detail=cookie");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "both bypassed to the origin"
    );

    // A public route serves requests with cookies from the cache.
    let public = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)).public(true),
        counter(),
        "max-age=60",
    );
    let r = send(&public, with("cookie", "sid=1")).await;
    assert_eq!(
        r.cache_status(),
        "tower-scale; hit; ttl=60",
        "shares the entry stored above"
    );

    // Authorized requests, when allowed, store only explicitly shareable responses.
    let authed = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)).cache_authorized(true),
        counter(),
        "max-age=60",
    );
    let r = send(&authed, with("authorization", "Bearer x")).await;
    assert_eq!(r.cache_status(), "tower-scale; hit; ttl=60");
    let r = send(
        &authed,
        Request::get("/item/5")
            .header("authorization", "Bearer x")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.cache_status(),
        "tower-scale; fwd=uri-miss; detail=authorization"
    );
    let shared = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)).cache_authorized(true),
        counter(),
        "s-maxage=60",
    );
    let r = send(
        &shared,
        Request::get("/item/6")
            .header("authorization", "Bearer x")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.cache_status(), "tower-scale; fwd=uri-miss; stored");
}

#[tokio::test]
async fn large_bodies_stream_through_uncached() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/big",
            get(move || {
                c.fetch_add(1, Ordering::SeqCst);
                // A streamed body of 64 chunks of 1 KiB: no size hint.
                let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024]));
                async move {
                    (
                        [(header::CACHE_CONTROL, "max-age=60")],
                        Body::from_stream(futures_util::stream::iter(chunks)),
                    )
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache(&server, &clock)).max_body_size(10_000));
    for _ in 0..2 {
        let r = fetch(&app, "/big").await;
        assert_eq!(r.body.len(), 64 * 1024, "the whole body arrives");
        assert_eq!(
            r.cache_status(),
            "tower-scale; fwd=uri-miss; detail=too-large"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let Setup {
        server,
        clock,
        calls,
        app,
    } = setup("max-age=10, stale-while-revalidate=30");
    assert_eq!(fetch(&app, "/item/1").await.text(), "item 1 #1");
    clock.advance(Duration::from_secs(15));
    // 50 concurrent requests on the stale entry: all served stale at once, one refresh.
    let replies = join_all((0..50).map(|_| fetch(&app, "/item/1"))).await;
    for r in &replies {
        assert_eq!(r.text(), "item 1 #1");
        assert_eq!(
            r.cache_status(),
            "tower-scale; hit; ttl=-5; detail=stale-while-revalidate"
        );
    }
    eventually("the background refresh stored #2", || {
        calls.load(Ordering::SeqCst) == 2
            && server
                .cli(&["GET", "ts:cache:{/item/1}:s:GET"])
                .contains("#2")
    })
    .await;
    let fresh = fetch(&app, "/item/1").await;
    assert_eq!(fresh.text(), "item 1 #2");
    assert!(fresh.cache_status().starts_with("tower-scale; hit;"));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "exactly one refresh");
    // Past the window: a plain miss.
    clock.advance(Duration::from_secs(41));
    assert_eq!(fetch(&app, "/item/1").await.text(), "item 1 #3");
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_fails() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let failing = Arc::new(AtomicBool::new(false));
    let f = failing.clone();
    let app = Router::new()
        .route(
            "/x",
            get(move || {
                let fail = f.load(Ordering::SeqCst);
                async move {
                    if fail {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [(header::CACHE_CONTROL, "no-store")],
                            "down",
                        )
                    } else {
                        (
                            StatusCode::OK,
                            [(header::CACHE_CONTROL, "max-age=10")],
                            "good",
                        )
                    }
                }
            }),
        )
        .layer(
            ResponseCacheLayer::new(cache(&server, &clock)).stale_if_error(Duration::from_secs(60)),
        );
    fetch(&app, "/x").await;
    failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(20));
    let r = fetch(&app, "/x").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "good");
    assert_eq!(
        r.cache_status(),
        "tower-scale; fwd=stale; fwd-status=503; detail=stale-if-error"
    );
    // Beyond the window the failure goes through.
    clock.advance(Duration::from_secs(60));
    let r = fetch(&app, "/x").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // The origin recovered: stored again.
    failing.store(false, Ordering::SeqCst);
    assert_eq!(
        fetch(&app, "/x").await.cache_status(),
        "tower-scale; fwd=uri-miss; stored"
    );
}

#[tokio::test]
async fn etag_and_if_none_match_answer_304_from_the_cache() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let app = fixed_route(
        "/doc",
        &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
        "document".into(),
        &calls,
    )
    .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    fetch(&app, "/doc").await;
    let r = send(
        &app,
        Request::get("/doc")
            .header("if-none-match", "\"v0\", W/\"v1\"")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    assert_eq!(r.headers["etag"], "\"v1\"");
    assert!(r.cache_status().contains("hit"));
    let r = send(
        &app,
        Request::get("/doc")
            .header("if-none-match", "\"v2\"")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "document");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn vary_keys_variants_by_the_named_request_headers() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/v",
            get(move |headers: HeaderMap| {
                c.fetch_add(1, Ordering::SeqCst);
                let lang = headers
                    .get("accept-language")
                    .map_or("none".to_owned(), |v| v.to_str().unwrap().to_owned());
                async move {
                    (
                        [
                            (header::CACHE_CONTROL, "max-age=60"),
                            (header::VARY, "Accept-Language"),
                        ],
                        format!("lang={lang}"),
                    )
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    let lang = |l: &str| {
        Request::get("/v")
            .header("accept-language", l)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&app, lang("fr")).await.text(), "lang=fr");
    let de = send(&app, lang("de")).await;
    assert_eq!(de.text(), "lang=de");
    assert_eq!(de.cache_status(), "tower-scale; fwd=vary-miss; stored");
    let fr = send(&app, lang("fr")).await;
    assert_eq!(
        (fr.text(), fr.cache_status()),
        ("lang=fr", "tower-scale; hit; ttl=60")
    );
    assert_eq!(send(&app, lang("de")).await.text(), "lang=de");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A fresh instance (no remembered Vary) finds the variant through the marker.
    let other = Router::new()
        .route("/v", get(|| async { "origin must not be called" }))
        .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    let fr = send(&other, lang("fr")).await;
    assert_eq!(
        (fr.text(), fr.cache_status()),
        ("lang=fr", "tower-scale; hit; ttl=60")
    );
    // Purging the URI removes every variant.
    cache(&server, &clock).invalidate("/v").await.unwrap();
    assert!(
        send(&app, lang("de"))
            .await
            .cache_status()
            .contains("fwd=uri-miss")
    );
}

#[tokio::test]
async fn tags_from_header_and_extension_purge_together() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let cache = cache(&server, &clock);
    let calls = counter();
    let (c1, c2) = (calls.clone(), calls.clone());
    let app = Router::new()
        .route(
            "/a",
            get(move || {
                c1.fetch_add(1, Ordering::SeqCst);
                async {
                    (
                        [
                            (header::CACHE_CONTROL, "max-age=60"),
                            (
                                header::HeaderName::from_static("surrogate-key"),
                                "catalog product-1",
                            ),
                        ],
                        "a",
                    )
                }
            }),
        )
        .route(
            "/b",
            get(move || {
                c2.fetch_add(1, Ordering::SeqCst);
                async {
                    (
                        Extension(CacheTags(vec!["catalog".into()])),
                        [(header::CACHE_CONTROL, "max-age=60")],
                        "b",
                    )
                        .into_response()
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()));
    let a = fetch(&app, "/a").await;
    assert!(
        !a.headers.contains_key("surrogate-key"),
        "the tag header is not sent on"
    );
    fetch(&app, "/b").await;
    assert!(fetch(&app, "/a").await.cache_status().contains("hit"));
    assert!(fetch(&app, "/b").await.cache_status().contains("hit"));
    cache.invalidate_tag("product-1").await.unwrap();
    assert!(fetch(&app, "/a").await.cache_status().contains("miss"));
    assert!(fetch(&app, "/b").await.cache_status().contains("hit"));
    cache.invalidate_tag("catalog").await.unwrap();
    assert!(fetch(&app, "/a").await.cache_status().contains("miss"));
    assert!(fetch(&app, "/b").await.cache_status().contains("miss"));
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn successful_unsafe_requests_purge_their_uri() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let fail = Arc::new(AtomicBool::new(false));
    let f = fail.clone();
    let calls = counter();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/r",
            get(move || {
                c.fetch_add(1, Ordering::SeqCst);
                async { ([(header::CACHE_CONTROL, "max-age=60")], "r") }
            })
            .put(move || {
                let fail = f.load(Ordering::SeqCst);
                async move {
                    if fail {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    let put = || Request::put("/r").body(Body::empty()).unwrap();
    fetch(&app, "/r").await;
    fail.store(true, Ordering::SeqCst);
    let r = send(&app, put()).await;
    assert_eq!(r.cache_status(), "tower-scale; fwd=method");
    assert!(
        fetch(&app, "/r").await.cache_status().contains("hit"),
        "a failed PUT purges nothing"
    );
    fail.store(false, Ordering::SeqCst);
    send(&app, put()).await;
    assert!(
        fetch(&app, "/r").await.cache_status().contains("miss"),
        "a successful PUT purges"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn head_is_answered_from_the_get_entry() {
    let Setup {
        server: _server,
        calls,
        app,
        ..
    } = setup("max-age=60");
    fetch(&app, "/item/1").await;
    let r = send(&app, Request::head("/item/1").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    assert!(r.cache_status().contains("hit"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_custom_key_can_bypass_or_share_entries() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let layer = ResponseCacheLayer::new(cache(&server, &clock)).key_with(
        |parts: &axum::http::request::Parts| {
            let tenant = parts.headers.get("x-tenant")?.to_str().ok()?;
            Some(CacheKey::new(format!("{tenant}:{}", parts.uri.path())))
        },
    );
    let app = counting_app_with(layer, calls.clone());
    let req = |tenant: Option<&str>| {
        let mut b = Request::get("/item/1");
        if let Some(t) = tenant {
            b = b.header("x-tenant", t);
        }
        b.body(Body::empty()).unwrap()
    };
    assert_eq!(
        send(&app, req(None)).await.cache_status(),
        "tower-scale; fwd=bypass; detail=key"
    );
    send(&app, req(Some("a"))).await;
    assert!(
        send(&app, req(Some("a")))
            .await
            .cache_status()
            .contains("hit")
    );
    assert!(
        send(&app, req(Some("b")))
            .await
            .cache_status()
            .contains("miss")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

fn counting_app_with<K: tower_scale_cache::MakeCacheKey>(
    layer: ResponseCacheLayer<K>,
    calls: Arc<AtomicUsize>,
) -> Router {
    Router::new()
        .route(
            "/item/{id}",
            get(move |Path(id): Path<String>| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    (
                        [(header::CACHE_CONTROL, "max-age=60")],
                        format!("item {id} #{n}"),
                    )
                }
            }),
        )
        .layer(layer)
}

/// A slow origin: `/slow` sleeps, counts, and answers a fixed body.
fn slow_app(layer: ResponseCacheLayer, calls: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route(
            "/slow",
            get(move || {
                let calls = calls.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    calls.fetch_add(1, Ordering::SeqCst);
                    ([(header::CACHE_CONTROL, "max-age=60")], "slow")
                }
            }),
        )
        .layer(layer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_cold_requests_make_one_origin_call() {
    let server = RedisServer::start();
    let calls = counter();
    let app = slow_app(
        ResponseCacheLayer::new(Cache::new(RedisStore::new(support::patient_backend(
            &server,
        )))),
        calls.clone(),
    );
    let replies = join_all((0..1000).map(|_| {
        let app = app.clone();
        tokio::spawn(async move { fetch(&app, "/slow").await })
    }))
    .await;
    for r in replies {
        let r = r.unwrap();
        assert_eq!((r.status, r.text()), (StatusCode::OK, "slow"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_with_the_lock_make_one_origin_call_in_total() {
    let server = RedisServer::start();
    let calls = counter();
    let lock = support::patient_lock();
    let apps: Vec<_> = (0..3)
        .map(|_| {
            // Each instance has its own backend (connections) and cache state.
            let cache = Cache::builder(RedisStore::new(support::patient_backend(&server)))
                .lock(lock)
                .build()
                .unwrap();
            slow_app(ResponseCacheLayer::new(cache), calls.clone())
        })
        .collect();
    let replies = join_all((0..3000).map(|i| {
        let app = apps[i % 3].clone();
        tokio::spawn(async move { fetch(&app, "/slow").await })
    }))
    .await;
    for r in replies {
        let r = r.unwrap();
        assert_eq!((r.status, r.text()), (StatusCode::OK, "slow"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_instance_a_is_seen_by_instance_bs_local_tier() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let l1_cache = || {
        Cache::builder(RedisStore::new(backend(&server)))
            .l1(1 << 20)
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (l1_cache(), l1_cache());
    assert!(a.ready(Duration::from_secs(5)).await && b.ready(Duration::from_secs(5)).await);
    let calls = counter();
    let app_a = counting_app(
        ResponseCacheLayer::new(a.clone()),
        calls.clone(),
        "max-age=60",
    );
    let app_b = counting_app(
        ResponseCacheLayer::new(b.clone()),
        calls.clone(),
        "max-age=60",
    );
    fetch(&app_b, "/item/1").await; // B stores, keeps it in its local tier
    server.reset_stats();
    for _ in 0..10 {
        assert!(
            fetch(&app_b, "/item/1")
                .await
                .cache_status()
                .contains("hit")
        );
    }
    assert_eq!(
        server.command_calls().iter().find(|(c, _)| c == "hget"),
        None,
        "B's hits came from its local tier, not Redis"
    );
    // A purges; when it returns, B serves the entry no more.
    a.invalidate("/item/1").await.unwrap();
    let r = fetch(&app_b, "/item/1").await;
    assert!(r.cache_status().contains("miss"), "{}", r.cache_status());
    assert_eq!(r.text(), "item 1 #2");
    // The same through a tag, and through an unsafe request on A.
    fetch(&app_a, "/item/2").await;
    fetch(&app_b, "/item/2").await;
    send(
        &app_a,
        Request::post("/item/2").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(
        fetch(&app_b, "/item/2")
            .await
            .cache_status()
            .contains("miss")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_not_confirmed_by_every_instance_is_reported() {
    let server = RedisServer::start();
    let a = Cache::builder(RedisStore::new(backend(&server)))
        .l1(1 << 20)
        .purge_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert!(a.ready(Duration::from_secs(5)).await);
    // A foreign subscriber that never acknowledges.
    let client =
        tower_scale_redis::redis::Client::open(format!("{}?protocol=resp3", server.url())).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let config = tower_scale_redis::redis::AsyncConnectionConfig::new().set_push_sender(tx);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    conn.subscribe("ts:cache:{bus}:inv").await.unwrap();
    let err = a.invalidate("/x").await.unwrap_err();
    assert!(
        matches!(
            err,
            tower_scale_cache::Error::PurgeUnconfirmed {
                expected: 2,
                acknowledged: 1
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_mid_run_gives_origin_responses_not_errors() {
    let server = RedisServer::start();
    let calls = counter();
    let cache = Cache::builder(RedisStore::new(backend(&server)))
        .l1(1 << 20)
        .lock(LockConfig::default())
        .build()
        .unwrap();
    let app = counting_app(ResponseCacheLayer::new(cache), calls.clone(), "max-age=60");
    fetch(&app, "/item/1").await;
    server.pause();
    // Cold keys while Redis hangs: every request answered by the origin.
    let replies = join_all((0..20).map(|i| {
        let app = app.clone();
        tokio::spawn(async move { fetch(&app, &format!("/item/cold{i}")).await })
    }))
    .await;
    for (i, r) in replies.into_iter().enumerate() {
        let r = r.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.text().starts_with(&format!("item cold{i} #")),
            "{}",
            r.text()
        );
    }
    server.resume();
    let mut stored = false;
    for i in 0..300 {
        let r = fetch(&app, &format!("/item/after{i}")).await;
        assert_eq!(r.status, StatusCode::OK);
        if fetch(&app, &format!("/item/after{i}"))
            .await
            .cache_status()
            .contains("hit")
        {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stored, "the cache recovers once Redis answers again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_redis_cluster() {
    let cluster = RedisCluster::start();
    let clock = ManualClock::new(T0);
    let make = || {
        Cache::builder(RedisStore::new(support::cluster_backend(&cluster)))
            .l1(1 << 20)
            .lock(LockConfig::default())
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    assert!(a.ready(Duration::from_secs(10)).await && b.ready(Duration::from_secs(10)).await);
    let calls = counter();
    let app_a = counting_app(
        ResponseCacheLayer::new(a.clone()),
        calls.clone(),
        "max-age=60",
    );
    let app_b = counting_app(
        ResponseCacheLayer::new(b.clone()),
        calls.clone(),
        "max-age=60",
    );
    for i in 0..20 {
        fetch(&app_a, &format!("/item/{i}")).await;
        assert!(
            fetch(&app_b, &format!("/item/{i}"))
                .await
                .cache_status()
                .contains("hit")
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        20,
        "keys spread over the slots all stored"
    );
    a.invalidate("/item/3").await.unwrap();
    assert!(
        fetch(&app_b, "/item/3")
            .await
            .cache_status()
            .contains("miss")
    );
    assert!(
        fetch(&app_b, "/item/4")
            .await
            .cache_status()
            .contains("hit")
    );
}

#[tokio::test]
async fn outside_compression_a_hit_serves_the_stored_encoded_variant() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let app = fixed_route(
        "/json",
        &[
            ("cache-control", "max-age=60"),
            ("content-type", "application/json"),
        ],
        format!("{{\"data\":\"{}\"}}", "x".repeat(4096)),
        &calls,
    )
    // Compression first (inner), the cache last (outer).
    .layer(tower_scale_compression::CompressionLayer::new())
    .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    let with = |enc: &str| {
        Request::get("/json")
            .header("accept-encoding", enc)
            .body(Body::empty())
            .unwrap()
    };
    let gz = send(&app, with("gzip")).await;
    assert_eq!(gz.headers["content-encoding"], "gzip");
    assert_eq!(gz.cache_status(), "tower-scale; fwd=uri-miss; stored");
    let gz2 = send(&app, with("gzip")).await;
    assert_eq!(gz2.headers["content-encoding"], "gzip");
    assert_eq!(gz2.cache_status(), "tower-scale; hit; ttl=60");
    assert_eq!(
        gz2.body, gz.body,
        "the stored encoded bytes, not compressed again"
    );
    assert!(gz2.body.len() < 1000);
    let plain = send(&app, with("identity")).await;
    assert!(!plain.headers.contains_key("content-encoding"));
    assert_eq!(plain.cache_status(), "tower-scale; fwd=vary-miss; stored");
    let plain2 = send(&app, with("identity")).await;
    assert_eq!(plain2.cache_status(), "tower-scale; hit; ttl=60");
    assert_eq!(plain2.body.len(), 4096 + 11);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one origin call per encoding"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_from_the_local_tier_and_from_redis_carry_the_same_headers() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let l1 = Cache::builder(RedisStore::new(backend(&server)))
        .l1(1 << 20)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(l1.ready(Duration::from_secs(5)).await);
    assert!(l1.l1_active());
    let calls = counter();
    // Local-tier hits serve a shared entry (headers copied), Redis hits a decoded one of
    // their own (headers moved): the responses must not differ.
    let local = counting_app(ResponseCacheLayer::new(l1), calls.clone(), "max-age=60");
    let remote = counting_app(
        ResponseCacheLayer::new(cache(&server, &clock)),
        calls.clone(),
        "max-age=60",
    );
    fetch(&local, "/item/1").await;
    clock.advance(Duration::from_secs(3));
    server.reset_stats();
    let a = fetch(&local, "/item/1").await;
    let b = fetch(&local, "/item/1").await;
    assert_eq!(server.total_calls(), 0, "both from the local tier");
    let c = fetch(&remote, "/item/1").await;
    assert_eq!(server.total_calls(), 1, "one GET");
    assert_eq!(a.headers["age"], "3");
    assert_eq!(a.cache_status(), "tower-scale; hit; ttl=57");
    for r in [&a, &b, &c] {
        assert_eq!(r.text(), "item 1 #1");
        assert_eq!(r.headers, a.headers);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Every header of a response, sorted (a name once per value), to compare whole sets.
fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    list.sort();
    list
}

fn expected_list(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    list.sort();
    list
}

#[tokio::test]
async fn a_hit_carries_exactly_the_stored_headers_its_length_age_and_cache_status() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    // Forty headers: well-known names, names written out, repeated values, the tag header
    // (not stored) and the origin's `Age` (added to the resident time).
    let origin: Vec<(String, String)> = [
        ("content-type", "application/json"),
        ("cache-control", "max-age=100000"),
        ("etag", "\"v1\""),
        ("x-many", "a"),
        ("x-many", "b"),
        ("surrogate-key", "t1 t2"),
        ("age", "3"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .chain((0..33).map(|i| (format!("x-header-{i}"), format!("value {i}"))))
    .collect();
    let app = {
        let calls = calls.clone();
        let origin = origin.clone();
        Router::new()
            .route(
                "/doc",
                get(move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let mut h = HeaderMap::new();
                    for (n, v) in &origin {
                        h.append(
                            header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                            HeaderValue::from_str(v).unwrap(),
                        );
                    }
                    async move { (h, "0123456789") }
                }),
            )
            .layer(ResponseCacheLayer::new(cache(&server, &clock)))
    };
    let first = fetch(&app, "/doc").await;
    assert_eq!(first.cache_status(), "tower-scale; fwd=uri-miss; stored");
    let stored: Vec<(&str, &str)> = origin
        .iter()
        .filter(|(n, _)| n != "surrogate-key" && n != "age")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain([("content-length", "10")])
        .collect();

    clock.advance(Duration::from_secs(5));
    let hit = fetch(&app, "/doc").await;
    assert_eq!(hit.text(), "0123456789");
    let mut want = stored.clone();
    want.extend([
        ("age", "8"),
        ("cache-status", "tower-scale; hit; ttl=99995"),
    ]);
    assert_eq!(header_list(&hit.headers), expected_list(&want));

    // `HEAD`: the same headers, the `GET`'s length, no body.
    let head = send(&app, Request::head("/doc").body(Body::empty()).unwrap()).await;
    assert!(head.body.is_empty());
    assert_eq!(header_list(&head.headers), expected_list(&want));

    // Past the precomputed values: `Age` 2003 (2,000 s resident and the origin's 3), 98,000 s
    // of the lifetime left.
    clock.advance(Duration::from_secs(1995));
    let later = fetch(&app, "/doc").await;
    let mut want = stored.clone();
    want.extend([
        ("age", "2003"),
        ("cache-status", "tower-scale; hit; ttl=98000"),
    ]);
    assert_eq!(header_list(&later.headers), expected_list(&want));

    // A matching `If-None-Match`: 304 with the validators and caching headers only.
    let not_modified = send(
        &app,
        Request::get("/doc")
            .header(header::IF_NONE_MATCH, "\"v0\", W/\"v1\"")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());
    assert_eq!(
        header_list(&not_modified.headers),
        expected_list(&[
            ("cache-control", "max-age=100000"),
            ("etag", "\"v1\""),
            ("age", "2003"),
            ("cache-status", "tower-scale; hit; ttl=98000"),
            ("content-length", "0"),
        ])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn entries_store_their_content_length_except_for_204() {
    use tower_scale_redis::redis;
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let app = Router::new()
        .route(
            "/empty",
            get(|| async {
                (
                    StatusCode::NO_CONTENT,
                    [(header::CACHE_CONTROL, "max-age=60")],
                )
            }),
        )
        .route(
            "/full",
            get(|| async { ([(header::CACHE_CONTROL, "max-age=60")], "abc") }),
        )
        .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    let raw = backend(&server);
    // The header count: after the magic, kind, four lifetimes, status and origin `Age`.
    let stored_headers = |bytes: &[u8]| u16::from_be_bytes([bytes[43], bytes[44]]);
    // `/empty`: `cache-control`; `/full`: that, axum's `content-type` and the length.
    for (path, headers) in [("/empty", 1), ("/full", 3)] {
        fetch(&app, path).await;
        let key = format!("ts:cache:{{{path}}}:s:GET");
        let bytes: Vec<u8> = raw.query(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(stored_headers(&bytes), headers, "{path}");
        let hit = fetch(&app, path).await;
        assert_eq!(hit.cache_status(), "tower-scale; hit; ttl=60", "{path}");
    }
    let full = fetch(&app, "/full").await;
    assert_eq!(full.headers["content-length"], "3");
    assert_eq!(full.text(), "abc");
}
