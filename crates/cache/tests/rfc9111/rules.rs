//! Storability beyond `Cache-Control`: statuses with an explicit lifetime, `must-understand`,
//! heuristic freshness, headers named by `Connection`, targeted fields (RFC 9213), `Range`
//! from a stored full response, and invalidation by unknown unsafe methods.

use std::time::Duration;

use tower_scale_cache::{Cache, ResponseCacheConfig, ResponseCacheLayer};

use super::*;

fn layer(cache: &Cache, config: &ResponseCacheConfig) -> ResponseCacheLayer {
    ResponseCacheLayer::from_config(cache.clone(), config).unwrap()
}

#[tokio::test]
async fn any_final_status_with_a_lifetime_is_stored_in_the_standards_preset() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        for status in [302u16, 400, 500, 599] {
            let origin = Origin::new(&[("cache-control", "max-age=60")], "x");
            origin.answer(status, &[("cache-control", "max-age=60")], "x");
            let app = origin.behind(layer(cache, &ResponseCacheConfig::standards()));
            let uri = format!("/status/{name}/{status}");
            get(&app, &uri, &[]).await;
            let r = get(&app, &uri, &[]).await;
            assert!(hit(&r), "{name} {status}: {}", r.cache_status());
            assert_eq!(r.status.as_u16(), status);
            // The default settings keep to their list of statuses.
            let origin = Origin::new(&[], "x");
            origin.answer(status, &[("cache-control", "max-age=60")], "x");
            let app = origin.behind(ResponseCacheLayer::new(cache.clone()));
            let uri = format!("/status-default/{name}/{status}");
            get(&app, &uri, &[]).await;
            assert!(!hit(&get(&app, &uri, &[]).await), "{name} {status}");
        }
    }
}

#[tokio::test]
async fn must_understand_overrides_no_store_only_for_understood_statuses() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        for (status, stored) in [(200u16, true), (599, false)] {
            let origin = Origin::new(&[], "x");
            let cc = [("cache-control", "max-age=60, no-store, must-understand")];
            origin.answer(status, &cc, "x");
            let app = origin.behind(layer(cache, &ResponseCacheConfig::standards()));
            let uri = format!("/mu/{name}/{status}");
            get(&app, &uri, &[]).await;
            assert_eq!(hit(&get(&app, &uri, &[]).await), stored, "{name} {status}");
        }
    }
}

#[tokio::test]
async fn heuristic_freshness_is_a_tenth_of_the_age_of_last_modified() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        let modified = date(&s.clock, -1000);
        let origin = Origin::new(&[("last-modified", &modified)], "x");
        let app = origin.behind(layer(cache, &ResponseCacheConfig::standards()));
        let uri = format!("/heuristic/{name}");
        get(&app, &uri, &[]).await;
        s.clock.advance(Duration::from_secs(99));
        let r = get(&app, &uri, &[]).await;
        assert_eq!(r.cache_status(), "tower-scale; hit; ttl=1", "{name}");
        s.clock.advance(Duration::from_secs(2));
        assert!(!hit(&get(&app, &uri, &[]).await), "{name}");
        // `public` makes any status heuristically cacheable.
        let other = Origin::new(&[], "x");
        other.answer(
            599,
            &[("last-modified", &modified), ("cache-control", "public")],
            "x",
        );
        let app599 = other.behind(layer(cache, &ResponseCacheConfig::standards()));
        let uri599 = format!("/heuristic-599/{name}");
        get(&app599, &uri599, &[]).await;
        assert!(hit(&get(&app599, &uri599, &[]).await), "{name}: public 599");
        // Off by default.
        let app = origin.behind(ResponseCacheLayer::new(cache.clone()));
        let uri = format!("/heuristic-off/{name}");
        assert!(
            get(&app, &uri, &[])
                .await
                .cache_status()
                .ends_with("detail=no-ttl")
        );
    }
}

