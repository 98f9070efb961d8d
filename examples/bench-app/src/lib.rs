//! tower-scale's implementation of the shared benchmark contract (`shared/bench/SCENARIOS.md`),
//! the app that `scripts/bench/stack-side-by-side.sh` measures side by side with bare axum and the peers.
//!
//! Every endpoint carries only the layers its scenario measures, as in the peers:
//!
//! | endpoint | layers (outermost first) |
//! |---|---|
//! | `GET /hello` | rate limit (Redis-backed through `HybridStore` leases by default, keyed by peer IP, a quota never reached) → session (never touched) → compression (body below the threshold) → circuit breaker (closed) |
//! | `POST /login`, `GET /session`, `GET /whoami` | session (Redis, the record layout: the whole session as one string, last writer wins, as in the peers; by default with the store's local copy of recently read sessions, dropped when Redis reports a change: [`Options::session_local_copy`]) |
//! | `GET /limited` | rate limit (Redis, keyed by `x-api-key`, 100/s, burst 100) |
//! | `GET /cached/{id}` | response cache (Redis, TTL 60 s; by default no local tier, so a hit is a Redis answer; [`Options::cache_l1`] adds the local tier with purges across instances) |
//! | `GET /json` | compression (gzip only, level 6) |
//!
//! and the graceful-shutdown layer outside them all. [`bare_app`] is the baseline: axum's
//! `GET /hello` with no layer at all.
//!
//! The rate limiters answer as the contract asks (200, or 429 with `Retry-After`) and, by
//! default, without the IETF `RateLimit`/`RateLimit-Policy` fields, which the contract does
//! not ask for and the peers do not send; [`Options::ratelimit_headers`] turns them on (the
//! layer's own default).

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::handler::Handler;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::{Layer, ServiceBuilder};
use tower_scale::breaker::{BreakerConfig, BreakerLayer, CircuitBreaker};
use tower_scale::cache::{Cache, ResponseCacheLayer};
use tower_scale::compression::{CompressionLayer, Encoding};
use tower_scale::ratelimit::{HeaderKey, HybridStore, PeerIp, Quota, RateLimitLayer};
use tower_scale::redis::RedisBackend;
use tower_scale::session::{LocalCopyConfig, Session, SessionError, SessionManagerLayer};
use tower_scale::shutdown::{InFlight, Shutdown};

/// `GET /json`'s document: `shared/bench/data/doc-20k.json`, byte for byte (20,359 bytes).
pub const JSON_DOC: &[u8] = include_bytes!("../data/doc-20k.json");

/// The size of every `/cached/{id}` origin document.
pub const ORIGIN_DOC_LEN: usize = 1024;

/// How long the `/cached/{id}` origin takes (a simulated database query).
pub const ORIGIN_DELAY: Duration = Duration::from_millis(5);

/// How long `/cached/{id}` responses stay cached.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

const FILLER: &str = "lorem ipsum dolor sit amet consectetur adipiscing elit ";

/// Whether `id` is a valid `/cached/{id}` id: `^[A-Za-z0-9_-]{1,64}$`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The origin document of a valid `id`:
/// `{"id":"<id>","name":"item <id>","source":"origin","description":"<filler>"}`, the filler
/// cut from `"lorem ipsum dolor sit amet consectetur adipiscing elit "` repeated so that the
/// whole is exactly [`ORIGIN_DOC_LEN`] bytes. `id` must pass [`valid_id`] (no JSON escaping is
/// needed then).
pub fn origin_document(id: &str) -> String {
    let head = format!(r#"{{"id":"{id}","name":"item {id}","source":"origin","description":""#);
    let tail = r#""}"#;
    let room = ORIGIN_DOC_LEN.saturating_sub(head.len() + tail.len());
    let mut doc = String::with_capacity(ORIGIN_DOC_LEN);
    doc.push_str(&head);
    doc.extend(FILLER.chars().cycle().take(room));
    doc.push_str(tail);
    doc
}

/// How `/hello`'s rate limiter (a quota never reached) uses Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HelloLimiter {
    /// One GCRA decision in Redis per request (`RedisStore`).
    Redis,
    /// `HybridStore` over Redis (the default): leases of [`HELLO_LEASE`] units taken from
    /// Redis in one round trip, then decided in memory until spent or [`HELLO_LEASE_TTL`] old;
    /// the next lease is taken in the background once a quarter of one is left. Still one
    /// global count, within a documented bound of a lease and a quarter per instance: what a
    /// user of tower-scale picks for a limit far from being reached.
    #[default]
    Hybrid,
}

