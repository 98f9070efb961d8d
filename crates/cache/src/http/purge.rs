//! The path of unsafe methods: a successful response purges the request's URI and the
//! same-origin URIs it names (RFC 9111 §4.4).

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response};
use tower_service::Service;

use super::body::ResponseBody;
use super::key::MakeCacheKey;
use super::layer::Shared;

/// A successful (2xx, 3xx) response to an unsafe method (any but `GET`, `HEAD`, `OPTIONS`,
/// `TRACE`) purges the request's key and the same-origin URIs its response names once the
/// origin answered; other methods pass through.
pub(super) async fn unsafe_method<S, K, ReqBody, ResBody>(
    shared: Arc<Shared<K>>,
    mut inner: S,
    req: Request<ReqBody>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    K: MakeCacheKey,
{
    // Every method but the safe ones (RFC 9110 §9.2.1), unknown ones included.
    let purge = shared.settings().invalidate_on_unsafe()
        && !matches!(*req.method(), Method::OPTIONS | Method::TRACE);
    let (parts, body) = req.into_parts();
    let target = if purge {
        let host = request_host(&parts).map(str::to_owned);
        shared
            .key()
            .make_cache_key(&parts)
            .map(|key| (key, parts.uri.clone(), host))
    } else {
        None
    };
    let res = inner.call(Request::from_parts(parts, body)).await?;
    if let Some((key, uri, host)) = target
        && (res.status().is_success() || res.status().is_redirection())
    {
        shared
            .purge_after_unsafe(key.as_str(), &uri, host.as_deref(), res.headers())
            .await;
    }
    Ok(shared.pass(res, "fwd=method"))
}

impl<K: MakeCacheKey> Shared<K> {
    /// Purges the target URI of a successful unsafe request, and the `Location` and
    /// `Content-Location` URIs it names when they are on the request's origin (RFC 9111 §4.4).
    /// Failures are logged.
    async fn purge_after_unsafe(
        &self,
        key: &str,
        uri: &http::Uri,
        host: Option<&str>,
        headers: &HeaderMap,
    ) {
        let mut groups = vec![key.to_owned()];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(reference) = headers.get(&name).and_then(|v| v.to_str().ok())
                && let Some(target) = same_origin_target(reference, uri.path(), host)
                && let Ok(req) = Request::get(target.as_str()).body(())
            {
                let (mut parts, ()) = req.into_parts();
                if let Some(host) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
                    parts.headers.insert(header::HOST, host);
                }
                if let Some(k) = self.key().make_cache_key(&parts) {
                    groups.push(k.as_str().to_owned());
                }
            }
        }
        groups.sort();
        groups.dedup();
        for g in &groups {
            if let Err(e) = self.cache().invalidate(g).await {
                tracing::warn!(error = %e, key = %g, "cache purge after an unsafe request failed");
            }
        }
    }
}

/// The request's host: the URI's authority, else its `Host` field.
fn request_host(parts: &Parts) -> Option<&str> {
    parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get(header::HOST)?.to_str().ok())
}

/// The path and query `reference` (a `Location` or `Content-Location` value) names, resolved
/// against the request's `path`, when it is on the request's origin: a path (absolute or
/// relative), or an `http`/`https` URI or network-path reference (`//host/path`) whose
/// authority is the request's `host` (compared case-insensitively). `None` for another origin,
/// another scheme, or no host to compare with.
fn same_origin_target(reference: &str, path: &str, host: Option<&str>) -> Option<String> {
    let reference = reference.split('#').next().unwrap_or("").trim();
    let rest = if let Some(net) = reference.strip_prefix("//") {
        Some(net)
    } else if let Some((scheme, rest)) = reference.split_once(':')
        && !scheme.contains(['/', '?'])
    {
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return None;
        }
        Some(rest.strip_prefix("//")?)
    } else {
        None
    };
    let target = match rest {
        Some(rest) => {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, target) = rest.split_at(end);
            if !host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
                return None;
            }
            if target.starts_with('/') {
                target.to_owned()
            } else {
                format!("/{target}")
            }
        }
        None if reference.starts_with('/') => reference.to_owned(),
        None if reference.is_empty() => return None,
        None if reference.starts_with('?') => format!("{path}{reference}"),
        None => {
            // A relative path: from the request path's last segment on.
            let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
            format!("{dir}{reference}")
        }
    };
    Some(target)
}