#[tokio::test]
async fn headers_named_by_connection_are_never_stored() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        let origin = Origin::new(
            &[
                ("cache-control", "max-age=60"),
                ("connection", "x-hop, close"),
                ("x-hop", "1"),
                ("x-end", "2"),
            ],
            "x",
        );
        let app = origin.behind(ResponseCacheLayer::new(cache.clone()));
        let uri = format!("/conn/{name}");
        get(&app, &uri, &[]).await;
        let r = get(&app, &uri, &[]).await;
        assert!(hit(&r), "{name}");
        assert!(
            !r.headers.contains_key("x-hop") && !r.headers.contains_key("connection"),
            "{name}"
        );
        assert_eq!(r.headers["x-end"], "2", "{name}");
    }
}

#[tokio::test]
async fn targeted_fields_replace_cache_control_and_are_not_passed_on() {
    let s = support::stores();
    let mut config = ResponseCacheConfig::default();
    config.targeted_field = Some("edge-cache-control".to_owned());
    for (name, cache) in &s.caches {
        for (case, headers, stored) in [
            (
                "cdn-fresh",
                vec![
                    ("cdn-cache-control", "max-age=60"),
                    ("cache-control", "no-store"),
                ],
                true,
            ),
            (
                "cdn-no-store",
                vec![
                    ("cdn-cache-control", "no-store"),
                    ("cache-control", "max-age=60"),
                ],
                false,
            ),
            (
                "cdn-private",
                vec![
                    ("cdn-cache-control", "private"),
                    ("cache-control", "max-age=60"),
                ],
                false,
            ),
            (
                "cdn-invalid",
                vec![
                    ("cdn-cache-control", "max-age=\"60\""),
                    ("cache-control", "no-store"),
                ],
                false,
            ),
            (
                "own-first",
                vec![
                    ("edge-cache-control", "max-age=60"),
                    ("cdn-cache-control", "no-store"),
                ],
                true,
            ),
        ] {
            let origin = Origin::new(&headers, "x");
            let app = origin.behind(layer(cache, &config));
            let uri = format!("/targeted/{name}/{case}");
            let first = get(&app, &uri, &[]).await;
            let second = get(&app, &uri, &[]).await;
            assert_eq!(
                hit(&second),
                stored,
                "{name} {case}: {}",
                second.cache_status()
            );
            for r in [&first, &second] {
                assert!(
                    !r.headers.contains_key("cdn-cache-control")
                        && !r.headers.contains_key("edge-cache-control"),
                    "{name} {case}: targeted fields stay here"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_range_of_a_stored_full_response_is_a_206_from_the_store() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        let origin = Origin::new(&[("cache-control", "max-age=60")], "0123456789");
        let app = origin.behind(ResponseCacheLayer::new(cache.clone()));
        let uri = format!("/range/{name}");
        get(&app, &uri, &[]).await;
        for (range, status, body, content_range) in [
            ("bytes=2-4", 206, "234", Some("bytes 2-4/10")),
            ("bytes=7-", 206, "789", Some("bytes 7-9/10")),
            ("bytes=-2", 206, "89", Some("bytes 8-9/10")),
            ("bytes=20-", 200, "0123456789", None),
            ("bytes=0-1,3-4", 200, "0123456789", None),
        ] {
            let r = get(&app, &uri, &[("range", range)]).await;
            assert!(hit(&r), "{name} {range}");
            assert_eq!(
                (r.status.as_u16(), r.text()),
                (status, body),
                "{name} {range}"
            );
            assert_eq!(
                r.headers.get("content-range").map(|v| v.to_str().unwrap()),
                content_range,
                "{name} {range}"
            );
            assert_eq!(
                r.headers["content-length"],
                body.len().to_string().as_str(),
                "{name}"
            );
        }
        assert_eq!(origin.calls(), 1, "{name}");
    }
}

#[tokio::test]
async fn a_successful_unknown_method_invalidates() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        let origin = Origin::new(&[("cache-control", "max-age=60")], "x");
        let app = origin.behind(ResponseCacheLayer::new(cache.clone()));
        let uri = format!("/inv/{name}");
        get(&app, &uri, &[]).await;
        assert!(hit(&get(&app, &uri, &[]).await));
        send(&app, support::request("M-SEARCH", &uri, &[])).await;
        assert!(
            !hit(&get(&app, &uri, &[]).await),
            "{name}: purged by M-SEARCH"
        );
    }
}
