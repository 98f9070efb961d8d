use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use redis::IntoConnectionInfo;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::redact::{RedactedUrls, redact_url};
use crate::tls::{Tls, client_for};

/// How the backend reaches Redis: one server, or a Redis Cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One Redis server (or a primary behind a stable address).
    #[default]
    Standalone,
    /// A Redis Cluster: `url` and `nodes` are seed nodes, commands are routed by key slot.
    Cluster,
}

/// How commands share connections.
///
/// See the [performance tables](https://github.com/tower-scale/tower-scale/blob/main/docs/performance.md) for the measurement behind the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// `pool_size` multiplexed connections (redis-rs `MultiplexedConnection`s that the
    /// backend reopens itself, watched for hangs, over TCP or TLS; `ConnectionManager` for
    /// Unix-socket URLs; the cluster client in cluster mode), shared by all requests round-robin:
    /// commands of concurrent requests are pipelined on the same socket. Reconnects by itself. The default: it was the faster one at 64
    /// concurrent requests.
    #[default]
    Multiplexed,
    /// A deadpool-redis pool of up to `pool_size` connections; a request holds one connection
    /// for the duration of its command.
    Pooled,
}

/// Configuration of the shared Redis backend.
///
/// Every field has a default, so a config file only names what it changes. Durations are
/// written as humantime strings (`"250ms"`, `"2s"`).
///
/// Its `Debug` output, and every error and log line of the backend, show the URLs with their
/// password replaced by `***` (see [`redact_url`](crate::redact_url)).
///
/// ```
/// use tower_scale_redis::{Mode, RedisConfig};
///
/// let config: RedisConfig = serde_json::from_str(r#"{
///     "url": "redis://127.0.0.1:6380",
///     "command_timeout": "100ms",
///     "key_prefix": "shop"
/// }"#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.mode, Mode::Standalone);
/// assert_eq!(config.command_timeout.as_millis(), 100);
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Redis URL: `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS
    /// (feature `tls`, on by default). In cluster mode, the first seed node; every seed uses
    /// the same scheme and credentials. `user` is an ACL user (`ACL SETUSER`); without it,
    /// the password is the `default` user's (`requirepass`). A password with `@`, `/`, `:` or
    /// `%` is percent-encoded. Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// Standalone server or Redis Cluster. Default standalone.
    pub mode: Mode,
    /// Further cluster seed nodes (cluster mode only).
    pub nodes: Vec<String>,
    /// Multiplexed connections or a pool. Default multiplexed.
    pub connection: ConnectionKind,
    /// Number of connections: the pool's maximum, or the number of multiplexed connections.
    /// Default 1 multiplexed connection, 16 pooled ones when `connection = "pooled"` is
    /// chosen without a size. 1..=1024.
    pub pool_size: Option<usize>,
    /// How long establishing a connection may take. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long one command (including waiting for a connection) may wait for Redis before
    /// it fails with [`Error::Timeout`]. Default 500 ms.
    ///
    /// In the default mode (standalone, multiplexed, over TCP) the watchdog of a connection
    /// checks it every tenth of it: a command whose reply is not complete within
    /// `command_timeout` (after at least nine tenths of it) closes the connection and fails,
    /// with every command waiting on it, however many bytes arrived meanwhile (see
    /// [`RedisBackend`](crate::RedisBackend)). In the other modes it is a timer on each
    /// command.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Prefix of every key written by tower-scale (`<prefix>:<concern>:<key>`). Default `ts`.
    pub key_prefix: String,
    /// Whether a circuit breaker guards the backend (default `true`): once Redis is found
    /// down or hung, commands fail at once with [`Error::CircuitOpen`] instead of each waiting
    /// for a timeout, and probes find out when it is back.
    #[cfg(feature = "breaker")]
    pub breaker_enabled: bool,
    /// The breaker's settings. Default: window of the last 20 commands, open at 50% failed
    /// (timeouts and connection errors; Redis error replies are successes) after 10 commands,
    /// open 500 ms (not growing: Redis is tried again within 500 ms of coming back, however
    /// long it was away), 3 probes in half-open.
    #[cfg(feature = "breaker")]
    pub breaker: tower_scale_breaker::BreakerConfig,
    /// PEM file of the CA certificate(s) that signed the server's certificate, for
    /// `rediss://` URLs. When set, only these are trusted; when not, the system's root
    /// certificates are (read with rustls-native-certs: `/etc/ssl/certs` and friends, or
    /// `SSL_CERT_FILE`/`SSL_CERT_DIR`). Default none.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (and its chain) presented to a server that
    /// requires one (mutual TLS, `tls-auth-clients yes`); needs `tls_key_file`. Default none.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the private key of `tls_cert_file` (PKCS#8, PKCS#1 or SEC1). Default none.
    pub tls_key_file: Option<PathBuf>,
}

