//! The quick-start binary as a person runs it: what it prints and how it exits when its config
//! or its Redis is wrong, and that its own config's `peer_ip` rate limit works when served.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_example-quickstart");

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn quickstart(envs: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("REDIS_URL")
        .env_remove("TOWER_SCALE_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Waits for `child` to exit (killing it after 60 s, which fails the test), and returns its
/// status and everything it printed.
fn finish(mut child: Child) -> (ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the quick-start is still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status, out)
}

#[test]
fn a_toml_typo_prints_a_readable_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tower-scale.toml");
    std::fs::write(
        &path,
        "[shutdown]\npre_stop_delay = \"1s\"\n\n[session]\nttl = 24h\n",
    )
    .unwrap();
    let port = free_port().to_string();
    let child = quickstart(&[
        ("TOWER_SCALE_CONFIG", path.to_str().unwrap()),
        ("PORT", &port),
    ]);
    let (status, out) = finish(child);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("error: [toml]:"), "{out}");
    assert!(
        out.contains("ttl = 24h"),
        "the message quotes the line: {out}"
    );
    assert!(!out.contains("StackError {"), "the Debug form: {out}");
    assert!(!out.contains("\\n"), "escaped newlines: {out}");
}

#[test]
fn an_unreachable_redis_exits_non_zero_with_the_redacted_url() {
    let port = free_port();
    let url = format!("redis://demo:hunter2-secret@127.0.0.1:{port}/0");
    let listen = free_port().to_string();
    let child = quickstart(&[("REDIS_URL", &url), ("PORT", &listen)]);
    let (status, out) = finish(child);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("redis://demo:***@127.0.0.1:{port}/0")),
        "the URL, redacted: {out}"
    );
    assert!(out.contains("error: cannot reach Redis"), "{out}");
    assert!(!out.contains("hunter2-secret"), "the password: {out}");
    assert!(!out.contains("listening"), "it served without Redis: {out}");
}

/// Sends `GET path` and returns the status line.
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().next().map(str::to_owned)
}

#[test]
fn the_configs_peer_ip_rate_limit_works_when_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tower-scale.toml");
    let config = include_str!("../tower-scale.toml")
        .replace("# [rate_limit]", "[rate_limit]")
        .replace("# quotas = ", "quotas = ")
        .replace("# key = ", "key = ");
    assert!(
        config.contains("\n[rate_limit]\n"),
        "the example's config changed"
    );
    std::fs::write(&path, config).unwrap();
    let port = free_port();
    let mut child = quickstart(&[
        ("TOWER_SCALE_CONFIG", path.to_str().unwrap()),
        ("PORT", &port.to_string()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = get(port, "/hello") {
            break status;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the quick-start exited"
        );
        assert!(Instant::now() < deadline, "the quick-start never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
}
