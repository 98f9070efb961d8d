//! The browser tests' setup: one real `redis-server` (tower-scale-testkit), chat instances in
//! this process on fixed loopback ports (so an instance can be stopped and started again on
//! its port), a real nginx in front of them (the scale-out test's helpers, with this example's
//! `nginx.conf.template`, which proxies WebSockets), and headless Debian Chromium driven
//! through `/usr/bin/chromedriver` with WebDriver (fantoccini).
//!
//! Every wait polls a condition with [`PATIENCE`] as a hang guard; no result depends on how
//! long anything takes.

#![allow(unreachable_pub, dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use example_chat::ChatConfig;
use example_chat::protocol::ServerMsg;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower_scale_pubsub::Delivery;
use tower_scale_ratelimit::Quota;
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_shutdown::{Report, Shutdown};
use tower_scale_testkit::RedisServer;

#[path = "../../../scale-out/tests/support/mod.rs"]
mod scale_out;
#[path = "../support/mod.rs"]
mod support;

use scale_out::{Nginx, free_port};

/// A hang guard for anything the tests wait for; never a measure of success.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Debian's Chromium and its WebDriver (packages `chromium` and `chromium-driver`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const BROWSER_HINT: &str = "Install Debian's `chromium` and `chromium-driver` packages \
     (`sudo apt-get install -y chromium chromium-driver`; scripts/test.sh does this for you). \
     CHROMIUM and CHROMEDRIVER name other binaries.";

/// How many tests drive browsers at once (each runs a Chromium or two).
static SLOTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(2));

fn binary(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found: the chat's browser tests need it. {BROWSER_HINT}",
        path.display()
    );
    path
}

/// Where the tests save their screenshots: `target/chat-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR lies in the target directory")
        .join("chat-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/chat-screenshots");
    dir
}

/// What the instances of a test are configured with.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Messages per user.
    pub rate: Quota,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rate: Quota::per_second(50).burst(100),
        }
    }
}

/// One chat instance served from this process on a fixed port.
pub struct Instance {
    pub port: u16,
    running: Option<(Shutdown, tokio::task::JoinHandle<Report>)>,
}

impl Instance {
    fn config(redis: &str, options: &Options) -> ChatConfig {
        ChatConfig {
            redis: Some(RedisBackend::new(RedisConfig::new(redis)).expect("a Redis backend")),
            delivery: Delivery::Stream,
            rate: options.rate,
            // Presence changes show within half a second.
            presence_refresh: Duration::from_millis(500),
            presence_ttl: Duration::from_secs(10),
            ..ChatConfig::default()
        }
    }

    /// Serves a new instance on `port`, once the port can be bound again.
    async fn start(port: u16, redis: &str, options: &Options) -> Self {
        let deadline = Instant::now() + PATIENCE;
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => break listener,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot bind port {port}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let (shutdown, served) = support::serve(listener, Self::config(redis, options));
        Self {
            port,
            running: Some((shutdown, served)),
        }
    }

