use std::fmt;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use tower_scale_core::ConfigError;

/// The cookie's `SameSite` attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Sent on same-site requests and top-level navigations (the default).
    #[default]
    Lax,
    /// Sent on every request; browsers require `Secure` with it.
    None,
}

/// Browsers cap a cookie's lifetime at 400 days; a longer TTL would make `Max-Age` and the
/// server-side TTL disagree.
const MAX_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

/// Session settings, all with defaults; deserializable (e.g. from TOML, durations written
/// like `"30m"` or `"7days"`).
///
/// ```
/// use tower_scale_session::SessionConfig;
///
/// let config: SessionConfig = serde_json::from_str(r#"{
///     "cookie_name": "app_session",
///     "ttl": "7days",
///     "touch_after": "5m",
///     "signing_keys": ["a secret of at least thirty-two bytes, shared by all instances"]
/// }"#).unwrap();
/// assert!(config.secure);
/// config.validate().unwrap();
/// ```
///
/// Outside this crate, build one with `SessionConfig::default()` and field assignment, or
/// use the setters of [`SessionManagerLayer`](crate::SessionManagerLayer).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Cookie name. Default `sid`.
    pub cookie_name: String,
    /// Session lifetime since its last write or refresh; the cookie's `Max-Age` is the same.
    /// Whole seconds, from 1 s to 400 days. Default 24 h.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Sliding expiry: a session read at least this long after its last write or refresh gets
    /// its TTL refreshed (one `EXPIRE`-like write, no data rewritten); more often, nothing is
    /// written. Must be shorter than `ttl`. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub touch_after: Duration,
    /// The cookie's `Secure` attribute. Default `true`; turn it off only for local
    /// development over plain HTTP.
    pub secure: bool,
    /// The cookie's `SameSite` attribute. Default `lax`.
    pub same_site: SameSite,
    /// The cookie's `Path`. Default `/`.
    pub path: String,
    /// The cookie's `Domain`; none by default (host-only cookie).
    pub domain: Option<String>,
    /// Secrets for signing the cookie (HMAC-SHA256, keys derived from each secret): the first
    /// signs, all verify, so a key can be rotated by putting the new one first. Each at least
    /// 32 bytes. Empty (the default): unsigned cookies, the id's 128 random bits being the
    /// only protection. With keys, a forged id is rejected before any store call. Keys need
    /// the `signed` feature (on by default); without it they are refused.
    pub signing_keys: Vec<String>,
    /// Status of the response a handler gets from `?` on a failed session read (the store
    /// is down, slow or answered garbage). Default 503.
    pub load_error_status: u16,
    /// Status sent instead of the handler's response when the session write fails (the
    /// client must not believe a change was kept). Default 503.
    pub save_error_status: u16,
    /// Absolute session lifetime (OWASP's absolute timeout): a session ends this long after
    /// it was created, whatever its activity; neither reads (sliding expiry) nor writes extend
    /// it past that. Fixed when the session is created, and kept across
    /// [`cycle_id`](crate::Session::cycle_id). At least 1 s. Default none: a session lives
    /// as long as it is used at least once per `ttl`.
    #[serde(with = "humantime_serde")]
    pub absolute_timeout: Option<Duration>,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("cookie_name", &self.cookie_name)
            .field("ttl", &self.ttl)
            .field("touch_after", &self.touch_after)
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field(
                "signing_keys",
                &format_args!("[{} redacted]", self.signing_keys.len()),
            )
            .field("load_error_status", &self.load_error_status)
            .field("save_error_status", &self.save_error_status)
            .field("absolute_timeout", &self.absolute_timeout)
            .finish()
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: "sid".to_owned(),
            ttl: Duration::from_secs(24 * 3600),
            touch_after: Duration::from_secs(60),
            secure: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            signing_keys: Vec::new(),
            load_error_status: 503,
            save_error_status: 503,
            absolute_timeout: None,
        }
    }
}

