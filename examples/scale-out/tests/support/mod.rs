//! The scale-out setup of the tests: one real `redis-server` (tower-scale-testkit), instances
//! of the quick-start example as real child processes sharing it, and a real nginx in front of
//! them, all on loopback ports, every process stopped when the [`ScaleOut`] is dropped.
//!
//! Waits are polls with generous deadlines (hang guards), never fixed sleeps that a result
//! depends on, and no assertion is about time.

#![allow(unreachable_pub, dead_code)]

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tower_scale_testkit::RedisServer;

/// The nginx config of the repository, with `@DIR@`, `@LISTEN@` and `@UPSTREAMS@` to fill in.
pub const NGINX_TEMPLATE: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/nginx.conf.template"));

/// A hang guard for anything the tests wait for (a process to start or exit, a condition to
/// hold); never a measure of success.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `PRE_STOP_DELAY` of the instances: how long an instance keeps serving, not ready and closing
/// keep-alive connections, after SIGTERM.
pub const PRE_STOP_DELAY: &str = "1s";

const NGINX_HINT: &str = "nginx was not found (PATH, /usr/sbin/nginx). Install it: \
     `sudo apt-get install -y nginx` on Debian/Ubuntu (scripts/test.sh does this for you).";

/// The `example-quickstart` binary, built once per test process with the profile and target
/// directory of this test binary (`cargo build -p example-quickstart`), or `QUICKSTART_BIN`.
pub fn quickstart_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("QUICKSTART_BIN") {
        Some(path) => PathBuf::from(path),
        None => build_quickstart(),
    })
}

/// Runs `cargo build -p example-quickstart` into the target directory this test binary was
/// built in (`<target>[/<triple>]/<profile>/deps/<test>`), with the same profile, and returns
/// the executable cargo reports.
fn build_quickstart() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => panic!("unexpected test binary path {}", exe.display()),
    };
    let above = profile_dir.parent().expect("a target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "-p",
        "example-quickstart",
        "--bin",
        "example-quickstart",
        "--message-format=json-render-diagnostics",
        "--profile",
        &profile,
    ]);
    // `<target>/<triple>/<profile>` when the tests were built with `--target <triple>`. The
    // target directory is known from cargo (`CARGO_TARGET_TMPDIR` is `<target>/tmp`), not
    // guessed from its contents: a `target/` made by something else first (a bench script's
    // results folder) has no `CACHEDIR.TAG`.
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR lies in the target directory");
    if above == target_dir {
        cmd.arg("--target-dir").arg(above);
    } else {
        let triple = above.file_name().expect("a target triple directory");
        cmd.arg("--target").arg(triple);
        cmd.arg("--target-dir").arg(target_dir);
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo build -p example-quickstart: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p example-quickstart failed: {}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| {
            msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "example-quickstart"
        })
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no example-quickstart executable")
}

/// A free loopback port below Linux's ephemeral range (32768 and up), so that no outgoing
/// connection takes it while an instance restarts on it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let salt = u16::try_from(std::process::id() % 1000).unwrap_or(0) * 20;
    for _ in 0..2000 {
        let candidate = 11000 + (salt + NEXT.fetch_add(1, Ordering::Relaxed)) % 20000;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, candidate)).is_ok() {
            return candidate;
        }
    }
    panic!("no free loopback port between 11000 and 31000");
}

/// One quick-start instance: a child process (killed if dropped) with its output in a log file.
pub struct Instance {
    pub port: u16,
    pub child: tokio::process::Child,
    log: PathBuf,
}

impl Instance {
    /// Starts an instance on `port` and waits until its `/readyz` answers 200; `Err` with the
    /// log's tail when the process exits first (e.g. the port was taken).
    pub async fn start(
        port: u16,
        redis_url: &str,
        dir: &Path,
        http: &reqwest::Client,
    ) -> Result<Self, String> {
        Self::start_with(port, redis_url, dir, http, None).await
    }