    /// Shuts the instance down as SIGTERM would (sockets closed with `1001 Going Away`) and
    /// waits until it has stopped.
    pub async fn stop(&mut self) {
        let (shutdown, served) = self.running.take().expect("the instance is running");
        shutdown.trigger();
        tokio::time::timeout(PATIENCE, served)
            .await
            .expect("the instance stopped in time")
            .expect("the instance's task");
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// chromedriver as a child process in its own process group (the Chromiums it starts
/// included), killed with the group when dropped.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Driver {
    fn start(dir: &Path) -> Self {
        let driver = binary("CHROMEDRIVER", CHROMEDRIVER);
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = dir.join(format!("chromedriver-{port}.log"));
            let out = std::fs::File::create(&log).expect("chromedriver log");
            let mut child = std::process::Command::new(&driver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("chromedriver log"))
                .stderr(out)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {}: {e}. {BROWSER_HINT}", driver.display())
                });
            let deadline = Instant::now() + PATIENCE;
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!(
                        "chromedriver exited with {status}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "chromedriver did not listen within {PATIENCE:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("chromedriver did not start: {last}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pid = i32::try_from(self.child.id()).expect("a pid");
        let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Redis, two chat instances, nginx in front of them and a chromedriver, for one test.
pub struct Setup {
    pub instances: Vec<Instance>,
    /// `http://127.0.0.1:<nginx port>`: the load balancer's address.
    pub base: String,
    pub redis: RedisServer,
    options: Options,
    // Dropped in this order: the driver (and its browsers), nginx, the directory.
    driver: Driver,
    nginx: Nginx,
    dir: tempfile::TempDir,
    test: &'static str,
    _slot: SemaphorePermit<'static>,
}

impl Setup {
    /// Everything for the test named `test` (the prefix of its screenshots).
    pub async fn start(test: &'static str, options: Options) -> Self {
        let slot = SLOTS
            .acquire()
            .await
            .expect("the semaphore is never closed");
        binary("CHROMIUM", CHROMIUM);
        let dir = tempfile::Builder::new()
            .prefix("tower-scale-chat-browser-")
            .tempdir()
            .expect("a temp dir");
        // nginx's worker drops root privileges (to `nobody`) and must reach its temp files.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the temp dir");
        let redis = RedisServer::start();
        let mut instances = Vec::new();
        for _ in 0..2 {
            instances.push(Instance::start(free_port(), &redis.url(), &options).await);
        }
        let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
        let nginx = Nginx::start(dir.path(), &ports);
        let driver = Driver::start(dir.path());
        Self {
            instances,
            base: format!("http://127.0.0.1:{}", nginx.port),
            redis,
            options,
            driver,
            nginx,
            dir,
            test,
            _slot: slot,
        }
    }

    /// Stops instance `i` (as SIGTERM would).
    pub async fn stop(&mut self, i: usize) {
        self.instances[i].stop().await;
    }

    /// Starts instance `i` again on its port.
    pub async fn start_again(&mut self, i: usize) {
        let port = self.instances[i].port;
        self.instances[i] = Instance::start(port, &self.redis.url(), &self.options).await;
    }

    /// A new headless Chromium with a fresh profile.
    pub async fn browser(&self, who: &str) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("chromium-")
            .tempdir_in(self.dir.path())
            .expect("a profile dir");
        let chromium = binary("CHROMIUM", CHROMIUM);
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1000,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.driver.port))
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session: {e}. {BROWSER_HINT}"));
        Browser {
            client,
            name: format!("{}-{who}", self.test),
            _profile: profile,
        }
    }

    /// A new browser on the load balancer's address, logged in as `name`, in the lobby.
    pub async fn logged_in(&self, name: &str) -> Browser {
        let page = self.browser(name).await;
        page.goto(&self.base).await;
        log_in(&page, name).await;
        page
    }

    /// A user of the chat outside the browser, talking to instance `i` directly.
    pub async fn observer(&self, i: usize, name: &str) -> Observer {
        Observer::login(&self.instances[i].url(), name).await
    }

    /// nginx's logs, for failure messages.
    pub fn logs(&self) -> String {
        self.nginx.logs()
    }
}

/// A chromedriver command of its own (outside the W3C protocol): `POST
/// /session/{id}/<path>` with a JSON body.
#[derive(Debug)]
struct ChromeDriverCommand {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for ChromeDriverCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

/// One browser window.
pub struct Browser {
    pub client: Client,
    name: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    pub async fn reload(&self) {
        self.client.refresh().await.expect("reload");
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls the expression `condition` until it is true; panics after [`PATIENCE`] with a
    /// screenshot and the page's text.
    pub async fn until(&self, what: &str, condition: &str) {
        let script = format!("return !!({condition});");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Value::Bool(true)) = self.client.execute(&script, vec![]).await {
                return;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("failed-{}", what.replace(' ', "-")))
                    .await;
                let text = self.eval("return document.body.innerText;").await;
                panic!(
                    "{}: not {what} within {PATIENCE:?}; the page shows:\n{}",
                    self.name,
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the field at `selector` (emptied first) and presses Enter.
    pub async fn enter(&self, selector: &str, text: &str) {
        let field = self.find(selector).await;
        field.clear().await.expect("clear the field");
        field
            .send_keys(&format!("{text}\u{E007}"))
            .await
            .expect("type into the field");
    }

    /// Presses keys in the focused element (`\u{E007}` is Enter, `\u{E004}` Tab).
    pub async fn keys(&self, keys: &str) {
        let focused = self
            .client
            .active_element()
            .await
            .expect("a focused element");
        focused.send_keys(keys).await.expect("press keys");
    }

    /// Presses Tab until the element with id `id` has the focus (at most 30 times).
    pub async fn tab_to(&self, id: &str) {
        let focused =
            format!("return document.activeElement && document.activeElement.id === '{id}';");
        for _ in 0..30 {
            if self.eval(&focused).await == true {
                return;
            }
            use fantoccini::actions::InputSource;
            let tab = fantoccini::actions::KeyActions::new("keyboard".to_owned())
                .then(fantoccini::actions::KeyAction::Down { value: '\u{E004}' })
                .then(fantoccini::actions::KeyAction::Up { value: '\u{E004}' });
            self.client.perform_actions(tab).await.expect("press Tab");
        }
        panic!("{}: Tab never reached #{id}", self.name);
    }

    pub async fn click(&self, selector: &str) {
        self.find(selector).await.click().await.expect("click");
    }

    async fn find(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{}: no {selector}: {e}", self.name))
    }

    /// The text of the page's log (every room), hidden parts included.
    pub async fn log_text(&self) -> String {
        let text = self
            .eval("return document.getElementById('log').textContent;")
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Saves a PNG of the window as `target/chat-screenshots/<test>-<who>-<moment>.png`.
    pub async fn screenshot(&self, moment: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = screenshot_dir().join(format!("{}-{moment}.png", self.name));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// The page's console messages at level SEVERE (errors, failed requests).
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .client
            .issue_cmd(ChromeDriverCommand {
                path: "se/log",
                body: json!({"type": "browser"}),
            })
            .await
            .expect("chromedriver's browser log");
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes the browser off the network (as DevTools' "Offline" does: `navigator.onLine`
    /// turns false and the page gets an `offline` event), or back on.
    pub async fn set_offline(&self, offline: bool) {
        self.client
            .issue_cmd(ChromeDriverCommand {
                path: "chromium/network_conditions",
                body: json!({"network_conditions": {
                    "offline": offline, "latency": 0,
                    "download_throughput": -1, "upload_throughput": -1,
                }}),
            })
            .await
            .expect("chromedriver's network conditions");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// A condition: the page shows `room` as joined, in its rooms list (`data-joined`) or as a
/// "joined <room>" line of its log.
pub fn joined(room: &str) -> String {
    format!(
        "document.querySelector('#rooms [data-room=\"{room}\"][data-joined]') \
         || [...document.getElementById('log').children] \
              .some(line => line.textContent === 'joined {room}')"
    )
}

/// A condition: the log shows this user's message holding `text` as `state` (`queued`,
/// `sending`, `sent`, `failed`).
pub fn own(state: &str, text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#log .msg[data-state={state}] .text')] \
           .some(t => t.textContent === '{text}')"
    )
}

/// Logs in through the page's form and waits until the lobby is joined.
pub async fn log_in(browser: &Browser, name: &str) {
    browser.enter("#login input[name=name]", name).await;
    browser.until("in the lobby", &joined("lobby")).await;
}

/// Sends `text` through the page's form to its current room.
pub async fn say(browser: &Browser, text: &str) {
    browser.enter("#send input[name=text]", text).await;
}

/// How many times `needle` occurs in `haystack`.
pub fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// A chat message as the history shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub from: String,
    pub text: String,
}

/// A user talking to one instance directly: posts over short WebSockets, reads rooms' history.
pub struct Observer {
    base: String,
    cookie: String,
    http: reqwest::Client,
}

impl Observer {
    async fn login(base: &str, name: &str) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let res = http
            .post(format!("{base}/login"))
            .header("content-type", "application/json")
            .body(json!({ "name": name }).to_string())
            .send()
            .await
            .expect("log in");
        assert_eq!(res.status(), 200);
        let cookie =
            tower_scale_testkit::cookie_pair(res.headers()["set-cookie"].to_str().unwrap())
                .to_owned();
        Self {
            base: base.to_owned(),
            cookie,
            http,
        }
    }

    /// The same user against another instance (the session is in Redis).
    pub fn on(&self, base: &str) -> Self {
        Self {
            base: base.to_owned(),
            cookie: self.cookie.clone(),
            http: self.http.clone(),
        }
    }

    /// Publishes `text` to `room`, waiting for the server's `ack`.
    pub async fn post(&self, room: &str, text: &str) {
        let url = self.base.replacen("http://", "ws://", 1) + "/ws";
        let mut request = url.into_client_request().expect("a request");
        request
            .headers_mut()
            .insert("cookie", self.cookie.parse().expect("a cookie header"));
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("a WebSocket");
        let send = json!({"type": "send", "room": room, "text": text, "id": text});
        ws.send(WsMessage::Text(send.to_string().into()))
            .await
            .expect("send");
        loop {
            let frame = tokio::time::timeout(PATIENCE, ws.next())
                .await
                .expect("an answer in time")
                .expect("the socket stays open")
                .expect("a frame");
            let WsMessage::Text(text) = frame else {
                continue;
            };
            match serde_json::from_str::<ServerMsg>(&text).expect("a server message") {
                ServerMsg::Ack { .. } => break,
                ServerMsg::Error { reason, .. } => panic!("post refused: {reason}"),
                _ => {}
            }
        }
        let _ = ws.close(None).await;
    }

    /// The room's latest messages (up to 500), oldest first.
    pub async fn history(&self, room: &str) -> Vec<Seen> {
        let res = self
            .http
            .get(format!("{}/rooms/{room}/history?limit=500", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("history");
        assert_eq!(res.status(), 200);
        let body = res.bytes().await.expect("history");
        let messages: Vec<ServerMsg> = serde_json::from_slice(&body).expect("history JSON");
        messages
            .into_iter()
            .filter_map(|m| match m {
                ServerMsg::Message { from, text, .. } => Some(Seen { from, text }),
                _ => None,
            })
            .collect()
    }

    /// Who sent each copy of `text` in `room`, once the history holds at least one.
    pub async fn senders(&self, room: &str, text: &str) -> Vec<String> {
        let what = format!("showing {text:?}");
        self.until(room, &what, |seen| seen.iter().any(|m| m.text == text))
            .await
            .into_iter()
            .filter(|m| m.text == text)
            .map(|m| m.from)
            .collect()
    }

    /// Polls the room's history until `cond` holds; returns it.
    pub async fn until(&self, room: &str, what: &str, cond: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen = self.history(room).await;
            if cond(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{room}: not {what} within {PATIENCE:?}; history: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
