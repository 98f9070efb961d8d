use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, StatusCode};
use serde::{Deserialize, Serialize};

use tower_scale_core::ConfigError;

use crate::client_ip::{ClientIp, ForwardedHeader, invalid_header};
use crate::key::{GlobalKey, HeaderKey, Key, KeyExtractor, PeerIp};
use crate::layer::RateLimitLayer;
use crate::policy::{MissingKey, OnStoreError};
use crate::quota::Quota;
use crate::store::Store;

/// Which key a config-built policy counts by. Unknown fields are errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", deny_unknown_fields)]
pub enum KeySource {
    /// The peer address ([`PeerIp`]).
    PeerIp {
        /// IPv6 prefix length (default 64).
        #[serde(default = "default_prefix")]
        ipv6_prefix: u8,
    },
    /// The client address behind trusted proxies ([`ClientIp`]): `header` and exactly one
    /// of `trusted_hops` and `trusted_proxies`.
    ClientIp {
        /// The header the trusted proxies write (required): `"x-forwarded-for"`,
        /// `"forwarded"`, `"x-real-ip"` or `{ custom = "<name>" }`.
        header: ForwardedHeaderConfig,
        /// How many proxies in front of the service append to the header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trusted_hops: Option<usize>,
        /// The trusted proxies' addresses or CIDR ranges (`"10.0.0.0/8"`, `"2001:db8::/32"`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        trusted_proxies: Vec<String>,
        /// IPv6 prefix length (default 64).
        #[serde(default = "default_prefix")]
        ipv6_prefix: u8,
    },
    /// A request header ([`HeaderKey`]).
    Header {
        /// The header's name.
        name: String,
    },
    /// One bucket for everyone ([`GlobalKey`]).
    Global,
}

/// [`ForwardedHeader`] in config files: `"x-forwarded-for"`, `"forwarded"`, `"x-real-ip"`, or
/// `{ custom = "<header name>" }`. Any other string is an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ForwardedHeaderConfig {
    /// `Forwarded` (RFC 7239).
    Forwarded,
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `X-Real-IP`.
    XRealIp,
    /// Another header, named here.
    Custom(String),
}

impl ForwardedHeaderConfig {
    fn build(&self) -> Result<ForwardedHeader, ConfigError> {
        Ok(match self {
            Self::Forwarded => ForwardedHeader::Forwarded,
            Self::XForwardedFor => ForwardedHeader::XForwardedFor,
            Self::XRealIp => ForwardedHeader::XRealIp,
            Self::Custom(name) => ForwardedHeader::custom(name)?,
        })
    }
}

fn default_prefix() -> u8 {
    64
}

/// A rate-limit policy as a config file states it (TOML, JSON...). Every field has a default
/// (no quota: [`from_config`](RateLimitLayer::from_config) says one is needed); built in code
/// as `RateLimitConfig::default()` plus field assignments.
///
/// ```
/// use tower_scale_ratelimit::{MemoryStore, RateLimitConfig, RateLimitLayer};
///
/// let config: RateLimitConfig = serde_json::from_str(r#"{
///     "name": "api",
///     "quotas": [{"count": 10, "period": "1s"}, {"count": 1000, "period": "1h"}],
///     "key": {"type": "header", "name": "x-api-key"},
///     "missing_key": "shared",
///     "on_store_error": "fail_closed"
/// }"#).unwrap();
/// let layer = RateLimitLayer::from_config(MemoryStore::new(100_000), &config).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Policy name (default `default`).
    pub name: String,
    /// Every quota, all enforced (at least one is needed).
    pub quotas: Vec<Quota>,
    /// The key (default: peer IP).
    pub key: KeySource,
    /// IETF `RateLimit` headers (default true).
    pub headers: bool,
    /// `reject` (400), `reject_401`, or `shared` (default `reject`).
    pub missing_key: MissingKeyConfig,
    /// `fail_open` (default: decide locally on this instance's share of the quota), `admit`
    /// or `fail_closed` (503).
    pub on_store_error: OnStoreErrorConfig,
    /// The number of instances sharing the quota, for the local share used while the store
    /// fails (default 1: the whole quota on each instance). Set it to the instance count.
    pub fallback_instances: u32,
    /// Shadow mode (default false).
    pub dry_run: bool,
    /// Units per request (default 1).
    pub cost: u32,
    /// Local block of keys rejected for at least this long (e.g. `"5s"`); off by default.
    #[serde(with = "humantime_serde")]
    pub block_locally: Option<Duration>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            quotas: Vec::new(),
            key: KeySource::PeerIp { ipv6_prefix: 64 },
            headers: true,
            missing_key: MissingKeyConfig::default(),
            on_store_error: OnStoreErrorConfig::default(),
            fallback_instances: 1,
            dry_run: false,
            cost: 1,
            block_locally: None,
        }
    }
}

