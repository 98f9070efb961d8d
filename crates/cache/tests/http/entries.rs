//! Stored entries: the binary encoding, older layouts and versions, one `GET` per hit, the headers a hit carries and the stored `Content-Length`.

use super::*;

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
    assert_eq!(
        support::redis_calls(std::slice::from_ref(&server)),
        [("get".to_owned(), 1)]
    );
}

#[tokio::test]
async fn a_miss_without_vary_is_one_get_and_one_set() {
    let Setup { server, app, .. } = setup("max-age=60");
    fetch(&app, "/item/0").await;
    server.reset_stats();
    let miss = fetch(&app, "/item/1").await;
    assert_eq!(miss.cache_status(), "tower-scale; fwd=uri-miss; stored");
    assert_eq!(
        support::redis_calls(std::slice::from_ref(&server)),
        [("get".to_owned(), 1), ("set".to_owned(), 1)]
    );
    let pttl: i64 = server
        .cli(&["PTTL", "ts:cache:{/item/1}:s:GET"])
        .parse()
        .unwrap();
    assert!(pttl > 0, "written with its expiry: {pttl}");
    assert_eq!(
        server.cli(&["EXISTS", "ts:cache:{/item/1}:i"]),
        "0",
        "no index"
    );
    assert!(fetch(&app, "/item/1").await.cache_status().contains("hit"));
}

#[tokio::test]
async fn a_vary_miss_counts_the_variants_then_runs_the_store_script() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let calls = counter();
    let app = fixed_route(
        "/v",
        &[("cache-control", "max-age=60"), ("vary", "accept-language")],
        "v".into(),
        &calls,
    )
    .layer(ResponseCacheLayer::new(cache(&server, &clock)));
    let get = |lang: &str| support::request("GET", "/v", &[("accept-language", lang)]);
    // Once so that the scripts are loaded, then counted.
    send(&app, get("en")).await;
    server.reset_stats();
    let r = send(&app, get("fr")).await;
    assert_eq!(r.cache_status(), "tower-scale; fwd=vary-miss; stored");
    // The marker's `GET`, the variant's `GET`, the count of variants (`SCARD`, and whether
    // `GET` and `v` are indexed or else exist), the store script (two `SET`s, `SADD`, `PTTL`,
    // `PEXPIRE`).
    let expected = [
        ("evalsha", 2),
        ("exists", 1),
        ("get", 2),
        ("pexpire", 1),
        ("pttl", 1),
        ("sadd", 1),
        ("scard", 1),
        ("set", 2),
        ("sismember", 2),
    ]
    .map(|(c, n)| (c.to_owned(), n));
    assert_eq!(
        support::redis_calls(std::slice::from_ref(&server)),
        expected
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
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
        ("cache-status", "tower-scale; hit; ttl=99992"),
    ]);
    assert_eq!(header_list(&hit.headers), expected_list(&want));

    // `HEAD`: the same headers, the `GET`'s length, no body.
    let head = send(&app, Request::head("/doc").body(Body::empty()).unwrap()).await;
    assert!(head.body.is_empty());
    assert_eq!(header_list(&head.headers), expected_list(&want));

    // Past the precomputed values: `Age` 2003 (2,000 s resident and the origin's 3), 97,997 s
    // of the lifetime left less the 3 s the response was old when it arrived (RFC 9111 §4.2).
    clock.advance(Duration::from_secs(1995));
    let later = fetch(&app, "/doc").await;
    let mut want = stored.clone();
    want.extend([
        ("age", "2003"),
        ("cache-status", "tower-scale; hit; ttl=97997"),
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
            ("cache-status", "tower-scale; hit; ttl=97997"),
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