/// Settings of the Redis store's local copy of recently read sessions
/// ([`RedisStore::local_copy`](crate::RedisStore::local_copy), feature `redis`), all with
/// defaults; deserializable, durations written like `"5m"`.
///
/// A session read on this instance is kept in memory and served from there, without a Redis
/// round trip, until Redis reports that any instance changed or deleted it (server-assisted
/// client-side caching: RESP3 `CLIENT TRACKING` in broadcast mode, one connection per
/// master). While that connection is down, every read goes to Redis.
///
/// ```
/// use tower_scale_session::LocalCopyConfig;
///
/// let config: LocalCopyConfig =
///     serde_json::from_str(r#"{ "max_sessions": 50000, "max_age": "1m" }"#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.heartbeat.as_secs(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LocalCopyConfig {
    /// How many sessions are kept (least recently used dropped first). 1 to 100,000,000;
    /// default 100,000.
    pub max_sessions: u64,
    /// How long a copy may be served after it was read from Redis (a bound on memory held
    /// by idle sessions; invalidations do not depend on it). At least 1 s; default 5 min.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How often each tracking connection is checked with a `PING`; one that has not
    /// answered the previous `PING` by the next counts as down (local copies dropped, reads
    /// go to Redis). This bounds how long a connection that silently stopped delivering
    /// (a network partition, not a closed connection) can go unnoticed. From 10 ms to 1 min;
    /// default 1 s.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
}

impl Default for LocalCopyConfig {
    fn default() -> Self {
        Self {
            max_sessions: 100_000,
            max_age: Duration::from_secs(300),
            heartbeat: Duration::from_secs(1),
        }
    }
}

impl LocalCopyConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000_000).contains(&self.max_sessions) {
            return Err(ConfigError::new(
                "max_sessions",
                format_args!("{}: from 1 to 100000000", self.max_sessions),
            ));
        }
        if self.max_age < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "max_age",
                format_args!("{:?}: at least 1s", self.max_age),
            ));
        }
        if self.heartbeat < Duration::from_millis(10) || self.heartbeat > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "heartbeat",
                format_args!("{:?}: from 10ms to 1min", self.heartbeat),
            ));
        }
        Ok(())
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_attribute_value(s: &str) -> bool {
    s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b';')
}

/// Checks an absolute session lifetime: at least a second.
pub(crate) fn validate_absolute_timeout(timeout: Duration) -> Result<(), ConfigError> {
    if timeout < Duration::from_secs(1) {
        return Err(ConfigError::new(
            "absolute_timeout",
            format_args!("{timeout:?}: at least 1s"),
        ));
    }
    Ok(())
}

/// Checks an error status: a 4xx or 5xx.
pub(crate) fn validate_status(field: &'static str, status: u16) -> Result<StatusCode, ConfigError> {
    match StatusCode::from_u16(status) {
        Ok(s) if s.is_client_error() || s.is_server_error() => Ok(s),
        _ => Err(ConfigError::new(
            field,
            format_args!("{status}: must be a 4xx or 5xx status"),
        )),
    }
}

