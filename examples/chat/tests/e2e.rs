//! End to end: several chat instances in this process, each with its own Redis backend and
//! broadcaster, one real redis-server, and WebSocket clients (tokio-tungstenite) connected to
//! different instances.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use example_chat::ChatConfig;
use example_chat::protocol::ServerMsg;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, mpsc};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower_scale_pubsub::Delivery;
use tower_scale_ratelimit::Quota;
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_shutdown::{Report, Shutdown};
use tower_scale_testkit::RedisServer;

mod support;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A guard against a hung test, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

struct Instance {
    addr: SocketAddr,
    shutdown: Shutdown,
    served: tokio::task::JoinHandle<Report>,
}

async fn start(redis: Option<&str>, delivery: Delivery, rate: Quota) -> Instance {
    let config = ChatConfig {
        redis: redis.map(|url| RedisBackend::new(RedisConfig::new(url)).unwrap()),
        delivery,
        rate,
        publish_retry: Duration::from_secs(20),
        ..ChatConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, served) = support::serve(listener, config);
    Instance {
        addr,
        shutdown,
        served,
    }
}

/// Logs `name` in on the instance at `addr`; returns the session cookie (`sid=...`).
async fn login(addr: SocketAddr, name: &str) -> String {
    let res = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{addr}/login"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "name": name }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    tower_scale_testkit::cookie_pair(res.headers()["set-cookie"].to_str().unwrap()).to_owned()
}

/// A WebSocket of `name`, logged in on the same instance.
async fn connect(addr: SocketAddr, name: &str) -> Ws {
    let cookie = login(addr, name).await;
    connect_with(addr, &cookie).await
}

async fn connect_with(addr: SocketAddr, cookie: &str) -> Ws {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn send(
    ws: &mut (impl SinkExt<WsMessage, Error = tungstenite::Error> + Unpin),
    value: serde_json::Value,
) {
    ws.send(WsMessage::Text(value.to_string().into()))
        .await
        .unwrap();
}

/// The next chat message from the server (pings, the `welcome` and `presence` lists skipped:
/// these tests are about messages); `None` on close.
async fn recv(
    ws: &mut (impl StreamExt<Item = Result<WsMessage, tungstenite::Error>> + Unpin),
) -> Option<ServerMsg> {
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no frame from the server in time")?
            .expect("a WebSocket error");
        match frame {
            WsMessage::Text(text) => match serde_json::from_str(&text).unwrap() {
                ServerMsg::Welcome { .. } | ServerMsg::Presence { .. } => {}
                msg => return Some(msg),
            },
            WsMessage::Close(_) => return None,
            _ => {}
        }
    }
}

async fn join(ws: &mut Ws, room: &str) {
    send(ws, serde_json::json!({"type": "join", "room": room})).await;
    assert_eq!(
        recv(ws).await,
        Some(ServerMsg::Joined {
            room: room.to_owned()
        })
    );
}

/// What one user saw: messages as (sender, client id), and every other event.
struct Seen {
    messages: Vec<(String, String)>,
    other: Vec<ServerMsg>,
}

/// One user on `addr`: joins `room`, waits for everyone, sends `k` messages one after the
/// other (each acknowledged before the next), and reads until it has `total` messages.
async fn user(
    addr: SocketAddr,
    name: String,
    k: usize,
    total: usize,
    ready: Arc<Barrier>,
    acks: Arc<AtomicUsize>,
) -> Seen {
    let mut ws = connect(addr, &name).await;
    join(&mut ws, "lobby").await;
    ready.wait().await;
    let (mut write, mut read) = ws.split();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut seen = Seen {
            messages: Vec::new(),
            other: Vec::new(),
        };
        let mut acked = 0;
        while seen.messages.len() < total || acked < k {
            match recv(&mut read).await.expect("closed early") {
                ServerMsg::Message { from, id, room, .. } => {
                    assert_eq!(room, "lobby");
                    seen.messages.push((from, id.unwrap()));
                }
                ServerMsg::Ack { id } => {
                    acked += 1;
                    ack_tx.send(Ok(id)).unwrap();
                }
                ServerMsg::Error { id, reason, .. } => {
                    ack_tx.send(Err(format!("{id:?}: {reason}"))).unwrap();
                }
                other => seen.other.push(other),
            }
        }
        seen
    });
    for i in 0..k {
        let id = format!("{name}-{i}");
        send(&mut write, serde_json::json!({"type": "send", "room": "lobby", "text": format!("hello {i}"), "id": id})).await;
        match ack_rx.recv().await.unwrap() {
            Ok(acked) => assert_eq!(acked.as_deref(), Some(id.as_str())),
            Err(e) => panic!("send {id} failed: {e}"),
        }
        acks.fetch_add(1, Ordering::Relaxed);
    }
    let seen = reader.await.unwrap();
    let _ = write.close().await;
    seen
}

