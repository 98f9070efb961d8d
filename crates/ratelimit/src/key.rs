use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::request::Parts;
use http::{Extensions, HeaderName};

/// A rate-limit key: a client address, kept as its bits (no allocation, no formatting per
/// request), or text (an API key, a user id). Its text form (`Display`) is e.g. `1.2.3.4`,
/// `2001:db8::/64` or the text itself.
///
/// In a shared store (Redis) a key is named by its text form, except a text that contains
/// `%`, `{` or `}`, or spells an address key (`1.2.3.4`, `2001:db8::/64`): it is written as
/// `%` followed by the text with those three characters percent-encoded (`%25`, `%7B`,
/// `%7D`). So two different keys never share a Redis key, and none holds the braces of
/// Redis Cluster's hash tag.
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

    /// What the key is, for traces (the key itself may be a secret, an API key): `ipv4`,
    /// `ipv6` or `text`.
    pub(crate) fn kind(&self) -> &'static str {
        match self.0 {
            Repr::V4(_) => "ipv4",
            Repr::V6(..) => "ipv6",
            Repr::Text(_) => "text",
        }
    }
}

impl Key {
    /// Appends the name in a shared store (the text form, escaped as the type's docs say),
    /// IPv4 addresses without the formatting machinery: this runs once per request sent to a
    /// shared store.
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
            Repr::Text(text) if needs_escape(text) => {
                out.push('%');
                for c in text.chars() {
                    match c {
                        '%' => out.push_str("%25"),
                        '{' => out.push_str("%7B"),
                        '}' => out.push_str("%7D"),
                        c => out.push(c),
                    }
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

/// Whether a text key is escaped in a shared store: it holds `%` (the escape), `{` or `}`
/// (Redis Cluster's hash tag), or it spells what an address key writes (a whole IPv4 address,
/// or an IPv6 address and a prefix length).
fn needs_escape(text: &str) -> bool {
    text.bytes().any(|b| matches!(b, b'%' | b'{' | b'}'))
        || text.parse::<Ipv4Addr>().is_ok()
        || text
            .split_once('/')
            .is_some_and(|(ip, bits)| ip.parse::<Ipv6Addr>().is_ok() && bits.parse::<u8>().is_ok())
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

/// Decides which bucket a request counts against, from the request's head (as cache's
/// `MakeCacheKey` does). `None` means the request has no key (see
/// [`MissingKey`](crate::MissingKey)). Implemented for closures `Fn(&Parts) -> Option<T>`
/// where `T: Into<Key>` (a `String`, a `&str`...).
///
/// ```
/// use http::request::Parts;
/// use tower_scale_ratelimit::{Key, KeyExtractor};
///
/// let tenant = |parts: &Parts| parts.headers.get("x-tenant")?.to_str().ok().map(Key::from);
/// let (parts, ()) = http::Request::get("/").header("x-tenant", "t1").body(()).unwrap().into_parts();
/// assert_eq!(tenant.extract(&parts), Some(Key::from("t1")));
/// ```
pub trait KeyExtractor: Clone + Send + Sync + 'static {
    /// The request's key.
    fn extract(&self, parts: &Parts) -> Option<Key>;

    /// Why a request [`extract`](Self::extract) found no key for, when the cause is how the
    /// server is set up rather than the request (as for [`PeerIp`] on a server that does not
    /// give the peer address): the layer logs it once and answers the refusal with it.
    /// `None` (the default) for an ordinary keyless request.
    fn missing_because(&self, parts: &Parts) -> Option<&'static str> {
        let _ = parts;
        None
    }
}

/// What the layer says when a key extractor needs the peer address and the server does not
/// give it.
pub(crate) const NO_PEER_ADDRESS: &str = "rate limit: the request has no peer address to key \
    it by; serve the app with `into_make_service_with_connect_info::<SocketAddr>()` (axum), put \
    the `SocketAddr` in the request's extensions, or key the limit by something else (`key_with`)";

/// [`NO_PEER_ADDRESS`] when the request has no peer address.
pub(crate) fn missing_peer(parts: &Parts) -> Option<&'static str> {
    peer_ip(&parts.extensions)
        .is_none()
        .then_some(NO_PEER_ADDRESS)
}

impl<F, T> KeyExtractor for F
where
    F: Fn(&Parts) -> Option<T> + Clone + Send + Sync + 'static,
    T: Into<Key>,
{
    #[inline]
    fn extract(&self, parts: &Parts) -> Option<Key> {
        self(parts).map(Into::into)
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
///
/// On a server that gives neither, no request has a key: with the default
/// [`MissingKey::Reject`](crate::MissingKey::Reject) each is answered `400` with a body that
/// says so (with the default refusal and a text-capable body such as axum's), under the reason
/// `"missing-peer-address"`, and the layer logs the cause once, at error level.
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
    #[inline]
    fn extract(&self, parts: &Parts) -> Option<Key> {
        peer_ip(&parts.extensions).map(|ip| Key::ip(ip, self.ipv6_prefix))
    }

    fn missing_because(&self, parts: &Parts) -> Option<&'static str> {
        missing_peer(parts)
    }
}

/// The value of a request header (an API key); missing or non-UTF-8 values have no key.
#[derive(Clone, Debug)]
pub struct HeaderKey(pub HeaderName);

impl KeyExtractor for HeaderKey {
    #[inline]
    fn extract(&self, parts: &Parts) -> Option<Key> {
        let value = parts.headers.get(&self.0)?.to_str().ok()?;
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
    #[inline]
    fn extract(&self, parts: &Parts) -> Option<Key> {
        parts
            .extensions
            .get::<T>()
            .map(|v| Key::from(v.to_string()))
    }
}

/// One bucket for everyone.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalKey;

impl KeyExtractor for GlobalKey {
    #[inline]
    fn extract(&self, _parts: &Parts) -> Option<Key> {
        Some(Key::from_static("global"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: &str) -> Parts {
        let mut r = http::Request::new(());
        r.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        r.into_parts().0
    }

    fn written(key: &Key) -> String {
        let mut out = String::new();
        key.write_to(&mut out);
        out
    }

    #[test]
    fn written_text_is_the_display_form_or_escaped() {
        let keys = [
            Key::ip("0.0.0.0".parse().unwrap(), 64),
            Key::ip("10.0.99.100".parse().unwrap(), 64),
            Key::ip("255.9.10.199".parse().unwrap(), 64),
            Key::ip("::ffff:1.2.3.4".parse().unwrap(), 64),
            Key::ip("2001:db8:1:2:aaaa::1".parse().unwrap(), 48),
            Key::from("api-key_1:x/y"),
            Key::from_static("global"),
        ];
        for key in keys {
            assert_eq!(written(&key), key.to_string());
        }
        for (text, escaped) in [
            ("api-{key}", "%api-%7Bkey%7D"),
            ("100%", "%100%25"),
            ("1.2.3.4", "%1.2.3.4"),
            ("2001:db8::/64", "%2001:db8::/64"),
            ("%", "%%25"),
        ] {
            assert_eq!(written(&Key::from(text)), escaped);
        }
    }

    /// The key as [`Key::write_to`] wrote it, read back: the proof that no two keys share a
    /// name in a shared store.
    fn read_back(written: &str) -> Key {
        if let Some(escaped) = written.strip_prefix('%') {
            let text = escaped
                .replace("%7D", "}")
                .replace("%7B", "{")
                .replace("%25", "%");
            return Key::from(text);
        }
        if let Ok(v4) = written.parse::<Ipv4Addr>() {
            return Key::ip(IpAddr::V4(v4), 32);
        }
        if let Some((ip, bits)) = written.split_once('/')
            && let (Ok(ip), Ok(bits)) = (ip.parse::<Ipv6Addr>(), bits.parse::<u8>())
        {
            return Key::ip(IpAddr::V6(ip), bits);
        }
        Key::from(written)
    }

    fn any_key() -> impl proptest::strategy::Strategy<Value = Key> {
        use proptest::prelude::*;
        // Text near the other forms: addresses as text, the escape and the braces.
        let near = prop::collection::vec(
            prop_oneof![
                Just("%".to_owned()),
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just("_".to_owned()),
                Just("%25".to_owned()),
                Just("%7B".to_owned()),
                Just(":".to_owned()),
                Just("/".to_owned()),
                any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
                any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
                (0u8..=130).prop_map(|bits| bits.to_string()),
                "[a-z0-9.]{0,4}",
            ],
            0..5,
        )
        .prop_map(|parts| Key::from(parts.concat()));
        prop_oneof![
            any::<std::net::Ipv4Addr>().prop_map(|ip| Key::ip(IpAddr::V4(ip), 64)),
            (any::<std::net::Ipv6Addr>(), 0u8..=128)
                .prop_map(|(ip, bits)| Key::ip(IpAddr::V6(ip), bits)),
            any::<String>().prop_map(Key::from),
            near,
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]

        /// A key's name in a shared store holds no hash-tag brace, and reads back as the key:
        /// so distinct keys never share a Redis key.
        #[test]
        fn a_keys_name_in_redis_has_no_brace_and_reads_back_as_the_key(key in any_key()) {
            let name = written(&key);
            proptest::prop_assert!(!name.contains(['{', '}']), "{name}");
            proptest::prop_assert_eq!(read_back(&name), key);
        }

        /// Two keys share a name only when they are the same key.
        #[test]
        fn distinct_keys_never_share_a_name(a in any_key(), b in any_key()) {
            proptest::prop_assert_eq!(a == b, written(&a) == written(&b), "{} {}", a, b);
        }
    }

    #[test]
    fn ipv6_clients_are_keyed_by_prefix() {
        let a = req("[2001:db8:1:2:aaaa::1]:443");
        let b = req("[2001:db8:1:2:bbbb::9]:443");
        let other = req("[2001:db8:1:3::1]:443");
        let key = |r: &Parts| PeerIp::default().extract(r).unwrap().to_string();
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
