//! The typed cache-aside API against real Redis: single-flight, the cross-instance lock,
//! purges, stale values, failures.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use support::{Interleaved, Moment, Other, T0};
use tower_scale_cache::{Cache, FetchOptions, LockConfig, ManualClock, MemoryStore, RedisStore};
use tower_scale_testkit::RedisServer;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

fn user(n: usize) -> User {
    User {
        id: 1,
        name: format!("ada #{n}"),
    }
}

async fn load(calls: &AtomicUsize) -> Result<User, std::io::Error> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(user(n))
}

async fn ttl_and_invalidation(cache: &Cache, clock: &ManualClock) {
    let calls = AtomicUsize::new(0);
    let ttl = Duration::from_secs(60);
    assert_eq!(
        cache
            .get_or_fetch("user:1", ttl, || load(&calls))
            .await
            .unwrap(),
        user(1)
    );
    assert_eq!(
        cache
            .get_or_fetch("user:1", ttl, || load(&calls))
            .await
            .unwrap(),
        user(1)
    );
    assert_eq!(cache.get::<User>("user:1").await.unwrap(), Some(user(1)));
    clock.advance(Duration::from_secs(61));
    assert_eq!(cache.get::<User>("user:1").await.unwrap(), None, "expired");
    assert_eq!(
        cache
            .get_or_fetch("user:1", ttl, || load(&calls))
            .await
            .unwrap(),
        user(2)
    );
    cache.invalidate("user:1").await.unwrap();
    assert_eq!(
        cache
            .get_or_fetch("user:1", ttl, || load(&calls))
            .await
            .unwrap(),
        user(3)
    );

    let tagged = FetchOptions::new(ttl).tag("users");
    let load_both = || async {
        for key in ["user:2", "user:3"] {
            cache
                .get_or_fetch_with(key, &tagged, || load(&calls))
                .await
                .unwrap();
        }
    };
    load_both().await;
    let before = calls.load(Ordering::SeqCst);
    load_both().await;
    assert_eq!(calls.load(Ordering::SeqCst), before, "both cached");
    cache.invalidate_tag("users").await.unwrap();
    load_both().await;
    assert_eq!(calls.load(Ordering::SeqCst), before + 2);

    cache
        .set("user:9", &user(9), &FetchOptions::new(ttl))
        .await
        .unwrap();
    assert_eq!(cache.get::<User>("user:9").await.unwrap(), Some(user(9)));
}

#[tokio::test]
async fn memory_ttl_and_invalidation() {
    let clock = ManualClock::new(T0);
    let cache = Cache::builder(MemoryStore::default())
        .clock(clock.clone())
        .build()
        .unwrap();
    ttl_and_invalidation(&cache, &clock).await;
}

#[tokio::test]
async fn redis_ttl_and_invalidation() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    // Patient: a command timed out on a busy machine fails open to the fetch, and the counts
    // of fetches would be off.
    let cache = Cache::builder(RedisStore::new(support::patient_backend(&server)))
        .clock(clock.clone())
        .build()
        .unwrap();
    ttl_and_invalidation(&cache, &clock).await;
    // Again with a local tier in front of Redis, from an empty Redis (and purges that wait
    // for the bus's confirmation as long as a busy machine needs).
    server.cli(&["FLUSHALL"]);
    let l1 = Cache::builder(RedisStore::new(support::patient_backend(&server)))
        .clock(clock.clone())
        .l1(1 << 20)
        .purge_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    ttl_and_invalidation(&l1, &clock).await;
}