impl SessionConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_token(&self.cookie_name) || self.cookie_name.len() > 64 {
            return Err(ConfigError::new(
                "cookie_name",
                format_args!(
                    "{:?}: 1 to 64 characters of an HTTP token (letters, digits, !#$%&'*+-.^_`|~)",
                    self.cookie_name
                ),
            ));
        }
        if self.ttl < Duration::from_secs(1) || self.ttl > MAX_TTL || self.ttl.subsec_nanos() != 0 {
            return Err(ConfigError::new(
                "ttl",
                format_args!("{:?}: whole seconds from 1s to 400 days", self.ttl),
            ));
        }
        if self.touch_after >= self.ttl {
            return Err(ConfigError::new(
                "touch_after",
                format_args!(
                    "{:?} must be shorter than ttl {:?}",
                    self.touch_after, self.ttl
                ),
            ));
        }
        if !self.path.starts_with('/') || !is_attribute_value(&self.path) {
            return Err(ConfigError::new(
                "path",
                format_args!(
                    "{:?}: must start with '/' and hold no spaces, ';' or control characters",
                    self.path
                ),
            ));
        }
        if let Some(domain) = &self.domain
            && (domain.is_empty() || !is_attribute_value(domain))
        {
            return Err(ConfigError::new(
                "domain",
                format_args!("{domain:?}: not a valid cookie domain"),
            ));
        }
        #[cfg(not(feature = "signed"))]
        if !self.signing_keys.is_empty() {
            return Err(ConfigError::new(
                "signing_keys",
                "signed cookies need the `signed` feature of tower-scale-session",
            ));
        }
        for (i, key) in self.signing_keys.iter().enumerate() {
            if key.len() < 32 {
                return Err(ConfigError::new(
                    format!("signing_keys[{i}]"),
                    format_args!("{} bytes; a signing secret needs at least 32", key.len()),
                ));
            }
        }
        validate_status("load_error_status", self.load_error_status)?;
        validate_status("save_error_status", self.save_error_status)?;
        if let Some(timeout) = self.absolute_timeout {
            validate_absolute_timeout(timeout)?;
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::new(
                "same_site",
                "none requires secure (browsers reject it otherwise)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_safe() {
        let c = SessionConfig::default();
        c.validate().unwrap();
        assert!(c.secure);
        assert_eq!(c.same_site, SameSite::Lax);
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases: Vec<(SessionConfig, &str)> = vec![
            (
                SessionConfig {
                    cookie_name: "a b".into(),
                    ..Default::default()
                },
                "cookie_name",
            ),
            (
                SessionConfig {
                    cookie_name: String::new(),
                    ..Default::default()
                },
                "cookie_name",
            ),
            (
                SessionConfig {
                    ttl: Duration::from_millis(1500),
                    ..Default::default()
                },
                "ttl",
            ),
            (
                SessionConfig {
                    ttl: Duration::ZERO,
                    ..Default::default()
                },
                "ttl",
            ),
            (
                SessionConfig {
                    ttl: Duration::from_secs(401 * 24 * 3600),
                    ..Default::default()
                },
                "ttl",
            ),
            (
                SessionConfig {
                    touch_after: Duration::from_secs(24 * 3600),
                    ..Default::default()
                },
                "touch_after",
            ),
            (
                SessionConfig {
                    path: "x".into(),
                    ..Default::default()
                },
                "path",
            ),
            (
                SessionConfig {
                    path: "/a;b".into(),
                    ..Default::default()
                },
                "path",
            ),
            (
                SessionConfig {
                    domain: Some("a b".into()),
                    ..Default::default()
                },
                "domain",
            ),
            #[cfg(feature = "signed")]
            (
                SessionConfig {
                    signing_keys: vec!["short".into()],
                    ..Default::default()
                },
                "signing_keys[0]",
            ),
            (
                SessionConfig {
                    load_error_status: 200,
                    ..Default::default()
                },
                "load_error_status",
            ),
            (
                SessionConfig {
                    save_error_status: 42,
                    ..Default::default()
                },
                "save_error_status",
            ),
            (
                SessionConfig {
                    same_site: SameSite::None,
                    secure: false,
                    ..Default::default()
                },
                "same_site",
            ),
        ];
        for (config, field) in cases {
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e} should name {field}");
        }
    }

    #[cfg(not(feature = "signed"))]
    #[test]
    fn signing_keys_need_the_signed_feature() {
        let e = SessionConfig {
            signing_keys: vec!["x".repeat(40)],
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field(), "signing_keys");
        assert!(e.to_string().contains("`signed` feature"), "{e}");
    }

    #[test]
    fn local_copy_settings_are_checked() {
        LocalCopyConfig::default().validate().unwrap();
        let bad = [
            ("max_sessions", r#"{"max_sessions":0}"#),
            ("max_age", r#"{"max_age":"10ms"}"#),
            ("heartbeat", r#"{"heartbeat":"1ms"}"#),
            ("heartbeat", r#"{"heartbeat":"2min"}"#),
        ];
        for (field, json) in bad {
            let config: LocalCopyConfig = serde_json::from_str(json).unwrap();
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e} should name {field}");
        }
        assert!(serde_json::from_str::<LocalCopyConfig>(r#"{"size":1}"#).is_err());
    }

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_fields() {
        let c: SessionConfig =
            serde_json::from_str(r#"{"ttl":"1h","same_site":"strict"}"#).unwrap();
        assert_eq!(c.ttl, Duration::from_secs(3600));
        assert_eq!(c.same_site, SameSite::Strict);
        assert_eq!(c.cookie_name, "sid");
        assert!(serde_json::from_str::<SessionConfig>(r#"{"tll":"1h"}"#).is_err());
        assert!(
            !format!(
                "{:?}",
                SessionConfig {
                    signing_keys: vec!["x".repeat(40)],
                    ..Default::default()
                }
            )
            .contains("xxxx")
        );
    }
}
