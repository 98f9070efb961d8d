use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Timings of a [`Shutdown`] (serde; humantime strings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ShutdownConfig {
    /// After readiness flips to not-ready, how long to keep serving so the load balancer
    /// notices before the listener closes. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub pre_stop_delay: Duration,
    /// How long in-flight requests and open connections may take to finish. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How long cancelled background tasks may take to stop. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub tasks_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            pre_stop_delay: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            tasks_timeout: Duration::from_secs(10),
        }
    }
}

/// The phases of a shutdown, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Serving.
    Running,
    /// Readiness is off (`/readyz` answers 503), still serving during the pre-stop delay.
    NotReady,
    /// No new connections; in-flight requests finish, responses carry `Connection: close`.
    Draining,
    /// Background tasks are cancelled and awaited.
    StoppingTasks,
    /// Cleanup hooks run.
    Cleanup,
    /// Done.
    Done,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Running,
            1 => Self::NotReady,
            2 => Self::Draining,
            3 => Self::StoppingTasks,
            4 => Self::Cleanup,
            _ => Self::Done,
        }
    }

    /// `running`, `not_ready`, `draining`, `stopping_tasks`, `cleanup`, `done`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::NotReady => "not_ready",
            Self::Draining => "draining",
            Self::StoppingTasks => "stopping_tasks",
            Self::Cleanup => "cleanup",
            Self::Done => "done",
        }
    }
}

type Hook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

struct Inner {
    config: ShutdownConfig,
    phase: AtomicU8,
    requested: CancellationToken,
    forced: CancellationToken,
    stop_accepting: CancellationToken,
    tasks_token: CancellationToken,
    tasks: TaskTracker,
    in_flight: AtomicUsize,
    // Requests in progress on connections of `Shutdown::serve` / `serve_connection`.
    busy: AtomicUsize,
    connections: AtomicUsize,
    triggers: AtomicUsize,
    hooks: Mutex<Vec<(String, Duration, Hook)>>,
    signals_installed: AtomicBool,
}

/// Coordinates a graceful shutdown: catches SIGTERM / SIGINT (a second signal forces the
/// exit) or a programmatic [`trigger`](Self::trigger), then runs the [`Phase`]s in order,
/// each logged: readiness off and a pre-stop delay; stop accepting and drain up to a
/// deadline; cancel background tasks and wait for them up to a deadline; run cleanup hooks,
/// each with its own timeout. [`run`](Self::run) returns whether the drain was clean, for the
/// process's exit code.
///
/// Cloning is cheap; clones share the state.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use tower_scale_shutdown::{Shutdown, ShutdownConfig};
///
/// # async fn run() -> std::io::Result<()> {
/// let shutdown = Shutdown::new(ShutdownConfig::default());
/// shutdown.listen_for_signals();
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(shutdown.layer())
///     .merge(shutdown.health_routes());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let serve = shutdown.serve(listener, app);
/// let report = shutdown.run(std::future::IntoFuture::into_future(serve)).await;
/// std::process::exit(report.exit_code());
/// # }
/// ```
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("phase", &self.phase())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// What a shutdown achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Every in-flight request finished before the drain deadline (idle keep-alive connections
    /// cut at the deadline lose no request and do not count).
    pub drained: bool,
    /// Every background task stopped before its deadline.
    pub tasks_stopped: bool,
    /// Every cleanup hook finished before its timeout.
    pub hooks_done: bool,
    /// A second signal (or trigger) forced the exit.
    pub forced: bool,
    /// The server future failed on its own (e.g. the listener broke).
    pub serve_failed: bool,
}

impl Report {
    /// 0 when everything finished in time, 1 otherwise, 130 when forced.
    pub fn exit_code(&self) -> i32 {
        if self.forced {
            130
        } else if self.drained && self.tasks_stopped && self.hooks_done && !self.serve_failed {
            0
        } else {
            1
        }
    }
}