#[tokio::test]
async fn a_fetched_or_set_value_is_one_set() {
    let server = RedisServer::start();
    // Patient: with a short timeout, a reply delayed by a busy machine has the watchdog send a
    // `PING` (counted below) or fails open to the fetch.
    let cache = Cache::new(RedisStore::new(support::patient_backend(&server)));
    let ttl = Duration::from_secs(60);
    let calls = AtomicUsize::new(0);
    // Warm the connection: only what follows is counted.
    cache.get::<User>("user:0").await.unwrap();
    server.reset_stats();
    let fetched = cache
        .get_or_fetch("user:1", ttl, || load(&calls))
        .await
        .unwrap();
    assert_eq!(fetched, user(1));
    assert_eq!(
        support::redis_calls(std::slice::from_ref(&server)),
        [("get".to_owned(), 1), ("set".to_owned(), 1)]
    );
    server.reset_stats();
    cache
        .set("user:2", &user(2), &FetchOptions::new(ttl))
        .await
        .unwrap();
    // Besides the invalidation bus's messages (a `set` tells the other instances' local
    // tiers), one `SET`.
    let mut calls = support::redis_calls(std::slice::from_ref(&server));
    calls.retain(|(c, _)| c != "publish" && c != "subscribe");
    assert_eq!(calls, [("set".to_owned(), 1)]);
    assert_eq!(cache.get::<User>("user:2").await.unwrap(), Some(user(2)));
    for key in ["ts:cache:{user:1}:s:v", "ts:cache:{user:2}:s:v"] {
        let pttl: i64 = server.cli(&["PTTL", key]).parse().unwrap();
        assert!(pttl > 0 && pttl <= 60_000, "{key}: {pttl}");
    }
    assert_eq!(
        server.cli(&["EXISTS", "ts:cache:{user:1}:i", "ts:cache:{user:2}:i"]),
        "0",
        "no index"
    );
    // Purged all the same.
    cache.invalidate("user:1").await.unwrap();
    assert_eq!(cache.get::<User>("user:1").await.unwrap(), None);
    assert_eq!(server.cli(&["EXISTS", "ts:cache:{user:1}:s:v"]), "0");
}

