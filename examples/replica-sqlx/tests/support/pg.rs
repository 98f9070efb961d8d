//! A throw-away PostgreSQL server for tests, from Debian's `postgresql` package: `initdb` in a
//! temporary directory, `postgres` on a free loopback port (TCP on 127.0.0.1 only, its Unix
//! socket inside the directory), stopped and deleted on drop.
//!
//! `initdb` and `postgres` refuse to run as root: when the tests run as root, both run as the
//! `postgres` user (the package creates it), which owns the directory.

#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, geteuid};
use std::os::unix::fs::chown;

const INSTALL_HINT: &str = "PostgreSQL was not found under /usr/lib/postgresql/*/bin. Install it: \
     `sudo apt-get install -y postgresql` on Debian/Ubuntu (scripts/test.sh does this for you).";

/// One running PostgreSQL server; user `postgres`, no password (trust on loopback).
#[derive(Debug)]
pub struct PgServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: PathBuf,
}

/// The newest `/usr/lib/postgresql/<version>/bin`, or `PG_BIN_DIR`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// Runs as the `postgres` user when we are root (ids of that user), as ourselves otherwise.
fn run_as() -> Option<(u32, u32)> {
    if !geteuid().is_root() {
        return None;
    }
    let user = User::from_name("postgres")
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!("running as root but there is no `postgres` user. {INSTALL_HINT}")
        });
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

fn command(bin: &Path, name: &str, ids: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(bin.join(name));
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    cmd.env_remove("PGDATA").env("LC_ALL", "C");
    cmd
}

impl PgServer {
    /// `initdb` and start a server on a free loopback port; returns once it accepts
    /// connections.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is not installed (the message says how to install it) or does not start.
    pub fn start() -> Self {
        let bin = bin_dir();
        let ids = run_as();
        let dir = tempfile::Builder::new()
            .prefix("tower-scale-pg-")
            .tempdir()
            .expect("temp dir");
        if let Some((uid, gid)) = ids {
            chown(dir.path(), Some(uid), Some(gid)).expect("chown the temp dir");
        }
        let data = dir.path().join("data");
        let out = command(&bin, "initdb", ids)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}. {INSTALL_HINT}"));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log = dir.path().join("postgres.log");
        let mut server = Self {
            port: 0,
            child: None,
            dir,
            log,
        };
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn(&bin, ids) {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("postgres did not start: {last}");
    }

    fn spawn(&mut self, bin: &Path, ids: Option<(u32, u32)>) -> Result<(), String> {
        let log = std::fs::File::create(&self.log).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = ids {
            chown(&self.log, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let child = command(bin, "postgres", ids)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=50",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let child = self.child.as_mut().expect("child");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!(
                    "postgres exited with {status}: {}",
                    self.log_tail()
                ));
            }
            let ready = command(bin, "pg_isready", None)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("not ready within 30 s: {}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the server ("fast" shutdown: SIGINT; SIGKILL if it is still there after 10 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}