    /// [`Instance::start`] with the stack config file `config` (`TOWER_SCALE_CONFIG`) instead
    /// of the example's own.
    pub async fn start_with(
        port: u16,
        redis_url: &str,
        dir: &Path,
        http: &reqwest::Client,
        config: Option<&Path>,
    ) -> Result<Self, String> {
        static SEQ: AtomicU16 = AtomicU16::new(0);
        let log = dir.join(format!(
            "quickstart-{port}-{}.log",
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&log).expect("a log file");
        let child = tokio::process::Command::new(quickstart_bin())
            .env("REDIS_URL", redis_url)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("PRE_STOP_DELAY", PRE_STOP_DELAY)
            // No load shedding: on a busy machine a shed request would make nginx skip an
            // instance; every non-2xx answer then counts as a failure in the tests.
            .env("PRESSURE_MAX_LAG", "off")
            // /limited's 3 requests per hour: no slot comes back during a test, however slow.
            .env("LIMITED_PERIOD", "1h")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(config.map(|path| ("TOWER_SCALE_CONFIG", path)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("a log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", quickstart_bin().display()));
        let mut instance = Self { port, child, log };
        let url = format!("http://127.0.0.1:{port}/readyz");
        let deadline = Instant::now() + PATIENCE;
        loop {
            // `Connection: close`, as a load balancer's health check: an idle pooled
            // connection would hold the instance's drain open until its deadline.
            if let Ok(res) = http
                .get(&url)
                .header(reqwest::header::CONNECTION, "close")
                .send()
                .await
                && res.status() == 200
            {
                return Ok(instance);
            }
            if let Ok(Some(status)) = instance.child.try_wait() {
                return Err(format!(
                    "the instance on {port} exited with {status}\n{}",
                    instance.tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the instance on {port} was not ready within {PATIENCE:?}\n{}",
                    instance.tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `127.0.0.1:<port>`, as nginx names it in `X-Upstream`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("the instance is running");
        kill(Pid::from_raw(i32::try_from(pid).expect("a pid")), signal).expect("kill");
    }

    /// Waits for the process to exit, up to [`PATIENCE`].
    pub async fn exit(&mut self) -> ExitStatus {
        match tokio::time::timeout(PATIENCE, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!(
                "the instance on {} did not exit within {PATIENCE:?}\n{}",
                self.port,
                self.tail()
            ),
        }
    }

    /// The last lines of the instance's output, for failure messages.
    pub fn tail(&self) -> String {
        tail(&self.log, &format!("quickstart on {}", self.port))
    }
}

/// The last 30 lines of a log file.
fn tail(path: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(30);
    format!(
        "--- {name} ({}) ---\n{}",
        path.display(),
        lines[from..].join("\n")
    )
}

/// nginx as a child process in the foreground (`daemon off`), in its own process group, with
/// its config, pid file and logs in the test's directory.
pub struct Nginx {
    pub port: u16,
    child: std::process::Child,
    dir: PathBuf,
}

impl Nginx {
    /// The nginx binary: on `PATH`, or Debian's `/usr/sbin/nginx` (not on a user's `PATH`).
    pub fn binary() -> PathBuf {
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("nginx"))
                .find(|p| p.is_file())
        });
        on_path
            .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
            .unwrap_or_else(|| panic!("{NGINX_HINT}"))
    }

    /// The repository's config for these upstream ports, listening on `listen`.
    pub fn config(dir: &Path, listen: u16, upstreams: &[u16]) -> String {
        let servers: String = upstreams
            .iter()
            .map(|p| format!("    server 127.0.0.1:{p} max_fails=0;\n"))
            .collect();
        NGINX_TEMPLATE
            .replace("@DIR@", &dir.display().to_string())
            .replace("@LISTEN@", &listen.to_string())
            .replace("@UPSTREAMS@", servers.trim_end())
    }

    /// Starts nginx in front of `upstreams` and waits until it accepts connections.
    pub fn start(dir: &Path, upstreams: &[u16]) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, Self::config(dir, port, upstreams)).expect("write nginx.conf");
            let out = std::fs::File::create(dir.join("nginx.out")).expect("nginx.out");
            let child = std::process::Command::new(Self::binary())
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.join("error.log"))
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("nginx.out"))
                .stderr(out)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start nginx: {e}. {NGINX_HINT}"));
            let mut nginx = Self {
                port,
                child,
                dir: dir.to_owned(),
            };
            let deadline = Instant::now() + PATIENCE;
            loop {
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return nginx;
                }
                if let Ok(Some(status)) = nginx.child.try_wait() {
                    last = format!("nginx exited with {status}\n{}", nginx.logs());
                    break; // the port was taken in between: try another one
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx did not listen within {PATIENCE:?}\n{}",
                    nginx.logs()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("nginx did not start: {last}");
    }

