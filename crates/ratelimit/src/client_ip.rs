use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use tower_scale_core::ConfigError;

use crate::key::{Key, KeyExtractor, missing_peer, peer_ip};

/// The header in which the trusted proxies in front of the service write the address they
/// received a request from. [`ClientIp`] reads this header only: any other a client sends
/// (and proxies pass through untouched) is never looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `Forwarded` (RFC 7239): the `for=` parameter of each element.
    Forwarded,
    /// `X-Forwarded-For`: a comma-separated list of addresses, each proxy appending the one it
    /// received the request from (nginx's `$proxy_add_x_forwarded_for`, most load balancers).
    XForwardedFor,
    /// `X-Real-IP`: the one address set by the proxy in front (nginx's
    /// `proxy_set_header X-Real-IP $remote_addr`).
    XRealIp,
    /// Another header, read as a comma-separated list of addresses like `X-Forwarded-For`
    /// (a CDN's `CF-Connecting-IP` or `True-Client-IP`).
    Custom(HeaderName),
}

impl ForwardedHeader {
    /// The header named `name`: `Forwarded`, `X-Forwarded-For` and `X-Real-IP` (in any case)
    /// are read as such, any other valid name as [`Custom`](Self::Custom). An invalid name is
    /// an error.
    pub fn custom(name: &str) -> Result<Self, ConfigError> {
        let name = HeaderName::try_from(name).map_err(|_| invalid_header(name))?;
        Ok(match name.as_str() {
            "forwarded" => Self::Forwarded,
            "x-forwarded-for" => Self::XForwardedFor,
            "x-real-ip" => Self::XRealIp,
            _ => Self::Custom(name),
        })
    }

    fn name(&self) -> &HeaderName {
        static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
        static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
        match self {
            Self::Forwarded => &http::header::FORWARDED,
            Self::XForwardedFor => &X_FORWARDED_FOR,
            Self::XRealIp => &X_REAL_IP,
            Self::Custom(name) => name,
        }
    }

    /// The address of one entry (a `Forwarded` element, or one item of a list); `None` for
    /// anything else (`unknown`, an obfuscated node, garbage, non-UTF-8).
    fn address(&self, entry: &[u8]) -> Option<IpAddr> {
        let entry = std::str::from_utf8(entry).ok()?;
        match self {
            Self::Forwarded => forwarded_for(entry),
            _ => parse_ip(entry),
        }
    }

    /// The header's entries, the last one (appended by the proxy nearest to the service)
    /// first. Every line of the header, in order, forms one list. Entries are split at every
    /// comma, quoted or not: the entries proxies append hold no comma, and a client cannot
    /// reach into them with an unclosed quote.
    fn entries_from_the_right<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> impl Iterator<Item = Option<IpAddr>> + 'a {
        headers
            .get_all(self.name())
            .iter()
            .rev()
            .flat_map(|line| line.as_bytes().rsplit(|b| *b == b','))
            .map(|entry| self.address(entry))
    }
}

/// Which addresses belong to the service's own proxies.
#[derive(Clone, Debug)]
enum Trust {
    /// The last `n` entries of the header were written by trusted proxies: the `n`-th from the
    /// right is the client.
    Hops(usize),
    /// Proxies whose address lies in one of these ranges.
    Ranges(Arc<[IpNet]>),
}

/// The client's IP address behind reverse proxies: read from the one header the proxies
/// write ([`ForwardedHeader`], `X-Forwarded-For` by default), using only the entries those
/// proxies appended.
///
/// Which proxies are trusted:
/// - [`new(hops)`](Self::new): the last `hops` entries were appended by the service's own
///   proxies, and the `hops`-th from the right is the client (1 for one nginx in front). With
///   `hops = 0`, or when the header is shorter or that entry is not an address, the peer
///   address is used.
/// - [`trusting(ranges)`](Self::trusting): proxies whose address lies in the given ranges
///   (addresses or CIDR ranges, e.g. a CDN's published ones). When the peer is one of them,
///   the header is walked from the right, skipping trusted addresses: the first address that
///   is not trusted is the client. An entry that is not an address (`unknown`, obfuscated)
///   ends the walk at the last trusted address; when every entry is trusted, the leftmost is
///   the client. When the peer is not trusted, it is the client and the header is ignored.
///   Without a peer address (no `ConnectInfo`), the request has no key.
///
/// Entries to the left of the client were written by the client and are never used, so a
/// client cannot pick its own or another client's bucket by sending the header itself.
///
/// ```
/// use tower_scale_ratelimit::{ClientIp, ForwardedHeader};
///
/// // One nginx in front, appending to X-Forwarded-For:
/// let behind_nginx = ClientIp::new(1);
/// // A CDN writing `Forwarded`, then a load balancer in 10.0.0.0/8:
/// let behind_cdn = ClientIp::trusting(["10.0.0.0/8", "2001:db8:cafe::/48", "192.0.2.7"])?
///     .header(ForwardedHeader::Forwarded);
/// assert!(ClientIp::trusting(["10.0.0.0/33"]).is_err());
/// # Ok::<(), tower_scale_ratelimit::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientIp {
    header: ForwardedHeader,
    trust: Trust,
    ipv6_prefix: u8,
}

