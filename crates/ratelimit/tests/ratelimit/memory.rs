//! The in-memory store through the layer, with paused time: GCRA, several quotas, keyless
//! requests, dry run, bounded memory, clocks.

use std::time::Duration;

use axum::http::StatusCode;
use tower_scale_ratelimit::{
    Key, LimiterClock, MemoryStore, MissingKey, Quota, RateLimitLayer, Store,
};

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn gcra_burst_then_steady_rate() {
    gcra_burst_then_steady_rate_with(true).await;
}

/// With the header fields off, the layer asks for the verdict only (`Store::admit_local`):
/// the same decisions.
#[tokio::test(start_paused = true)]
async fn gcra_burst_then_steady_rate_without_headers() {
    gcra_burst_then_steady_rate_with(false).await;
}

async fn gcra_burst_then_steady_rate_with(headers: bool) {
    let app = app(memory(vec![Quota::per_second(10).burst(5)]).headers(headers));
    for i in 0..5 {
        let res = hit(&app, Some("a")).await;
        assert_eq!(res.status(), StatusCode::OK);
        let field = res.headers().get("ratelimit").map(|v| v.to_str().unwrap());
        let expected = format!(r#""default";r={};t=1"#, 4 - i);
        assert_eq!(field, headers.then_some(expected.as_str()));
    }
    let res = hit(&app, Some("a")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.headers()["retry-after"],
        "1",
        "100 ms, rounded up to whole seconds"
    );
    // Another key has its own bucket.
    assert_eq!(hit(&app, Some("b")).await.status(), StatusCode::OK);
    // One emission interval later exactly one more request fits.
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(hit(&app, Some("a")).await.status(), StatusCode::OK);
    assert_eq!(
        hit(&app, Some("a")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // After a quiet second the whole burst is back.
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..5 {
        assert_eq!(hit(&app, Some("a")).await.status(), StatusCode::OK);
    }
}

#[tokio::test(start_paused = true)]
async fn every_quota_of_a_policy_is_enforced() {
    let app = app(memory(vec![Quota::per_second(10), Quota::per_minute(12)]));
    let mut ok = 0;
    for _ in 0..30 {
        if hit(&app, Some("k")).await.status() == StatusCode::OK {
            ok += 1;
        }
        tokio::time::advance(Duration::from_millis(200)).await;
    }
    // 30 requests over 6 s would all pass 10/s; the 12/min quota admits its burst of 12, plus
    // the one cell it regains after 5 s (one per 60 s / 12).
    assert_eq!(ok, 13);
}

#[tokio::test(start_paused = true)]
async fn keyless_requests_dry_run_and_impossible_costs() {
    let app1 = app(memory(vec![Quota::per_second(1)]));
    assert_eq!(hit(&app1, None).await.status(), StatusCode::BAD_REQUEST);
    let app2 = app(memory(vec![Quota::per_second(1)]).missing_key(MissingKey::Shared));
    assert_eq!(hit(&app2, None).await.status(), StatusCode::OK);
    assert_eq!(
        hit(&app2, None).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    let shadow = app(memory(vec![Quota::per_second(1)]).dry_run(true));
    for _ in 0..5 {
        let res = hit(&shadow, Some("d")).await;
        assert_eq!(res.status(), StatusCode::OK, "dry run never rejects");
    }

    let bulk = app(memory(vec![Quota::per_second(10).burst(5)]).cost(6));
    let res = hit(&bulk, Some("x")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        res.headers().get("retry-after").is_none(),
        "a cost above the burst can never fit: no Retry-After"
    );
}

#[tokio::test(start_paused = true)]
async fn memory_stays_bounded_under_key_spraying() {
    let store = MemoryStore::new(100);
    let quotas = [Quota::per_second(1)];
    for i in 0..5_000 {
        store.check(&format!("a{i}"), &quotas, 1).await.unwrap();
    }
    // Within one period every key is still limited: they are all kept (dropping one would let
    // its client through again).
    assert_eq!(store.len(), 5_000);
    // Once their quota has refilled, the next spray finds them gone.
    tokio::time::advance(Duration::from_secs(2)).await;
    for i in 0..2_048 {
        store.check(&format!("b{i}"), &quotas, 1).await.unwrap();
    }
    assert!(store.len() <= 2_048, "{} keys held", store.len());
    // A key still limited survives the clean-up.
    let mut ok = 0;
    for _ in 0..3 {
        if store.check("b2047", &quotas, 1).await.unwrap().allowed {
            ok += 1;
        }
    }
    assert_eq!(ok, 0);
}

/// This crate's tests turn on its `test-util` feature, so stores count in tokio's paused time
/// by default. A store given the system clock does not see tokio's time move: a key refused
/// for a minute stays refused however far tokio's clock is advanced, while the store on tokio's
/// clock admits it again.
#[tokio::test(start_paused = true)]
async fn stores_count_in_the_clock_they_are_given() {
    assert!(LimiterClock::default().is_tokio());
    assert!(!LimiterClock::system().is_tokio());
    let limit = |store: MemoryStore| {
        RateLimitLayer::new(store, [Quota::per_minute(1)])
            .unwrap()
            .key_with(api_key())
    };
    let system = app(limit(
        MemoryStore::new(10).with_clock(LimiterClock::system()),
    ));
    let tokio_time = app(limit(MemoryStore::new(10)));
    for app in [&system, &tokio_time] {
        assert_eq!(hit(app, Some("k")).await.status(), StatusCode::OK);
        assert_eq!(
            hit(app, Some("k")).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    tokio::time::advance(Duration::from_secs(120)).await;
    assert_eq!(hit(&tokio_time, Some("k")).await.status(), StatusCode::OK);
    assert_eq!(
        hit(&system, Some("k")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A clock given to a store that has counted already starts a fresh store: counts measured in
/// one clock's time mean nothing in another's. The store it was cloned from keeps its keys.
#[test]
fn a_clock_given_after_use_starts_the_store_afresh() {
    let quotas = [Quota::per_minute(1)];
    let store = MemoryStore::new(10);
    let key = Key::from("k");
    assert!(store.check_local("p", &key, &quotas, 1).unwrap().allowed);
    assert_eq!(store.len(), 1);
    let kept = store.clone();
    let fresh = store.with_clock(LimiterClock::tokio());
    assert_eq!(fresh.len(), 0);
    assert!(fresh.check_local("p", &key, &quotas, 1).unwrap().allowed);
    assert_eq!(kept.len(), 1);
    assert!(!kept.check_local("p", &key, &quotas, 1).unwrap().allowed);
}