    /// nginx's output and error log, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "{}\n{}",
            tail(&self.dir.join("nginx.out"), "nginx output"),
            tail(&self.dir.join("error.log"), "nginx error log")
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its worker and exits. SIGKILL to the whole process group
        // if that takes too long, so no worker is left behind.
        let pid = i32::try_from(self.child.id()).expect("a pid");
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A response seen through nginx.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// `X-Upstream`: every instance nginx tried, in order; the last one answered.
    pub upstreams: Vec<String>,
    /// `X-Upstream-Status`: what each of them answered.
    pub upstream_statuses: Vec<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The instance whose response this is.
    pub fn upstream(&self) -> &str {
        self.upstreams.last().map_or("", String::as_str)
    }

    /// A header as a string ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Whether an instance shed the request under load (`503` with `x-shed-reason`, from the
    /// quick-start's pressure layer, before any handler ran): the machine was overloaded, which
    /// says nothing about the behaviour under test.
    pub fn is_shed(&self) -> bool {
        self.status == 503 && self.headers.contains_key("x-shed-reason")
    }

    /// `name=value` of the response's `Set-Cookie`, if any.
    pub fn cookie(&self) -> Option<String> {
        let set = self.headers.get("set-cookie")?.to_str().ok()?;
        Some(tower_scale_testkit::cookie_pair(set).to_owned())
    }
}

