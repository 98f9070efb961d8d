//! The bench app while its Redis is away for 3 s: paused (SIGSTOP), the network to it cut
//! (iptables in a private network namespace; a paused Redis where namespaces are refused),
//! restarted with its data lost. In process, on paused time while Redis is away, 16 clients
//! going round every endpoint: nothing hangs, each endpoint answers as docs/operations.md
//! says, `/hello` never waits for Redis, the median request of every endpoint waits at most
//! a few milliseconds, and everything works again once Redis is back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use example_bench_app::{Options, app};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_scale::redis::{RedisBackend, RedisConfig};
use tower_scale::shutdown::{Shutdown, ShutdownConfig};
use tower_scale_testkit::RedisServer;

type App = tower_scale::shutdown::InFlight<axum::Router>;

/// How long Redis is away.
const AWAY: Duration = Duration::from_secs(3);
const CLIENTS: usize = 16;
/// Every endpoint, as (name, method, path).
const ENDPOINTS: [(&str, &str, &str); 6] = [
    ("hello", "GET", "/hello"),
    ("limited", "GET", "/limited"),
    ("cached", "GET", "/cached/outage"),
    ("json", "GET", "/json"),
    ("session", "GET", "/session"),
    ("login", "POST", "/login"),
];

#[derive(Clone, Copy, Debug)]
enum Fault {
    Pause,
    DropPackets,
    Restart,
}

async fn call(app: &App, method: &str, path: &str, cookie: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", "outage");
    if let Some(cookie) = cookie {
        req = req.header(header::COOKIE, cookie);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let res = app.clone().oneshot(req).await.unwrap();
    let cookie = res
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| tower_scale_testkit::cookie_pair(v.to_str().unwrap()).to_owned())
        .unwrap_or_default();
    (res.status(), cookie)
}

/// A session's cookie, from `/login`.
async fn login(app: &App) -> String {
    let (status, cookie) = call(app, "POST", "/login", None).await;
    assert_eq!(status, StatusCode::OK);
    cookie
}

/// Every endpoint answers 200 (the session's with `cookie`).
async fn all_ok(app: &App, cookie: &str) -> bool {
    for (_, method, path) in ENDPOINTS {
        let cookie = (path == "/session").then_some(cookie);
        let (status, _) = call(app, method, path, cookie).await;
        if status != StatusCode::OK {
            eprintln!("{path}: {status}");
            return false;
        }
    }
    true
}

async fn outage(fault: Fault) {
    let isolated = match fault {
        Fault::DropPackets => RedisServer::start_isolated()
            .inspect_err(|e| {
                eprintln!("no network namespace ({e}): SIGSTOP stands in for lost packets");
            })
            .ok(),
        _ => None,
    };
    let mut server = isolated.unwrap_or_else(RedisServer::start);
    let redis = RedisBackend::new(RedisConfig::new(server.url())).unwrap();
    let app = app(
        &redis,
        &Shutdown::new(ShutdownConfig::default()),
        Options::default(),
    )
    .unwrap();
    let cookie = login(&app).await;
    assert!(all_ok(&app, &cookie).await, "before {fault:?}");

    match fault {
        Fault::Pause => server.pause(),
        Fault::DropPackets if server.url().contains("127.0.0.1") => server.pause(),
        Fault::DropPackets => server.drop_packets(100),
        Fault::Restart => server.kill(),
    }
    tokio::time::pause();
    let start = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (app, cookie) = (app.clone(), cookie.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while start.elapsed() < AWAY {
                for (name, method, path) in ENDPOINTS {
                    let sent = Instant::now();
                    // (A login with the cookie would rotate the session: its commands, sent
                    // before the first timeouts, still run once Redis reads them.)
                    let cookie = (name == "session").then_some(cookie.as_str());
                    let (status, _) = call(&app, method, path, cookie).await;
                    seen.push((name, status, sent.elapsed()));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            seen
        }));
    }
    let mut by_endpoint: BTreeMap<&str, Vec<(StatusCode, Duration)>> = BTreeMap::new();
    for client in clients {
        for (name, status, waited) in client.await.unwrap() {
            by_endpoint.entry(name).or_default().push((status, waited));
        }
    }
    tokio::time::resume();
    match fault {
        Fault::Pause => server.resume(),
        Fault::DropPackets if server.url().contains("127.0.0.1") => server.resume(),
        Fault::DropPackets => server.pass_packets(),
        Fault::Restart => server.restart(),
    }

    let timeout = redis.config().command_timeout;
    for (name, seen) in &by_endpoint {
        // As docs/operations.md says: the session layer answers 503 when it cannot read or
        // write; the rate limits fail open on this instance's share; the cache misses and
        // the origin answers.
        // (`/limited`'s share, 100 per second, is less than the clients send: some 429s.)
        let expected: &[StatusCode] = match *name {
            "session" | "login" => &[StatusCode::SERVICE_UNAVAILABLE],
            "limited" => &[StatusCode::OK, StatusCode::TOO_MANY_REQUESTS],
            _ => &[StatusCode::OK],
        };
        assert!(
            seen.iter().all(|(status, _)| expected.contains(status)),
            "{fault:?}: {name}: {:?}",
            seen.iter().find(|(status, _)| !expected.contains(status))
        );
        assert!(seen.iter().any(|(status, _)| *status == expected[0]));
        let mut waits: Vec<_> = seen.iter().map(|(_, w)| *w).collect();
        waits.sort();
        let (median, max) = (waits[waits.len() / 2], waits[waits.len() - 1]);
        // Nothing waits longer than one command timeout (+ 1 ms: the timer's rounding; + the
        // cache's origin, 5 ms).
        assert!(
            max <= timeout + Duration::from_millis(6),
            "{fault:?}: {name}: max {max:?}"
        );
        // The median at most a few milliseconds (the cache's: its origin's 5 ms).
        assert!(
            median <= Duration::from_millis(6),
            "{fault:?}: {name}: median {median:?}"
        );
        // `/hello` never waits for Redis: its lease, or this instance's share after
        // HybridStore's 5 ms wait for a new one.
        if *name == "hello" {
            assert!(
                max <= Duration::from_millis(6),
                "{fault:?}: hello: max {max:?}"
            );
        }
    }

    // Back: every endpoint answers 200 again; after a restart the sessions are gone (the
    // cookie finds none: 401) and a new login works. The wait only bounds a hang: the
    // backend's breaker tries Redis again every 500 ms.
    let cookie = match fault {
        Fault::Restart => {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let (status, _) = call(&app, "GET", "/session", Some(&cookie)).await;
                if status == StatusCode::UNAUTHORIZED {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{status}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            login(&app).await
        }
        _ => cookie,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !all_ok(&app, &cookie).await {
        assert!(
            std::time::Instant::now() < deadline,
            "{fault:?}: not recovered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn every_endpoint_answers_at_once_while_redis_is_paused() {
    outage(Fault::Pause).await;
}

#[tokio::test]
async fn every_endpoint_answers_at_once_while_the_network_to_redis_drops_packets() {
    outage(Fault::DropPackets).await;
}

#[tokio::test]
async fn every_endpoint_answers_at_once_while_redis_restarts_empty() {
    outage(Fault::Restart).await;
}
