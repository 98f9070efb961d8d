//! Test kit of tower-scale: starts real `redis-server` processes on free loopback ports, each
//! with its own temporary directory, and stops them on drop.
//!
//! - [`RedisServer`]: one server, with [`pause`](RedisServer::pause) (`SIGSTOP`),
//!   [`resume`](RedisServer::resume), [`kill`](RedisServer::kill) and
//!   [`restart`](RedisServer::restart) (same port) for fault tests.
//! - [`RedisServer::start_isolated`]: one server in a private network namespace, whose
//!   packets [`drop_packets`](RedisServer::drop_packets) drops with iptables (a network that
//!   loses packets, or all of them) until [`pass_packets`](RedisServer::pass_packets).
//! - [`RedisCluster`]: a local Redis Cluster of 3 masters joined with
//!   `redis-cli --cluster create`.
//! - TLS: [`TlsFiles`] generates a CA with a server and a client certificate (rcgen);
//!   [`RedisServer::start_tls`] and [`RedisCluster::start_tls`] serve TLS with them (clients
//!   connect to [`RedisServer::tls_url`]; the kit's own helpers keep a plain loopback port).
//! - ACL users: [`RedisServer::add_acl_user`] and [`RedisCluster::add_acl_user`]
//!   (`ACL SETUSER`).
//!
//! Tests never use a shared server on 6379. When `redis-server` is missing, starting one
//! panics with a message that says how to install it.
//!
//! ```no_run
//! let server = tower_scale_testkit::RedisServer::start();
//! let url = server.url(); // redis://127.0.0.1:<free port>
//! server.pause();   // the server stops answering
//! server.resume();  // and answers again
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

mod tls;

pub use self::tls::TlsFiles;
mod netns;
use netns::Netns;

const INSTALL_HINT: &str = "redis-server was not found on PATH. Install it: \
     `sudo apt-get install -y redis-server redis-tools` on Debian/Ubuntu \
     (scripts/test.sh does this for you), or `brew install redis` on macOS.";

/// How long a server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One real `redis-server` on a free loopback port, stopped on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// The TLS port, for servers started with [`RedisServer::start_tls`].
    tls_port: Option<u16>,
    dir: TempDir,
    extra_args: Vec<String>,
    child: Option<Child>,
    /// The address it listens on: 127.0.0.1, or its namespace's.
    host: Ipv4Addr,
    /// The private network namespace it runs in ([`RedisServer::start_isolated`]); dropped
    /// after the server is killed.
    netns: Option<Netns>,
}

