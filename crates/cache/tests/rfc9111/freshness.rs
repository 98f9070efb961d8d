//! RFC 9111 §4.2: the freshness lifetime (`s-maxage`, `max-age`, `Expires` against `Date`)
//! less the age a response already had when it arrived (`Age`, `Date`), and the `Age` served.

use std::time::Duration;

use tower_scale_cache::ResponseCacheLayer;

use super::*;

#[tokio::test]
async fn the_origin_age_counts_against_max_age() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        let origin = Origin::new(&[("cache-control", "max-age=60"), ("age", "50")], "x");
        let app = origin.behind(ResponseCacheLayer::new(cache.clone()));
        let uri = format!("/age/{name}");
        get(&app, &uri, &[]).await;
        s.clock.advance(Duration::from_secs(5));
        let r = get(&app, &uri, &[]).await;
        assert!(hit(&r), "{name}: fresh for 10 s: {}", r.cache_status());
        assert_eq!(r.headers["age"], "55", "{name}");
        assert_eq!(r.cache_status(), "tower-scale; hit; ttl=5", "{name}");
        s.clock.advance(Duration::from_secs(6));
        let r = get(&app, &uri, &[]).await;
        assert!(!hit(&r), "{name}: 61 s old, stale: {}", r.cache_status());
        assert_eq!(origin.calls(), 2, "{name}");
    }
}

#[tokio::test]
async fn an_old_date_is_age_too() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        let origin = Origin::new(
            &[
                ("cache-control", "max-age=60"),
                ("date", &date(&s.clock, -30)),
            ],
            "x",
        );
        let app = origin.behind(ResponseCacheLayer::new(cache.clone()));
        let uri = format!("/date/{name}");
        get(&app, &uri, &[]).await;
        s.clock.advance(Duration::from_secs(5));
        let r = get(&app, &uri, &[]).await;
        assert_eq!(r.headers["age"], "35", "{name}");
        assert_eq!(r.cache_status(), "tower-scale; hit; ttl=25", "{name}");
    }
}

#[tokio::test]
async fn expires_gives_a_lifetime_counted_from_date() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        let origin = Origin::new(
            &[
                ("expires", &date(&s.clock, 100)),
                ("date", &date(&s.clock, 0)),
            ],
            "x",
        );
        let app = origin.behind(ResponseCacheLayer::new(cache.clone()));
        let uri = format!("/expires/{name}");
        let r = get(&app, &uri, &[]).await;
        assert_eq!(
            r.cache_status(),
            "tower-scale; fwd=uri-miss; stored",
            "{name}"
        );
        s.clock.advance(Duration::from_secs(50));
        let r = get(&app, &uri, &[]).await;
        assert_eq!(r.cache_status(), "tower-scale; hit; ttl=50", "{name}");
        s.clock.advance(Duration::from_secs(51));
        assert!(!hit(&get(&app, &uri, &[]).await), "{name}: expired");
        assert_eq!(origin.calls(), 2, "{name}");
    }
}

#[tokio::test]
async fn an_invalid_or_past_expires_is_stale_and_max_age_wins_over_expires() {
    let s = support::stores();
    for (name, cache) in &s.caches {
        for (case, headers) in [
            ("invalid", vec![("expires", "0".to_owned())]),
            (
                "past",
                vec![
                    ("expires", date(&s.clock, -10)),
                    ("date", date(&s.clock, 0)),
                ],
            ),
        ] {
            let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let origin = Origin::new(&h, "x");
            let app = origin.behind(ResponseCacheLayer::new(cache.clone()));
            let uri = format!("/stale/{name}/{case}");
            get(&app, &uri, &[]).await;
            assert!(!hit(&get(&app, &uri, &[]).await), "{name} {case}");
            assert_eq!(origin.calls(), 2, "{name} {case}");
        }
        let origin = Origin::new(
            &[
                ("cache-control", "max-age=60"),
                ("expires", &date(&s.clock, -10)),
            ],
            "x",
        );
        let app = origin.behind(ResponseCacheLayer::new(cache.clone()));
        let uri = format!("/both/{name}");
        get(&app, &uri, &[]).await;
        assert!(hit(&get(&app, &uri, &[]).await), "{name}: max-age wins");
    }
}