/// Every user got every message exactly once, and each sender's messages in order.
fn check_exactly_once_in_order(seen: &[Seen], names: &[String], k: usize) {
    for (who, s) in names.iter().zip(seen) {
        let mut per_sender: HashMap<&str, Vec<&str>> = HashMap::new();
        for (from, id) in &s.messages {
            per_sender.entry(from).or_default().push(id);
        }
        assert_eq!(per_sender.len(), names.len(), "{who} heard from every user");
        for sender in names {
            let expected: Vec<String> = (0..k).map(|i| format!("{sender}-{i}")).collect();
            assert_eq!(
                per_sender[sender.as_str()],
                expected,
                "{who} got {sender}'s messages exactly once, in order"
            );
        }
    }
}

/// `users` users spread over the instances, `k` messages each; with `restart`, Redis is
/// restarted once a quarter of the messages are acknowledged.
async fn conversation(
    instances: &[Instance],
    users: usize,
    k: usize,
    restart: Option<&mut RedisServer>,
) -> Vec<Seen> {
    let names: Vec<String> = (0..users).map(|i| format!("u{i}")).collect();
    let ready = Arc::new(Barrier::new(users));
    let acks = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            tokio::spawn(user(
                instances[i % instances.len()].addr,
                name.clone(),
                k,
                users * k,
                ready.clone(),
                acks.clone(),
            ))
        })
        .collect();
    if let Some(server) = restart {
        // A user that failed (its task panicked) never acknowledges: a hang guard, not a
        // measure.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while acks.load(Ordering::Relaxed) < users * k / 4 {
            assert!(
                tokio::time::Instant::now() < deadline && tasks.iter().all(|t| !t.is_finished()),
                "the users stopped before a quarter of their messages were acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::task::block_in_place(|| server.restart());
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    check_exactly_once_in_order(&seen, &names, k);
    seen
}

async fn three_instances(url: &str, delivery: Delivery) -> Vec<Instance> {
    let rate = Quota::per_second(10_000).burst(10_000);
    vec![
        start(Some(url), delivery, rate).await,
        start(Some(url), delivery, rate).await,
        start(Some(url), delivery, rate).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_stream_rooms_survive_a_redis_restart_losing_nothing() {
    // A Redis that keeps its data across the restart (AOF, fsync always).
    let mut server =
        RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always"]);
    let instances = three_instances(&server.url(), Delivery::Stream).await;
    let seen = conversation(&instances, 6, 40, Some(&mut server)).await;
    // Nothing was lost, so nobody was told of a gap.
    for s in &seen {
        assert!(s.other.is_empty(), "unexpected events: {:?}", s.other);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_pubsub_rooms_deliver_exactly_once_in_order() {
    let server = RedisServer::start();
    let instances = three_instances(&server.url(), Delivery::PubSub).await;
    conversation(&instances, 6, 40, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_pubsub_rooms_survive_a_redis_restart() {
    let mut server = RedisServer::start();
    let instances = three_instances(&server.url(), Delivery::PubSub).await;
    let mut clients = Vec::new();
    for (i, instance) in instances.iter().enumerate() {
        let mut ws = connect(instance.addr, &format!("u{i}")).await;
        join(&mut ws, "lobby").await;
        clients.push(ws);
    }
    tokio::task::block_in_place(|| server.restart());
    // Every instance resubscribes and tells its clients that messages may be missing.
    for ws in &mut clients {
        assert_eq!(
            recv(ws).await,
            Some(ServerMsg::Interrupted {
                room: "lobby".to_owned()
            })
        );
    }
    // Then messages flow again between all instances (a send fails only while the sender's
    // own connection to Redis is reconnecting; the client may retry).
    let mut attempt = 0;
    loop {
        attempt += 1;
        let id = format!("after-{attempt}");
        send(
            &mut clients[0],
            serde_json::json!({"type": "send", "room": "lobby", "text": "back", "id": id}),
        )
        .await;
        match recv(&mut clients[0]).await.unwrap() {
            ServerMsg::Ack { .. } => break,
            ServerMsg::Error { reason, .. } => {
                assert_eq!(reason, "unavailable");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Our own message may come before its ack.
            ServerMsg::Message { .. } => {
                assert!(matches!(
                    recv(&mut clients[0]).await,
                    Some(ServerMsg::Ack { .. })
                ));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for ws in &mut clients[1..] {
        match recv(ws).await.unwrap() {
            ServerMsg::Message { from, text, .. } => {
                assert_eq!((from.as_str(), text.as_str()), ("u0", "back"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_with_going_away() {
    let instance = start(None, Delivery::Stream, Quota::per_second(10)).await;
    let mut ws = connect(instance.addr, "alice").await;
    join(&mut ws, "lobby").await;
    instance.shutdown.trigger();
    // The close frame, after any message already on its way (the room's people).
    let frame = loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if !frame.is_text() {
            break frame;
        }
    };
    let WsMessage::Close(Some(close)) = frame else {
        panic!("expected a close frame, got {frame:?}");
    };
    assert_eq!(close.code, CloseCode::Away);
    // Answer the close; the server's connection task ends and the shutdown completes in time.
    let _ = ws.close(None).await;
    let report = instance.served.await.unwrap();
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_rate_limited_per_user_and_history_is_kept() {
    let instance = start(None, Delivery::Stream, Quota::per_minute(3)).await;
    let mut ws = connect(instance.addr, "alice").await;
    let mut results = Vec::new();
    for i in 0..5 {
        send(&mut ws, serde_json::json!({"type": "send", "room": "lobby", "text": format!("m{i}"), "id": i.to_string()})).await;
        results.push(recv(&mut ws).await.unwrap());
    }
    let acked = results
        .iter()
        .filter(|r| matches!(r, ServerMsg::Ack { .. }))
        .count();
    assert_eq!(acked, 3);
    for r in &results[3..] {
        let ServerMsg::Error {
            reason,
            retry_after_ms,
            ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(reason, "rate_limited");
        assert!(retry_after_ms.unwrap() > 0);
    }
    // Another user has their own allowance; joining with history shows the three messages.
    let mut bob = connect(instance.addr, "bob").await;
    send(
        &mut bob,
        serde_json::json!({"type": "join", "room": "lobby", "history": 10}),
    )
    .await;
    assert_eq!(
        recv(&mut bob).await,
        Some(ServerMsg::Joined {
            room: "lobby".to_owned()
        })
    );
    for i in 0..3 {
        match recv(&mut bob).await.unwrap() {
            ServerMsg::Message {
                from, text, seq, ..
            } => {
                assert_eq!((from.as_str(), text), ("alice", format!("m{i}")));
                assert!(seq.is_some());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_login_on_one_instance_holds_on_the_others_and_logout_ends_it() {
    let redis = RedisServer::start();
    let a = start(Some(&redis.url()), Delivery::Stream, Quota::per_second(10)).await;
    let b = start(Some(&redis.url()), Delivery::Stream, Quota::per_second(10)).await;
    let cookie = login(a.addr, "carol").await;
    // The WebSocket on instance B knows carol from the session created on A.
    let mut ws = connect_with(b.addr, &cookie).await;
    send(
        &mut ws,
        serde_json::json!({"type": "join", "room": "r", "history": 0}),
    )
    .await;
    send(
        &mut ws,
        serde_json::json!({"type": "send", "room": "r", "text": "hi", "id": "1"}),
    )
    .await;
    let mut from = None;
    while from.is_none() {
        if let ServerMsg::Message { from: f, .. } =
            recv(&mut ws).await.expect("the socket stays open")
        {
            from = Some(f);
        }
    }
    assert_eq!(from.as_deref(), Some("carol"));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let me = |addr: SocketAddr| {
        let request = http
            .get(format!("http://{addr}/me"))
            .header("cookie", &cookie);
        async move {
            let res = request.send().await.unwrap();
            assert_eq!(res.status(), 200);
            serde_json::from_slice::<serde_json::Value>(&res.bytes().await.unwrap()).unwrap()
        }
    };
    assert_eq!(
        me(b.addr).await,
        serde_json::json!({"name": "carol", "max_text": 2000})
    );
    // Logout on B; a new WebSocket on A is refused, and A knows nobody.
    let out = http
        .post(format!("http://{}/logout", b.addr))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let request = format!("ws://{}/ws", a.addr)
        .into_client_request()
        .map(|mut r| {
            r.headers_mut().insert("cookie", cookie.parse().unwrap());
            r
        })
        .unwrap();
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401 after logout, got {other:?}"),
    }
    assert_eq!(me(a.addr).await["name"], serde_json::Value::Null);
}

#[tokio::test]
async fn websocket_needs_a_login() {
    let instance = start(None, Delivery::Stream, Quota::per_second(10)).await;
    let request = format!("ws://{}/ws", instance.addr)
        .into_client_request()
        .unwrap();
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
}
