//! [`Invalidations`]: keys invalidated by Redis itself (server-assisted client-side caching,
//! RESP3 `CLIENT TRACKING ... BCAST`), for local copies that stay correct across instances.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tower_scale_core::Backoff;

use crate::{Error, Mode, RedisBackend};

/// The name the tracking connections give themselves (`CLIENT LIST` shows it).
pub const TRACKING_CLIENT_NAME: &str = "tower-scale-tracking";

/// Invalidation counters are kept per bucket of keys, so that a write to one key does not
/// spoil reads of every other key in flight.
const BUCKETS: usize = 256;

type Sink = dyn Fn(&[u8]) + Send + Sync;

/// What [`Invalidations::sync`] saw: the channel was up, in this generation, with this many
/// invalidations of the key's bucket so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    generation: u64,
    events: u64,
}

impl Stamp {
    /// The generation: it changes whenever every local copy must be dropped (the channel went
    /// down or came back up, or Redis was flushed). A copy taken in another generation is
    /// stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Keys under a prefix that Redis reports as changed or deleted, by any client, on every
/// master (one RESP3 connection per master with `CLIENT TRACKING ON BCAST PREFIX <prefix>`;
/// on a Redis Cluster, the masters found with `CLUSTER SLOTS`).
///
/// The rule for a local copy of a value read from Redis:
///
/// 1. `let Some(stamp) = invalidations.sync(key) else { read from Redis, keep nothing }`;
/// 2. a copy kept under `stamp.generation()` may be served;
/// 3. otherwise read from Redis, keep the copy, then call `invalidations.still(key, stamp)`:
///    when `false`, an invalidation arrived meanwhile and the copy must be dropped.
///
/// `sync` first reads whatever the tracking connections have received (a non-blocking read,
/// no round trip), so an invalidation that Redis sent before the answer to another
/// instance's write reached this process is applied before the copy is looked at. Redis 7
/// sends broadcast-mode invalidations before the replies of the same event-loop turn, so a
/// write acknowledged to instance A has its invalidation on B's socket already.
///
/// While a connection is down (dropped, `CLIENT KILL`, Redis restarted, or no answer to the
/// heartbeat `PING` within one `heartbeat`), `sync` returns `None`: no local copy may be
/// served. The connections reopen by themselves with backoff; the generation changes on the
/// way down and again on the way up, so copies taken before are never served again.
///
/// Standalone and cluster mode over TCP (`redis://`); the URL's user, password and database
/// are used. Dropping the last clone stops the background task and closes the connections.
#[derive(Clone)]
pub struct Invalidations {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Invalidations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invalidations")
            .field("prefix", &self.shared.prefix)
            .field("up", &self.shared.up.load(SeqCst))
            .finish_non_exhaustive()
    }
}