/// The bench app's settings beyond the contract's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `/hello`'s limiter (`BENCH_HELLO_LIMITER`).
    pub hello_limiter: HelloLimiter,
    /// Whether the rate limiters add the IETF `RateLimit`/`RateLimit-Policy` fields
    /// (`BENCH_RATELIMIT_HEADERS=on`); off by default, as in the peers.
    pub ratelimit_headers: bool,
    /// Whether the session store keeps its local copy of recently read sessions
    /// (`RedisStore::local_copy`, `BENCH_SESSION_LOCAL=on`, the default): a session read
    /// again costs no Redis command until Redis reports it changed.
    pub session_local_copy: bool,
    /// Whether `/cached/{id}` has the cache's local tier in front of Redis, with purges
    /// reaching every instance (`BENCH_CACHE_L1=on`); off by default, so that a hit is a
    /// Redis answer as the contract asks.
    pub cache_l1: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            hello_limiter: HelloLimiter::default(),
            ratelimit_headers: false,
            session_local_copy: true,
            cache_l1: false,
        }
    }
}

/// The size of `/cached/{id}`'s local tier with [`Options::cache_l1`] (bytes).
pub const CACHE_L1_BYTES: u64 = 64 * 1024 * 1024;

/// Units per lease of [`HelloLimiter::Hybrid`].
pub const HELLO_LEASE: u32 = 1_000;

/// How long a lease of [`HelloLimiter::Hybrid`] may be used.
pub const HELLO_LEASE_TTL: Duration = Duration::from_secs(1);

impl std::str::FromStr for HelloLimiter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "redis" => Ok(Self::Redis),
            "hybrid" => Ok(Self::Hybrid),
            other => Err(format!("{other:?}: expected \"redis\" or \"hybrid\"")),
        }
    }
}

/// The contract's app on `redis`: every endpoint of `SCENARIOS.md`, with the shutdown layer
/// outermost, around the whole router (not through `Router::layer`, which would wrap every
/// route in one more boxed service and future per request).
///
/// # Errors
///
/// A layer refused its configuration (not expected with the fixed settings here).
pub fn app(
    redis: &RedisBackend,
    shutdown: &Shutdown,
    options: Options,
) -> Result<InFlight<Router>, Box<dyn std::error::Error>> {
    use tower_scale::{cache, ratelimit, session};

    // Sessions in Redis. `secure: false` only because the benchmark speaks plain HTTP on
    // loopback; a deployment keeps the default (`Secure`).
    // The record layout: the whole session as one string, last writer wins, as the peers
    // store sessions (one command per login, two per read-and-write).
    let mut session_store =
        session::RedisStore::new(redis.clone()).layout(session::RedisLayout::Record);
    if options.session_local_copy {
        session_store = session_store.local_copy(&LocalCopyConfig::default())?;
    }
    let sessions = SessionManagerLayer::new(session_store).secure(false)?;

    // /hello's rate limit: Redis-backed, keyed by the peer's IP, a quota that is never reached
    // (one request per microsecond sustained, bursts of a billion).
    let never_reached = [Quota::per_second(1_000_000).burst(1_000_000_000)];
    let stack_store = ratelimit::RedisStore::new(redis.clone());
    let stack_limit = match options.hello_limiter {
        HelloLimiter::Redis => RateLimitLayer::new(stack_store, never_reached)?,
        HelloLimiter::Hybrid => RateLimitLayer::new(
            HybridStore::new(stack_store, HELLO_LEASE, HELLO_LEASE_TTL),
            never_reached,
        )?,
    }
    .name("stack")?
    .headers(options.ratelimit_headers)
    .key_with(PeerIp::default());

    // /limited: 100 requests per second per API key, bursts of 100, counted in Redis.
    let api_limit = RateLimitLayer::new(
        ratelimit::RedisStore::new(redis.clone()),
        [Quota::per_second(100).burst(100)],
    )?
    .name("limited")?
    .headers(options.ratelimit_headers)
    .key_with(HeaderKey(header::HeaderName::from_static("x-api-key")));

    // /cached/{id}: cache-aside through Redis, 60 s. By default no local tier, so every hit is
    // answered by Redis, as the contract asks.
    let cache_store = cache::RedisStore::new(redis.clone());
    let cache = if options.cache_l1 {
        Cache::builder(cache_store).l1(CACHE_L1_BYTES).build()?
    } else {
        Cache::new(cache_store)
    };
    let cached = ResponseCacheLayer::new(cache).ttl(CACHE_TTL);

    // gzip only (the contract's encoding), at the usual default level.
    let gzip = CompressionLayer::new()
        .encodings(&[Encoding::Gzip])
        .level(Encoding::Gzip, 6);

    let hello_breaker = CircuitBreaker::named("hello", BreakerConfig::default())?;

    // Each route's layers wrap its handler (`Handler::layer`) rather than its route
    // (`route_layer`): a layer's inner service is then the handler's own, whose clone costs
    // nothing, where a route is a boxed service that a layer cloning its inner per request (as
    // the cache does, to keep tower's `poll_ready` contract) clones with an allocation.
    let router = Router::new()
        .route(
            "/hello",
            get(hello.layer(
                ServiceBuilder::new()
                    .layer(stack_limit)
                    .layer(sessions.clone())
                    .layer(gzip.clone())
                    .layer(BreakerLayer::new(hello_breaker)),
            )),
        )
        .route("/login", post(login.layer(sessions.clone())))
        .route("/session", get(count.layer(sessions.clone())))
        .route("/whoami", get(whoami.layer(sessions)))
        .route("/limited", get(limited.layer(api_limit)))
        .route("/cached/{id}", get(cached_item.layer(cached)))
        .route("/json", get(json.layer(gzip)));
    // Outermost: counts in-flight requests, closes keep-alive connections while draining.
    Ok(shutdown.layer().layer(router))
}

