//! The client address behind proxies ([`ClientIp`]): which header is read and which of its
//! entries are trusted, through the layer.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt;
use tower_scale_ratelimit::{
    ClientIp, ForwardedHeader, MemoryStore, Quota, RateLimitConfig, RateLimitLayer,
};

/// A request from `peer` with these header lines.
fn request(peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::get("/");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

fn limited(key: ClientIp, quota: Quota) -> Router {
    Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::new(MemoryStore::new(10_000), [quota])
            .unwrap()
            .key_with(key),
    )
}

async fn statuses_of(app: &Router, requests: impl IntoIterator<Item = Request<Body>>) -> Vec<u16> {
    let mut out = Vec::new();
    for req in requests {
        out.push(app.clone().oneshot(req).await.unwrap().status().as_u16());
    }
    out
}

/// nginx (`proxy_add_x_forwarded_for`) appends to `X-Forwarded-For` and passes the client's own
/// `Forwarded` through: a fresh `Forwarded: for=` per request must not be a fresh bucket.
#[tokio::test(start_paused = true)]
async fn forwarded_header_from_client_cannot_pick_the_bucket() {
    let app = limited(ClientIp::new(1), Quota::per_second(1));
    let requests = (0..100).map(|i| {
        let forwarded = format!("for=198.51.100.{i}");
        request(
            "10.0.0.1:5000",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("forwarded", forwarded.as_str()),
            ],
        )
    });
    let statuses = statuses_of(&app, requests).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        99,
        "{statuses:?}"
    );
    assert_eq!(statuses[0], 200);
}

/// The same attack behind a CDN trusted by its address ranges, writing `Forwarded`: a client's
/// `X-Forwarded-For`, or `Forwarded` elements left of the CDN's, never pick the bucket.
#[tokio::test(start_paused = true)]
async fn spoofed_entries_left_of_the_trusted_ranges_cannot_pick_the_bucket() {
    let cdn = ClientIp::trusting(["10.0.0.0/8", "192.0.2.0/24"])
        .unwrap()
        .header(ForwardedHeader::Forwarded);
    let app = limited(cdn, Quota::per_second(1));
    let requests = (0..100).map(|i| {
        let forwarded = format!("for=198.51.100.{i}, for=203.0.113.9, for=192.0.2.1");
        let xff = format!("198.51.100.{i}");
        request(
            "10.0.0.1:5000",
            &[("x-forwarded-for", &xff), ("forwarded", &forwarded)],
        )
    });
    let statuses = statuses_of(&app, requests).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    // A client talking to the service directly (an untrusted peer) is keyed by its own
    // address, whatever it writes.
    let direct = (0..3).map(|i| {
        let forwarded = format!("for=203.0.113.{i}");
        request("198.51.100.77:5000", &[("forwarded", &forwarded)])
    });
    assert_eq!(statuses_of(&app, direct).await, [200, 429, 429]);
}