/// Every field, the URLs with their password hidden.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured, so that a new field cannot be left out of the output unnoticed.
        let Self {
            url,
            mode,
            nodes,
            connection,
            pool_size,
            connect_timeout,
            command_timeout,
            key_prefix,
            #[cfg(feature = "breaker")]
            breaker_enabled,
            #[cfg(feature = "breaker")]
            breaker,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
        } = self;
        let mut out = f.debug_struct("RedisConfig");
        out.field("url", &redact_url(url))
            .field("mode", mode)
            .field("nodes", &RedactedUrls(nodes))
            .field("connection", connection)
            .field("pool_size", pool_size)
            .field("connect_timeout", connect_timeout)
            .field("command_timeout", command_timeout)
            .field("key_prefix", key_prefix);
        #[cfg(feature = "breaker")]
        out.field("breaker_enabled", breaker_enabled)
            .field("breaker", breaker);
        out.field("tls_ca_file", tls_ca_file)
            .field("tls_cert_file", tls_cert_file)
            .field("tls_key_file", tls_key_file);
        out.finish()
    }
}

/// The default breaker settings of the backend.
#[cfg(feature = "breaker")]
pub(crate) fn default_breaker_config() -> tower_scale_breaker::BreakerConfig {
    let mut config = tower_scale_breaker::BreakerConfig::default();
    config.sliding_window = tower_scale_breaker::SlidingWindow::Count { size: 20 };
    config.minimum_calls = 10;
    config.failure_rate_threshold = 50.0;
    // Fixed and short: while Redis is away only the probes wait (3 per second at most, each
    // for the command timeout at most), and once it is back it is tried within 500 ms,
    // however long it was away.
    config.wait_in_open = Duration::from_millis(500);
    config.wait_multiplier = 1.0;
    config.max_wait_in_open = Duration::from_millis(500);
    config.permitted_calls_in_half_open = 3;
    config.max_wait_in_half_open = Duration::from_secs(10);
    config
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            mode: Mode::Standalone,
            nodes: Vec::new(),
            connection: ConnectionKind::Multiplexed,
            pool_size: None,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(500),
            key_prefix: "ts".to_owned(),
            #[cfg(feature = "breaker")]
            breaker_enabled: true,
            #[cfg(feature = "breaker")]
            breaker: default_breaker_config(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// Environment variables read by [`RedisConfig::from_env`].
const ENV_VARS: &str = "REDIS_URL, REDIS_MODE, REDIS_NODES, REDIS_CONNECTION, REDIS_POOL_SIZE, \
                        REDIS_CONNECT_TIMEOUT, REDIS_COMMAND_TIMEOUT, REDIS_KEY_PREFIX, \
                        REDIS_TLS_CA_FILE, REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE";

impl RedisConfig {
    /// A default config for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// A cluster config from seed node URLs.
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut nodes = nodes.into_iter().map(Into::into);
        let url = nodes.next().unwrap_or_default();
        Self {
            url,
            mode: Mode::Cluster,
            nodes: nodes.collect(),
            ..Self::default()
        }
    }

    /// Reads the config from the environment, falling back to the defaults.
    ///
    /// | variable | field | example |
    /// |---|---|---|
    /// | `REDIS_URL` | `url` (in cluster mode a comma-separated list of seed nodes is accepted) | `redis://10.0.0.5:6379` |
    /// | `REDIS_MODE` | `mode` | `standalone`, `cluster` |
    /// | `REDIS_NODES` | `nodes`, comma-separated | `redis://a:7000,redis://b:7000` |
    /// | `REDIS_CONNECTION` | `connection` | `multiplexed`, `pooled` |
    /// | `REDIS_POOL_SIZE` | `pool_size` | `8` |
    /// | `REDIS_CONNECT_TIMEOUT` | `connect_timeout` | `1s` |
    /// | `REDIS_COMMAND_TIMEOUT` | `command_timeout` | `250ms` |
    /// | `REDIS_KEY_PREFIX` | `key_prefix` | `shop` |
    /// | `REDIS_TLS_CA_FILE` | `tls_ca_file` | `/etc/redis/ca.crt` |
    /// | `REDIS_TLS_CERT_FILE` | `tls_cert_file` | `/etc/redis/client.crt` |
    /// | `REDIS_TLS_KEY_FILE` | `tls_key_file` | `/etc/redis/client.key` |
    ///
    /// Returns `Ok(None)` when `REDIS_URL` is not set (use the in-memory backends then), and
    /// an error naming the variable when a value does not parse or the result is invalid.
    pub fn from_env() -> Result<Option<Self>, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`RedisConfig::from_env`], with the variables looked up by `lookup` (for tests and
    /// for other sources of settings).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, Error> {
        let Some(url) = lookup("REDIS_URL").filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let mut config = Self::default();
        let bad = |var: &str, value: &str, why: &dyn std::fmt::Display| {
            Error::Config(format!(
                "{var}={value:?}: {why} (variables read: {ENV_VARS})"
            ))
        };
        if let Some(mode) = lookup("REDIS_MODE") {
            config.mode = match mode.trim() {
                "standalone" => Mode::Standalone,
                "cluster" => Mode::Cluster,
                _ => return Err(bad("REDIS_MODE", &mode, &"expected standalone or cluster")),
            };
        }
        let mut urls = split_list(&url);
        config.url = urls.next().unwrap_or_default();
        config.nodes = urls.collect();
        if let Some(nodes) = lookup("REDIS_NODES") {
            config.nodes.extend(split_list(&nodes));
        }
        if let Some(kind) = lookup("REDIS_CONNECTION") {
            config.connection = match kind.trim() {
                "multiplexed" => ConnectionKind::Multiplexed,
                "pooled" => ConnectionKind::Pooled,
                _ => {
                    return Err(bad(
                        "REDIS_CONNECTION",
                        &kind,
                        &"expected multiplexed or pooled",
                    ));
                }
            };
        }
        if let Some(size) = lookup("REDIS_POOL_SIZE") {
            let n = size
                .trim()
                .parse()
                .map_err(|e| bad("REDIS_POOL_SIZE", &size, &e))?;
            config.pool_size = Some(n);
        }
        for (var, field) in [
            ("REDIS_CONNECT_TIMEOUT", &mut config.connect_timeout),
            ("REDIS_COMMAND_TIMEOUT", &mut config.command_timeout),
        ] {
            if let Some(value) = lookup(var) {
                *field = humantime_serde::re::humantime::parse_duration(value.trim())
                    .map_err(|e| bad(var, &value, &e))?;
            }
        }
        if let Some(prefix) = lookup("REDIS_KEY_PREFIX") {
            config.key_prefix = prefix;
        }
        for (var, field) in [
            ("REDIS_TLS_CA_FILE", &mut config.tls_ca_file),
            ("REDIS_TLS_CERT_FILE", &mut config.tls_cert_file),
            ("REDIS_TLS_KEY_FILE", &mut config.tls_key_file),
        ] {
            if let Some(path) = lookup(var).filter(|p| !p.trim().is_empty()) {
                *field = Some(PathBuf::from(path.trim()));
            }
        }
        config.validate()?;
        Ok(Some(config))
    }

    /// The number of connections this config opens at most.
    pub fn effective_pool_size(&self) -> usize {
        self.pool_size.unwrap_or(match self.connection {
            ConnectionKind::Multiplexed => 1,
            ConnectionKind::Pooled => 16,
        })
    }

    /// Checks every field; the error names the field and the problem. The TLS files are
    /// read and checked to hold PEM certificates and a key.
    pub fn validate(&self) -> Result<(), Error> {
        let err = |msg: String| Err(Error::Config(msg));
        check_url("url", &self.url)?;
        match self.mode {
            Mode::Standalone if !self.nodes.is_empty() => {
                return err(format!(
                    "nodes: {} extra node(s) given but mode is standalone; set mode = \"cluster\" or remove them",
                    self.nodes.len()
                ));
            }
            _ => {}
        }
        for (i, node) in self.nodes.iter().enumerate() {
            check_url(&format!("nodes[{i}]"), node)?;
        }
        if let Some(size) = self.pool_size
            && !(1..=1024).contains(&size)
        {
            return err(format!("pool_size: {size} is out of range 1..=1024"));
        }
        if self.connect_timeout.is_zero() {
            return err("connect_timeout: must be greater than zero".to_owned());
        }
        if self.command_timeout.is_zero() {
            return err("command_timeout: must be greater than zero".to_owned());
        }
        #[cfg(feature = "breaker")]
        self.breaker
            .validate()
            .map_err(|e| Error::Config(format!("breaker: {e}")))?;
        if self.key_prefix.is_empty() {
            return err("key_prefix: must not be empty".to_owned());
        }
        if let Some(c) = self
            .key_prefix
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '{' | '}'))
        {
            return err(format!(
                "key_prefix: {:?} contains {c:?}; whitespace, control characters and hash-tag braces are not allowed",
                self.key_prefix
            ));
        }
        if let Some(tls) = Tls::load(self)?
            && self.mode == Mode::Cluster
            && self.connection == ConnectionKind::Pooled
            && tls.has_files()
        {
            return err(format!(
                "connection: {:?} in cluster mode cannot use tls_ca_file or tls_cert_file \
                 (deadpool-redis's cluster pool takes no certificates); use {:?}",
                "pooled", "multiplexed"
            ));
        }
        Ok(())
    }

    /// A redis-rs client for `url` with this config's TLS settings (CA and client
    /// certificate files, for a `rediss://` URL), for connections the backend does not make
    /// itself (the pub/sub subscriber, for one). The TLS files are read here.
    pub fn client(&self, url: &str) -> Result<redis::Client, Error> {
        let tls = Tls::load(self)?;
        client_for(tls.as_ref(), url)
    }

    /// Every seed URL: `url` then `nodes`.
    pub(crate) fn all_urls(&self) -> Vec<String> {
        std::iter::once(self.url.clone())
            .chain(self.nodes.iter().cloned())
            .collect()
    }
}