impl Shutdown {
    /// A coordinator with these timings.
    pub fn new(config: ShutdownConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                phase: AtomicU8::new(0),
                requested: CancellationToken::new(),
                forced: CancellationToken::new(),
                stop_accepting: CancellationToken::new(),
                tasks_token: CancellationToken::new(),
                tasks: TaskTracker::new(),
                in_flight: AtomicUsize::new(0),
                busy: AtomicUsize::new(0),
                connections: AtomicUsize::new(0),
                triggers: AtomicUsize::new(0),
                hooks: Mutex::new(Vec::new()),
                signals_installed: AtomicBool::new(false),
            }),
        }
    }

    /// Starts the shutdown; a second call forces it (skips the waits that are left).
    ///
    /// Readiness is off when this returns: [`is_ready`](Self::is_ready) is `false` and
    /// `/readyz` answers 503 from then on, whether or not [`run`](Self::run)'s task has had a
    /// chance to run yet.
    pub fn trigger(&self) {
        let n = self.inner.triggers.fetch_add(1, Ordering::AcqRel);
        if n == 0 {
            tracing::info!("shutdown requested");
            self.leave_running();
            self.inner.requested.cancel();
        } else {
            tracing::warn!("second shutdown request: forcing");
            self.inner.forced.cancel();
        }
    }

    /// Triggers on SIGTERM and SIGINT (Ctrl-C); the second signal forces. Call it once, inside
    /// a tokio runtime. The handlers are in place when it returns: a signal that arrives right
    /// after starts the shutdown (it does not end the process with the default action).
    pub fn listen_for_signals(&self) {
        if self.inner.signals_installed.swap(true, Ordering::AcqRel) {
            return;
        }
        #[cfg(unix)]
        let (mut term, mut int) = {
            use tokio::signal::unix::{SignalKind, signal};
            let install = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for {name}");
                    None
                }
            };
            (
                install(SignalKind::terminate(), "SIGTERM"),
                install(SignalKind::interrupt(), "SIGINT"),
            )
        };
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                #[cfg(unix)]
                tokio::select! {
                    Some(()) = recv(&mut int) => tracing::info!("SIGINT"),
                    Some(()) = recv(&mut term) => tracing::info!("SIGTERM"),
                    else => return,
                }
                #[cfg(not(unix))]
                match tokio::signal::ctrl_c().await {
                    Ok(()) => tracing::info!("Ctrl-C"),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for Ctrl-C");
                        return;
                    }
                }
                this.trigger();
            }
        });
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.inner.phase()
    }

    /// Whether `/readyz` should answer ready: until the shutdown starts.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Running
    }

    /// Whether connections are being drained (responses get `Connection: close`).
    pub fn is_draining(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// Requests in flight through [`layer`](Self::layer).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Open connections, counted by [`count_connections`](Self::count_connections).
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Acquire)
    }

    pub(crate) fn connection(&self) -> ConnectionGuard {
        self.inner.connections.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard {
            inner: Arc::clone(&self.inner),
        }
    }

    pub(crate) fn enter(&self) -> InFlightGuard {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlightGuard {
            inner: Arc::clone(&self.inner),
            busy: false,
        }
    }

    /// Counts a request on a connection of the serve loop until dropped.
    #[cfg(feature = "serve")]
    pub(crate) fn busy(&self) -> InFlightGuard {
        self.inner.busy.fetch_add(1, Ordering::AcqRel);
        InFlightGuard {
            inner: Arc::clone(&self.inner),
            busy: true,
        }
    }

    /// Resolves when the server must stop accepting: for an accept loop of your own (see
    /// [`serve_connection`](Self::serve_connection)); [`serve`](Self::serve) watches it itself.
    /// Passed to `axum::serve(..).with_graceful_shutdown(..)`, it also closes idle keep-alive
    /// connections at once, under clients that may be sending a request on them.
    pub fn stop_accepting(&self) -> impl Future<Output = ()> + Send + 'static {
        let token = self.inner.stop_accepting.clone();
        async move { token.cancelled().await }
    }

    /// Resolves once the drain has lasted [`ShutdownConfig::drain_timeout`], or the exit is
    /// forced: when the connections still open are cut.
    #[cfg(feature = "serve")]
    pub(crate) fn drain_deadline(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        async move {
            tokio::select! {
                () = async {
                    inner.stop_accepting.cancelled().await;
                    tokio::time::sleep(inner.config.drain_timeout).await;
                } => {}
                () = inner.forced.cancelled() => {}
            }
        }
    }

    /// Resolves when the shutdown starts (for long-lived connections such as WebSockets and
    /// SSE streams, which should say goodbye and close).
    pub fn requested(&self) -> impl Future<Output = ()> + Send + 'static {
        let token = self.inner.requested.clone();
        async move { token.cancelled().await }
    }

    /// Tracks background tasks: spawn them here, and watch [`task_token`](Self::task_token)
    /// to stop.
    pub fn tracker(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// Cancelled when background tasks must stop.
    pub fn task_token(&self) -> CancellationToken {
        self.inner.tasks_token.clone()
    }

    /// Registers a cleanup hook (flush, close pools), run after the tasks phase with its own
    /// timeout, in registration order.
    pub fn on_cleanup<F, Fut>(&self, name: impl Into<String>, timeout: Duration, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook: Hook = Box::new(move || Box::pin(hook()));
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name.into(), timeout, hook));
    }

    /// Moves from [`Phase::Running`] to [`Phase::NotReady`], once: readiness is off from here.
    fn leave_running(&self) {
        let from_running = self.inner.phase.compare_exchange(
            Phase::Running as u8,
            Phase::NotReady as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if from_running.is_ok() {
            self.report_phase(Phase::NotReady);
        }
    }

    fn enter_phase(&self, phase: Phase) {
        self.inner.phase.store(phase as u8, Ordering::Release);
        self.report_phase(phase);
    }

    fn report_phase(&self, phase: Phase) {
        metrics::gauge!(crate::names::SHUTDOWN_PHASE.name).set(f64::from(phase as u8));
        tracing::info!(
            phase = phase.as_str(),
            in_flight = self.in_flight(),
            "shutdown phase"
        );
    }

    /// Waits, up to `limit`, for `fut`; `None` when the limit passed or the exit was forced.
    async fn bounded<T>(&self, limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            v = tokio::time::timeout(limit, fut) => v.ok(),
            () = self.inner.forced.cancelled() => None,
        }
    }

    /// Runs the server future until a shutdown is triggered, then every phase in order.
    /// `serve` must finish once [`stop_accepting`](Self::stop_accepting) has resolved and its
    /// connections are done (as `axum::serve(..).with_graceful_shutdown(..)` does).
    pub async fn run<F, E>(&self, serve: F) -> Report
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let mut report = Report {
            drained: true,
            tasks_stopped: true,
            hooks_done: true,
            forced: false,
            serve_failed: false,
        };
        let mut serve = tokio::spawn(serve);
        let mut serve_done = false;
        tokio::select! {
            () = self.inner.requested.cancelled() => {}
            result = &mut serve => {
                tracing::error!("the server stopped on its own");
                serve_done = true;
                report.serve_failed = !matches!(result, Ok(Ok(())));
                self.inner.requested.cancel();
            }
        }

        // 1. Not ready (already, when `trigger` started it), still serving while the load
        // balancer notices.
        self.leave_running();
        let _ = self
            .bounded(
                self.inner.config.pre_stop_delay,
                std::future::pending::<()>(),
            )
            .await;

        // 2-3. Stop accepting; drain in-flight requests and connections up to the deadline.
        self.enter_phase(Phase::Draining);
        self.inner.stop_accepting.cancel();
        if !serve_done {
            match self
                .bounded(self.inner.config.drain_timeout, &mut serve)
                .await
            {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    tracing::error!(error = %e, "the server failed while draining");
                    report.serve_failed = true;
                }
                Some(Err(_)) => report.serve_failed = true,
                None => {
                    // Idle keep-alive connections only: cutting them loses no request.
                    let busy = self.in_flight() + self.inner.busy.load(Ordering::Acquire);
                    tracing::warn!(
                        in_flight = busy,
                        "drain deadline passed: cutting the remaining connections"
                    );
                    serve.abort();
                    report.drained = busy == 0 && !self.inner.forced.is_cancelled();
                }
            }
        }

        // 4. Background tasks.
        self.enter_phase(Phase::StoppingTasks);
        self.inner.tasks_token.cancel();
        self.inner.tasks.close();
        if self
            .bounded(self.inner.config.tasks_timeout, self.inner.tasks.wait())
            .await
            .is_none()
        {
            tracing::warn!(
                tasks = self.inner.tasks.len(),
                "background tasks outlived their deadline"
            );
            report.tasks_stopped = false;
        }

        // 5. Cleanup hooks, each with its own timeout.
        self.enter_phase(Phase::Cleanup);
        let hooks = std::mem::take(
            &mut *self
                .inner
                .hooks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (name, timeout, hook) in hooks {
            if self.bounded(timeout, hook()).await.is_none() {
                tracing::warn!(hook = %name, "cleanup hook timed out");
                report.hooks_done = false;
            }
        }

        self.enter_phase(Phase::Done);
        report.forced = self.inner.forced.is_cancelled();
        report
    }
}

/// Counts an open connection until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    inner: Arc<Inner>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.inner.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}

/// Counts a request in flight (or, `busy`, a request of the serve loop) until dropped.
pub(crate) struct InFlightGuard {
    inner: Arc<Inner>,
    busy: bool,
}

impl InFlightGuard {
    /// The shutdown's phase now.
    pub(crate) fn phase(&self) -> Phase {
        self.inner.phase()
    }
}

impl Inner {
    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let counter = if self.busy {
            &self.inner.busy
        } else {
            &self.inner.in_flight
        };
        counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The next signal of a stream that may not exist (its handler could not be installed).
#[cfg(unix)]
async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => None,
    }
}
