//! A Redis that trickles a reply, one byte at a time, cannot hold a command past
//! `command_timeout` (issue 21): the default mode's watchdog used to take any byte as a sign
//! of life, so such a command never ended. Against a fake RESP server on loopback, in real
//! time (tokio's paused clock jumps ahead while a socket has data on the way); the bounds are
//! generous where the machine's load could stretch them, and exact where it cannot (the
//! watchdog is never early).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower_scale_redis::redis;
use tower_scale_redis::{Error, RedisBackend, RedisConfig};

/// The key whose `GET` the fake server trickles on its first connection.
const TRICKLED: &str = "trickled";
/// The pause between two bytes of a trickled reply.
const TRICKLE: Duration = Duration::from_millis(20);

/// A fake Redis on a free loopback port. On its first connection, a `GET` of [`TRICKLED`] is
/// answered with a bulk string of `len` bytes (`None`: a million, so in effect forever): its
/// header, then one byte every 20 ms, then the final CRLF. Every other command, on every
/// connection, is answered at once (`GET`: `"ok"`, `PING`: `PONG`, anything else: `OK`).
/// Returns the URL and the count of connections accepted.
async fn fake_redis(len: Option<usize>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(serve(socket, first.then_some(len)));
        }
    });
    (url, accepted)
}

/// Answers the commands read from `socket` (see [`fake_redis`]); `trickle`: the length to
/// trickle a `GET` of [`TRICKLED`] with, on this connection.
async fn serve(mut socket: TcpStream, trickle: Option<Option<usize>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((args, used)) = parse_command(&buf) {
            buf.drain(..used);
            let name = args.first().map(|a| a.to_ascii_uppercase());
            let reply: &[u8] = match name.as_deref() {
                Some(b"GET")
                    if trickle.is_some()
                        && args.get(1).map(Vec::as_slice) == Some(TRICKLED.as_bytes()) =>
                {
                    let len = trickle.flatten().unwrap_or(1_000_000);
                    if socket
                        .write_all(format!("${len}\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    for _ in 0..len {
                        tokio::time::sleep(TRICKLE).await;
                        if socket.write_all(b"x").await.is_err() {
                            return;
                        }
                    }
                    b"\r\n"
                }
                Some(b"GET") => b"$2\r\nok\r\n",
                Some(b"PING") => b"+PONG\r\n",
                _ => b"+OK\r\n",
            };
            if socket.write_all(reply).await.is_err() {
                return;
            }
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One complete RESP command (an array of bulk strings) at the start of `buf`: its arguments
/// and the bytes it takes; `None` while incomplete.
fn parse_command(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    let number = |s: &[u8]| -> usize { std::str::from_utf8(s).unwrap().parse().unwrap() };
    let (head, mut at) = line(buf, 0)?;
    assert_eq!(head.first(), Some(&b'*'), "the client sends arrays");
    let mut args = Vec::new();
    for _ in 0..number(&head[1..]) {
        let (len, start) = line(buf, at)?;
        let end = start + number(&len[1..]);
        args.push(buf.get(start..end)?.to_vec());
        at = end + 2;
        if buf.len() < at {
            return None;
        }
    }
    Some((args, at))
}

fn backend(url: String, timeout: Duration) -> RedisBackend {
    let mut config = RedisConfig::new(url);
    config.command_timeout = timeout;
    // The breaker would turn the timeout into `CircuitOpen` later: this test looks at the
    // connection alone.
    #[cfg(feature = "breaker")]
    {
        config.breaker_enabled = false;
    }
    RedisBackend::new(config).unwrap()
}

/// A safety net so a regression shows up as a failed test, not a hung suite.
async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("the backend hung: no answer within 10 s")
}

/// Runs a trickled `GET` of a `len`-byte reply under `timeout` on a live connection, checks
/// that it fails with a timeout within `timeout` (exactly no sooner than nine tenths of it;
/// no later than five times it, a margin for a loaded machine), and that the next command
/// succeeds on a new connection.
async fn trickled_command_times_out(len: Option<usize>, timeout: Duration) {
    let (url, accepted) = fake_redis(len).await;
    let b = backend(url, timeout);
    // The connection is open and live: the trickled command runs on the watched fast path.
    let pong: String = bounded(b.query(&redis::cmd("PING"))).await.unwrap();
    assert_eq!(pong, "PONG");
    let start = Instant::now();
    let result = bounded(b.query::<String>(redis::cmd("GET").arg(TRICKLED))).await;
    let waited = start.elapsed();
    let err = result.expect_err("the trickled reply was waited for");
    assert!(matches!(err, Error::Timeout(d) if d == timeout), "{err}");
    assert!(
        waited >= timeout * 9 / 10 && waited <= timeout * 5,
        "failed after {waited:?} with a timeout of {timeout:?}"
    );
    // The next command runs on a new connection, which answers.
    let ok: String = bounded(b.query(redis::cmd("GET").arg("other")))
        .await
        .unwrap();
    assert_eq!(ok, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "one reconnection");
}

#[tokio::test]
async fn a_redis_trickling_one_byte_per_tick_forever_cannot_hold_a_command_past_the_timeout() {
    // A byte every 20 ms, forever: as often as the watchdog looks.
    trickled_command_times_out(None, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_redis_trickling_a_short_reply_cannot_answer_after_the_timeout() {
    // `$5\r\n`, then five bytes 20 ms apart: the reply would be complete after 100 ms or more,
    // twice the timeout.
    trickled_command_times_out(Some(5), Duration::from_millis(50)).await;
}
