//! The sections that hand handlers a service: `[offload]` (the pool), `[pubsub]` (the
//! broadcaster, across instances through Redis), `[replica]` (the read/write route).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Router};
use tower_scale::offload::Offload;
use tower_scale::pubsub::Broadcaster;
use tower_scale::replica::{DbRoute, Target};
use tower_scale::stack::{Stack, StackConfig};
use tower_scale_testkit::RedisServer;

use crate::{body, request, send, session_cookie};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offload_pool_of_the_config_runs_handlers_jobs_and_refuses_past_its_capacity() {
    let config = StackConfig::from_toml("[offload]\nthreads = 1\nqueue = 0\n").unwrap();
    let stack = Stack::build(&config).unwrap();
    let (started_tx, started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let app = stack.apply(Router::new().route(
        "/job",
        get(move |Extension(pool): Extension<Offload>| {
            let started = started_tx.clone();
            let release = release_rx.clone();
            async move {
                pool.run(move || {
                    let _ = started.send(());
                    release.lock().unwrap().recv().unwrap();
                    "done"
                })
                .await
            }
        }),
    ));
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, "/job", &[]).await.status() }
    });
    let mut started_rx = started_rx;
    started_rx.recv().await.unwrap();
    assert_eq!(stack.offload().unwrap().admitted(), 1);
    // One thread, no queue: a second job is refused at once.
    let refused = send(&app, "/job", &[]).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    release_tx.send(()).unwrap();
    assert_eq!(first.await.unwrap(), StatusCode::OK);
}

/// A handler that publishes its body to the room `news`.
fn publisher(stack: &Stack) -> Router {
    stack.apply(Router::new().route(
        "/publish",
        post(
            |Extension(b): Extension<Broadcaster>, text: String| async move {
                b.publish("news", text)
                    .await
                    .map(|_| "sent")
                    .map_err(|e| e.to_string())
            },
        ),
    ))
}

fn post_text(uri: &str, text: &str) -> Request<Body> {
    Request::post(uri)
        .body(Body::from(text.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn pubsub_in_memory_reaches_this_instances_subscribers() {
    let stack =
        Stack::build(&StackConfig::from_toml("[pubsub]\nqueue_capacity = 8").unwrap()).unwrap();
    let broadcaster = stack.pubsub().unwrap();
    assert!(!broadcaster.is_redis());
    assert_eq!(broadcaster.config().queue_capacity, 8);
    let mut sub = broadcaster.subscribe("news").await.unwrap();
    let res = request(&publisher(&stack), post_text("/publish", "hello")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let event = sub.recv().await.unwrap();
    assert_eq!(&event.message().unwrap().payload()[..], b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_through_redis_reaches_the_other_instances() {
    let redis = RedisServer::start();
    // subscribe returns once Redis confirmed the room, however loaded the machine is.
    let toml = format!(
        "[redis]\nurl = \"{}\"\n\n[pubsub]\nsubscribe_timeout = \"60s\"\n",
        redis.url()
    );
    let config = StackConfig::from_toml(&toml).unwrap();
    // Two instances of one service: two stacks from one config.
    let a = Stack::build(&config).unwrap();
    let b = Stack::build(&config).unwrap();
    assert!(b.pubsub().unwrap().is_redis());
    let mut sub = b.pubsub().unwrap().subscribe("news").await.unwrap();
    let res = request(&publisher(&a), post_text("/publish", "across")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let event = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("the message crossed within 10 s")
        .unwrap();
    assert_eq!(&event.message().unwrap().payload()[..], b"across");
}

#[tokio::test]
async fn replica_routes_reads_to_replicas_and_a_writers_reads_to_the_primary() {
    let config = StackConfig::from_toml(
        "[replica]\nsecret = \"a secret of at least thirty-two bytes!!\"\nwindow = \"5s\"\ncookie_name = \"rw\"\n",
    )
    .unwrap();
    let stack = Stack::build(&config).unwrap();
    let target = |Extension(route): Extension<DbRoute>| async move {
        match route.target {
            Target::Primary => "primary",
            Target::Replica => "replica",
        }
    };
    let app = stack.apply(Router::new().route("/items", get(target).post(target)));
    assert_eq!(body(send(&app, "/items", &[]).await).await, "replica");
    let write = request(&app, post_text("/items", "")).await;
    assert_eq!(write.status(), StatusCode::OK);
    let cookie = session_cookie(&write);
    assert!(cookie.starts_with("rw="), "{cookie}");
    let read = send(&app, "/items", &[("cookie", &cookie)]).await;
    assert_eq!(body(read).await, "primary");

    let short = StackConfig::from_toml("[replica]\nsecret = \"short\"").unwrap();
    let e = Stack::build(&short).unwrap_err();
    assert_eq!(e.section(), "replica");
    assert!(!e.to_string().contains("short\""), "{e}");
}