impl ClientIp {
    /// Behind `trusted_hops` proxies that append to `X-Forwarded-For` (1 for one nginx).
    pub const fn new(trusted_hops: usize) -> Self {
        Self {
            header: ForwardedHeader::XForwardedFor,
            trust: Trust::Hops(trusted_hops),
            ipv6_prefix: 64,
        }
    }

    /// Behind proxies whose addresses lie in `proxies`, each an address (`10.0.0.1`,
    /// `2001:db8::1`) or a CIDR range (`10.0.0.0/8`, `2001:db8::/32`), that append to
    /// `X-Forwarded-For`. An entry that is neither is an error naming it.
    pub fn trusting<I>(proxies: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let ranges = proxies
            .into_iter()
            .map(|proxy| parse_range(proxy.as_ref()))
            .collect::<Result<Arc<[IpNet]>, _>>()?;
        Ok(Self {
            header: ForwardedHeader::XForwardedFor,
            trust: Trust::Ranges(ranges),
            ipv6_prefix: 64,
        })
    }

    /// Reads `header` instead of `X-Forwarded-For`: the one the trusted proxies write.
    #[must_use]
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Keys IPv6 clients by their first `bits` bits (default 64).
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    /// The client's address, given the peer's.
    fn client(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        let mut entries = self.header.entries_from_the_right(headers);
        match &self.trust {
            Trust::Hops(0) => peer,
            Trust::Hops(hops) => entries.nth(hops - 1).flatten().or(peer),
            Trust::Ranges(ranges) => {
                let trusted = |ip: IpAddr| {
                    let ip = ip.to_canonical();
                    ranges.iter().any(|range| range.contains(&ip))
                };
                let mut client = peer?;
                while trusted(client) {
                    match entries.next() {
                        Some(Some(ip)) => client = ip,
                        Some(None) | None => break,
                    }
                }
                Some(client)
            }
        }
    }
}

impl KeyExtractor for ClientIp {
    #[inline]
    fn extract(&self, parts: &Parts) -> Option<Key> {
        self.client(&parts.headers, peer_ip(&parts.extensions))
            .map(|ip| Key::ip(ip, self.ipv6_prefix))
    }

    fn missing_because(&self, parts: &Parts) -> Option<&'static str> {
        missing_peer(parts)
    }
}

/// A header name that is not one.
pub(crate) fn invalid_header(name: &str) -> ConfigError {
    ConfigError::new("header", format!("invalid header name {name:?}"))
}

