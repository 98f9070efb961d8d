use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::request::Parts;
use http::uri::PathAndQuery;

/// The cache key of an HTTP resource: what one purge removes (the resource with all its
/// `Vary` variants). The variant is chosen by the cache from the response's `Vary`.
#[derive(Clone)]
pub struct CacheKey(Repr);

#[derive(Clone)]
enum Repr {
    Owned(String),
    /// The request's own path and query, when it is the key as is (shares the request's
    /// bytes: no allocation).
    Uri(PathAndQuery),
}

impl CacheKey {
    /// A key from any string.
    pub fn new(key: impl Into<String>) -> Self {
        Self(Repr::Owned(key.into()))
    }

    /// The key as a string (pass it to [`Cache::invalidate`](crate::Cache::invalidate)).
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Owned(s) => s,
            Repr::Uri(pq) => pq.as_str(),
        }
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CacheKey").field(&self.as_str()).finish()
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for CacheKey {}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl From<String> for CacheKey {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&str> for CacheKey {
    fn from(s: &str) -> Self {
        Self::new(s)
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

    /// Removes from a request what its key leaves out, so that a response stored under the
    /// key cannot depend on it: called on a request that may be stored, before it goes to
    /// the inner service. The default changes nothing; [`DefaultKey`] removes the query
    /// parameters it ignores.
    fn strip_unkeyed(&self, parts: &mut Parts) {
        let _ = parts;
    }
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
/// Ignored parameters are also removed from the request the inner service sees when the
/// response may be stored ([`MakeCacheKey::strip_unkeyed`]): a handler cannot reflect them
/// into a response served to requests without them.
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

    /// Prefixes the key with the `Host` (or the URI's authority), lowercased, for a service
    /// that answers several hosts.
    ///
    /// A request without a host, or whose host is not a valid authority (`host[:port]`, no
    /// user info, no `/`, `?` or `#`), bypasses the cache. As a valid authority has no `/`, the
    /// path's leading `/` separates host and path: `example.com/a` + `/x` cannot be sent.
    #[must_use]
    pub fn with_host(mut self, host: bool) -> Self {
        self.host = host;
        self
    }
}

impl MakeCacheKey for DefaultKey {
    fn strip_unkeyed(&self, parts: &mut Parts) {
        let Some(query) = parts.uri.query() else {
            return;
        };
        if !query.split('&').any(|p| self.is_ignored(p)) {
            return;
        }
        let path = parts.uri.path();
        let mut pq = String::with_capacity(path.len() + query.len() + 1);
        pq.push_str(path);
        for (i, p) in query.split('&').filter(|p| !self.is_ignored(p)).enumerate() {
            pq.push(if i == 0 { '?' } else { '&' });
            pq.push_str(p);
        }
        // Pieces of a valid URI make a valid one; should they not, the request stays as is.
        let mut uri = parts.uri.clone().into_parts();
        if let Ok(pq) = PathAndQuery::try_from(pq) {
            uri.path_and_query = Some(pq);
            if let Ok(uri) = http::Uri::from_parts(uri) {
                parts.uri = uri;
            }
        }
    }

    fn make_cache_key(&self, parts: &Parts) -> Option<CacheKey> {
        let path = parts.uri.path();
        let query = parts.uri.query().unwrap_or("");
        let host = if self.host {
            // Only a valid authority is keyed (else the cache is bypassed): it has no `/`, so
            // the path's leading `/` ends it unambiguously.
            let host = parts
                .uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| parts.headers.get(http::header::HOST)?.to_str().ok())?;
            if !is_authority(host) || !path.starts_with('/') {
                return None;
            }
            host
        } else {
            ""
        };
        // The usual key, the request's path and query as they are (no host, a query without
        // anything to drop or reorder), shares the request's bytes.
        if host.is_empty()
            && let Some(pq) = parts.uri.path_and_query()
            && pq.path() == path
            && pq.query() == parts.uri.query()
            && (pq.query().is_none() || self.is_normalised(query))
        {
            return Some(CacheKey(Repr::Uri(pq.clone())));
        }
        let mut key = String::with_capacity(host.len() + path.len() + query.len() + 1);
        // Host names are case-insensitive: one entry whatever the case.
        key.extend(host.chars().map(|c| c.to_ascii_lowercase()));
        key.push_str(path);
        if !query.is_empty() {
            let mut pairs: Vec<&str> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .filter(|p| !self.is_ignored(p))
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
        Some(CacheKey::new(key))
    }
}

impl DefaultKey {
    fn is_ignored(&self, pair: &str) -> bool {
        self.ignored.iter().any(|i| i == param_name(pair))
    }

    /// Whether normalising leaves the non-empty `query` as it is: no empty or ignored
    /// parameter, names already in order.
    fn is_normalised(&self, query: &str) -> bool {
        let mut last = "";
        for pair in query.split('&') {
            let name = param_name(pair);
            if pair.is_empty() || name < last || self.is_ignored(pair) {
                return false;
            }
            last = name;
        }
        !query.is_empty()
    }
}

/// Whether `host` is a valid authority without user info: what a `Host` field may hold.
fn is_authority(host: &str) -> bool {
    !host.is_empty()
        && !host.contains('@')
        && host
            .parse::<http::uri::Authority>()
            .is_ok_and(|a| a.as_str() == host)
}

fn param_name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &DefaultKey, uri: &str) -> String {
        let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
        k.make_cache_key(&parts).unwrap().as_str().to_owned()
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

    #[test]
    fn a_path_and_query_left_as_is_is_shared_with_the_request() {
        let k = DefaultKey::new().ignore_query_param("utm");
        for (uri, expected, shared) in [
            ("/a", "/a", true),
            ("/a/b%20c", "/a/b%20c", true),
            ("/a?b=1", "/a?b=1", true),
            ("/a?a=1&b=2&b=1", "/a?a=1&b=2&b=1", true),
            ("http://example.com/a?b", "/a?b", true),
            ("/a?", "/a", false),
            ("/a?b=1&a=2", "/a?a=2&b=1", false),
            ("/a?&b=1", "/a?b=1", false),
            ("/a?b=1&", "/a?b=1", false),
            ("/a?utm=x", "/a", false),
            ("/a?b=1&utm=x", "/a?b=1", false),
        ] {
            let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
            let made = k.make_cache_key(&parts).unwrap();
            assert_eq!(made.as_str(), expected, "{uri}");
            assert_eq!(made, CacheKey::new(expected), "{uri}");
            let request = parts.uri.path_and_query().unwrap().as_str().as_bytes();
            let within = request.as_ptr_range().contains(&made.as_str().as_ptr());
            assert_eq!(within, shared, "{uri}: shares the request's bytes");
        }
        let host = DefaultKey::new().with_host(true);
        let (parts, ()) = http::Request::get("http://example.com/a")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(
            host.make_cache_key(&parts).unwrap().as_str(),
            "example.com/a"
        );
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// A request in a small space (so that distinct ones often look alike): an optional
        /// host, a path, and query pairs (`utm` ignored).
        #[derive(Clone, Debug)]
        struct Req {
            host: Option<String>,
            path: String,
            pairs: Option<Vec<String>>,
        }

        fn req() -> impl Strategy<Value = Req> {
            let host = prop::option::of("[a-cA-C.:/@]{0,4}");
            let path = "(/[a-c%&=?]{0,2}){1,3}".prop_map(|p| p.replace('?', "%3F"));
            let pair = prop_oneof![Just("utm=x".to_owned()), "[a-c]{0,2}(=[a-c=]{0,2})?"];
            let pairs = prop::option::of(prop::collection::vec(pair, 0..4));
            (host, path, pairs).prop_map(|(host, path, pairs)| Req { host, path, pairs })
        }

        fn parts(r: &Req) -> Parts {
            let mut uri = r.path.clone();
            if let Some(pairs) = &r.pairs {
                uri.push('?');
                uri.push_str(&pairs.join("&"));
            }
            let mut b = http::Request::get(uri);
            if let Some(h) = &r.host {
                b = b.header(http::header::HOST, h.as_str());
            }
            b.body(()).unwrap().into_parts().0
        }

        /// What must tell two requests apart: the host (lowercased, when valid), the path, the
        /// non-empty parameters but the ignored one, in a stable order of their names.
        fn canonical(r: &Req, with_host: bool) -> Option<(String, String, Vec<String>)> {
            let host = match (&r.host, with_host) {
                (_, false) => String::new(),
                (Some(h), true) if is_authority(h) => h.to_ascii_lowercase(),
                (_, true) => return None,
            };
            let mut pairs: Vec<String> = r
                .pairs
                .iter()
                .flatten()
                .flat_map(|p| p.split('&'))
                .filter(|p| !p.is_empty() && param_name(p) != "utm")
                .map(str::to_owned)
                .collect();
            pairs.sort_by(|a, b| param_name(a).cmp(param_name(b)));
            Some((host, r.path.clone(), pairs))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            #[test]
            fn distinct_requests_never_share_a_key(a in req(), b in req(), with_host in any::<bool>()) {
                let k = DefaultKey::new().ignore_query_param("utm").with_host(with_host);
                let (ka, kb) = (k.make_cache_key(&parts(&a)), k.make_cache_key(&parts(&b)));
                let (ca, cb) = (canonical(&a, with_host), canonical(&b, with_host));
                prop_assert_eq!(ka.is_some(), ca.is_some(), "{:?}", a);
                prop_assert_eq!(kb.is_some(), cb.is_some(), "{:?}", b);
                if let (Some(ka), Some(kb)) = (ka, kb) {
                    prop_assert_eq!(ka == kb, ca == cb, "{:?} {:?} vs {:?} {:?}", a, ka, b, kb);
                }
            }

            #[test]
            fn stripping_leaves_the_key_as_it_was(a in req()) {
                let k = DefaultKey::new().ignore_query_param("utm");
                let mut p = parts(&a);
                let before = k.make_cache_key(&p);
                k.strip_unkeyed(&mut p);
                prop_assert_eq!(k.make_cache_key(&p), before);
                prop_assert!(!p.uri.query().unwrap_or("").split('&').any(|q| param_name(q) == "utm"));
            }
        }
    }
}
