//! The Redis password appears in no `Debug` output, error or log line of the backend (issue
//! 21): a config's `Debug` output and the error of an invalid URL used to print the whole URL.
//! Connections fail for real: against a closed port, and against a real redis-server that
//! refuses the password.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tower_scale_redis::redis;
use tower_scale_redis::{ConnectionKind, RedisBackend, RedisConfig};
use tower_scale_testkit::RedisServer;

const PASSWORD: &str = "Xy7-redis-secret";

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Asserts that `text` does not hold the password.
fn assert_hidden(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "{what} shows the password: {text}"
    );
}

/// Every config the tests use, with the password in each URL: standalone (user and password,
/// password only), cluster with several seed nodes, and a Unix socket's `pass` parameter.
fn configs(port: u16) -> Vec<RedisConfig> {
    let mut configs = vec![
        RedisConfig::new(format!("redis://app:{PASSWORD}@127.0.0.1:{port}/0")),
        RedisConfig::new(format!("redis://:{PASSWORD}@127.0.0.1:{port}")),
        RedisConfig::new(format!(
            "redis+unix:///nonexistent/redis.sock?db=1&pass={PASSWORD}"
        )),
        RedisConfig::cluster([
            format!("redis://app:{PASSWORD}@127.0.0.1:{port}"),
            format!("redis://app:{PASSWORD}@127.0.0.1:{}", closed_port()),
            format!("redis://app:{PASSWORD}@127.0.0.1:{}", closed_port()),
        ]),
    ];
    let mut pooled: Vec<RedisConfig> = configs
        .iter()
        .cloned()
        .map(|mut c| {
            c.connection = ConnectionKind::Pooled;
            c
        })
        .collect();
    configs.append(&mut pooled);
    for c in &mut configs {
        c.command_timeout = Duration::from_millis(300);
        c.connect_timeout = Duration::from_millis(300);
    }
    configs
}

#[test]
fn a_configs_debug_output_hides_the_password() {
    for config in configs(6379) {
        let debug = format!("{config:?}");
        assert_hidden("Debug", &debug);
        assert_hidden("pretty Debug", &format!("{config:#?}"));
        assert!(
            debug.contains("127.0.0.1") || debug.contains("redis.sock"),
            "the address stays readable: {debug}"
        );
    }
    let from_env = RedisConfig::from_lookup(|name| {
        (name == "REDIS_URL").then(|| format!("redis://app:{PASSWORD}@10.0.0.5:6379"))
    })
    .unwrap()
    .unwrap();
    assert_hidden("Debug", &format!("{from_env:?}"));
}

#[test]
fn an_invalid_url_error_hides_the_password() {
    for url in [
        format!("redis://app:{PASSWORD}@127.0.0.1:notaport"),
        format!("redis://app:{PASSWORD}@"),
        format!("nope://app:{PASSWORD}@127.0.0.1"),
    ] {
        let err = RedisConfig::new(url.as_str()).validate().unwrap_err();
        assert_hidden("Display", &err.to_string());
        assert_hidden("Debug", &format!("{err:?}"));
        let err = RedisBackend::new(RedisConfig::new(url.as_str())).unwrap_err();
        assert_hidden("Display", &err.to_string());
        let err = RedisBackend::new(RedisConfig::cluster([
            "redis://127.0.0.1:7000".to_owned(),
            url.clone(),
        ]))
        .unwrap_err();
        assert_hidden("Display", &err.to_string());
        assert_hidden("Debug", &format!("{err:?}"));
    }
}

/// A `tracing` subscriber that writes every event, at every level, into a buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

/// Runs two commands on a backend built from `config` (the second after the reconnection
/// backoff, so that it reconnects), checks that they fail and that neither their errors nor
/// anything logged meanwhile shows the password.
async fn failures_hide_the_password(config: RedisConfig) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let what = format!("{config:?}");
    let backend = RedisBackend::new(config).unwrap();
    for _ in 0..2 {
        let err = backend
            .query::<String>(&redis::cmd("PING"))
            .await
            .expect_err("the connection fails");
        assert_hidden(&what, &err.to_string());
        assert_hidden(&what, &format!("{err:?}"));
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    drop(backend);
    let logged = captured.text();
    assert!(!logged.is_empty(), "nothing was logged for {what}");
    assert_hidden(&format!("the log of {what}"), &logged);
}

#[tokio::test]
async fn a_failed_connection_hides_the_password_in_errors_and_logs() {
    for config in configs(closed_port()) {
        failures_hide_the_password(config).await;
    }
}

#[tokio::test]
async fn a_refused_password_is_hidden_in_errors_and_logs() {
    let server = RedisServer::start();
    assert_eq!(
        server.cli(&["CONFIG", "SET", "requirepass", "another-password"]),
        "OK"
    );
    for mut config in configs(server.port()) {
        if config.url.starts_with("redis+unix") {
            continue;
        }
        config.nodes.clear();
        config.mode = tower_scale_redis::Mode::Standalone;
        failures_hide_the_password(config).await;
    }
}

mod properties {
    use proptest::prelude::*;
    use tower_scale_redis::redact_url;

    /// `s` percent-encoded (every byte but the unreserved ones), as a URL carries a password
    /// with special characters.
    fn percent_encoded(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Whatever the password, raw or percent-encoded, with a username or without, it is
        /// replaced whole and the rest of the URL is kept.
        #[test]
        fn a_password_in_the_user_info_is_always_hidden(
            password in any::<String>(), user in "[a-z]{0,6}", encode in any::<bool>(),
        ) {
            let password = if encode { percent_encoded(&password) } else { password };
            let url = format!("redis://{user}:{password}@10.0.0.5:6379/2");
            prop_assert_eq!(
                redact_url(&url),
                format!("redis://{user}:***@10.0.0.5:6379/2")
            );
        }

        /// A percent-encoded password in a `pass` query parameter (a Unix socket URL) is
        /// replaced whole.
        #[test]
        fn a_password_in_the_query_is_always_hidden(password in any::<String>()) {
            let url = format!(
                "redis+unix:///run/redis.sock?db=1&pass={}&x=y",
                percent_encoded(&password)
            );
            prop_assert_eq!(
                redact_url(&url),
                "redis+unix:///run/redis.sock?db=1&pass=***&x=y"
            );
        }

        /// A URL without a password comes back unchanged.
        #[test]
        fn a_url_without_a_password_is_unchanged(
            user in "[a-z]{0,6}", host in "[a-z0-9.]{1,12}", port in any::<u16>(), db in 0u8..16,
        ) {
            for url in [
                format!("redis://{host}:{port}/{db}"),
                format!("redis://{user}@{host}:{port}/{db}"),
                format!("redis+unix:///run/{host}.sock?db={db}"),
            ] {
                prop_assert_eq!(redact_url(&url), url.as_str());
            }
        }
    }
}
