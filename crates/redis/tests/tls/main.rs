//! `rediss://` against real `redis-server --tls-port` processes started by the test kit, with
//! a CA and certificates generated for each test (rcgen): every connection mode, a wrong CA,
//! mutual TLS; and ACL users (`ACL SETUSER`) over plain TCP and TLS.
#![cfg(feature = "tls")]

mod acl;
mod cluster;
#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use tower_scale_redis::redis::{self, Script};
use tower_scale_redis::{ConnectionKind, Error, RedisBackend, RedisConfig};
use tower_scale_testkit::{RedisServer, TlsFiles};

use support::bounded;

const KINDS: [ConnectionKind; 2] = [ConnectionKind::Multiplexed, ConnectionKind::Pooled];

/// A config for `url` trusting `tls`'s CA. The timeouts are long, so that a hang would
/// show up as [`Error::Timeout`], never as the quick error a test expects.
fn config(url: String, tls: &TlsFiles, kind: ConnectionKind) -> RedisConfig {
    let mut config = RedisConfig::new(url);
    config.connection = kind;
    config.tls_ca_file = Some(tls.ca_file());
    config.connect_timeout = Duration::from_secs(10);
    config.command_timeout = Duration::from_secs(15);
    config.key_prefix = "t".to_owned();
    config
}

/// A `SET`, a `GET` and a script (`EVALSHA`, loaded on `NOSCRIPT`) on `backend`.
pub(crate) async fn round_trip(backend: &RedisBackend, name: &str) {
    let key = backend.keys().key("tls", name);
    bounded(backend.query::<()>(redis::cmd("SET").arg(&key).arg(name)))
        .await
        .unwrap();
    let got: Option<String> = bounded(backend.query(redis::cmd("GET").arg(&key)))
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(name));
    let script = Script::new("return redis.call('STRLEN', KEYS[1])");
    let mut invocation = script.prepare_invoke();
    invocation.key(&key);
    let len: usize = bounded(backend.invoke(&invocation)).await.unwrap();
    assert_eq!(len, name.len());
}

