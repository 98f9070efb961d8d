//! The bench app against `shared/bench/SCENARIOS.md`, over HTTP: the real binary, a real
//! redis-server (tower-scale-testkit), every endpoint's statuses, bodies and headers, and the
//! exit status on SIGTERM.

use std::io::Read;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use example_bench_app::{JSON_DOC, ORIGIN_DOC_LEN, origin_document};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tower_scale_testkit::RedisServer;

/// Long enough for a debug build on a busy 2-core machine; only a bound on hangs.
const DEADLINE: Duration = Duration::from_secs(60);

/// The app as a child process, killed when dropped.
struct App {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl App {
    /// Starts the binary on a free port and waits for its "listening" line.
    async fn start(envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_example-bench-app"))
            .env("PORT", "0")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start example-bench-app");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("the app did not say it listens")
            .expect("read stdout")
            .expect("the app exited before listening");
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        // Keep draining stdout so the app never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = reqwest::Client::builder()
            .timeout(DEADLINE)
            .build()
            .expect("client");
        Self { child, base, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("GET")
    }

    async fn exit_on_sigterm(mut self) -> ExitStatus {
        let pid = self.child.id().expect("running");
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGTERM).expect("SIGTERM");
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("no exit after SIGTERM")
            .expect("wait")
    }
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header"))
}

/// The `name=value` part of the response's `Set-Cookie`.
fn cookie(res: &reqwest::Response) -> String {
    tower_scale_testkit::cookie_pair(header(res, "set-cookie").expect("Set-Cookie")).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_follows_the_contract() {
    let redis = RedisServer::start();
    let app = App::start(&[
        ("REDIS_URL", &redis.url()),
        ("BENCH_HELLO_LIMITER", "redis"),
    ])
    .await;

    // GET /hello: 200 hello, through a limiter deciding in Redis, a session layer that is
    // never touched (no cookie, no session read), and compression that leaves 5 bytes alone.
    // (A first request loads the limiter's script; count the round trips of the second.)
    assert_eq!(app.get("/hello", &[]).await.status(), StatusCode::OK);
    redis.reset_stats();
    let res = app.get("/hello", &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        header(&res, "content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(header(&res, "content-encoding"), None);
    assert_eq!(header(&res, "set-cookie"), None);
    assert_eq!(res.text().await.unwrap(), "hello");
    assert_eq!(redis.calls("evalsha") + redis.calls("eval"), 1);

    // POST /login: 200 and a session cookie, not Secure (plain HTTP), HttpOnly.
    let res = app.http.post(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let set = header(&res, "set-cookie").unwrap().to_owned();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(!set.to_ascii_lowercase().contains("secure"), "{set}");
    let first = cookie(&res);
    let user = res.text().await.unwrap();
    assert!(
        user.len() > 1 && user.starts_with('u') && user[1..].bytes().all(|b| b.is_ascii_digit()),
        "{user}"
    );

    // GET /session counts 1, 2, 3 for that session.
    for expected in ["1", "2", "3"] {
        let res = app.get("/session", &[("cookie", &first)]).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.text().await.unwrap(), expected);
    }
    // 401 without a session, and with an unknown id.
    let res = app.get("/session", &[]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .get("/session", &[("cookie", "sid=AAAAAAAAAAAAAAAAAAAAAA")])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Logging in again with a session: a new id, count back to 0, the old id dead.
    let res = app
        .http
        .post(app.url("/login"))
        .header("cookie", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let second = cookie(&res);
    assert_ne!(second, first);
    let res = app.get("/session", &[("cookie", &second)]).await;
    assert_eq!(res.text().await.unwrap(), "1");
    let res = app.get("/session", &[("cookie", &first)]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // GET /whoami: the session's user, nothing written; 401 without a valid session.
    let res = app.http.post(app.url("/login")).send().await.unwrap();
    let third = cookie(&res);
    let user = res.text().await.unwrap();
    redis.reset_stats();
    for _ in 0..3 {
        let res = app.get("/whoami", &[("cookie", &third)]).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(header(&res, "set-cookie").is_none());
        assert_eq!(res.text().await.unwrap(), user);
    }
    let writes: u64 = ["evalsha", "set", "getdel", "pexpire", "del"]
        .iter()
        .map(|c| redis.calls(c))
        .sum();
    assert_eq!(writes, 0, "{:?}", redis.command_calls());
    for cookie in ["", "sid=AAAAAAAAAAAAAAAAAAAAAA", first.as_str()] {
        let headers: Vec<(&str, &str)> = Some(("cookie", cookie))
            .filter(|_| !cookie.is_empty())
            .into_iter()
            .collect();
        let res = app.get("/whoami", &headers).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{cookie}");
    }

    // GET /limited: 100 per second per x-api-key, burst 100; then 429 with Retry-After.
    // 300 requests at once: the first 100 pass, and no more pass than the burst plus what
    // the sustained rate (one per 10 ms) refilled while they ran.
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let req = app
            .http
            .get(app.url("/limited"))
            .header("x-api-key", "contract-test");
        set.spawn(async move {
            let res = req.send().await.expect("GET /limited");
            let status = res.status();
            let retry_after = header(&res, "retry-after").map(str::to_owned);
            (status, retry_after, res.text().await.unwrap())
        });
    }
    let (mut ok, mut limited) = (0_u64, 0_u64);
    while let Some(res) = set.join_next().await {
        let (status, retry_after, body) = res.unwrap();
        match status {
            StatusCode::OK => {
                assert_eq!(body, "ok");
                ok += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let secs: u64 = retry_after.expect("Retry-After on 429").parse().unwrap();
                assert!(secs >= 1);
                limited += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let refilled = u64::try_from(started.elapsed().as_millis()).unwrap() / 10 + 1;
    assert!(ok >= 100, "{ok} admitted");
    assert!(ok <= 100 + refilled, "{ok} admitted, {refilled} refilled");
    assert_eq!(ok + limited, 300);
    assert!(limited > 0);
    // Another key has its own quota; no key at all is a client error.
    let res = app.get("/limited", &[("x-api-key", "someone-else")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.get("/limited", &[]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // GET /cached/{id}: the 1024-byte origin document, then the same bytes from Redis.
    let res = app.get("/cached/42", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type"), Some("application/json"));
    let status = header(&res, "cache-status").unwrap().to_owned();
    assert!(!status.contains("hit"), "{status}");
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len(), ORIGIN_DOC_LEN);
    assert_eq!(body, origin_document("42").as_bytes());
    redis.reset_stats();
    let res = app.get("/cached/42", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let status = header(&res, "cache-status").unwrap().to_owned();
    assert!(status.contains("hit"), "{status}");
    assert_eq!(res.bytes().await.unwrap(), body);
    assert!(redis.total_calls() >= 1, "a hit is answered by Redis");
    // Bad ids: 400.
    for bad in ["a.b", "%20", &"x".repeat(65)] {
        let res = app.get(&format!("/cached/{bad}"), &[]).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.text().await.unwrap(), "bad id");
    }

    // GET /json: the shared document, gzip when accepted, identity otherwise.
    let res = app.get("/json", &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-encoding"), Some("gzip"));
    assert_eq!(header(&res, "content-type"), Some("application/json"));
    let gz = res.bytes().await.unwrap();
    assert!(gz.len() < JSON_DOC.len() / 4, "{} bytes gzipped", gz.len());
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, JSON_DOC);
    for accept in [None, Some("identity"), Some("br")] {
        let headers: Vec<(&str, &str)> =
            accept.map(|a| ("accept-encoding", a)).into_iter().collect();
        let res = app.get("/json", &headers).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "content-encoding"), None, "{accept:?}");
        assert_eq!(res.bytes().await.unwrap(), JSON_DOC, "{accept:?}");
    }

    // SIGTERM: a clean exit.
    assert!(app.exit_on_sigterm().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_hello_limiter_leases_instead_of_a_round_trip_per_request() {
    let redis = RedisServer::start();
    // The defaults: the hybrid limiter, without the IETF RateLimit fields.
    let app = App::start(&[("REDIS_URL", &redis.url())]).await;
    assert_eq!(app.get("/hello", &[]).await.status(), StatusCode::OK);
    redis.reset_stats();
    for _ in 0..50 {
        let res = app.get("/hello", &[]).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "ratelimit"), None);
        assert_eq!(res.text().await.unwrap(), "hello");
    }
    // One lease of 1000 units per second at most, never one decision per request.
    let decisions = redis.calls("evalsha") + redis.calls("eval");
    assert!(
        decisions < 50,
        "{decisions} Redis decisions for 50 requests"
    );
    assert!(app.exit_on_sigterm().await.success());
}

/// `/whoami` reads of one session: how many `GET`s (the record layout's read) Redis saw for
/// `reads` of them.
async fn whoami_loads(envs: &[(&str, &str)], reads: usize) -> u64 {
    let redis = RedisServer::start();
    let mut all = vec![("REDIS_URL", redis.url())];
    all.extend(envs.iter().map(|&(k, v)| (k, v.to_owned())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = App::start(&all).await;
    let res = app.http.post(app.url("/login")).send().await.unwrap();
    let session = cookie(&res);
    let user = res.text().await.unwrap();
    // The session store's tracking connection (when on) comes up in the background.
    let started = Instant::now();
    let on = envs.is_empty();
    while on
        && !redis
            .cli(&["CLIENT", "LIST"])
            .contains("tower-scale-tracking")
    {
        assert!(started.elapsed() < DEADLINE, "no tracking connection");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        app.get("/whoami", &[("cookie", &session)])
            .await
            .text()
            .await
            .unwrap(),
        user
    );
    redis.reset_stats();
    for _ in 0..reads {
        let res = app.get("/whoami", &[("cookie", &session)]).await;
        assert_eq!(res.text().await.unwrap(), user);
    }
    let loads = redis.calls("get");
    assert!(app.exit_on_sigterm().await.success());
    loads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_reads_the_local_copy_unless_it_is_turned_off() {
    // The default: the local copy, no command per read.
    assert_eq!(whoami_loads(&[], 200).await, 0);
    // Off: one GET per read.
    assert_eq!(
        whoami_loads(&[("BENCH_SESSION_LOCAL", "off")], 200).await,
        200
    );
}

/// The Redis commands of `requests` requests, the tracking connection's heartbeat `PING`s and
/// the test's own `INFO`/`CONFIG` left out.
fn app_commands(redis: &RedisServer, requests: u64) -> Vec<(String, f64)> {
    let mut calls: Vec<(String, f64)> = redis
        .command_calls()
        .into_iter()
        .filter(|(name, _)| !["ping", "info", "client|list"].contains(&name.as_str()))
        .filter(|(name, _)| !name.starts_with("config"))
        .map(|(name, n)| (name, n as f64 / requests as f64))
        .collect();
    calls.sort_by(|a, b| a.0.cmp(&b.0));
    calls
}

/// The record layout (as the peers store sessions): `/login` is one `SET .. NX`, `/session`
/// a `GET` and a `SET .. XX`, with the local copy on (the default) as without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_costs_one_command_and_session_two() {
    for envs in [&[][..], &[("BENCH_SESSION_LOCAL", "off")][..]] {
        let redis = RedisServer::start();
        let mut all = vec![("REDIS_URL", redis.url().clone())];
        all.extend(envs.iter().map(|&(k, v)| (k, v.to_owned())));
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let app = App::start(&all).await;
        let warm_up = app.http.post(app.url("/login")).send().await.unwrap();
        assert_eq!(warm_up.status(), StatusCode::OK);
        let requests = 50;
        redis.reset_stats();
        let mut cookies = Vec::new();
        for _ in 0..requests {
            let res = app.http.post(app.url("/login")).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            cookies.push(cookie(&res));
        }
        assert_eq!(
            app_commands(&redis, requests),
            [("set".to_owned(), 1.0)],
            "/login {envs:?}"
        );
        redis.reset_stats();
        for cookie in &cookies {
            let res = app.get("/session", &[("cookie", cookie)]).await;
            assert_eq!(res.text().await.unwrap(), "1");
        }
        assert_eq!(
            app_commands(&redis, requests),
            [("get".to_owned(), 1.0), ("set".to_owned(), 1.0)],
            "/session {envs:?}"
        );
        assert!(app.exit_on_sigterm().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_hits_come_from_the_local_tier_when_it_is_on() {
    let redis = RedisServer::start();
    let app = App::start(&[("REDIS_URL", &redis.url()), ("BENCH_CACHE_L1", "on")]).await;
    let res = app.get("/cached/7", &[]).await;
    let body = res.bytes().await.unwrap();
    assert_eq!(body, origin_document("7").as_bytes());
    // The local tier serves only once its purge bus is subscribed (it subscribes on first
    // use); the next hit then fills it.
    let started = Instant::now();
    while redis.cli(&["PUBSUB", "CHANNELS"]).is_empty() {
        assert!(
            started.elapsed() < DEADLINE,
            "the purge bus never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.get("/cached/7", &[]).await.bytes().await.unwrap(), body);
    redis.reset_stats();
    for _ in 0..100 {
        let res = app.get("/cached/7", &[]).await;
        let status = header(&res, "cache-status").unwrap().to_owned();
        assert!(status.contains("hit"), "{status}");
        assert_eq!(res.bytes().await.unwrap(), body);
    }
    assert_eq!(redis.calls("get"), 0, "{:?}", redis.command_calls());
    assert!(app.exit_on_sigterm().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ietf_ratelimit_fields_can_be_turned_on() {
    let redis = RedisServer::start();
    let app = App::start(&[
        ("REDIS_URL", &redis.url()),
        ("BENCH_RATELIMIT_HEADERS", "on"),
    ])
    .await;
    for (path, key) in [("/hello", None), ("/limited", Some("fields"))] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        let res = app.get(path, &headers).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert!(header(&res, "ratelimit").is_some(), "{path}");
        assert!(header(&res, "ratelimit-policy").is_some(), "{path}");
    }
    assert!(app.exit_on_sigterm().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_mode_serves_only_hello_without_redis() {
    // No Redis anywhere: the baseline needs none.
    let app = App::start(&[("BENCH_MODE", "bare"), ("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let res = app.get("/hello", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "ratelimit"), None);
    assert_eq!(res.text().await.unwrap(), "hello");
    let res = app.http.post(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(app.exit_on_sigterm().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_and_a_missing_redis_stop_the_start() {
    let run = |envs: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_example-bench-app"))
            .env("PORT", "0")
            .envs(envs.iter().copied())
            .output()
            .expect("run")
    };
    let out = run(&[("PORT", "70000")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORT"));
    let out = run(&[("BENCH_MODE", "fast")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BENCH_MODE"));
    let out = run(&[("BENCH_HELLO_LIMITER", "memory")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BENCH_HELLO_LIMITER"));
    for name in [
        "BENCH_RATELIMIT_HEADERS",
        "BENCH_SESSION_LOCAL",
        "BENCH_CACHE_L1",
    ] {
        let out = run(&[(name, "yes")]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(name));
    }

    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    let out = run(&[("REDIS_URL", &url)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not answer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sum of the samples in `text` whose series (name and labels, as exported) starts with
/// `prefix`; `None` when there is none.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_mode_serves_every_layers_metrics_and_sheds_past_the_in_flight_cap() {
    let redis = RedisServer::start();

    // Off by default: no /metrics.
    let app = App::start(&[("REDIS_URL", &redis.url())]).await;
    assert_eq!(
        app.get("/metrics", &[]).await.status(),
        StatusCode::NOT_FOUND
    );
    drop(app); // killed: exiting on SIGTERM is checked by the tests above

    let app = App::start(&[("REDIS_URL", &redis.url()), ("BENCH_METRICS", "on")]).await;
    assert_eq!(app.get("/hello", &[]).await.status(), StatusCode::OK);
    assert_eq!(app.get("/cached/m1", &[]).await.status(), StatusCode::OK);
    let res = app.get("/metrics", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    // Whatever each decision was (a busy machine may see a Redis timeout and a fallback), the
    // layer's metric moved.
    for (series, at_least) in [
        (
            r#"http_requests_total{method="GET",route="/hello",status="2xx"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{method="GET",route="/cached/{id}",status="2xx"}"#,
            1.0,
        ),
        ("cache_requests_total{", 1.0),
        (r#"ratelimit_decisions_total{policy="stack","#, 1.0),
        // The backend and the breakers were built after the recorder was installed: their
        // metrics are the recorder's, not no-ops (the start-up PING is one command).
        ("redis_command_duration_seconds_count", 1.0),
        (r#"breaker_state{breaker="redis"}"#, 0.0),
        ("process_resident_memory_bytes", 1.0),
    ] {
        let value = sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(value >= at_least, "{series} = {value} in\n{text}");
    }
    drop(app); // killed: exiting on SIGTERM is checked by the tests above

    // A cap of 0 in flight sheds every request but /metrics, and counts it.
    let app = App::start(&[
        ("REDIS_URL", &redis.url()),
        ("BENCH_METRICS", "on"),
        ("BENCH_MAX_IN_FLIGHT", "0"),
    ])
    .await;
    let res = app.get("/hello", &[]).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&res, "x-shed-reason"), Some("in_flight"));
    let text = app.get("/metrics", &[]).await.text().await.unwrap();
    assert_eq!(
        sample(&text, r#"pressure_shed_total{reason="in_flight"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"http_requests_total{method="GET",route="/hello",status="5xx"}"#
        ),
        Some(1.0),
        "{text}"
    );
    drop(app); // killed: exiting on SIGTERM is checked by the tests above

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_example-bench-app"))
        .envs([
            ("PORT", "0"),
            ("BENCH_METRICS", "on"),
            ("BENCH_MAX_IN_FLIGHT", "many"),
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BENCH_MAX_IN_FLIGHT"));
}