/// `n` concurrent `get_or_fetch` of one cold key spread over `caches`; returns how many
/// times the (slow) fetch ran.
async fn stampede(caches: &[Cache], n: usize) -> usize {
    let calls = Arc::new(AtomicUsize::new(0));
    let results = join_all((0..n).map(|i| {
        let (cache, calls) = (caches[i % caches.len()].clone(), calls.clone());
        tokio::spawn(async move {
            cache
                .get_or_fetch("hot", Duration::from_secs(60), || async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    load(&calls).await
                })
                .await
                .unwrap()
        })
    }))
    .await;
    for r in results {
        assert_eq!(r.unwrap(), user(1));
    }
    calls.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_run_the_fetch_once() {
    let server = RedisServer::start();
    let cache = Cache::new(RedisStore::new(support::patient_backend(&server)));
    assert_eq!(stampede(&[cache], 1000).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_with_the_lock_fetch_once() {
    let server = RedisServer::start();
    let lock = support::patient_lock();
    let caches: Vec<Cache> = (0..3)
        .map(|_| {
            Cache::builder(RedisStore::new(support::patient_backend(&server)))
                .lock(lock)
                .build()
                .unwrap()
        })
        .collect();
    assert_eq!(stampede(&caches, 3000).await, 1);
}

#[tokio::test]
async fn a_locked_key_with_a_stale_value_is_served_stale() {
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let build = || {
        Cache::builder(RedisStore::new(support::patient_backend(&server)))
            .lock(LockConfig::default())
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    let options = FetchOptions::new(Duration::from_secs(10)).stale(Duration::from_secs(60));
    let calls = AtomicUsize::new(0);
    a.get_or_fetch_with("k", &options, || load(&calls))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(20));
    // Another instance holds the lock (as if recomputing right now).
    let held = b
        .store()
        .try_lock("k", "v", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(held.is_some());
    let v = a
        .get_or_fetch_with("k", &options, || async {
            Err::<User, _>(std::io::Error::other("must not run"))
        })
        .await
        .unwrap();
    assert_eq!(
        v,
        user(1),
        "served stale while the other instance recomputes"
    );
}

#[tokio::test]
async fn fetch_errors_are_shared_or_answered_stale() {
    let clock = ManualClock::new(T0);
    let cache = Cache::builder(MemoryStore::default())
        .clock(clock.clone())
        .build()
        .unwrap();
    let err = cache
        .get_or_fetch("k", Duration::from_secs(10), || async {
            Err::<User, _>(std::io::Error::other("db down"))
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "db down");
    // Nothing was cached: the next call fetches.
    let calls = AtomicUsize::new(0);
    let options = FetchOptions::new(Duration::from_secs(10)).stale(Duration::from_secs(30));
    cache
        .get_or_fetch_with("k", &options, || load(&calls))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(15));
    let stale = cache
        .get_or_fetch_with("k", &options, || async {
            Err::<User, _>(std::io::Error::other("db down"))
        })
        .await
        .unwrap();
    assert_eq!(stale, user(1), "stale-if-error");
    clock.advance(Duration::from_secs(30));
    assert!(
        cache
            .get_or_fetch_with("k", &options, || async {
                Err::<User, _>(std::io::Error::other("db down"))
            })
            .await
            .is_err()
    );
}

/// On tokio's paused clock, the leader's fetch ends only once every caller waits (the clock
/// moves when no task can run): all 50 are in the flight whatever the scheduling. (An error is
/// not stored, so a caller arriving after the flight ended would rightly fetch again.)
#[tokio::test(start_paused = true)]
async fn followers_share_the_leaders_error() {
    let cache = Cache::memory();
    let calls = Arc::new(AtomicUsize::new(0));
    let results = join_all((0..50).map(|_| {
        let (cache, calls) = (cache.clone(), calls.clone());
        tokio::spawn(async move {
            cache
                .get_or_fetch("k", Duration::from_secs(10), || async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<User, _>(std::io::Error::other("db down"))
                })
                .await
        })
    }))
    .await;
    for r in results {
        assert_eq!(r.unwrap().unwrap_err().to_string(), "db down");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_or_garbage_falls_back_to_the_fetch() {
    let server = RedisServer::start();
    let build = |backend| {
        Cache::builder(RedisStore::new(backend))
            .lock(LockConfig::default())
            .build()
            .unwrap()
    };
    let calls = AtomicUsize::new(0);
    let ttl = Duration::from_secs(60);
    // Garbage under the key: treated as a miss and overwritten (by a patient instance: a
    // command timed out on a busy machine would fetch again).
    let patient = build(support::patient_backend(&server));
    server.cli(&["SET", "ts:cache:{k}:s:v", "garbage"]);
    assert_eq!(
        patient
            .get_or_fetch("k", ttl, || load(&calls))
            .await
            .unwrap(),
        user(1)
    );
    assert_eq!(
        patient
            .get_or_fetch("k", ttl, || load(&calls))
            .await
            .unwrap(),
        user(1)
    );
    // An instance with short timeouts, connected (whatever this read answers) when Redis
    // stops answering.
    let cache = build(support::backend(&server));
    let _ = cache.get::<User>("k").await;
    server.pause();
    for i in 0..5 {
        let v = cache
            .get_or_fetch(&format!("cold{i}"), ttl, || load(&calls))
            .await
            .unwrap();
        assert_eq!(v.id, 1, "the fetch answers while Redis hangs");
    }
    assert!(
        cache.invalidate("k").await.is_err(),
        "a purge reports the failure"
    );
    server.resume();
}

/// `cache` fetches `hot` to the end (fetch, store, unlock, end of its flight): the other
/// caller of an [`Interleaved`] store.
fn fetches_hot(cache: Cache) -> Other {
    Box::new(move || {
        let cache = cache.clone();
        Box::pin(async move {
            let calls = AtomicUsize::new(0);
            cache
                .get_or_fetch("hot", Duration::from_secs(60), || load(&calls))
                .await
                .unwrap();
        })
    })
}

/// A fetch that must not run: the value was stored meanwhile.
async fn fetched_again() -> Result<User, std::io::Error> {
    Err(std::io::Error::other("fetched again"))
}

/// The lock's previous holder (another instance) stores the entry and releases its lock just
/// before this instance's `try_lock`.
#[tokio::test]
async fn a_lock_taken_after_the_leader_stored_the_entry_does_not_fetch_again() {
    let shared = MemoryStore::new(1024 * 1024);
    let leader = Arc::new(OnceLock::new());
    let follower = Cache::builder(Interleaved::new(
        shared.clone(),
        Moment::BeforeLock,
        &leader,
    ))
    .lock(LockConfig::default())
    .build()
    .unwrap();
    let other = Cache::builder(shared)
        .lock(LockConfig::default())
        .build()
        .unwrap();
    assert!(leader.set(fetches_hot(other)).is_ok());
    let v = follower
        .get_or_fetch("hot", Duration::from_secs(60), fetched_again)
        .await
        .unwrap();
    assert_eq!(v, user(1), "the leader's value");
}

/// A caller's read misses, and before it joins the in-process flight, that flight's leader
/// stores the entry and ends the flight: the window in which the stampede tests' late callers
/// (`a_thousand_concurrent_misses_run_the_fetch_once`) fetched again on a busy machine.
#[tokio::test]
async fn a_miss_that_joins_after_the_flight_ended_does_not_fetch_again() {
    let server = RedisServer::start();
    let same = Arc::new(OnceLock::new());
    let store = RedisStore::new(support::patient_backend(&server));
    let cache = Cache::new(Interleaved::new(store, Moment::AfterRead, &same));
    assert!(same.set(fetches_hot(cache.clone())).is_ok());
    let v = cache
        .get_or_fetch("hot", Duration::from_secs(60), fetched_again)
        .await
        .unwrap();
    assert_eq!(v, user(1), "the value the flight stored");
}

/// `get_or_fetch_bytes` stores the bytes as they are: Redis holds them unchanged at the end
/// of the entry (no JSON text), concurrent misses fetch once, a hit is the stored bytes until
/// the TTL ends, and bytes under a key read by `get_or_fetch` (not JSON) are a miss that
/// fetches, never an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_are_stored_as_they_are() {
    const PAGE: &[u8] = b"<h1>\"not\" json</h1>";
    let server = RedisServer::start();
    let clock = ManualClock::new(T0);
    let cache = Cache::builder(RedisStore::new(support::patient_backend(&server)))
        .clock(clock.clone())
        .build()
        .unwrap();
    let ttl = Duration::from_secs(60);
    let calls = Arc::new(AtomicUsize::new(0));
    let fetch_page = |calls: Arc<AtomicUsize>| async move {
        calls.fetch_add(1, Ordering::SeqCst);
        // Slow enough for the concurrent callers to find this fetch running.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(PAGE))
    };
    let results = join_all((0..100).map(|_| {
        let (cache, calls) = (cache.clone(), calls.clone());
        tokio::spawn(async move {
            cache
                .get_or_fetch_bytes("page", ttl, || fetch_page(calls))
                .await
                .unwrap()
        })
    }))
    .await;
    for r in results {
        assert_eq!(r.unwrap(), PAGE);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one fetch for 100 misses");
    let stored = server.cli(&["GET", "ts:cache:{page}:s:v"]);
    assert!(
        stored.trim_end().ends_with("<h1>\"not\" json</h1>"),
        "the bytes end the Redis value unchanged: {stored:?}"
    );
    let hit = cache
        .get_or_fetch_bytes("page", ttl, || async {
            Err::<bytes::Bytes, _>(std::io::Error::other("a hit does not fetch"))
        })
        .await
        .unwrap();
    assert_eq!(hit, PAGE);
    clock.advance(Duration::from_secs(61));
    cache
        .get_or_fetch_bytes("page", ttl, || fetch_page(calls.clone()))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "expired: fetched again");

    // Read typed, the page is not JSON: a miss, fetched and stored as JSON over it.
    let typed = AtomicUsize::new(0);
    assert_eq!(
        cache
            .get_or_fetch("page", ttl, || load(&typed))
            .await
            .unwrap(),
        user(1)
    );
    assert_eq!(typed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn memory_bytes_hit_is_the_stored_bytes() {
    let cache = Cache::new(MemoryStore::default());
    let ttl = Duration::from_secs(60);
    let first = cache
        .get_or_fetch_bytes("k", ttl, || async {
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"\x00\xffraw"))
        })
        .await
        .unwrap();
    let again = cache
        .get_or_fetch_bytes("k", ttl, || async {
            Err::<bytes::Bytes, _>(std::io::Error::other("a hit does not fetch"))
        })
        .await
        .unwrap();
    assert_eq!(
        (&first[..], &again[..]),
        (&b"\x00\xffraw"[..], &b"\x00\xffraw"[..])
    );
}