/// Whether `backend` answers a `PING` within 100 tries 50 ms apart (a bound against a hung
/// test, not a timing assertion).
async fn answers_again(backend: &RedisBackend) -> bool {
    for _ in 0..100 {
        if bounded(backend.ping()).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn standalone_over_tls_in_both_connection_kinds() {
    let tls = TlsFiles::generate();
    let server = RedisServer::start_tls(&tls, false);
    for kind in KINDS {
        let backend = RedisBackend::new(config(server.tls_url(), &tls, kind)).unwrap();
        round_trip(&backend, &format!("{kind:?}")).await;
        bounded(backend.ping()).await.unwrap();
        assert!(
            !server.tls_client_users().is_empty(),
            "{kind:?}: no client on the TLS port"
        );
    }
}

#[tokio::test]
async fn the_default_link_reconnects_over_tls_after_a_restart() {
    let tls = TlsFiles::generate();
    let mut server = RedisServer::start_tls(&tls, false);
    let backend =
        RedisBackend::new(config(server.tls_url(), &tls, ConnectionKind::Multiplexed)).unwrap();
    round_trip(&backend, "before").await;
    server.restart();
    // The command in flight at the restart may fail; the link then reopens by itself.
    assert!(
        answers_again(&backend).await,
        "the link never reconnected over TLS"
    );
    round_trip(&backend, "after").await;
}

/// The error of a command on a backend that cannot set up its connection: an error, never
/// a hang (the command timeout is 15 s: a hang would be `Error::Timeout`).
async fn setup_error(config: RedisConfig) -> Error {
    let backend = RedisBackend::new(config).unwrap();
    let err = bounded(backend.ping())
        .await
        .expect_err("the connection must fail");
    assert!(!err.is_timeout(), "a failed handshake hung: {err}");
    assert!(err.is_unavailable(), "{err}");
    err
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_with_a_clear_error() {
    let tls = TlsFiles::generate();
    let other = TlsFiles::generate();
    let server = RedisServer::start_tls(&tls, false);
    for kind in KINDS {
        let err = setup_error(config(server.tls_url(), &other, kind)).await;
        let text = err.to_string();
        assert!(
            text.contains("invalid peer certificate: UnknownIssuer"),
            "{kind:?}: {text}"
        );
    }
}

#[tokio::test]
async fn mutual_tls_works_with_the_client_certificate_and_fails_without() {
    let tls = TlsFiles::generate();
    let server = RedisServer::start_tls(&tls, true);
    for kind in KINDS {
        let mut with_cert = config(server.tls_url(), &tls, kind);
        with_cert.tls_cert_file = Some(tls.client_cert_file());
        with_cert.tls_key_file = Some(tls.client_key_file());
        let backend = RedisBackend::new(with_cert).unwrap();
        round_trip(&backend, &format!("mtls-{kind:?}")).await;

        let err = setup_error(config(server.tls_url(), &tls, kind)).await;
        let text = err.to_string();
        assert!(
            text.contains("fatal alert: CertificateRequired"),
            "{kind:?}: {text}"
        );
    }
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let tls = TlsFiles::generate();
    let other = TlsFiles::generate();
    let server = RedisServer::start_tls(&tls, true);
    for kind in KINDS {
        let mut config = config(server.tls_url(), &tls, kind);
        config.tls_cert_file = Some(other.client_cert_file());
        config.tls_key_file = Some(other.client_key_file());
        let text = setup_error(config).await.to_string();
        assert!(text.contains("fatal alert: UnknownCA"), "{kind:?}: {text}");
    }
}

#[tokio::test]
async fn a_paused_tls_server_times_out_and_is_used_again_once_resumed() {
    let tls = TlsFiles::generate();
    let server = RedisServer::start_tls(&tls, false);
    for kind in KINDS {
        let mut config = config(server.tls_url(), &tls, kind);
        config.command_timeout = Duration::from_secs(1);
        let backend = RedisBackend::new(config).unwrap();
        // Connected first (retried: a loaded machine may take longer than the timeout).
        assert!(answers_again(&backend).await, "{kind:?}: never connected");
        server.pause();
        let err = bounded(backend.ping()).await.unwrap_err();
        server.resume();
        assert!(err.is_timeout(), "{kind:?}: {err}");
        assert!(
            answers_again(&backend).await,
            "{kind:?}: never answered again after the pause"
        );
    }
}

/// Set in the child process of [`without_a_ca_file_the_systems_roots_are_trusted`]: the URL to
/// connect to.
const SYSTEM_ROOTS_CHILD: &str = "TOWER_SCALE_TEST_SYSTEM_ROOTS_URL";

/// Without `tls_ca_file` the system's roots are trusted (rustls-native-certs, in every mode).
/// The test runs itself again in a child process whose `SSL_CERT_FILE`, which
/// rustls-native-certs reads instead of the system's store, holds the test CA.
#[tokio::test]
async fn without_a_ca_file_the_systems_roots_are_trusted() {
    if let Ok(url) = std::env::var(SYSTEM_ROOTS_CHILD) {
        for kind in KINDS {
            let mut config = RedisConfig::new(url.as_str());
            config.connection = kind;
            config.command_timeout = Duration::from_secs(15);
            let backend = RedisBackend::new(config).unwrap();
            round_trip(&backend, &format!("roots-{kind:?}")).await;
        }
        println!("connected in every mode");
        return;
    }
    let tls = TlsFiles::generate();
    let server = RedisServer::start_tls(&tls, false);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "without_a_ca_file_the_systems_roots_are_trusted",
            "--nocapture",
        ])
        .env(SYSTEM_ROOTS_CHILD, server.tls_url())
        .env("SSL_CERT_FILE", tls.ca_file())
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("connected in every mode"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