/// The baseline: axum's `GET /hello` and nothing else, no middleware.
pub fn bare_app() -> Router {
    Router::new().route("/hello", get(hello))
}

async fn hello() -> &'static str {
    "hello"
}

/// A new session holding `count = 0` and `user = "u<random>"`. A request that already has a
/// session gets a new id for it (no session fixation).
async fn login(session: Session) -> Result<String, SessionError> {
    let user = format!("u{}", rand::random::<u64>() >> 16);
    session.cycle_id();
    session.insert("count", &0_i64)?;
    session.insert("user", &user)?;
    Ok(user)
}

/// Reads `count`, stores `count + 1` and answers it; 401 without a valid session.
async fn count(session: Session) -> Result<Response, SessionError> {
    let Some(count) = session.get::<i64>("count").await? else {
        return Ok((StatusCode::UNAUTHORIZED, "no session").into_response());
    };
    let count = count.saturating_add(1);
    session.insert("count", &count)?;
    Ok(count.to_string().into_response())
}

/// Answers the session's `user`, writing nothing; 401 without a valid session.
async fn whoami(session: Session) -> Result<Response, SessionError> {
    match session.get::<String>("user").await? {
        Some(user) => Ok(user.into_response()),
        None => Ok((StatusCode::UNAUTHORIZED, "no session").into_response()),
    }
}

async fn limited() -> &'static str {
    "ok"
}

/// The origin behind the cache: 400 for a bad id, else a 5 ms "query" and the 1024-byte
/// document.
async fn cached_item(Path(id): Path<String>) -> Response {
    if !valid_id(&id) {
        return (StatusCode::BAD_REQUEST, "bad id").into_response();
    }
    tokio::time::sleep(ORIGIN_DELAY).await;
    (
        [(header::CONTENT_TYPE, "application/json")],
        origin_document(&id),
    )
        .into_response()
}

async fn json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from_static(JSON_DOC),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_documents_are_1024_bytes() {
        for id in ["1", "42", "abc_DEF-9", &"x".repeat(64)] {
            let doc = origin_document(id);
            assert_eq!(doc.len(), ORIGIN_DOC_LEN, "{id}");
            assert!(doc.starts_with(&format!(
                r#"{{"id":"{id}","name":"item {id}","source":"origin","description":"lorem ipsum "#
            )));
            assert!(doc.ends_with(r#""}"#));
        }
    }

    #[test]
    fn the_origin_document_of_id_1_is_the_peers_one() {
        // The Node peer's origin("1"), from its definition: a 59-byte head, so the filler is
        // the first 1024 - 59 - 2 = 963 bytes of the phrase repeated.
        let doc = origin_document("1");
        let head = r#"{"id":"1","name":"item 1","source":"origin","description":""#;
        assert_eq!(head.len(), 59);
        let filler: String = FILLER.repeat(24).chars().take(1024 - 59 - 2).collect();
        assert_eq!(doc, format!("{head}{filler}\"}}"));
    }

    #[test]
    fn ids_follow_the_contract() {
        assert!(valid_id("a"));
        assert!(valid_id("A-z_0"));
        assert!(valid_id(&"9".repeat(64)));
        assert!(!valid_id(""));
        assert!(!valid_id(&"9".repeat(65)));
        assert!(!valid_id("a.b"));
        assert!(!valid_id("a b"));
        assert!(!valid_id("é"));
    }

    #[test]
    fn the_json_document_is_the_shared_one() {
        assert_eq!(JSON_DOC.len(), 20_359);
        // When the shared folder sits next to the repository, it must be byte-identical.
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/bench/data/doc-20k.json");
        if let Ok(bytes) = std::fs::read(&shared) {
            assert_eq!(bytes, JSON_DOC, "{} differs", shared.display());
        }
    }
}