impl RedisServer {
    /// Starts a server on a free loopback port.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed (the message says how to install it) or does
    /// not start.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// The URL in the environment variable `var` (a server started outside, e.g. so that a
    /// callgrind run does not count it), else a server of the kit's, returned with its URL
    /// (keep it alive while the URL is used).
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`], when `var` is unset.
    pub fn from_env_or_start(var: &str) -> (Option<Self>, String) {
        match std::env::var(var) {
            Ok(url) => (None, url),
            Err(_) => {
                let server = Self::start();
                let url = server.url();
                (Some(server), url)
            }
        }
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `["--maxmemory", "1mb"]`).
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_inner(args, None)
    }

    /// Starts a server that also serves TLS with `tls`'s server certificate, on a second port
    /// ([`tls_port`](Self::tls_port), [`tls_url`](Self::tls_url)); with
    /// `require_client_cert`, TLS clients must present a certificate signed by `tls`'s CA
    /// (mutual TLS). The plain port stays open on loopback for the kit's own helpers
    /// ([`cli`](Self::cli), [`calls`](Self::calls)...).
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`], or when `redis-server` is built without TLS.
    pub fn start_tls(tls: &TlsFiles, require_client_cert: bool) -> Self {
        Self::start_inner(&[], Some((tls, require_client_cert)))
    }

    fn start_inner(args: &[&str], tls: Option<(&TlsFiles, bool)>) -> Self {
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port(false);
            let dir = tempfile::Builder::new()
                .prefix("tower-scale-redis-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temp dir for redis-server: {e}"));
            let mut extra_args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            let tls_port = tls.map(|(files, require_client_cert)| {
                let tls_port = free_port(false);
                extra_args.extend(files.server_args(tls_port, require_client_cert));
                tls_port
            });
            let mut server = Self {
                port,
                tls_port,
                dir,
                extra_args,
                child: None,
                host: Ipv4Addr::LOCALHOST,
                netns: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server did not start: {last_err}");
    }

    /// Starts a server in a private network namespace of its own, reached from the test over
    /// a veth pair (its [`url`](Self::url) names the namespace's address), so that
    /// [`drop_packets`](Self::drop_packets) can make the network to it lose packets. Every
    /// other fault ([`pause`](Self::pause), [`kill`](Self::kill), [`restart`](Self::restart))
    /// works as for [`start`](Self::start).
    ///
    /// # Errors
    ///
    /// When namespaces are refused (not root, no `CAP_NET_ADMIN`, a sandbox) or `ip` or
    /// `iptables` is missing: the message says what is needed, so that a test can fall back
    /// to another fault.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed or does not start in the namespace.
    pub fn start_isolated() -> Result<Self, String> {
        let netns = Netns::create()?;
        // The rules must be settable before the test relies on them.
        netns.pass_packets()?;
        let mut server = Self {
            port: 6379,
            tls_port: None,
            dir: tempfile::Builder::new()
                .prefix("tower-scale-redis-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temp dir for redis-server: {e}")),
            // Reachable only through its own namespace's veth pair: protected mode (loopback
            // clients only, without a password) would refuse the test.
            extra_args: vec!["--protected-mode".to_owned(), "no".to_owned()],
            child: None,
            host: netns.ip(),
            netns: Some(netns),
        };
        server
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server did not start in its namespace: {e}"));
        Ok(server)
    }

    /// Drops `percent` % of the packets to and from a server of
    /// [`start_isolated`](Self::start_isolated) (100: the network to it is cut), chosen at
    /// random per packet, with iptables in its namespace; connections stay open.
    ///
    /// # Panics
    ///
    /// For a server not started with `start_isolated`, or when iptables fails.
    pub fn drop_packets(&self, percent: u8) {
        self.isolated()
            .drop_packets(percent)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Lets every packet through again after [`drop_packets`](Self::drop_packets).
    ///
    /// # Panics
    ///
    /// As `drop_packets`.
    pub fn pass_packets(&self) {
        self.isolated()
            .pass_packets()
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn isolated(&self) -> &Netns {
        self.netns
            .as_ref()
            .expect("packets can only be dropped for a server of RedisServer::start_isolated")
    }

    /// The server's port (on 127.0.0.1, or on its namespace's address).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>` (or the namespace's address for
    /// [`start_isolated`](Self::start_isolated)).
    pub fn url(&self) -> String {
        format!("redis://{}:{}", self.host, self.port)
    }

    /// The TLS port on 127.0.0.1 of a server started with [`start_tls`](Self::start_tls).
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// `rediss://127.0.0.1:<tls port>`.
    ///
    /// # Panics
    ///
    /// When the server was not started with [`start_tls`](Self::start_tls).
    pub fn tls_url(&self) -> String {
        let port = self
            .tls_port
            .unwrap_or_else(|| panic!("this server serves no TLS; start it with start_tls"));
        format!("rediss://127.0.0.1:{port}")
    }

    /// The ACL user of every client connected to the TLS port (from `CLIENT LIST`), e.g.
    /// `["default", "app"]`; empty when none is connected or the server serves no TLS.
    pub fn tls_client_users(&self) -> Vec<String> {
        let Some(port) = self.tls_port else {
            return Vec::new();
        };
        let laddr = format!("laddr=127.0.0.1:{port} ");
        self.cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|line| line.contains(&laddr))
            .filter_map(|line| {
                line.split(' ')
                    .find_map(|field| field.strip_prefix("user="))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Waits until at least one client is connected to the TLS port and every one is logged
    /// in as `user` (a connection still being set up shows as `default` until its `AUTH`).
    ///
    /// # Panics
    ///
    /// When that does not happen within 10 s.
    pub async fn wait_tls_clients_are(&self, user: &str) {
        eventually(
            &format!("every connection on the TLS port is {user}'s"),
            Duration::from_secs(10),
            || {
                let users = self.tls_client_users();
                !users.is_empty() && users.iter().all(|u| u == user)
            },
        )
        .await;
    }

    /// Creates (or replaces) the ACL user `name` with password `password` and the ACL
    /// `rules` (e.g. `["~*", "+@all", "-flushall"]`), enabled:
    /// `ACL SETUSER name reset on >password rules...`. A restart forgets it.
    ///
    /// # Panics
    ///
    /// When Redis refuses the rules.
    pub fn add_acl_user(&self, name: &str, password: &str, rules: &[&str]) {
        let password = format!(">{password}");
        let mut args = vec!["ACL", "SETUSER", name, "reset", "on", &password];
        args.extend_from_slice(rules);
        let out = self.cli(&args);
        assert_eq!(out, "OK", "ACL SETUSER {name} {rules:?}: {out}");
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Freezes the server with `SIGSTOP`: connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Thaws a paused server with `SIGCONT`.
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// Kills the server with `SIGKILL` and waits for it; the port is free afterwards.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a fresh one (empty data) on the same port.
    ///
    /// # Panics
    ///
    /// When the new server does not start.
    pub fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        // The port was ours a moment ago; give the kernel a few tries to release it.
        for _ in 0..50 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}: {last}", self.port);
    }

    /// Runs `redis-cli -p <port> <args>` and returns its output, trimmed.
    ///
    /// # Panics
    ///
    /// When `redis-cli` cannot be run.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.host, self.port, args)
    }

    /// Calls per command since the last `CONFIG RESETSTAT`, from `INFO commandstats`,
    /// e.g. `("hget", 3)`. Command names are lower case.
    pub fn command_calls(&self) -> Vec<(String, u64)> {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.trim().parse().ok()?))
            })
            .collect()
    }

    /// Calls of one command since the last `CONFIG RESETSTAT` (0 when never called); `name`
    /// in lower case, e.g. `"evalsha"`.
    pub fn calls(&self, name: &str) -> u64 {
        self.command_calls()
            .into_iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, calls)| calls)
    }

    /// Total calls of all commands since the last `CONFIG RESETSTAT`, excluding the
    /// `INFO`/`CONFIG` calls of the kit itself.
    pub fn total_calls(&self) -> u64 {
        self.command_calls()
            .iter()
            .filter(|(name, _)| name != "info" && !name.starts_with("config"))
            .map(|(_, n)| n)
            .sum()
    }

    /// Resets the command statistics (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        self.cli(&["CONFIG", "RESETSTAT"]);
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let pid = i32::try_from(pid).unwrap_or(i32::MAX);
            kill(Pid::from_raw(pid), signal)
                .unwrap_or_else(|e| panic!("cannot send {signal} to redis-server: {e}"));
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let host = self.host.to_string();
        let mut args: Vec<&str> = vec![
            "--port",
            &port,
            "--bind",
            &host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ];
        args.extend(self.extra_args.iter().map(String::as_str));
        let child = spawn_redis(self.netns.as_ref(), self.dir.path(), &args)?;
        self.child = Some(child);
        if let Err(e) = wait_for_ping(self.host, self.port, self.child.as_mut()) {
            self.kill();
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server would ignore SIGTERM; SIGKILL works either way.
        self.kill();
    }
}