/// The config names the header (required) and either a hop count or the proxies' ranges;
/// a typo in either is an error naming it, never a silently trusted header.
#[tokio::test(start_paused = true)]
async fn client_ip_config_names_its_header_and_its_trusted_proxies() {
    let parse = |key: &str| {
        serde_json::from_str::<RateLimitConfig>(&format!(
            r#"{{"quotas": [{{"count": 1, "period": "1s"}}], "key": {key}}}"#
        ))
    };
    let build = |key: &str| {
        RateLimitLayer::from_config(MemoryStore::new(100), &parse(key).unwrap()).map(|_| ())
    };
    let config =
        parse(r#"{"type": "client_ip", "header": "forwarded", "trusted_proxies": ["10.0.0.0/8"]}"#)
            .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::from_config(MemoryStore::new(100), &config).unwrap());
    let requests = (0..3).map(|i| {
        let xff = format!("198.51.100.{i}");
        request(
            "10.0.0.1:5000",
            &[("x-forwarded-for", &xff), ("forwarded", "for=203.0.113.9")],
        )
    });
    assert_eq!(statuses_of(&app, requests).await, [200, 429, 429]);
    build(r#"{"type": "client_ip", "header": "x-real-ip", "trusted_hops": 1}"#).unwrap();
    build(r#"{"type": "client_ip", "header": {"custom": "CF-Connecting-IP"}, "trusted_hops": 1}"#)
        .unwrap();

    let err = parse(r#"{"type": "client_ip", "trusted_hops": 1}"#).unwrap_err();
    assert!(err.to_string().contains("missing field `header`"), "{err}");
    let err = parse(r#"{"type": "client_ip", "header": "x-forwared-for", "trusted_hops": 1}"#)
        .unwrap_err();
    assert!(err.to_string().contains("x-forwared-for"), "{err}");
    let err =
        parse(r#"{"type": "client_ip", "header": "forwarded", "trusted_hop": 1}"#).unwrap_err();
    assert!(err.to_string().contains("trusted_hop"), "{err}");
    let err = build(
        r#"{"type": "client_ip", "header": "forwarded", "trusted_proxies": ["10.0.0.0/8", "10.1.0.0/40"]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"10.1.0.0/40\""), "{err}");
    let err =
        build(r#"{"type": "client_ip", "header": {"custom": "bad header"}, "trusted_hops": 1}"#)
            .unwrap_err();
    assert!(err.to_string().contains("bad header"), "{err}");
    for both_or_neither in [
        r#"{"type": "client_ip", "header": "forwarded"}"#,
        r#"{"type": "client_ip", "header": "forwarded", "trusted_hops": 1, "trusted_proxies": ["10.0.0.1"]}"#,
    ] {
        let err = build(both_or_neither).unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
    }
}

/// Property tests of the header parsers, through the extractor: what the client sends is
/// arbitrary (any bytes, or near-valid text built from the headers' own syntax), and the
/// trusted proxies append what the configuration says. The client is then always the address
/// the outermost trusted proxy saw (or, where a proxy wrote a non-address, the peer or an
/// address a trusted proxy appended), never anything the client wrote.
mod properties {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    use axum::http::{HeaderName, HeaderValue, Request};
    use proptest::prelude::*;
    use tower_scale_ratelimit::{ClientIp, ForwardedHeader, Key, KeyExtractor};

    const RANGES: [&str; 2] = ["10.0.0.0/8", "2001:db8::/32"];

    fn trusted_range(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 10,
            IpAddr::V6(v6) => v6.segments()[..2] == [0x2001, 0x0db8],
        }
    }

    fn trusted_address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|bits| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | bits >> 8))),
            any::<u128>().prop_map(|bits| {
                IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | bits >> 32))
            }),
        ]
    }

    fn outside_address() -> impl Strategy<Value = IpAddr> {
        any::<IpAddr>().prop_filter("outside the trusted ranges", |ip| {
            !trusted_range(ip.to_canonical())
        })
    }

    fn header() -> impl Strategy<Value = ForwardedHeader> {
        prop_oneof![
            Just(ForwardedHeader::Forwarded),
            Just(ForwardedHeader::XForwardedFor),
            Just(ForwardedHeader::XRealIp),
            Just(ForwardedHeader::custom("x-client").unwrap()),
        ]
    }

    fn name(header: &ForwardedHeader) -> HeaderName {
        HeaderName::from_static(match header {
            ForwardedHeader::Forwarded => "forwarded",
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::XRealIp => "x-real-ip",
            _ => "x-client",
        })
    }

    /// What the client writes: any bytes a header value may hold, or text made of the
    /// headers' own syntax and addresses.
    fn client_part() -> impl Strategy<Value = Vec<u8>> {
        let bytes = prop::collection::vec(any::<u8>(), 0..48).prop_map(|bytes| {
            bytes
                .into_iter()
                .filter(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f))
                .collect()
        });
        let token = prop_oneof![
            Just("for=".to_owned()),
            Just("For=".to_owned()),
            Just("by=".to_owned()),
            Just("\"".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just(":80".to_owned()),
            Just(",".to_owned()),
            Just(", ".to_owned()),
            Just(";".to_owned()),
            Just("=".to_owned()),
            Just(" ".to_owned()),
            Just("unknown".to_owned()),
            Just("_hidden".to_owned()),
            any::<IpAddr>().prop_map(|ip| ip.to_string()),
            any::<SocketAddr>().prop_map(|addr| addr.to_string()),
            "[a-z0-9.:]{0,6}",
        ];
        let text =
            prop::collection::vec(token, 0..10).prop_map(|parts| parts.concat().into_bytes());
        prop_oneof![bytes, text]
    }

    /// One entry a trusted proxy appends: the address it received the request from, in one of
    /// the forms proxies write, or (`hidden`) a non-address.
    fn entry(header: &ForwardedHeader, ip: IpAddr, form: u8, hidden: bool) -> String {
        let forwarded = *header == ForwardedHeader::Forwarded;
        let text = match (hidden, ip, form % 3) {
            (true, _, 0) => "unknown".to_owned(),
            (true, _, _) => "_hidden".to_owned(),
            (false, IpAddr::V6(v6), 1) => format!("[{v6}]:4711"),
            (false, ip, 2) if forwarded => format!("{ip};proto=https"),
            (false, ip, _) => ip.to_string(),
        };
        match (forwarded, ip, text.starts_with('[')) {
            (true, _, true) => format!("for=\"{text}\""),
            (true, _, false) => format!("for={text}"),
            (false, _, _) => text,
        }
    }

    /// The header lines: the client's part, then each appended entry on the same line
    /// (`, entry`, as nginx appends) or on a line of its own.
    fn lines(client: &[u8], appended: &[String], own_line: &[bool]) -> Vec<HeaderValue> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        if !client.is_empty() {
            lines.push(client.to_vec());
        }
        for (entry, own) in appended.iter().zip(own_line) {
            match lines.last_mut() {
                Some(line) if !own => line.extend_from_slice(format!(", {entry}").as_bytes()),
                _ => lines.push(entry.clone().into_bytes()),
            }
        }
        lines
            .into_iter()
            .map(|line| HeaderValue::from_bytes(&line).unwrap())
            .collect()
    }

    fn request(header: &ForwardedHeader, lines: Vec<HeaderValue>, peer: IpAddr) -> Request<()> {
        let mut req = Request::new(());
        for line in lines {
            req.headers_mut().append(name(header), line);
        }
        req.extensions_mut().insert(SocketAddr::new(peer, 443));
        req
    }

    /// A chain: the client's address, then up to 3 proxies in the trusted ranges (the last
    /// one is the peer), each entry in some form, some hidden, on the same line or not.
    #[derive(Debug, Clone)]
    struct Chain {
        header: ForwardedHeader,
        client_part: Vec<u8>,
        client: IpAddr,
        proxies: Vec<IpAddr>,
        forms: Vec<u8>,
        hidden: Vec<bool>,
        own_line: Vec<bool>,
    }

    fn chain() -> impl Strategy<Value = Chain> {
        (
            header(),
            client_part(),
            outside_address(),
            prop::collection::vec(trusted_address(), 0..4),
            prop::collection::vec(any::<u8>(), 4),
            prop::collection::vec(prop::bool::weighted(0.15), 4),
            prop::collection::vec(any::<bool>(), 4),
        )
            .prop_map(
                |(header, client_part, client, proxies, forms, hidden, own_line)| Chain {
                    header,
                    client_part,
                    client,
                    proxies,
                    forms,
                    hidden,
                    own_line,
                },
            )
    }

    impl Chain {
        /// The addresses the trusted proxies appended, in order (the client's first), and the
        /// peer.
        fn appended(&self) -> (Vec<(IpAddr, bool)>, IpAddr) {
            let mut seen = vec![self.client];
            seen.extend(&self.proxies);
            let peer = seen.pop().expect("the client at least");
            let entries = seen
                .into_iter()
                .enumerate()
                .map(|(i, ip)| (ip, self.hidden[i]))
                .collect();
            (entries, peer)
        }

        fn request(&self) -> Request<()> {
            let (appended, peer) = self.appended();
            let texts: Vec<String> = appended
                .iter()
                .enumerate()
                .map(|(i, (ip, hidden))| entry(&self.header, *ip, self.forms[i], *hidden))
                .collect();
            request(
                &self.header,
                lines(&self.client_part, &texts, &self.own_line),
                peer,
            )
        }
    }

    fn key(ip: IpAddr) -> Key {
        Key::ip(ip, 64)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Behind proxies trusted by range: the client is the address the outermost one saw
        /// when every proxy wrote an address; otherwise the peer or an address a trusted
        /// proxy appended. Never what the client wrote.
        #[test]
        fn behind_trusted_ranges_the_client_never_picks_its_address(chain in chain()) {
            let extractor = ClientIp::trusting(RANGES).unwrap().header(chain.header.clone());
            let got = extractor.extract(&chain.request().into_parts().0);
            let (appended, peer) = chain.appended();
            if appended.iter().all(|(_, hidden)| !hidden) {
                prop_assert_eq!(got, Some(key(chain.client)));
            } else {
                let allowed: Vec<Key> = appended
                    .iter()
                    .filter(|(_, hidden)| !hidden)
                    .map(|(ip, _)| key(*ip))
                    .chain([key(peer)])
                    .collect();
                let got = got.expect("a peer address: a key");
                prop_assert!(allowed.contains(&got), "{got} not in {allowed:?}");
            }
        }

        /// Behind `n` proxies trusted by count: the `n`-th entry from the right (the address
        /// the outermost proxy saw), or the peer when that proxy wrote a non-address.
        #[test]
        fn behind_trusted_hops_the_client_never_picks_its_address(chain in chain()) {
            let (appended, peer) = chain.appended();
            let extractor = ClientIp::new(appended.len()).header(chain.header.clone());
            let got = extractor.extract(&chain.request().into_parts().0);
            let expected = match appended.first() {
                Some((ip, false)) => *ip,
                _ => peer,
            };
            prop_assert_eq!(got, Some(key(expected)));
        }

        /// A peer outside the ranges is the client, whatever the header holds.
        #[test]
        fn an_untrusted_peer_is_the_client(
            header in header(),
            client_part in client_part(),
            peer in outside_address(),
        ) {
            let lines = lines(&client_part, &[], &[]);
            let extractor = ClientIp::trusting(RANGES).unwrap().header(header.clone());
            prop_assert_eq!(extractor.extract(&request(&header, lines, peer).into_parts().0), Some(key(peer)));
        }
    }
}
