//! Routing against a real PostgreSQL (one server, two databases: `app_primary` and
//! `app_replica`; the tests check routing, not replication), with two app instances on two
//! ports sharing the read-your-writes secret: the `POST` goes to instance A, the reads that
//! follow to instance B. The instances' wall clock is a shared test clock, advanced by hand.

#[path = "support/pg.rs"]
mod pg;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use example_replica_sqlx::{Pools, app, migrate};
use pg::PgServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use tower_scale_replica::ReadWriteLayer;

const SECRET: &[u8] = b"a test secret shared by both instances, 32+ bytes";
const WINDOW: Duration = Duration::from_secs(5);

/// One running app instance.
struct Instance {
    base: String,
    pools: Pools,
    server: tokio::task::JoinHandle<()>,
}

impl Instance {
    async fn start(pg: &PgServer, replica_url: &str, clock: Arc<AtomicU64>) -> Self {
        let pools =
            Pools::connect_lazy(&pg.url("app_primary"), replica_url, Duration::from_secs(2))
                .unwrap();
        let layer = ReadWriteLayer::new(SECRET)
            .unwrap()
            .window(WINDOW)
            .clock(move || clock.load(Ordering::SeqCst));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app(pools.clone(), layer);
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            base,
            pools,
            server,
        }
    }

    async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.pools.primary.close().await;
        self.pools.replica.close().await;
    }
}

async fn create_databases(pg: &PgServer) {
    let mut conn = sqlx::PgConnection::connect(&pg.url("postgres"))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", pg.log_tail()));
    for db in ["app_primary", "app_replica"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let pool = sqlx::PgPool::connect(&pg.url(db)).await.unwrap();
        migrate(&pool).await.unwrap();
        pool.close().await;
    }
    conn.close().await.unwrap();
}

/// `(status, served_by header, body, the read-your-writes cookie if one was set)`.
async fn send(
    http: &reqwest::Client,
    req: reqwest::RequestBuilder,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>, Value, Option<String>) {
    let req = match cookie {
        Some(c) => req.header("cookie", c),
        None => req,
    };
    let res = http.execute(req.build().unwrap()).await.unwrap();
    let status = res.status();
    let served_by = res
        .headers()
        .get("x-served-by")
        .map(|v| v.to_str().unwrap().to_owned());
    let set_cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = res.json().await.unwrap_or(Value::Null);
    (status, served_by, body, set_cookie)
}

fn names(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_writes_to_the_primary_and_read_your_writes_spans_instances() {
    let pg = PgServer::start();
    create_databases(&pg).await;
    let clock = Arc::new(AtomicU64::new(1_800_000_000_000));
    let a = Instance::start(&pg, &pg.url("app_replica"), Arc::clone(&clock)).await;
    let b = Instance::start(&pg, &pg.url("app_replica"), Arc::clone(&clock)).await;
    let http = reqwest::Client::new();
    let get = |i: &Instance, path: &str| http.get(format!("{}{path}", i.base));

    // Reads go to the replica, on both instances.
    for i in [&a, &b] {
        let (status, served_by, body, cookie) = send(&http, get(i, "/items"), None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(served_by.as_deref(), Some("app_replica"));
        assert_eq!(body["served_by"], "app_replica");
        assert!(cookie.is_none(), "a read sets no cookie");
    }

    // A write goes to the primary and sets the signed cookie.
    let (status, served_by, body, cookie) = send(
        &http,
        http.post(format!("{}/items", a.base))
            .json(&json!({ "name": "first" })),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(served_by.as_deref(), Some("app_primary"));
    let cookie = cookie.expect("a successful write sets the read-your-writes cookie");

    // Right after, the same client reads from the primary on the OTHER instance, and sees its
    // write (the "replica" database never gets it: there is no replication here).
    let (_, served_by, body, _) = send(&http, get(&b, "/items"), Some(&cookie)).await;
    assert_eq!(served_by.as_deref(), Some("app_primary"));
    assert_eq!(names(&body), ["first"]);
    // Another client, without the cookie, still reads from the replica.
    let (_, served_by, body, _) = send(&http, get(&b, "/items"), None).await;
    assert_eq!(served_by.as_deref(), Some("app_replica"));
    assert!(names(&body).is_empty());

    // Until the window has passed, on either instance.
    clock.fetch_add(WINDOW.as_millis() as u64 - 1, Ordering::SeqCst);
    for i in [&a, &b] {
        let (_, served_by, _, _) = send(&http, get(i, "/items"), Some(&cookie)).await;
        assert_eq!(served_by.as_deref(), Some("app_primary"));
    }
    // After it, the replica again.
    clock.fetch_add(1, Ordering::SeqCst);
    for i in [&a, &b] {
        let (_, served_by, _, _) = send(&http, get(i, "/items"), Some(&cookie)).await;
        assert_eq!(served_by.as_deref(), Some("app_replica"));
    }

    // A forged or tampered cookie is ignored.
    let (name, value) = cookie.split_once('=').unwrap();
    let forged = format!("{name}=x{value}");
    let (_, served_by, _, _) = send(&http, get(&b, "/items"), Some(&forged)).await;
    assert_eq!(served_by.as_deref(), Some("app_replica"));

    // A failed write sets no cookie: the next read stays on the replica.
    let (status, _, _, cookie) = send(
        &http,
        http.post(format!("{}/items", a.base))
            .json(&json!({ "name": " " })),
        None,
    )
    .await;
    assert_eq!(status, 422);
    assert!(cookie.is_none());

    // A route forced to the primary reads there without any cookie.
    let (_, served_by, body, _) = send(&http, get(&b, "/items/fresh"), None).await;
    assert_eq!(served_by.as_deref(), Some("app_primary"));
    assert_eq!(names(&body), ["first"]);

    a.stop().await;
    b.stop().await;
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_down_answers_503_on_reads_while_writes_still_work() {
    let pg = PgServer::start();
    create_databases(&pg).await;
    // A replica URL where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let clock = Arc::new(AtomicU64::new(1_800_000_000_000));
    let a = Instance::start(
        &pg,
        &format!("postgres://postgres@127.0.0.1:{dead_port}/app_replica"),
        Arc::clone(&clock),
    )
    .await;
    let http = reqwest::Client::new();

    let (status, _, body, _) = send(&http, http.get(format!("{}/items", a.base)), None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "the replica database is unavailable");

    let (status, served_by, _, cookie) = send(
        &http,
        http.post(format!("{}/items", a.base))
            .json(&json!({ "name": "x" })),
        None,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(served_by.as_deref(), Some("app_primary"));
    // The writer's own reads go to the primary, so they work during the window.
    let (status, served_by, _, _) = send(
        &http,
        http.get(format!("{}/items", a.base)),
        cookie.as_deref(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(served_by.as_deref(), Some("app_primary"));

    a.stop().await;
}

#[test]
fn the_helper_stops_its_server() {
    let mut pg = PgServer::start();
    let port = pg.port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    pg.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "postgres still listens on {port} after stop()"
    );
}
