use std::sync::Arc;

use http::request::Parts;

/// The cache key of an HTTP resource: what one purge removes (the resource with all its
/// `Vary` variants). The variant is chosen by the cache from the response's `Vary`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// A key from any string.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key as a string (pass it to [`Cache::invalidate`](crate::Cache::invalidate)).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for CacheKey {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for CacheKey {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Computes the cache key of a request; `None` bypasses the cache for it.
///
/// The same function keys the `GET`/`HEAD` lookups and the invalidation after a successful
/// unsafe request, so a key must not depend on the method. Implemented for closures:
///
/// ```
/// use tower_scale_cache::{Cache, CacheKey, ResponseCacheLayer};
///
/// // One entry per tenant, no caching without a tenant.
/// let layer = ResponseCacheLayer::new(Cache::memory()).key_with(|parts: &http::request::Parts| {
///     let tenant = parts.headers.get("x-tenant")?.to_str().ok()?;
///     Some(CacheKey::new(format!("{tenant}{}", parts.uri.path())))
/// });
/// ```
pub trait MakeCacheKey: Send + Sync + 'static {
    /// The key of this request, or `None` to bypass the cache.
    fn make_cache_key(&self, parts: &Parts) -> Option<CacheKey>;
}

impl<F> MakeCacheKey for F
where
    F: Fn(&Parts) -> Option<CacheKey> + Send + Sync + 'static,
{
    fn make_cache_key(&self, parts: &Parts) -> Option<CacheKey> {
        self(parts)
    }
}

/// The default key: the path and the normalised query (parameters sorted, empty ones
/// dropped, ignored ones removed), optionally prefixed by the host.
///
/// ```
/// use tower_scale_cache::{DefaultKey, MakeCacheKey};
///
/// let key = DefaultKey::new().ignore_query_param("utm_source");
/// let (parts, ()) = http::Request::get("/items?b=2&utm_source=x&a=1&").body(()).unwrap().into_parts();
/// assert_eq!(key.make_cache_key(&parts).unwrap().as_str(), "/items?a=1&b=2");
/// ```
#[derive(Clone, Debug, Default)]
pub struct DefaultKey {
    ignored: Arc<[String]>,
    host: bool,
}

impl DefaultKey {
    /// Path and normalised query.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops a query parameter from the key (tracking parameters such as `utm_source`).
    #[must_use]
    pub fn ignore_query_param(mut self, name: impl Into<String>) -> Self {
        let mut v = self.ignored.to_vec();
        v.push(name.into());
        self.ignored = v.into();
        self
    }

    /// Prefixes the key with the `Host` (or the URI's authority), for a service that answers
    /// several hosts.
    #[must_use]
    pub fn with_host(mut self, host: bool) -> Self {
        self.host = host;
        self
    }
}

impl MakeCacheKey for DefaultKey {
    fn make_cache_key(&self, parts: &Parts) -> Option<CacheKey> {
        let path = parts.uri.path();
        let query = parts.uri.query().unwrap_or("");
        let host = if self.host {
            parts
                .uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| parts.headers.get(http::header::HOST)?.to_str().ok())
                .unwrap_or("")
        } else {
            ""
        };
        let mut key = String::with_capacity(host.len() + path.len() + query.len() + 1);
        key.push_str(host);
        key.push_str(path);
        if !query.is_empty() {
            let mut pairs: Vec<&str> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .filter(|p| !self.ignored.iter().any(|i| i == param_name(p)))
                .collect();
            if pairs.len() > 1 {
                // Stable: repeated parameters keep their order.
                pairs.sort_by(|a, b| param_name(a).cmp(param_name(b)));
            }
            for (i, p) in pairs.iter().enumerate() {
                key.push(if i == 0 { '?' } else { '&' });
                key.push_str(p);
            }
        }
        Some(CacheKey(key))
    }
}

fn param_name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &DefaultKey, uri: &str) -> String {
        let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
        k.make_cache_key(&parts).unwrap().0
    }

    #[test]
    fn query_is_normalised() {
        let k = DefaultKey::new();
        assert_eq!(key(&k, "/a"), "/a");
        assert_eq!(key(&k, "/a?"), "/a");
        assert_eq!(key(&k, "/a?b=1&a=2"), key(&k, "/a?a=2&b=1"));
        assert_eq!(
            key(&k, "/a?x=2&x=1"),
            "/a?x=2&x=1",
            "repeated params keep their order"
        );
        assert_ne!(key(&k, "/a?x=2&x=1"), key(&k, "/a?x=1&x=2"));
        assert_eq!(key(&k, "/a?&&b=1&"), "/a?b=1");
        let host = DefaultKey::new().with_host(true);
        assert_eq!(key(&host, "http://example.com/a?b"), "example.com/a?b");
    }
}
