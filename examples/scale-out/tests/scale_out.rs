//! Scale-out, end to end: a real nginx (the repository's `nginx.conf.template`, round robin) in
//! front of 3 quick-start instances, each a real `example-quickstart` process with its own port
//! and one shared `redis-server`. Every check goes through nginx, which names the instance that
//! answered in `X-Upstream`, so each test shows its requests landing on different instances.
//!
//! Each test has its own Redis, instances and nginx (strict round robin over a private nginx).

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{PATIENCE, ScaleOut, send};
use tower_scale_testkit::eventually;

/// The number of instances behind nginx.
const INSTANCES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_created_on_one_instance_works_on_all() {
    let env = ScaleOut::start(INSTANCES).await;
    assert_eq!(env.get("/counter", &[]).await.status, 401);

    let login = env.post("/login?user=alice", &[]).await;
    assert_eq!(login.status, 200, "{login:?}");
    let cookie = login.cookie().expect("login sets the session cookie");
    let session = [("cookie", cookie.as_str())];

    // The counter goes up by one on every request, whichever instance answers.
    let mut n = 0;
    env.until_every_instance_answers("/counter", &session, |res| {
        n += 1;
        assert_eq!(
            (res.status, res.body.as_str()),
            (200, format!("{n}\n").as_str()),
            "{res:?}"
        );
    })
    .await;
    env.until_every_instance_answers("/me", &session, |res| {
        assert_eq!((res.status, res.body.as_str()), (200, "alice\n"), "{res:?}");
    })
    .await;

    // Logging out on one instance logs out on all of them.
    let logout = env.post("/logout", &session).await;
    assert_eq!(logout.status, 200, "{logout:?}");
    env.until_every_instance_answers("/me", &session, |res| {
        assert_eq!(
            (res.status, res.body.as_str()),
            (200, "anonymous\n"),
            "{res:?}"
        );
    })
    .await;
    env.until_every_instance_answers("/counter", &session, |res| {
        assert_eq!(res.status, 401, "{res:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_rate_limit_admits_the_quota_once_not_once_per_instance() {
    let env = ScaleOut::start(INSTANCES).await;
    // The instances run `/limited` at 3 requests per hour per key (LIMITED_PERIOD): no slot
    // comes back during the test, however slow the machine.
    for attempt in 0..5 {
        let key = format!("scale-out-{attempt}");
        let mut replies = Vec::new();
        for _ in 0..2 * INSTANCES {
            replies.push(env.get("/limited", &[("x-api-key", &key)]).await);
        }
        // A run in which nginx moved on to another instance (one failed to answer in time)
        // did not rotate strictly: run it again with a new key.
        if replies.iter().any(|r| r.upstreams.len() > 1) {
            continue;
        }
        let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 200, 200, 429, 429, 429], "{replies:#?}");
        // The 3 admitted requests were answered by the 3 instances; so were the 3 refused
        // ones: no instance had a quota of its own left.
        let admitted: HashSet<&str> = replies[..3].iter().map(|r| r.upstream()).collect();
        let refused: HashSet<&str> = replies[3..].iter().map(|r| r.upstream()).collect();
        assert_eq!(admitted.len(), INSTANCES, "{replies:#?}");
        assert_eq!(refused.len(), INSTANCES, "{replies:#?}");
        for refusal in &replies[3..] {
            let retry_after: u64 = refusal
                .header("retry-after")
                .parse()
                .unwrap_or_else(|_| panic!("429 without a Retry-After in seconds: {refusal:?}"));
            assert!((1..=3600).contains(&retry_after), "{refusal:?}");
        }
        return;
    }
    panic!("nginx never rotated strictly over the instances in 5 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cached_by_one_instance_is_a_hit_on_the_others() {
    let env = ScaleOut::start(INSTANCES).await;
    let first = env.get("/slow/4242", &[]).await;
    assert_eq!(first.status, 200, "{first:?}");
    let status = first.header("cache-status");
    assert!(
        status.contains("fwd=uri-miss") && status.contains("stored"),
        "{first:?}"
    );

    // Round robin: the next requests go to the other instances, which never ran the origin
    // for it, and every instance answers a hit.
    env.until_every_instance_answers("/slow/4242", &[], |res| {
        assert_eq!(res.status, 200, "{res:?}");
        assert!(
            res.header("cache-status").contains("; hit"),
            "a hit on {}: {res:?}",
            res.upstream()
        );
        assert_eq!(res.body, first.body);
    })
    .await;
}

/// Uses the quick-start example's local cache tier (with Redis; `/readyz` waits for its
/// invalidation bus), `DELETE /slow/{id}` (the cache layer purges a URI after a successful
/// unsafe request) and its `x-origin-call` header naming the origin call a response came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_through_one_instance_reaches_every_instance() {
    let env = ScaleOut::start(INSTANCES).await;
    let path = "/slow/77";
    // `x-origin-call` names the origin call a (cached) response came from.
    let origin_call = |res: &support::Reply| {
        let call = res.header("x-origin-call").to_owned();
        assert!(
            !call.is_empty(),
            "no x-origin-call on {path}: the quick-start example lacks it: {res:?}"
        );
        call
    };

    // Cached by one instance, hits on the others (asked directly here), which keep it in
    // their local tier.
    let first = env.get(path, &[]).await;
    assert!(first.header("cache-status").contains("stored"), "{first:?}");
    let before = origin_call(&first);
    for i in 0..INSTANCES {
        let res = env.get_direct(i, path).await;
        assert!(res.header("cache-status").contains("; hit"), "{res:?}");
        assert_eq!(origin_call(&res), before);
    }
    // With Redis frozen, every instance still answers a hit: each holds its own copy.
    env.redis.pause();
    for i in 0..INSTANCES {
        let res = env.get_direct(i, path).await;
        if !res.header("cache-status").contains("; hit") || origin_call(&res) != before {
            env.redis.resume();
            panic!("no local copy on instance {i}: {res:?}");
        }
    }
    env.redis.resume();

    // A purge through one instance...
    let purge = env.delete(path).await;
    assert_eq!(purge.status, 204, "{purge:?}");
    // ...reaches every instance's local tier: the next request is a miss wherever it lands,
    // and every instance then serves the new origin call, none its old copy.
    let refetched = env.get(path, &[]).await;
    assert!(
        refetched.header("cache-status").contains("fwd=uri-miss"),
        "{refetched:?}"
    );
    let after = origin_call(&refetched);
    assert_ne!(after, before);
    env.until_every_instance_answers(path, &[], |res| {
        assert!(res.header("cache-status").contains("; hit"), "{res:?}");
        let call = origin_call(res);
        assert_eq!(call, after, "a stale copy on {}", res.upstream());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_origin_failing_every_breaker_opens_and_answers_503_without_calling_it() {
    let env = ScaleOut::start(INSTANCES).await;
    // Closed breakers: the dependency answers through every instance.
    env.until_every_instance_answers("/downstream", &[], |res| {
        assert_eq!(res.status, 200, "{res:?}");
    })
    .await;

    // The dependency fails. Each instance has its own breaker (half of the last 4 calls
    // failed: open). nginx passes a 503 on to the next instance, so a failing request comes
    // back 503 once every instance it tried answered 503: then each instance is asked
    // directly whether its breaker refuses a call (a 503 without `x-shed-reason`).
    let breaker_open = |res: &support::Reply| {
        res.status == 503 && !res.is_shed() && !res.header("retry-after").is_empty()
    };
    let mut opened = false;
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let res = env.get("/downstream?fail=1", &[]).await;
        match res.status {
            500 => continue,
            503 if res.upstream_statuses == ["503"; INSTANCES] => {}
            _ => panic!("unexpected answer: {res:?}"),
        }
        let mut all = true;
        for i in 0..INSTANCES {
            all &= breaker_open(&env.get_direct(i, "/downstream").await);
        }
        if all {
            opened = true;
            break;
        }
    }
    assert!(opened, "the breakers never opened\n{}", env.logs());

    // Open: through nginx, a call that would succeed is refused by every instance in turn,
    // with a Retry-After, without reaching the dependency (which would have answered 200).
    for _ in 0..INSTANCES {
        let res = env.get("/downstream", &[]).await;
        assert!(breaker_open(&res), "{res:?}");
        assert_eq!(res.upstream_statuses, ["503"; INSTANCES], "{res:?}");
        let refused_by: HashSet<String> = res.upstreams.iter().cloned().collect();
        assert_eq!(refused_by, env.addrs(), "{res:?}");
    }
    // The rest of the app is unaffected.
    assert_eq!(env.get("/hello", &[]).await.status, 200);
}

/// What the load tasks of the rolling restart saw.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    /// Responses that came through a second or third instance after a first one failed.
    retried: AtomicU64,
    /// Requests shed by every instance nginx tried (an overloaded machine), sent again.
    shed: AtomicU64,
    /// Successful responses per instance that answered.
    by_instance: Mutex<HashMap<String, u64>>,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Load {
    fn served_by(&self, addr: &str) -> u64 {
        self.by_instance
            .lock()
            .unwrap()
            .get(addr)
            .copied()
            .unwrap_or(0)
    }

    fn failed(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    /// One client: logs in, then alternates `/hello` and `/counter` (whose value must go up by
    /// exactly one each time: no request lost or run twice) until told to stop.
    async fn run(self: Arc<Self>, http: reqwest::Client, base: String, task: usize) {
        let login = send(http.post(format!("{base}/login?user=load-{task}"))).await;
        let mut cookie = match login {
            Ok(r) if r.status == 200 => r.cookie().expect("a session cookie"),
            other => return self.failed(format!("task {task}: login: {other:?}")),
        };
        let mut count = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            for path in ["/hello", "/counter"] {
                let reply = loop {
                    let req = http
                        .get(format!("{base}{path}"))
                        .header("cookie", cookie.as_str());
                    match send(req).await {
                        // Every instance nginx tried shed it (the machine is overloaded; no
                        // handler ran): like a client honouring Retry-After, send it again.
                        Ok(r) if r.is_shed() => {
                            self.shed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => break other,
                    }
                };
                let reply = match reply {
                    Ok(r) => r,
                    Err(e) => {
                        self.failed(format!("task {task}: GET {path}: {e}"));
                        continue;
                    }
                };
                if reply.status != 200 {
                    self.failed(format!("task {task}: GET {path}: {reply:?}"));
                    continue;
                }
                if path == "/counter" {
                    if reply.body != format!("{}\n", count + 1) {
                        self.failed(format!(
                            "task {task}: counter {:?} after {count}",
                            reply.body
                        ));
                    }
                    count = reply.body.trim().parse().unwrap_or(count);
                    if let Some(refreshed) = reply.cookie() {
                        cookie = refreshed;
                    }
                }
                if reply.upstreams.len() > 1 {
                    self.retried.fetch_add(1, Ordering::Relaxed);
                }
                *self
                    .by_instance
                    .lock()
                    .unwrap()
                    .entry(reply.upstream().to_owned())
                    .or_default() += 1;
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

// One client thread: the load takes at most one of the machine's cores, so that nginx and the
// instances are not starved (a starved instance sheds load, see `Reply::is_shed`).
#[tokio::test(flavor = "current_thread")]
async fn a_rolling_restart_of_every_instance_under_load_fails_no_request() {
    const CLIENTS: usize = 16;
    let mut env = ScaleOut::start(INSTANCES).await;
    let load = Arc::new(Load::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|task| tokio::spawn(load.clone().run(support::client(), env.base.clone(), task)))
        .collect();
    eventually("the load to flow", PATIENCE, || {
        load.ok.load(Ordering::Relaxed) >= 200
    })
    .await;

    for i in 0..INSTANCES {
        let addr = env.instances[i].addr();
        // SIGTERM: the instance turns not ready, answers with `Connection: close` for its
        // pre-stop delay, stops accepting, drains, and exits 0.
        env.instances[i].signal(Signal::SIGTERM);
        let status = env.instances[i].exit().await;
        assert!(
            status.success(),
            "{addr} exited with {status}\n{}",
            env.logs()
        );
        // While it is gone, the other instances serve everything.
        let now = load.ok.load(Ordering::Relaxed);
        eventually(
            "requests served while an instance is down",
            PATIENCE,
            || load.ok.load(Ordering::Relaxed) >= now + 100,
        )
        .await;
        env.start_again(i).await;
        // Back in rotation: it serves its share again.
        let before = load.served_by(&addr);
        eventually("the restarted instance to serve", PATIENCE, || {
            load.served_by(&addr) >= before + 20
        })
        .await;
    }

    load.stop.store(true, Ordering::Relaxed);
    for client in clients {
        tokio::time::timeout(PATIENCE, client)
            .await
            .expect("a client task hung")
            .expect("a client task panicked");
    }
    let failures = load.failures.lock().unwrap().clone();
    let ok = load.ok.load(Ordering::Relaxed);
    let retried = load.retried.load(Ordering::Relaxed);
    let shed = load.shed.load(Ordering::Relaxed);
    let by_instance = load.by_instance.lock().unwrap().clone();
    println!(
        "{ok} requests through nginx across {INSTANCES} restarts, {} failed, {retried} \
         answered by another instance after a first one failed, {shed} shed by every instance \
         (overload) and sent again; per instance: {by_instance:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:#?}\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        env.logs()
    );
    assert_eq!(by_instance.len(), INSTANCES, "{by_instance:?}");
    // The instances run without load shedding (PRESSURE_MAX_LAG=off): nothing may be shed,
    // so no request was sent twice.
    assert_eq!(shed, 0, "requests shed although load shedding is off");
}

/// The stack's rate limit keyed by the client address nginx appends to `X-Forwarded-For`
/// (`nginx.conf.template`): a `Forwarded` header the client writes, which nginx passes
/// through, never picks the bucket, nor does an `X-Forwarded-For` the client starts itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_header_from_client_cannot_pick_the_bucket_behind_nginx() {
    let config = format!(
        "{}\n{}",
        include_str!("../../quickstart/tower-scale.toml"),
        r#"
[rate_limit]
quotas = [{ count = 1, period = "1h" }]
key = { type = "client_ip", header = "x-forwarded-for", trusted_hops = 1 }
"#
    );
    let env = ScaleOut::start_with(INSTANCES, Some(&config)).await;
    let mut statuses = Vec::new();
    for i in 0..100 {
        let spoofed = format!("198.51.100.{i}");
        let forwarded = format!("for={spoofed}");
        let reply = env
            .get(
                "/hello",
                &[("forwarded", &forwarded), ("x-forwarded-for", &spoofed)],
            )
            .await;
        statuses.push(reply.status);
    }
    assert_eq!(statuses[0], 200, "{statuses:?}\n{}", env.logs());
    assert!(
        statuses[1..].iter().all(|s| *s == 429),
        "{statuses:?}\n{}",
        env.logs()
    );
}