struct Shared {
    prefix: String,
    sink: Box<Sink>,
    up: AtomicBool,
    generation: AtomicU64,
    events: Box<[AtomicU64]>,
    links: RwLock<Vec<Arc<Link>>>,
    failed: Notify,
    task: OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

/// Where and how to connect.
struct Target {
    seeds: Vec<(String, u16)>,
    cluster: bool,
    user: Option<String>,
    password: Option<String>,
    connect_timeout: Duration,
    heartbeat: Duration,
}

impl Invalidations {
    /// Starts tracking keys starting with `prefix` on `backend`'s server or cluster, calling
    /// `on_invalidate(key)` for each key Redis reports; `heartbeat` is how often each
    /// connection is checked with a `PING` (a connection that has not answered the previous
    /// one by then counts as down).
    ///
    /// Returns at once; the connections are opened in the background, and until they are up
    /// [`sync`](Self::sync) returns `None`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that is not `redis://` over TCP, a zero `heartbeat`, or
    /// when called outside a tokio runtime.
    pub fn start(
        backend: &RedisBackend,
        prefix: impl Into<String>,
        heartbeat: Duration,
        on_invalidate: impl Fn(&[u8]) + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let config = backend.config();
        if heartbeat.is_zero() {
            return Err(Error::Config(
                "tracking heartbeat: must be above zero".into(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("tracking needs a tokio runtime".into()))?;
        let mut seeds = Vec::new();
        let (mut user, mut password) = (None, None);
        for url in std::iter::once(&config.url).chain(&config.nodes) {
            let info = url.as_str().into_connection_info()?;
            let ConnectionAddr::Tcp(host, port) = info.addr() else {
                return Err(Error::Config(
                    "tracking (local copies) needs a redis:// URL over TCP".into(),
                ));
            };
            seeds.push((host.clone(), *port));
            user = info.redis_settings().username().map(str::to_owned);
            password = info.redis_settings().password().map(str::to_owned);
        }
        let target = Target {
            seeds,
            cluster: config.mode == Mode::Cluster,
            user,
            password,
            connect_timeout: config.connect_timeout,
            heartbeat,
        };
        let shared = Arc::new(Shared {
            prefix: prefix.into(),
            sink: Box::new(on_invalidate),
            up: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            events: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            links: RwLock::new(Vec::new()),
            failed: Notify::new(),
            task: OnceLock::new(),
        });
        let task = runtime.spawn(supervise(Arc::downgrade(&shared), target));
        let _ = shared.task.set(task.abort_handle());
        Ok(Self { shared })
    }

    /// Applies what the connections received so far (no round trip), then: `None` when the
    /// channel is down (serve no local copy), else the [`Stamp`] for `key`.
    pub fn sync(&self, key: &[u8]) -> Option<Stamp> {
        let shared = &*self.shared;
        let links = shared.links.read().unwrap_or_else(PoisonError::into_inner);
        for link in links.iter() {
            link.drain(shared);
        }
        drop(links);
        if !shared.up.load(SeqCst) {
            return None;
        }
        Some(Stamp {
            generation: shared.generation.load(SeqCst),
            events: shared.events[bucket(key)].load(SeqCst),
        })
    }

    /// Whether nothing happened to `key` (nor to the channel) since `stamp` was taken: a copy
    /// kept after `stamp` may stay. Call it after keeping the copy.
    pub fn still(&self, key: &[u8], stamp: Stamp) -> bool {
        self.sync(key) == Some(stamp)
    }

    /// Records a change of `key` made by this process, before `forget` drops the local copy:
    /// a read of `key` in flight will not keep its (older) answer.
    pub fn changed(&self, key: &[u8], forget: impl FnOnce()) {
        self.shared.events[bucket(key)].fetch_add(1, SeqCst);
        forget();
    }

    /// Whether every tracking connection is up.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(SeqCst)
    }

    /// The Redis client ids of the tracking connections (`CLIENT LIST`, `CLIENT KILL ID`).
    pub fn client_ids(&self) -> Vec<i64> {
        let links = self
            .shared
            .links
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        links.iter().map(|l| l.client_id).collect()
    }
}

fn bucket(key: &[u8]) -> usize {
    // FNV-1a: cheap and good enough to spread keys over the buckets.
    let mut h: u32 = 0x811c_9dc5;
    for &b in key {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % BUCKETS
}

impl Shared {
    fn invalidated(&self, key: &[u8]) {
        // The count first: a reader that kept a copy before this point sees it changed.
        self.events[bucket(key)].fetch_add(1, SeqCst);
        (self.sink)(key);
    }

    fn new_generation(&self) {
        self.generation.fetch_add(1, SeqCst);
    }

    fn down(&self) {
        if self.up.swap(false, SeqCst) {
            tracing::warn!(prefix = %self.prefix, "tracking connection lost: local copies dropped until it is back");
        }
        self.new_generation();
        self.failed.notify_one();
    }
}

/// One tracking connection. Read with plain non-blocking system calls on `socket`, so that a
/// read finds every byte the kernel holds (tokio's `try_read` answers from the reactor's last
/// readiness report, which may predate the bytes); `watch`, a duplicate of the same socket
/// registered with tokio, only wakes the background reader.
struct Link {
    socket: std::net::TcpStream,
    watch: TcpStream,
    client_id: i64,
    state: Mutex<LinkState>,
    failed: AtomicBool,
}

#[derive(Default)]
struct LinkState {
    buf: Vec<u8>,
    pongs: u64,
}

impl Link {
    fn state(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads what arrived (without waiting) and applies it; marks the link and the channel
    /// down on end of stream, an error, or garbage.
    fn drain(&self, shared: &Shared) {
        if self.failed.load(SeqCst) {
            return;
        }
        let mut state = self.state();
        let mut chunk = [0_u8; 4096];
        let ok = loop {
            match (&self.socket).read(&mut chunk) {
                Ok(0) => break false,
                Ok(n) => state.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        let ok = ok && self.apply(&mut state, shared);
        if !ok {
            self.failed.store(true, SeqCst);
            shared.down();
        }
    }

    fn apply(&self, state: &mut LinkState, shared: &Shared) -> bool {
        let mut pos = 0;
        loop {
            match parse(&state.buf[pos..]) {
                Ok(Some((frame, used))) => {
                    pos += used;
                    match frame {
                        Frame::Push(items) => {
                            if let [Frame::Blob(kind), keys] = items.as_slice()
                                && kind == b"invalidate"
                            {
                                match keys {
                                    Frame::Many(keys) => keys.iter().for_each(|k| {
                                        if let Frame::Blob(k) = k {
                                            shared.invalidated(k);
                                        }
                                    }),
                                    // FLUSHALL / FLUSHDB: every key.
                                    _ => shared.new_generation(),
                                }
                            }
                        }
                        Frame::Line(b'+', _) => state.pongs += 1,
                        _ => return false,
                    }
                }
                Ok(None) => break,
                Err(()) => return false,
            }
        }
        state.buf.drain(..pos);
        true
    }
}

/// A RESP3 frame, as much as tracking needs of it.
#[derive(Debug, PartialEq)]
enum Frame {
    /// `+`, `-`, `:`, `,`, `#`, `(`: the type byte and the line.
    Line(u8, Vec<u8>),
    /// `$`, `!`, `=`.
    Blob(Vec<u8>),
    /// `_`, or `$-1`/`*-1`.
    Null,
    /// `*`, `~`, `%` and `|` (maps and attributes flattened).
    Many(Vec<Frame>),
    /// `>`.
    Push(Vec<Frame>),
}

/// One frame from the start of `buf` and its length; `Ok(None)` when incomplete.
fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, ()> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let (&kind, line) = buf[..end].split_first().ok_or(())?;
    let mut pos = end + 2;
    let number = || -> Result<i64, ()> {
        std::str::from_utf8(line)
            .map_err(|_| ())?
            .parse()
            .map_err(|_| ())
    };
    let frame = match kind {
        b'+' | b'-' | b':' | b',' | b'#' | b'(' => Frame::Line(kind, line.to_vec()),
        b'_' => Frame::Null,
        b'$' | b'!' | b'=' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Some((Frame::Null, pos)));
            };
            if buf.len() < pos + len + 2 {
                return Ok(None);
            }
            let blob = buf[pos..pos + len].to_vec();
            pos += len + 2;
            Frame::Blob(blob)
        }
        b'*' | b'~' | b'%' | b'|' | b'>' => {
            let Ok(n) = usize::try_from(number()?) else {
                return Ok(Some((Frame::Null, pos)));
            };
            let n = if matches!(kind, b'%' | b'|') {
                n * 2
            } else {
                n
            };
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let Some((item, used)) = parse(&buf[pos..])? else {
                    return Ok(None);
                };
                items.push(item);
                pos += used;
            }
            if kind == b'|' {
                // An attribute precedes the frame it describes: skip it.
                let Some((frame, used)) = parse(&buf[pos..])? else {
                    return Ok(None);
                };
                return Ok(Some((frame, pos + used)));
            }
            if kind == b'>' {
                Frame::Push(items)
            } else {
                Frame::Many(items)
            }
        }
        _ => return Err(()),
    };
    Ok(Some((frame, pos)))
}

/// A command as a RESP array of bulk strings.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A connection being set up: commands answered in turn.
struct Setup {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Setup {
    async fn open(host: &str, port: u16, target: &Target) -> io::Result<Self> {
        let stream = tokio::time::timeout(target.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        let mut setup = Self {
            stream,
            buf: Vec::new(),
        };
        let mut hello: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(password) = &target.password {
            hello.push(b"AUTH");
            hello.push(target.user.as_deref().unwrap_or("default").as_bytes());
            hello.push(password.as_bytes());
        }
        hello.extend([b"SETNAME".as_slice(), TRACKING_CLIENT_NAME.as_bytes()]);
        setup.call(&hello, target.connect_timeout).await?;
        Ok(setup)
    }

    async fn call(&mut self, args: &[&[u8]], timeout: Duration) -> io::Result<Frame> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let mut out = command(args);
        while !out.is_empty() {
            self.stream.writable().await?;
            match self.stream.try_write(&out) {
                Ok(n) => drop(out.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        let read = async {
            loop {
                if let Some((frame, used)) =
                    parse(&self.buf).map_err(|()| bad("unreadable reply".into()))?
                {
                    self.buf.drain(..used);
                    return Ok(frame);
                }
                self.stream.readable().await?;
                let mut chunk = [0_u8; 4096];
                match self.stream.try_read(&mut chunk) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        };
        let frame = tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply"))??;
        if let Frame::Line(b'-', error) = &frame {
            return Err(bad(String::from_utf8_lossy(error).into_owned()));
        }
        Ok(frame)
    }
}

/// The masters of a cluster, from `CLUSTER SLOTS` on a seed (an empty host is the seed's).
async fn masters(target: &Target) -> io::Result<Vec<(String, u16)>> {
    let mut last = io::Error::other("no seed node");
    for (host, port) in &target.seeds {
        let mut seed = match Setup::open(host, *port, target).await {
            Ok(seed) => seed,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let Frame::Many(ranges) = seed
            .call(&[b"CLUSTER", b"SLOTS"], target.connect_timeout)
            .await?
        else {
            return Err(io::Error::other("CLUSTER SLOTS: not an array"));
        };
        let mut out: Vec<(String, u16)> = Vec::new();
        for range in ranges {
            if let Frame::Many(range) = range
                && let Some(Frame::Many(node)) = range.get(2)
                && let [Frame::Blob(ip), Frame::Line(b':', p), ..] = node.as_slice()
            {
                let ip = String::from_utf8_lossy(ip);
                let ip = if ip.is_empty() || ip == "?" {
                    host.clone()
                } else {
                    ip.into_owned()
                };
                let port = String::from_utf8_lossy(p)
                    .parse()
                    .map_err(io::Error::other)?;
                if !out.contains(&(ip.clone(), port)) {
                    out.push((ip, port));
                }
            }
        }
        return Ok(out);
    }
    Err(last)
}

/// Opens and registers every tracking connection.
async fn connect(target: &Target, prefix: &str) -> io::Result<Vec<Arc<Link>>> {
    let nodes = if target.cluster {
        masters(target).await?
    } else {
        target.seeds[..1].to_vec()
    };
    let mut links = Vec::with_capacity(nodes.len());
    for (host, port) in nodes {
        let mut setup = Setup::open(&host, port, target).await?;
        let Frame::Line(b':', id) = setup
            .call(&[b"CLIENT", b"ID"], target.connect_timeout)
            .await?
        else {
            return Err(io::Error::other("CLIENT ID: not an integer"));
        };
        let client_id = String::from_utf8_lossy(&id)
            .parse()
            .map_err(io::Error::other)?;
        setup
            .call(
                &[
                    b"CLIENT",
                    b"TRACKING",
                    b"ON",
                    b"BCAST",
                    b"PREFIX",
                    prefix.as_bytes(),
                ],
                target.connect_timeout,
            )
            .await?;
        let socket = setup.stream.into_std()?;
        let watch = TcpStream::from_std(socket.try_clone()?)?;
        links.push(Arc::new(Link {
            socket,
            watch,
            client_id,
            state: Mutex::new(LinkState {
                buf: setup.buf,
                pongs: 0,
            }),
            failed: AtomicBool::new(false),
        }));
    }
    Ok(links)
}

/// Keeps the connections up: connects, watches (heartbeats, readers), reconnects.
async fn supervise(shared: Weak<Shared>, target: Target) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        let Some(prefix) = shared.upgrade().map(|s| s.prefix.clone()) else {
            return;
        };
        let links = match connect(&target, &prefix).await {
            Ok(links) => links,
            Err(error) => {
                tracing::debug!(%error, "tracking connection failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        backoff.reset();
        // Dropped with this task (aborted when the last handle goes): the readers stop too.
        let mut readers = tokio::task::JoinSet::new();
        for link in &links {
            readers.spawn(read(shared.clone(), link.clone()));
        }
        {
            let Some(s) = shared.upgrade() else { return };
            *s.links.write().unwrap_or_else(PoisonError::into_inner) = links.clone();
            // A new generation before going up: nothing kept while it was down is served.
            s.new_generation();
            s.up.store(true, SeqCst);
            tracing::debug!(prefix = %s.prefix, links = links.len(), "tracking connections up");
        }
        watch(&shared, &links, target.heartbeat).await;
        readers.abort_all();
        let Some(s) = shared.upgrade() else { return };
        s.down();
        s.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Reads a link as data arrives, until it fails.
async fn read(shared: Weak<Shared>, link: Arc<Link>) {
    while link.watch.readable().await.is_ok() {
        let Some(s) = shared.upgrade() else { return };
        // `drain` reads until the socket would block: tokio may forget this readiness report.
        let _ = link.watch.try_io(Interest::READABLE, || {
            link.drain(&s);
            Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
        });
        if link.failed.load(SeqCst) {
            return;
        }
    }
    link.failed.store(true, SeqCst);
    if let Some(s) = shared.upgrade() {
        s.down();
    }
}

/// Returns once a link failed or missed a heartbeat.
async fn watch(shared: &Weak<Shared>, links: &[Arc<Link>], heartbeat: Duration) {
    let mut sent = 0_u64;
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ticked = {
            let Some(s) = shared.upgrade() else { return };
            let notified = s.failed.notified();
            tokio::pin!(notified);
            // Registered before checking, so a failure in between is not missed.
            notified.as_mut().enable();
            if links.iter().any(|l| l.failed.load(SeqCst)) {
                return;
            }
            // `s` is held while waiting: the task stops at most one heartbeat after the
            // last handle is dropped.
            tokio::select! {
                _ = tick.tick() => true,
                // A failure: of one of these links, or a stale notice of an earlier set.
                () = notified => false,
            }
        };
        if links.iter().any(|l| l.failed.load(SeqCst)) {
            return;
        }
        if !ticked {
            continue;
        }
        for link in links {
            if link.state().pongs < sent {
                tracing::warn!("tracking connection did not answer its heartbeat");
                link.failed.store(true, SeqCst);
                return;
            }
            let ping = command(&[b"PING"]);
            if (&link.socket).write(&ping).ok() != Some(ping.len()) {
                link.failed.store(true, SeqCst);
                return;
            }
        }
        sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pushes_and_replies() {
        let push = b">2\r\n$10\r\ninvalidate\r\n*2\r\n$3\r\nk:1\r\n$3\r\nk:2\r\n";
        let (frame, used) = parse(push).unwrap().unwrap();
        assert_eq!(used, push.len());
        assert_eq!(
            frame,
            Frame::Push(vec![
                Frame::Blob(b"invalidate".to_vec()),
                Frame::Many(vec![
                    Frame::Blob(b"k:1".to_vec()),
                    Frame::Blob(b"k:2".to_vec())
                ]),
            ])
        );
        for cut in 0..push.len() {
            assert_eq!(parse(&push[..cut]), Ok(None), "{cut} bytes");
        }
        let flush = b">2\r\n$10\r\ninvalidate\r\n_\r\n";
        assert!(
            matches!(parse(flush), Ok(Some((Frame::Push(p), n))) if p[1] == Frame::Null && n == flush.len())
        );
        // A map is one frame (its pairs flattened); what follows it is the next frame.
        assert_eq!(
            parse(b"%1\r\n+a\r\n:1\r\n+PONG\r\n").unwrap().unwrap().1,
            12
        );
        assert_eq!(parse(b"?x\r\n"), Err(()));
        assert_eq!(parse(b"$x\r\n"), Err(()));
    }

    #[test]
    fn commands_are_resp_arrays() {
        assert_eq!(command(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
    }
}
