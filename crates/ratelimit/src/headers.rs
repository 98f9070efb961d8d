//! The IETF `RateLimit-Policy` and `RateLimit` header fields.

use http::{HeaderName, HeaderValue, Response};
use tower_scale_core::ConfigError;

use crate::quota::Quota;
use crate::store::Decision;

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Whole seconds of `d`, rounded up (the `RateLimit` field's `t=`, which may be 0).
fn secs_ceil(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A policy's header fields, written once when it is named: the `RateLimit-Policy` value and
/// the start of every `RateLimit` value.
#[derive(Clone, Debug)]
pub(crate) struct HeaderFields {
    policy: HeaderValue,
    /// `"<name>";r=`, the start of every `RateLimit` field.
    ratelimit_prefix: Box<[u8]>,
    /// The largest burst: `r=` never says more.
    max_burst: u32,
}

impl HeaderFields {
    /// The fields of the policy `name` enforcing `quotas`; a name that cannot be written in
    /// a header is an error.
    pub(crate) fn new(name: &str, quotas: &[Quota]) -> Result<Self, ConfigError> {
        let invalid = || {
            ConfigError::new(
                "name",
                format!("policy name {name:?} must be non-empty ASCII letters, digits, '-' or '_'"),
            )
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid());
        }
        let header = quotas
            .iter()
            .map(|q| format!("\"{name}\";q={};w={}", q.count, q.period.as_secs().max(1)))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Self {
            policy: HeaderValue::from_str(&header).map_err(|_| invalid())?,
            ratelimit_prefix: format!("\"{name}\";r=").into_bytes().into_boxed_slice(),
            max_burst: quotas.iter().map(Quota::max_burst).max().unwrap_or(0),
        })
    }

    /// The fields of one response, deciding `d` (only `RateLimit-Policy` without one).
    #[inline]
    pub(crate) fn for_decision(&self, d: Option<&Decision>) -> Headers {
        Headers {
            policy: self.policy.clone(),
            ratelimit: d.and_then(|d| self.ratelimit(d)),
        }
    }

    /// `"<name>";r=<remaining>;t=<seconds>`, written without `format!` (once per response).
    fn ratelimit(&self, d: &Decision) -> Option<HeaderValue> {
        let mut numbers = itoa::Buffer::new();
        let remaining = numbers.format(d.remaining.min(self.max_burst));
        let mut buf = Vec::with_capacity(self.ratelimit_prefix.len() + remaining.len() + 23);
        buf.extend_from_slice(&self.ratelimit_prefix);
        buf.extend_from_slice(remaining.as_bytes());
        buf.extend_from_slice(b";t=");
        buf.extend_from_slice(numbers.format(secs_ceil(d.reset)).as_bytes());
        HeaderValue::from_maybe_shared(bytes::Bytes::from(buf)).ok()
    }
}

/// The `RateLimit-Policy` and `RateLimit` fields of one response.
pub(crate) struct Headers {
    policy: HeaderValue,
    ratelimit: Option<HeaderValue>,
}

impl Headers {
    /// Adds the fields to `res`.
    pub(crate) fn insert<B>(self, res: &mut Response<B>) {
        let headers = res.headers_mut();
        headers.reserve(2);
        headers.insert(RATELIMIT_POLICY.clone(), self.policy);
        if let Some(value) = self.ratelimit {
            headers.insert(RATELIMIT.clone(), value);
        }
    }
}
