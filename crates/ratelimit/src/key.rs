use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::{Extensions, HeaderMap, HeaderName, Request};

/// Decides which bucket a request counts against. `None` means the request has no key (see
/// [`MissingKey`](crate::MissingKey)).
pub trait KeyExtractor: Clone + Send + Sync + 'static {
    /// The request's key.
    fn extract<B>(&self, req: &Request<B>) -> Option<String>;
}

impl<F> KeyExtractor for F
where
    F: Fn(&HeaderMap, &Extensions) -> Option<String> + Clone + Send + Sync + 'static,
{
    fn extract<B>(&self, req: &Request<B>) -> Option<String> {
        self(req.headers(), req.extensions())
    }
}

/// Masks an IPv6 address to its first `prefix` bits, so one host cannot rotate through the
/// addresses of its /64; IPv4 addresses (and IPv4-mapped IPv6) are kept whole.
fn ip_key(ip: IpAddr, ipv6_prefix: u8) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.to_string();
            }
            let bits = u128::from(v6);
            let prefix = u32::from(ipv6_prefix.min(128));
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            format!("{}/{prefix}", Ipv6Addr::from(bits & mask))
        }
    }
}

fn peer_ip(ext: &Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = ext.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    ext.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The peer's IP address, from axum's `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`) or a `SocketAddr` extension.
/// IPv6 addresses are keyed by their /64 by default.
#[derive(Clone, Copy, Debug)]
pub struct PeerIp {
    ipv6_prefix: u8,
}

impl Default for PeerIp {
    fn default() -> Self {
        Self { ipv6_prefix: 64 }
    }
}

impl PeerIp {
    /// Keys IPv6 clients by their first `bits` bits (default 64).
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }
}

impl KeyExtractor for PeerIp {
    fn extract<B>(&self, req: &Request<B>) -> Option<String> {
        peer_ip(req.extensions()).map(|ip| ip_key(ip, self.ipv6_prefix))
    }
}

/// The client's IP address behind `trusted_hops` reverse proxies: the address that many
/// entries from the right of the standard `Forwarded` header (its `for=` parameters, RFC 7239)
/// or, when that is absent, of `X-Forwarded-For` (each trusted proxy appends the address it
/// saw).
/// Entries to the left of it were written by the client and are never trusted, so a client
/// cannot pick another client's key by sending its own header. With `trusted_hops = 0`, or when
/// the header is missing, malformed or shorter than the hop count, the peer address is used.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp {
    trusted_hops: usize,
    ipv6_prefix: u8,
}

impl ClientIp {
    /// Behind `trusted_hops` proxies that append to `X-Forwarded-For` (1 for one nginx).
    pub const fn new(trusted_hops: usize) -> Self {
        Self {
            trusted_hops,
            ipv6_prefix: 64,
        }
    }

    /// Keys IPv6 clients by their first `bits` bits (default 64).
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    fn forwarded(&self, headers: &HeaderMap) -> Option<IpAddr> {
        if self.trusted_hops == 0 {
            return None;
        }
        // The standard `Forwarded` header when present, else `X-Forwarded-For`; all lines of
        // a header, in order, form one list.
        let entries: Vec<Option<IpAddr>> = if headers.contains_key(http::header::FORWARDED) {
            let mut entries = Vec::new();
            for value in headers.get_all(http::header::FORWARDED) {
                for element in value.to_str().ok()?.split(',') {
                    entries.push(forwarded_for(element));
                }
            }
            entries
        } else {
            let mut entries = Vec::new();
            for value in headers.get_all("x-forwarded-for") {
                entries.extend(value.to_str().ok()?.split(',').map(parse_ip));
            }
            entries
        };
        let index = entries.len().checked_sub(self.trusted_hops)?;
        *entries.get(index)?
    }
}

/// An address as written in `X-Forwarded-For` or a `for=` parameter: `1.2.3.4`,
/// `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:443`, possibly quoted. `unknown` and obfuscated
/// identifiers are `None`.
fn parse_ip(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    raw.parse::<IpAddr>()
        .ok()
        .or_else(|| raw.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            raw.strip_prefix('[')?
                .split(']')
                .next()?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })
}

/// The `for=` parameter of one `Forwarded` element (RFC 7239).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_ip(value))?
    })
}

impl KeyExtractor for ClientIp {
    fn extract<B>(&self, req: &Request<B>) -> Option<String> {
        self.forwarded(req.headers())
            .or_else(|| peer_ip(req.extensions()))
            .map(|ip| ip_key(ip, self.ipv6_prefix))
    }
}

/// The value of a request header (an API key); missing or non-UTF-8 values have no key.
#[derive(Clone, Debug)]
pub struct HeaderKey(pub HeaderName);