/// [`MissingKey`] in config files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingKeyConfig {
    /// 400 Bad Request.
    #[default]
    Reject,
    /// 401 Unauthorized.
    Reject401,
    /// One shared bucket.
    Shared,
}

/// [`OnStoreError`] in config files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreErrorConfig {
    /// Decide locally on this instance's share of the quota (see `fallback_instances`).
    #[default]
    FailOpen,
    /// Admit every request.
    Admit,
    /// 503.
    FailClosed,
}

/// The key extractor of a config-built policy.
#[derive(Clone, Debug)]
pub enum AnyKey {
    /// See [`PeerIp`].
    PeerIp(PeerIp),
    /// See [`ClientIp`].
    ClientIp(ClientIp),
    /// See [`HeaderKey`].
    Header(HeaderKey),
    /// See [`GlobalKey`].
    Global(GlobalKey),
}

impl KeyExtractor for AnyKey {
    #[inline]
    fn extract(&self, parts: &Parts) -> Option<Key> {
        match self {
            Self::PeerIp(k) => k.extract(parts),
            Self::ClientIp(k) => k.extract(parts),
            Self::Header(k) => k.extract(parts),
            Self::Global(k) => k.extract(parts),
        }
    }
}

impl RateLimitLayer {
    /// Builds a policy from its config; an invalid value is an error naming it.
    pub fn from_config(
        store: impl Store,
        config: &RateLimitConfig,
    ) -> Result<RateLimitLayer<AnyKey>, ConfigError> {
        let key = match &config.key {
            KeySource::PeerIp { ipv6_prefix } => {
                AnyKey::PeerIp(PeerIp::default().ipv6_prefix(*ipv6_prefix))
            }
            KeySource::ClientIp {
                header,
                trusted_hops,
                trusted_proxies,
                ipv6_prefix,
            } => {
                let key = match (trusted_hops, trusted_proxies.is_empty()) {
                    (Some(hops), true) => ClientIp::new(*hops),
                    (None, false) => ClientIp::trusting(trusted_proxies)?,
                    _ => {
                        return Err(ConfigError::new(
                            "key",
                            "a client_ip key needs exactly one of trusted_hops and trusted_proxies",
                        ));
                    }
                };
                AnyKey::ClientIp(key.header(header.build()?).ipv6_prefix(*ipv6_prefix))
            }
            KeySource::Header { name } => AnyKey::Header(HeaderKey(
                HeaderName::try_from(name.as_str()).map_err(|_| invalid_header(name))?,
            )),
            KeySource::Global => AnyKey::Global(GlobalKey),
        };
        let mut layer = Self::new(store, config.quotas.iter().copied())?
            .name(&config.name)?
            .headers(config.headers)
            .missing_key(match config.missing_key {
                MissingKeyConfig::Reject => MissingKey::Reject(StatusCode::BAD_REQUEST),
                MissingKeyConfig::Reject401 => MissingKey::Reject(StatusCode::UNAUTHORIZED),
                MissingKeyConfig::Shared => MissingKey::Shared,
            })
            .on_store_error(match config.on_store_error {
                OnStoreErrorConfig::FailOpen => OnStoreError::FailOpen,
                OnStoreErrorConfig::Admit => OnStoreError::Admit,
                OnStoreErrorConfig::FailClosed => OnStoreError::FailClosed,
            })
            .fallback_instances(config.fallback_instances)?
            .dry_run(config.dry_run)
            .cost(config.cost);
        if let Some(min_wait) = config.block_locally {
            layer = layer.block_locally(min_wait, 100_000);
        }
        Ok(layer.key_with(key))
    }
}