/// A trusted proxy: an address (a range of one) or a CIDR range.
fn parse_range(text: &str) -> Result<IpNet, ConfigError> {
    let text = text.trim();
    text.parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            ConfigError::new(
                "trusted_proxies",
                format!(
                    "invalid trusted proxy {text:?}: expected an address or a CIDR range such as 10.0.0.0/8 or 2001:db8::/32"
                ),
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

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

    fn key(k: &ClientIp, r: &Request<()>) -> Option<String> {
        let (parts, ()) = r.clone().into_parts();
        k.extract(&parts).map(|k| k.to_string())
    }

    #[test]
    fn client_ip_trusts_only_the_configured_hops() {
        let one = ClientIp::new(1);
        // The proxy appended the client's address last; what the client wrote is ignored.
        let r = req(&["6.6.6.6, 1.2.3.4"], "10.0.0.1:5000");
        assert_eq!(key(&one, &r).as_deref(), Some("1.2.3.4"));
        assert_eq!(key(&ClientIp::new(2), &r).as_deref(), Some("6.6.6.6"));
        // Several header lines form one list.
        let r = req(&["6.6.6.6", "1.2.3.4"], "10.0.0.1:5000");
        assert_eq!(key(&one, &r).as_deref(), Some("1.2.3.4"));
        // Malformed, missing or too short: the peer address, never a panic.
        for xff in [&["not-an-ip"][..], &[][..], &["1.2.3.4, , ,,"][..]] {
            let r = req(xff, "10.0.0.1:5000");
            assert_eq!(key(&one, &r).as_deref(), Some("10.0.0.1"), "{xff:?}");
        }
        let r = req(&["1.2.3.4"], "10.0.0.1:5000");
        assert_eq!(key(&ClientIp::new(3), &r).as_deref(), Some("10.0.0.1"));
        // An entry written as `ip:port` or `[v6]:port`.
        let r = req(&["1.2.3.4:5678"], "10.0.0.1:5000");
        assert_eq!(key(&one, &r).as_deref(), Some("1.2.3.4"));
        assert_eq!(key(&ClientIp::new(0), &r).as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn the_forwarded_header_is_read_when_configured() {
        let mut r = req(&["9.9.9.9"], "10.0.0.1:5000");
        r.headers_mut().append(
            "forwarded",
            r#"for=6.6.6.6;proto=http, For="[2001:db8:cafe::17]:4711";by=10.0.0.1"#
                .parse()
                .unwrap(),
        );
        let one = ClientIp::new(1).header(ForwardedHeader::Forwarded);
        assert_eq!(key(&one, &r).as_deref(), Some("2001:db8:cafe::/64"));
        let two = ClientIp::new(2).header(ForwardedHeader::Forwarded);
        assert_eq!(key(&two, &r).as_deref(), Some("6.6.6.6"));
        // X-Forwarded-For (the default) ignores `Forwarded`.
        assert_eq!(key(&ClientIp::new(1), &r).as_deref(), Some("9.9.9.9"));
        // An obfuscated or unknown hop is no address: the peer is used.
        for value in ["for=unknown", "for=_hidden;by=x, ;;==,"] {
            let mut r = req(&[], "10.0.0.1:5000");
            r.headers_mut().append("forwarded", value.parse().unwrap());
            assert_eq!(key(&one, &r).as_deref(), Some("10.0.0.1"), "{value}");
        }
    }

    #[test]
    fn trusted_ranges_are_skipped_from_the_right() {
        let cdn = ClientIp::trusting(["10.0.0.0/8", "192.0.2.0/24", "2001:db8:cafe::/48"]).unwrap();
        // The client wrote 6.6.6.6; the CDN (192.0.2.x) and the load balancer (10.x) are
        // skipped.
        let r = req(&["6.6.6.6, 203.0.113.9, 192.0.2.10"], "10.1.2.3:5000");
        assert_eq!(key(&cdn, &r).as_deref(), Some("203.0.113.9"));
        // An untrusted peer is the client, whatever the header says.
        let r = req(&["203.0.113.9"], "198.51.100.1:5000");
        assert_eq!(key(&cdn, &r).as_deref(), Some("198.51.100.1"));
        // An IPv4-mapped peer is trusted as its IPv4 address.
        let r = req(&["203.0.113.9"], "[::ffff:10.0.0.1]:5000");
        assert_eq!(key(&cdn, &r).as_deref(), Some("203.0.113.9"));
        // Every entry trusted: the leftmost. A non-address ends the walk at the last trusted.
        let r = req(&["10.9.9.9, 192.0.2.1"], "10.0.0.1:5000");
        assert_eq!(key(&cdn, &r).as_deref(), Some("10.9.9.9"));
        let r = req(&["6.6.6.6, unknown, 192.0.2.1"], "10.0.0.1:5000");
        assert_eq!(key(&cdn, &r).as_deref(), Some("192.0.2.1"));
        // No peer address: no key.
        let r = Request::builder()
            .header("x-forwarded-for", "203.0.113.9")
            .body(())
            .unwrap();
        assert_eq!(key(&cdn, &r), None);
    }

    #[test]
    fn bad_trusted_proxies_and_header_names_are_errors() {
        for bad in ["10.0.0.0/33", "10.0.0", "example.com", "", "::1/129"] {
            let err = ClientIp::trusting([bad]).unwrap_err();
            assert!(err.to_string().contains(bad.trim()), "{bad}: {err}");
        }
        assert!(ClientIp::trusting(["10.0.0.7/8", " ::1 "]).is_ok());
        assert!(ForwardedHeader::custom("bad header").is_err());
        assert_eq!(
            ForwardedHeader::custom("X-Real-IP").unwrap(),
            ForwardedHeader::XRealIp
        );
        assert_eq!(
            ForwardedHeader::custom("CF-Connecting-IP").unwrap(),
            ForwardedHeader::Custom(HeaderName::from_static("cf-connecting-ip"))
        );
    }
}