/// A local Redis Cluster of 3 masters (no replicas), stopped on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts 3 cluster-enabled servers and joins them with `redis-cli --cluster create`;
    /// returns when every node reports `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// When `redis-server` or `redis-cli` is missing or the cluster does not form.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Like [`start`](Self::start), with every node also serving TLS with `tls`'s server
    /// certificate (no client certificate required) and `tls-cluster yes`: the cluster bus
    /// runs over TLS, and a client connected over TLS is told the TLS ports of the nodes
    /// ([`tls_urls`](Self::tls_urls) are the seeds). The kit's own helpers keep using the
    /// plain ports.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_tls(tls: &TlsFiles) -> Self {
        Self::start_inner(Some(tls))
    }

    fn start_inner(tls: Option<&TlsFiles>) -> Self {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(tls) {
                Ok(cluster) => return cluster,
                Err(e) => last = e,
            }
        }
        panic!("the local Redis Cluster did not form: {last}");
    }

    fn try_start(tls: Option<&TlsFiles>) -> Result<Self, String> {
        let mut nodes = Vec::with_capacity(3);
        for _ in 0..3 {
            let port = free_port(true);
            let dir = tempfile::Builder::new()
                .prefix("tower-scale-cluster-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            let mut extra_args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ]
            .map(str::to_owned)
            .to_vec();
            let tls_port = tls.map(|files| {
                let tls_port = free_port(false);
                extra_args.extend(files.server_args(tls_port, false));
                // The bus stays on <plain port> + 10000, where `--cluster create` meets it.
                extra_args.extend(
                    [
                        "--tls-cluster",
                        "yes",
                        "--cluster-port",
                        &(port + 10000).to_string(),
                    ]
                    .map(str::to_owned),
                );
                tls_port
            });
            let mut node = RedisServer {
                port,
                tls_port,
                host: Ipv4Addr::LOCALHOST,
                netns: None,
                dir,
                extra_args,
                child: None,
            };
            node.spawn()?;
            nodes.push(node);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args: Vec<&str> = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = Command::new("redis-cli")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run redis-cli: {e}. {INSTALL_HINT}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.is_ok() {
            if Instant::now() > deadline {
                return Err("cluster_state did not become ok within 20 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }

    fn is_ok(&self) -> bool {
        self.nodes.iter().all(|n| {
            let info = n.cli(&["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok") && info.contains("cluster_slots_assigned:16384")
        })
    }

    /// The seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The TLS seed URLs of every node of a cluster started with
    /// [`start_tls`](Self::start_tls).
    ///
    /// # Panics
    ///
    /// When the cluster serves no TLS.
    pub fn tls_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::tls_url).collect()
    }

    /// [`RedisServer::add_acl_user`] on every node.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::add_acl_user`].
    pub fn add_acl_user(&self, name: &str, password: &str, rules: &[&str]) {
        for node in &self.nodes {
            node.add_acl_user(name, password, rules);
        }
    }

    /// The nodes, for fault injection or `redis-cli` calls.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, to kill or restart one. A restarted node keeps its `nodes.conf`, so it
    /// rejoins the cluster with its slots (and no data: nothing is persisted); see
    /// [`wait_ok`](Self::wait_ok).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// Waits until every node reports `cluster_state:ok` with every slot assigned.
    ///
    /// # Panics
    ///
    /// When that takes longer than 20 s.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.is_ok() {
            assert!(
                Instant::now() < deadline,
                "cluster_state did not become ok within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index (in [`nodes`](Self::nodes)) of the master that serves `slot`, read from
    /// each node's own line of `CLUSTER NODES`.
    ///
    /// # Panics
    ///
    /// When no node serves the slot.
    pub fn slot_owner(&self, slot: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| {
                n.cli(&["CLUSTER", "NODES"])
                    .lines()
                    .filter(|l| l.contains("myself"))
                    .flat_map(|l| l.split_whitespace().skip(8))
                    .any(|range| {
                        let (a, b) = range.split_once('-').unwrap_or((range, range));
                        matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
                    })
            })
            .unwrap_or_else(|| panic!("no node serves slot {slot}"))
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn keyslot(&self, key: &str) -> u16 {
        self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key}: {e}"))
    }
}

/// Spawns `redis-server` (inside `netns` when given: `ip netns exec` execs it, so the child's
/// process id is the server's).
fn spawn_redis(netns: Option<&Netns>, dir: &Path, args: &[&str]) -> Result<Child, String> {
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(netns.exec_prefix()).arg("redis-server");
            command
        }
        None => Command::new("redis-server"),
    };
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!("{INSTALL_HINT}")
            }
            format!("cannot spawn redis-server: {e}")
        })
}