fn split_list(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn check_url(field: &str, url: &str) -> Result<(), Error> {
    if url.trim().is_empty() {
        return Err(Error::Config(format!("{field}: the Redis URL is empty")));
    }
    if !cfg!(feature = "tls") && crate::tls::is_tls_url(url) {
        return Err(Error::Config(format!(
            "{field}: rediss:// needs the `tls` feature of tower-scale-redis, which this build does not enable"
        )));
    }
    url.into_connection_info().map(drop).map_err(|e| {
        Error::Config(format!(
            "{field}: {:?} is not a valid Redis URL: {e}",
            redact_url(url)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_are_valid() {
        RedisConfig::default().validate().unwrap();
        assert_eq!(RedisConfig::default().effective_pool_size(), 1);
    }

    #[test]
    fn no_redis_url_means_none() {
        assert_eq!(RedisConfig::from_lookup(env(&[])).unwrap(), None);
        assert_eq!(
            RedisConfig::from_lookup(env(&[("REDIS_URL", " ")])).unwrap(),
            None
        );
    }

    #[test]
    fn env_is_read() {
        let c = RedisConfig::from_lookup(env(&[
            (
                "REDIS_URL",
                "redis://127.0.0.1:7000, redis://127.0.0.1:7001",
            ),
            ("REDIS_MODE", "cluster"),
            ("REDIS_NODES", "redis://127.0.0.1:7002"),
            ("REDIS_CONNECTION", "pooled"),
            ("REDIS_POOL_SIZE", "8"),
            ("REDIS_COMMAND_TIMEOUT", "75ms"),
            ("REDIS_CONNECT_TIMEOUT", "2s"),
            ("REDIS_KEY_PREFIX", "shop"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.mode, Mode::Cluster);
        assert_eq!(c.url, "redis://127.0.0.1:7000");
        assert_eq!(
            c.nodes,
            ["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]
        );
        assert_eq!(c.connection, ConnectionKind::Pooled);
        assert_eq!(c.effective_pool_size(), 8);
        assert_eq!(c.command_timeout, Duration::from_millis(75));
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.key_prefix, "shop");
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        for (vars, needle) in [
            (
                &[("REDIS_URL", "redis://x"), ("REDIS_MODE", "sharded")][..],
                "REDIS_MODE",
            ),
            (
                &[("REDIS_URL", "redis://x"), ("REDIS_POOL_SIZE", "many")][..],
                "REDIS_POOL_SIZE",
            ),
            (
                &[
                    ("REDIS_URL", "redis://x"),
                    ("REDIS_COMMAND_TIMEOUT", "soon"),
                ][..],
                "REDIS_COMMAND_TIMEOUT",
            ),
            (
                &[("REDIS_URL", "redis://x"), ("REDIS_CONNECTION", "pipe")][..],
                "REDIS_CONNECTION",
            ),
            (&[("REDIS_URL", "http://x")][..], "url"),
        ] {
            let err = RedisConfig::from_lookup(env(vars)).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should name {needle}");
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases: Vec<(RedisConfig, &str)> = vec![
            (RedisConfig::new("localhost:6379:extra"), "url"),
            (RedisConfig::new("ftp://127.0.0.1"), "url"),
            (RedisConfig::new(""), "url: the Redis URL is empty"),
            (
                RedisConfig {
                    pool_size: Some(0),
                    ..RedisConfig::default()
                },
                "pool_size",
            ),
            (
                RedisConfig {
                    command_timeout: Duration::ZERO,
                    ..RedisConfig::default()
                },
                "command_timeout",
            ),
            (
                RedisConfig {
                    connect_timeout: Duration::ZERO,
                    ..RedisConfig::default()
                },
                "connect_timeout",
            ),
            (
                RedisConfig {
                    key_prefix: "a{b}".to_owned(),
                    ..RedisConfig::default()
                },
                "key_prefix",
            ),
            (
                RedisConfig {
                    key_prefix: String::new(),
                    ..RedisConfig::default()
                },
                "key_prefix",
            ),
            (
                RedisConfig {
                    nodes: vec!["redis://127.0.0.1:7001".to_owned()],
                    ..RedisConfig::default()
                },
                "nodes",
            ),
            (
                RedisConfig::cluster(["redis://127.0.0.1:7000", "nope://x"]),
                "nodes[0]",
            ),
        ];
        for (config, needle) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        }
    }

    /// A temporary file holding `contents`, and the directory that keeps it alive.
    #[cfg(feature = "tls")]
    fn file(contents: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file.pem");
        std::fs::write(&path, contents).unwrap();
        (dir, path)
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_env_variables_are_read() {
        let c = RedisConfig::from_lookup(env(&[
            ("REDIS_URL", "rediss://127.0.0.1:6380"),
            ("REDIS_TLS_CA_FILE", "/nonexistent/ca.crt"),
        ]));
        // The file is read when the config is checked: a missing one is named.
        let err = c.unwrap_err().to_string();
        assert!(
            err.contains("tls_ca_file: /nonexistent/ca.crt: cannot read it"),
            "{err}"
        );
        let seen = std::cell::RefCell::new(Vec::new());
        let _ = RedisConfig::from_lookup(|name| {
            seen.borrow_mut().push(name.to_owned());
            (name == "REDIS_URL").then(|| "rediss://127.0.0.1:6380".to_owned())
        });
        for var in [
            "REDIS_TLS_CA_FILE",
            "REDIS_TLS_CERT_FILE",
            "REDIS_TLS_KEY_FILE",
        ] {
            assert!(seen.borrow().iter().any(|s| s == var), "{var} is not read");
            assert!(ENV_VARS.contains(var), "{var} is not listed");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn invalid_tls_settings_are_named() {
        let (_dir, not_pem) = file("not a certificate");
        let (_dir2, garbled) =
            file("-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n");
        let tls =
            |url: &str, ca: Option<&PathBuf>, cert: Option<&PathBuf>, key: Option<&PathBuf>| {
                let mut c = RedisConfig::new(url);
                c.tls_ca_file = ca.cloned();
                c.tls_cert_file = cert.cloned();
                c.tls_key_file = key.cloned();
                c
            };
        let missing = PathBuf::from("/nonexistent/ca.crt");
        let cases: Vec<(RedisConfig, &str)> = vec![
            (
                tls("rediss://127.0.0.1", Some(&missing), None, None),
                "tls_ca_file: /nonexistent/ca.crt: cannot read it: No such file",
            ),
            (
                tls("rediss://127.0.0.1", Some(&not_pem), None, None),
                "tls_ca_file: ",
            ),
            (
                tls("rediss://127.0.0.1", Some(&not_pem), None, None),
                "holds no PEM certificate",
            ),
            (
                tls("rediss://127.0.0.1", Some(&garbled), None, None),
                "not a valid PEM certificate file",
            ),
            (
                tls("rediss://127.0.0.1", None, Some(&not_pem), None),
                "tls_key_file: missing",
            ),
            (
                tls("rediss://127.0.0.1", None, None, Some(&not_pem)),
                "tls_cert_file: missing",
            ),
            (
                tls("rediss://127.0.0.1", None, Some(&garbled), Some(&not_pem)),
                "tls_cert_file: ",
            ),
            (
                tls("redis://127.0.0.1", Some(&missing), None, None),
                "tls_ca_file: set, but the URL is not rediss://",
            ),
            (
                tls("rediss://127.0.0.1#insecure", None, None, None),
                "certificate checks cannot be turned off",
            ),
            (
                RedisConfig::cluster(["rediss://127.0.0.1:7000", "redis://127.0.0.1:7001"]),
                "some URLs are rediss://",
            ),
        ];
        for (config, needle) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn a_key_file_error_does_not_show_the_file() {
        let (_dir, key) = file(
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n",
        );
        let (_dir2, cert) = file("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
        let mut c = RedisConfig::new("rediss://127.0.0.1");
        c.tls_cert_file = Some(cert);
        c.tls_key_file = Some(key);
        // Both files are PEM; building the links' TLS finds out that they are no certificate
        // and key, and says so without the key's bytes.
        c.validate().unwrap();
        let err = crate::RedisBackend::new(c).unwrap_err().to_string();
        assert!(err.contains("tls_cert_file, tls_key_file"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn rediss_without_the_tls_feature_names_it() {
        let err = RedisConfig::new("rediss://127.0.0.1")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("the `tls` feature"), "{err}");
    }

    #[test]
    fn serde_rejects_unknown_fields_and_reads_toml() {
        let err = serde_json::from_str::<RedisConfig>(r#"{"ulr": "redis://x"}"#).unwrap_err();
        assert!(err.to_string().contains("ulr"), "{err}");
        let c: RedisConfig = toml::from_str(
            "mode = \"cluster\"\nurl = \"redis://127.0.0.1:7000\"\nnodes = [\"redis://127.0.0.1:7001\"]\nconnect_timeout = \"3s\"",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.mode, Mode::Cluster);
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
    }
}
