//! `/login` and `/session` (the scenarios of `../shared/bench/SCENARIOS.md`) through
//! tower-scale-session's `RedisStore` and through tower-sessions 0.14 with
//! tower-sessions-redis-store 0.16 (fred), on the same `redis-server`, in one run:
//!
//! ```not_rust
//! cargo bench -p tower-scale-session --bench session
//! ```
//!
//! Each request goes through the whole axum router in process (no HTTP, so the figure is the
//! session layer plus Redis), 64 at a time. Rounds interleave the two stacks; the report gives
//! the median requests/s and p99 latency per stack and scenario, and our ratio to the peer.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use tower::ServiceExt;
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_session::{RedisStore, Session, SessionManagerLayer};
use tower_scale_testkit::RedisServer;
use tower_sessions_redis_store::fred::prelude as fred;

const CONCURRENCY: usize = 64;
const PER_TASK: usize = 250;
const ROUNDS: usize = 5;

fn user() -> String {
    format!("u{}", rand::random::<u64>() >> 16)
}

fn ours(backend: RedisBackend) -> Router {
    let layer = SessionManagerLayer::new(RedisStore::new(backend))
        .secure(false)
        .unwrap();
    Router::new()
        .route(
            "/login",
            post(|s: Session| async move {
                if s.get::<String>("user").await.ok().flatten().is_some() {
                    s.cycle_id();
                }
                s.insert("count", &0i64).unwrap();
                s.insert("user", &user()).unwrap();
                StatusCode::OK
            }),
        )
        .route(
            "/session",
            get(|s: Session| async move {
                match s.get::<i64>("count").await {
                    Ok(Some(n)) => {
                        s.insert("count", &(n + 1)).unwrap();
                        (StatusCode::OK, (n + 1).to_string())
                    }
                    _ => (StatusCode::UNAUTHORIZED, String::new()),
                }
            }),
        )
        .layer(layer)
}

fn peer(pool: fred::Pool) -> Router {
    use tower_sessions::{Session, SessionManagerLayer};
    let layer = SessionManagerLayer::new(tower_sessions_redis_store::RedisStore::new(pool))
        .with_secure(false);
    Router::new()
        .route(
            "/login",
            post(|s: Session| async move {
                if s.get_value("user").await.ok().flatten().is_some() {
                    s.cycle_id().await.unwrap();
                }
                s.insert("count", 0i64).await.unwrap();
                s.insert("user", user()).await.unwrap();
                StatusCode::OK
            }),
        )
        .route(
            "/session",
            get(|s: Session| async move {
                match s
                    .get_value("count")
                    .await
                    .ok()
                    .flatten()
                    .and_then(|v| v.as_i64())
                {
                    Some(n) => {
                        s.insert("count", n + 1).await.unwrap();
                        (StatusCode::OK, (n + 1).to_string())
                    }
                    None => (StatusCode::UNAUTHORIZED, String::new()),
                }
            }),
        )
        .layer(layer)
}

async fn send(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| tower_scale_testkit::cookie_pair(v.to_str().unwrap()).to_owned());
    (res.status(), cookie)
}

/// CPU time used by this process so far (user + system).
fn process_cpu() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// CPU time used by the Redis server so far, from `INFO cpu`.
fn redis_cpu(server: &RedisServer) -> Duration {
    let info = server.cli(&["INFO", "cpu"]);
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Duration::from_secs_f64(field("used_cpu_user") + field("used_cpu_sys"))
}

struct Run {
    rps: f64,
    p99: Duration,
    /// Client CPU per request (the whole process: router, session layer, Redis client).
    client_cpu: Duration,
    /// Redis CPU per request.
    redis_cpu: Duration,
}

/// Runs `CONCURRENCY` tasks of `PER_TASK` requests.
async fn load(app: &Router, scenario: &'static str, server: &RedisServer) -> Run {
    // /session: each task has its own session (its own user), created first.
    let mut cookies = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let (status, cookie) = send(app, "POST", "/login", None).await;
        assert_eq!(status, StatusCode::OK);
        cookies.push(Arc::new(cookie.expect("login sets a cookie")));
    }
    let (cpu0, redis0) = (process_cpu(), redis_cpu(server));
    let start = Instant::now();
    let tasks: Vec<_> = cookies
        .into_iter()
        .map(|cookie| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(PER_TASK);
                for _ in 0..PER_TASK {
                    let t = Instant::now();
                    let (status, set) = match scenario {
                        "login" => send(&app, "POST", "/login", None).await,
                        _ => send(&app, "GET", "/session", Some(&cookie)).await,
                    };
                    assert_eq!(status, StatusCode::OK);
                    if scenario == "login" {
                        assert!(set.is_some());
                    }
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut all = Vec::with_capacity(CONCURRENCY * PER_TASK);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rps = all.len() as f64 / start.elapsed().as_secs_f64();
    let n = all.len() as u32;
    let client_cpu = (process_cpu() - cpu0) / n;
    let redis_cpu = (redis_cpu(server) - redis0) / n;
    all.sort();
    Run {
        rps,
        p99: all[all.len() * 99 / 100],
        client_cpu,
        redis_cpu,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ours_app, peer_app) = rt.block_on(async {
        let backend = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
        let pool = fred::Pool::new(
            fred::Config::from_url(&server.url()).unwrap(),
            None,
            None,
            None,
            6, // as tower-sessions-redis-store's README and the shared Rust peer
        )
        .unwrap();
        let _task = fred::ClientLike::init(&pool).await.unwrap();
        (ours(backend), peer(pool))
    });
    let stacks = [
        ("tower-scale-session", &ours_app),
        ("tower-sessions", &peer_app),
    ];
    println!(
        "{CONCURRENCY} concurrent, {} requests per run, {ROUNDS} interleaved rounds",
        CONCURRENCY * PER_TASK
    );
    for scenario in ["login", "session"] {
        // Per stack: requests/s, p99 µs, client CPU µs/request, Redis CPU µs/request.
        let mut runs: Vec<[Vec<f64>; 4]> = vec![Default::default(), Default::default()];
        // Warm-up of both, then interleaved rounds.
        for (_, app) in stacks {
            rt.block_on(load(app, scenario, &server));
        }
        for _ in 0..ROUNDS {
            for (i, (_, app)) in stacks.iter().enumerate() {
                let run = rt.block_on(load(app, scenario, &server));
                runs[i][0].push(run.rps);
                runs[i][1].push(run.p99.as_secs_f64() * 1e6);
                runs[i][2].push(run.client_cpu.as_secs_f64() * 1e6);
                runs[i][3].push(run.redis_cpu.as_secs_f64() * 1e6);
            }
            server.cli(&["FLUSHALL"]);
        }
        let m: Vec<[f64; 4]> = runs
            .into_iter()
            .map(|[a, b, c, d]| [median(a), median(b), median(c), median(d)])
            .collect();
        for (i, (name, _)) in stacks.iter().enumerate() {
            println!(
                "/{scenario:8} {name:20} {:>8.0} req/s  p99 {:>6.0} µs  client CPU {:>5.1} µs/req  Redis CPU {:>5.1} µs/req",
                m[i][0], m[i][1], m[i][2], m[i][3]
            );
        }
        println!(
            "/{scenario:8} ours/peer: throughput {:.2}x, p99 {:.2}x, client CPU {:.2}x, Redis CPU {:.2}x",
            m[0][0] / m[1][0],
            m[0][1] / m[1][1],
            m[0][2] / m[1][2],
            m[0][3] / m[1][3]
        );
    }
}