fn redis_cli(host: Ipv4Addr, port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-h")
        .arg(host.to_string())
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}. {INSTALL_HINT}"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn wait_for_ping(host: Ipv4Addr, port: u16, child: Option<&mut Child>) -> Result<(), String> {
    let Some(child) = child else {
        return Err("no process".to_owned());
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            return Err(format!("redis-server exited with {status}: {err}"));
        }
        if ping(host, port) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no PONG on port {port} within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ping(host: Ipv4Addr, port: u16) -> bool {
    let addr = std::net::SocketAddr::from((host, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A free loopback port; with `cluster_bus`, port + 10000 is free as well.
fn free_port(cluster_bus: bool) -> u16 {
    // Spread processes over the range so parallel test binaries rarely race for a port.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let salt = (std::process::id() % 1000) as u16 * 20;
    for _ in 0..1000 {
        let candidate = 21000 + (salt + NEXT.fetch_add(1, Ordering::Relaxed)) % 30000;
        if !port_free(candidate) {
            continue;
        }
        if cluster_bus && !port_free(candidate + 10000) {
            continue;
        }
        return candidate;
    }
    // Fall back to the kernel's choice.
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The `name=value` pair of a `Set-Cookie` header value (what a client sends back in
/// `Cookie`), without its attributes.
///
/// ```
/// assert_eq!(tower_scale_testkit::cookie_pair("id=abc; Path=/; HttpOnly"), "id=abc");
/// ```
pub fn cookie_pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap_or_default().trim()
}

/// The value of one series in Prometheus text (`name`, or `name{label="value"}` exactly as the
/// exporter writes it), `None` when the text has no such series.
///
/// ```
/// let text = "a_total{kind=\"x\"} 3\nb 0.5\n";
/// assert_eq!(tower_scale_testkit::metric_value(text, "a_total{kind=\"x\"}"), Some(3.0));
/// assert_eq!(tower_scale_testkit::metric_value(text, "a_total"), None);
/// ```
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The `main` of the instruction benches that scripts run under callgrind, one variant per
/// process: with `variant_var` set, runs that variant with the request count in `n_var` (0
/// when unset: start-up alone, which the scripts subtract or leave out); without it (as under
/// `cargo bench`), runs every one of `variants` with `smoke` requests as a check that each
/// still works.
///
/// ```no_run
/// fn run(variant: &str, n: usize) { /* build the variant's router, serve n requests */ }
///
/// tower_scale_testkit::bench_main("BENCH_VARIANT", "BENCH_N", ["bare", "layered"], 1000, run);
/// ```
pub fn bench_main<V: AsRef<str>>(
    variant_var: &str,
    n_var: &str,
    variants: impl IntoIterator<Item = V>,
    smoke: usize,
    mut run: impl FnMut(&str, usize),
) {
    match std::env::var(variant_var) {
        Ok(variant) => {
            let n = std::env::var(n_var)
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            run(&variant, n);
        }
        Err(_) => {
            for v in variants {
                run(v.as_ref(), smoke);
                println!("{}: ok", v.as_ref());
            }
        }
    }
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` once `patience` has passed.
/// For conditions a test waits on (a server closing connections, a message arriving): the
/// bound only stops a hung test, it is not a timing assertion.
///
/// ```no_run
/// # async fn run(done: std::sync::atomic::AtomicBool) {
/// use std::sync::atomic::Ordering;
/// use std::time::Duration;
///
/// tower_scale_testkit::eventually("the flag is set", Duration::from_secs(5), || {
///     done.load(Ordering::Relaxed)
/// })
/// .await;
/// # }
/// ```
pub async fn eventually(what: &str, patience: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The guides in `docs/` compiled as doc tests, so their code cannot drift from the crates.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../../../docs/cache.md")]
    pub struct Cache;
    #[doc = include_str!("../../../docs/compression.md")]
    pub struct Compression;
    #[doc = include_str!("../../../docs/metrics.md")]
    pub struct Metrics;
    #[doc = include_str!("../../../docs/pubsub.md")]
    pub struct Pubsub;
    #[doc = include_str!("../../../docs/session.md")]
    pub struct Session;
    #[doc = include_str!("../../../docs/stack.md")]
    pub struct Stack;
}
