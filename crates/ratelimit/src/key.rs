use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{Extensions, HeaderMap, HeaderName, Request};

/// A rate-limit key: a client address, kept as its bits (no allocation, no formatting per
/// request), or text (an API key, a user id). Its text form (`Display`), e.g. `1.2.3.4`,
/// `2001:db8::/64` or the text itself, names it in Redis.
///
/// ```
/// use tower_scale_ratelimit::Key;
///
/// assert_eq!(Key::from("k1").to_string(), "k1");
/// let ip: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
/// assert_eq!(Key::ip(ip, 64).to_string(), "2001:db8:1:2::/64");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key(Repr);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    V4(u32),
    /// The masked address and the prefix length.
    V6(u128, u8),
    Text(Cow<'static, str>),
}

/// One hasher call per IPv4 key (the derived impl feeds the enum's discriminant and the bits
/// separately): the in-memory limiter hashes the key once per request.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match &self.0 {
            Repr::V4(bits) => state.write_u64(u64::from(*bits) | 1 << 32),
            Repr::V6(bits, prefix) => {
                state.write_u128(*bits);
                state.write_u8(*prefix);
            }
            Repr::Text(text) => text.hash(state),
        }
    }
}

impl Key {
    /// The key of `ip`: IPv6 addresses masked to their first `ipv6_prefix` bits, so one host
    /// cannot rotate through the addresses of its /64; IPv4 addresses (and IPv4-mapped IPv6)
    /// are kept whole.
    pub fn ip(ip: IpAddr, ipv6_prefix: u8) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(Repr::V4(u32::from(v4))),
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return Self(Repr::V4(u32::from(v4)));
                }
                let prefix = ipv6_prefix.min(128);
                let mask = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(prefix))
                };
                Self(Repr::V6(u128::from(v6) & mask, prefix))
            }
        }
    }

    /// A key from static text, without allocating.
    pub const fn from_static(text: &'static str) -> Self {
        Self(Repr::Text(Cow::Borrowed(text)))
    }
}

impl Key {
    /// Appends the text form (as `Display` writes it), IPv4 addresses without the formatting
    /// machinery: this runs once per request sent to a shared store.
    pub(crate) fn write_to(&self, out: &mut String) {
        match &self.0 {
            Repr::V4(bits) => {
                for (i, octet) in bits.to_be_bytes().into_iter().enumerate() {
                    if i > 0 {
                        out.push('.');
                    }
                    if octet >= 100 {
                        out.push(char::from(b'0' + octet / 100));
                    }
                    if octet >= 10 {
                        out.push(char::from(b'0' + octet / 10 % 10));
                    }
                    out.push(char::from(b'0' + octet % 10));
                }
            }
            Repr::Text(text) => out.push_str(text),
            Repr::V6(..) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{self}");
            }
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::V4(bits) => Ipv4Addr::from(*bits).fmt(f),
            Repr::V6(bits, prefix) => write!(f, "{}/{prefix}", Ipv6Addr::from(*bits)),
            Repr::Text(text) => f.write_str(text),
        }
    }
}

impl From<String> for Key {
    fn from(text: String) -> Self {
        Self(Repr::Text(Cow::Owned(text)))
    }
}

impl From<&str> for Key {
    fn from(text: &str) -> Self {
        Self(Repr::Text(Cow::Owned(text.to_owned())))
    }
}

/// Decides which bucket a request counts against. `None` means the request has no key (see
/// [`MissingKey`](crate::MissingKey)). Implemented for closures
/// `Fn(&HeaderMap, &Extensions) -> Option<T>` where `T: Into<Key>` (a `String`, a `&str`...).
pub trait KeyExtractor: Clone + Send + Sync + 'static {
    /// The request's key.
    fn extract<B>(&self, req: &Request<B>) -> Option<Key>;
}

impl<F, T> KeyExtractor for F
where
    F: Fn(&HeaderMap, &Extensions) -> Option<T> + Clone + Send + Sync + 'static,
    T: Into<Key>,
{
    fn extract<B>(&self, req: &Request<B>) -> Option<Key> {
        self(req.headers(), req.extensions()).map(Into::into)
    }
}

/// The peer's address, from axum's `ConnectInfo<SocketAddr>` or a `SocketAddr` extension.
#[inline]
pub(crate) fn peer_ip(ext: &Extensions) -> Option<IpAddr> {
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
    fn extract<B>(&self, req: &Request<B>) -> Option<Key> {
        peer_ip(req.extensions()).map(|ip| Key::ip(ip, self.ipv6_prefix))
    }
}

/// The value of a request header (an API key); missing or non-UTF-8 values have no key.
#[derive(Clone, Debug)]
pub struct HeaderKey(pub HeaderName);

impl KeyExtractor for HeaderKey {
    fn extract<B>(&self, req: &Request<B>) -> Option<Key> {
        let value = req.headers().get(&self.0)?.to_str().ok()?;
        (!value.is_empty()).then(|| Key::from(value))
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
    fn extract<B>(&self, req: &Request<B>) -> Option<Key> {
        req.extensions()
            .get::<T>()
            .map(|v| Key::from(v.to_string()))
    }
}

/// One bucket for everyone.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalKey;

impl KeyExtractor for GlobalKey {
    fn extract<B>(&self, _req: &Request<B>) -> Option<Key> {
        Some(Key::from_static("global"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: &str) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        r
    }

    #[test]
    fn written_text_is_the_display_form() {
        let keys = [
            Key::ip("0.0.0.0".parse().unwrap(), 64),
            Key::ip("10.0.99.100".parse().unwrap(), 64),
            Key::ip("255.9.10.199".parse().unwrap(), 64),
            Key::ip("::ffff:1.2.3.4".parse().unwrap(), 64),
            Key::ip("2001:db8:1:2:aaaa::1".parse().unwrap(), 48),
            Key::from("api-{key}"),
            Key::from_static("global"),
        ];
        for key in keys {
            let mut out = String::from("p:");
            key.write_to(&mut out);
            assert_eq!(out, format!("p:{key}"));
        }
    }

    #[test]
    fn ipv6_clients_are_keyed_by_prefix() {
        let a = req("[2001:db8:1:2:aaaa::1]:443");
        let b = req("[2001:db8:1:2:bbbb::9]:443");
        let other = req("[2001:db8:1:3::1]:443");
        let key = |r: &Request<()>| PeerIp::default().extract(r).unwrap().to_string();
        assert_eq!(key(&a), "2001:db8:1:2::/64");
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&other));
        assert_eq!(
            PeerIp::default()
                .ipv6_prefix(128)
                .extract(&a)
                .unwrap()
                .to_string(),
            "2001:db8:1:2:aaaa::1/128"
        );
        let mapped = req("[::ffff:1.2.3.4]:1");
        assert_eq!(key(&mapped), "1.2.3.4");
    }
}