fn split_list(value: Option<&reqwest::header::HeaderValue>) -> Vec<String> {
    value
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// Sends a request and reads the whole response; `Err` on a transport error.
pub async fn send(req: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
    let res = req.send().await?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.text().await?;
    Ok(Reply {
        status,
        upstreams: split_list(headers.get("x-upstream")),
        upstream_statuses: split_list(headers.get("x-upstream-status")),
        headers,
        body,
    })
}

/// Redis, the instances and nginx of one test. Dropping it stops nginx, then the instances,
/// then Redis, and removes the directory.
pub struct ScaleOut {
    pub nginx: Nginx,
    pub instances: Vec<Instance>,
    pub redis: RedisServer,
    pub http: reqwest::Client,
    /// `http://127.0.0.1:<nginx port>`.
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl ScaleOut {
    /// Redis, `n` instances on it, and nginx in front of them.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, None).await
    }

    /// [`ScaleOut::start`] with every instance on the stack config `config` (TOML, written to
    /// the test's directory) instead of the example's own.
    pub async fn start_with(n: usize, config: Option<&str>) -> Self {
        let bin = tokio::task::spawn_blocking(quickstart_bin)
            .await
            .expect("building example-quickstart");
        assert!(bin.is_file(), "no binary at {}", bin.display());
        let dir = tempfile::Builder::new()
            .prefix("tower-scale-scale-out-")
            .tempdir()
            .expect("a temp dir");
        // nginx's worker drops root privileges (to `nobody`) and must reach its temp files.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the temp dir");
        let config = config.map(|text| {
            let path = dir.path().join("tower-scale.toml");
            std::fs::write(&path, text).expect("write the stack config");
            path
        });
        let redis = RedisServer::start();
        let http = client();
        let mut instances = Vec::with_capacity(n);
        for _ in 0..n {
            let mut last = String::new();
            let mut started = None;
            for _ in 0..5 {
                let port = free_port();
                match Instance::start_with(port, &redis.url(), dir.path(), &http, config.as_deref())
                    .await
                {
                    Ok(instance) => {
                        started = Some(instance);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            instances.push(started.unwrap_or_else(|| panic!("no instance started: {last}")));
        }
        let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
        let nginx = Nginx::start(dir.path(), &ports);
        let base = format!("http://127.0.0.1:{}", nginx.port);
        Self {
            nginx,
            instances,
            redis,
            http,
            base,
            dir,
        }
    }

    /// Every instance's `127.0.0.1:<port>`.
    pub fn addrs(&self) -> HashSet<String> {
        self.instances.iter().map(Instance::addr).collect()
    }

    /// `GET <path>` through nginx with extra headers; panics on a transport error.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.call(reqwest::Method::GET, path, headers).await
    }

    /// `POST <path>` through nginx with extra headers; panics on a transport error.
    pub async fn post(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.call(reqwest::Method::POST, path, headers).await
    }

    /// `DELETE <path>` through nginx; panics on a transport error.
    pub async fn delete(&self, path: &str) -> Reply {
        self.call(reqwest::Method::DELETE, path, &[]).await
    }

    /// Sends a request through nginx. A request shed by every instance nginx tried (the
    /// machine is overloaded; no handler ran) is sent again after a pause, up to [`PATIENCE`].
    async fn call(&self, method: reqwest::Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base));
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            let reply = send(req)
                .await
                .unwrap_or_else(|e| panic!("{method} {path} through nginx: {e}\n{}", self.logs()));
            if !reply.is_shed() || Instant::now() > deadline {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `GET <path>` through nginx until every instance has answered it, passing each
    /// reply to `check` (which asserts on it); returns how many requests it took.
    ///
    /// Round robin has each instance answer in turn. An overloaded instance sheds requests for
    /// a while (its lag window), and nginx then moves on to the next one, so the loop runs
    /// until every instance answered, with [`PATIENCE`] as the hang guard.
    pub async fn until_every_instance_answers(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        mut check: impl FnMut(&Reply),
    ) -> usize {
        let all = self.addrs();
        let mut seen = HashSet::new();
        let deadline = Instant::now() + PATIENCE;
        let mut sent = 0;
        while seen != all {
            assert!(
                Instant::now() < deadline,
                "GET {path}: answered only by {seen:?} within {PATIENCE:?}"
            );
            let reply = self.get(path, headers).await;
            sent += 1;
            check(&reply);
            seen.insert(reply.upstream().to_owned());
            if reply.upstreams.len() > 1 {
                // An instance was skipped: give it a moment.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        sent
    }

    /// `GET <path>` on instance `i` directly, not through nginx; shed requests are sent again
    /// as in [`ScaleOut::get`].
    pub async fn get_direct(&self, i: usize, path: &str) -> Reply {
        let url = format!("http://{}{path}", self.instances[i].addr());
        let deadline = Instant::now() + PATIENCE;
        loop {
            let reply = send(self.http.get(&url))
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", self.logs()));
            if !reply.is_shed() || Instant::now() > deadline {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Restarts instance `i` on its port (the port can take a moment to be free again).
    pub async fn start_again(&mut self, i: usize) {
        let port = self.instances[i].port;
        let mut last = String::new();
        for _ in 0..20 {
            match Instance::start(port, &self.redis.url(), self.dir.path(), &self.http).await {
                Ok(instance) => {
                    self.instances[i] = instance;
                    return;
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the instance on {port} did not start again: {last}");
    }

    /// Every log, for failure messages.
    pub fn logs(&self) -> String {
        let mut all: Vec<String> = self.instances.iter().map(Instance::tail).collect();
        all.push(self.nginx.logs());
        all.join("\n")
    }
}

/// The tests' HTTP client: no cookie store (cookies are sent by hand), a 10 s hang guard.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}