impl KeyExtractor for HeaderKey {
    fn extract<B>(&self, req: &Request<B>) -> Option<String> {
        let value = req.headers().get(&self.0)?.to_str().ok()?;
        (!value.is_empty()).then(|| value.to_owned())
    }
}

/// A value an inner layer put in the request's extensions (a user id after authentication).
#[derive(Debug)]
pub struct ExtensionKey<T>(std::marker::PhantomData<fn() -> T>);

impl<T> ExtensionKey<T> {
    /// Keys by the `T` in the request's extensions.
    pub const fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T> Default for ExtensionKey<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for ExtensionKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ExtensionKey<T> {}

impl<T: std::fmt::Display + Send + Sync + 'static> KeyExtractor for ExtensionKey<T> {
    fn extract<B>(&self, req: &Request<B>) -> Option<String> {
        req.extensions().get::<T>().map(ToString::to_string)
    }
}

/// One bucket for everyone.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalKey;

impl KeyExtractor for GlobalKey {
    fn extract<B>(&self, _req: &Request<B>) -> Option<String> {
        Some("global".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(xff: &[&str], peer: &str) -> Request<()> {
        let mut b = Request::builder();
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        let mut r = b.body(()).unwrap();
        r.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        r
    }

    #[test]
    fn client_ip_trusts_only_the_configured_hops() {
        let one = ClientIp::new(1);
        // The proxy appended the client's address last; what the client wrote is ignored.
        let r = req(&["6.6.6.6, 1.2.3.4"], "10.0.0.1:5000");
        assert_eq!(one.extract(&r).as_deref(), Some("1.2.3.4"));
        assert_eq!(ClientIp::new(2).extract(&r).as_deref(), Some("6.6.6.6"));
        // Several header lines form one list.
        let r = req(&["6.6.6.6", "1.2.3.4"], "10.0.0.1:5000");
        assert_eq!(one.extract(&r).as_deref(), Some("1.2.3.4"));
        // Malformed, missing or too short: the peer address, never a panic.
        for xff in [&["not-an-ip"][..], &[][..], &["1.2.3.4, , ,,"][..]] {
            let r = req(xff, "10.0.0.1:5000");
            assert_eq!(one.extract(&r).as_deref(), Some("10.0.0.1"), "{xff:?}");
        }
        let r = req(&["1.2.3.4"], "10.0.0.1:5000");
        assert_eq!(ClientIp::new(3).extract(&r).as_deref(), Some("10.0.0.1"));
        // An entry written as `ip:port` or `[v6]:port`.
        let r = req(&["1.2.3.4:5678"], "10.0.0.1:5000");
        assert_eq!(one.extract(&r).as_deref(), Some("1.2.3.4"));
        assert_eq!(ClientIp::new(0).extract(&r).as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn the_forwarded_header_is_read_before_x_forwarded_for() {
        let mut r = req(&["9.9.9.9"], "10.0.0.1:5000");
        r.headers_mut().append(
            "forwarded",
            r#"for=6.6.6.6;proto=http, For="[2001:db8:cafe::17]:4711";by=10.0.0.1"#
                .parse()
                .unwrap(),
        );
        let one = ClientIp::new(1);
        assert_eq!(one.extract(&r).as_deref(), Some("2001:db8:cafe::/64"));
        assert_eq!(ClientIp::new(2).extract(&r).as_deref(), Some("6.6.6.6"));
        // An obfuscated or unknown hop is no address: the peer is used.
        let mut r = req(&[], "10.0.0.1:5000");
        r.headers_mut()
            .append("forwarded", "for=unknown".parse().unwrap());
        assert_eq!(one.extract(&r).as_deref(), Some("10.0.0.1"));
        let mut r = req(&[], "10.0.0.1:5000");
        r.headers_mut()
            .append("forwarded", "for=_hidden;by=x, ;;==,".parse().unwrap());
        assert_eq!(one.extract(&r).as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_prefix() {
        let a = req(&[], "[2001:db8:1:2:aaaa::1]:443");
        let b = req(&[], "[2001:db8:1:2:bbbb::9]:443");
        let other = req(&[], "[2001:db8:1:3::1]:443");
        let key = |r: &Request<()>| PeerIp::default().extract(r).unwrap();
        assert_eq!(key(&a), "2001:db8:1:2::/64");
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&other));
        assert_eq!(
            PeerIp::default().ipv6_prefix(128).extract(&a).unwrap(),
            "2001:db8:1:2:aaaa::1/128"
        );
        let mapped = req(&[], "[::ffff:1.2.3.4]:1");
        assert_eq!(key(&mapped), "1.2.3.4");
    }
}
