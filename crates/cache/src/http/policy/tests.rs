use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn rules() -> Rules<'static> {
    Rules {
        statuses: &[200, 404],
        any_status: false,
        heuristic_max_secs: None,
        keep_ms: 0,
        targeted: &[],
        route_ttl: None,
        override_origin_ttl: false,
        swr_ms: 0,
        sie_ms: 0,
        authorized: false,
    }
}

fn decide(h: &[(&str, &str)]) -> Result<Lifetimes, Reason> {
    storable(&rules(), StatusCode::OK, &headers(h), 0).map(|(l, _)| l)
}

#[test]
fn directives_decide_storability() {
    assert_eq!(
        decide(&[("cache-control", "max-age=60")]).unwrap().ttl_ms,
        60_000
    );
    assert_eq!(
        decide(&[("cache-control", "max-age=60, s-maxage=10")])
            .unwrap()
            .ttl_ms,
        10_000,
        "s-maxage wins in a shared cache"
    );
    assert_eq!(
        decide(&[("cache-control", "no-store, max-age=60")]),
        Err("no-store")
    );
    assert_eq!(
        decide(&[("cache-control", "PRIVATE, max-age=60")]),
        Err("private")
    );
    assert_eq!(
        decide(&[("cache-control", "no-cache, max-age=60")]),
        Err("no-cache")
    );
    assert_eq!(
        decide(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]),
        Err("set-cookie")
    );
    assert_eq!(
        decide(&[("cache-control", "max-age=60"), ("vary", "*")]),
        Err("vary")
    );
    assert_eq!(decide(&[]), Err("no-ttl"));
    assert_eq!(decide(&[("cache-control", "max-age=0")]), Err("no-ttl"));
    assert_eq!(decide(&[("cache-control", "max-age=abc")]), Err("no-ttl"));
    let l = decide(&[(
        "cache-control",
        "max-age=60, stale-while-revalidate=30, stale-if-error=600",
    )])
    .unwrap();
    assert_eq!((l.swr_ms, l.sie_ms), (30_000, 600_000));
    let l = decide(&[(
        "cache-control",
        "max-age=60, stale-if-error=600, must-revalidate",
    )])
    .unwrap();
    assert_eq!(
        (l.swr_ms, l.sie_ms),
        (0, 0),
        "must-revalidate forbids serving stale"
    );
    assert_eq!(
        storable(
            &rules(),
            StatusCode::CREATED,
            &headers(&[("cache-control", "max-age=60")]),
            0
        ),
        Err("status")
    );
}

#[test]
fn route_ttl_is_a_fallback_or_an_override() {
    let mut r = rules();
    r.route_ttl = Some(5_000);
    let h = headers(&[("cache-control", "max-age=60")]);
    assert_eq!(
        storable(&r, StatusCode::OK, &h, 0).unwrap().0.ttl_ms,
        60_000
    );
    assert_eq!(
        storable(&r, StatusCode::OK, &HeaderMap::new(), 0)
            .unwrap()
            .0
            .ttl_ms,
        5_000
    );
    r.override_origin_ttl = true;
    assert_eq!(storable(&r, StatusCode::OK, &h, 0).unwrap().0.ttl_ms, 5_000);
}

#[test]
fn authorized_requests_need_explicit_permission() {
    let mut r = rules();
    r.authorized = true;
    let plain = headers(&[("cache-control", "max-age=60")]);
    assert_eq!(
        storable(&r, StatusCode::OK, &plain, 0).unwrap_err(),
        "authorization"
    );
    for ok in [
        "public, max-age=60",
        "s-maxage=60",
        "max-age=60, must-revalidate",
    ] {
        let h = headers(&[("cache-control", ok)]);
        assert!(storable(&r, StatusCode::OK, &h, 0).is_ok(), "{ok}");
    }
}

#[test]
fn vary_and_variants() {
    let h = headers(&[
        ("vary", "Accept-Encoding, accept-language"),
        ("vary", "accept-encoding"),
    ]);
    let names = vary_names(&h).unwrap();
    assert_eq!(names, ["accept-encoding", "accept-language"]);
    let a = variant_field(&names, &headers(&[("accept-encoding", "gzip, br")]));
    let b = variant_field(&names, &headers(&[("accept-encoding", "BR,gzip;q=0.9")]));
    assert_eq!(a, b);
    assert_eq!(a, "GET|accept-encoding=br|accept-language=");
    assert_ne!(
        a,
        variant_field(&names, &headers(&[("accept-encoding", "gzip")]))
    );
    for (accept, coding) in [
        ("", "identity"),
        ("gzip;q=0", "identity"),
        ("x-custom, identity", "identity"),
        ("gzip;q=0.5, deflate;q=0.6", "deflate"),
        ("*", "zstd"),
        ("*;q=0.5, zstd;q=0", "br"),
        ("gzip;q=bad", "gzip"),
        ("gzip, deflate, br, zstd", "zstd"),
    ] {
        assert_eq!(
            negotiated_coding(&headers(&[("accept-encoding", accept)])),
            coding,
            "{accept}"
        );
    }
    assert_eq!(negotiated_coding(&HeaderMap::new()), "identity");
}

#[test]
fn etags_compare_weakly() {
    let e = HeaderValue::from_static("\"v1\"");
    let etag = Some(&e);
    assert!(etag_matches(&HeaderValue::from_static("\"v1\""), etag));
    assert!(etag_matches(&HeaderValue::from_static("W/\"v1\""), etag));
    assert!(etag_matches(
        &HeaderValue::from_static("\"x\", \"v1\""),
        etag
    ));
    assert!(etag_matches(&HeaderValue::from_static("*"), etag));
    assert!(etag_matches(&HeaderValue::from_static("*"), None));
    assert!(!etag_matches(&HeaderValue::from_static("\"v1\""), None));
    assert!(!etag_matches(&HeaderValue::from_static("\"v2\""), etag));
    assert!(!etag_matches(&HeaderValue::from_static("\"v1"), etag));
    assert!(etag_matches(
        &HeaderValue::from_static("\"v2\" , W/\"v1\""),
        Some(&HeaderValue::from_static("W/\"v1\""))
    ));
}

mod props {
    use proptest::prelude::*;
    use tower_scale_compression::{Encoding, negotiate};

    use super::*;

    const SHAPES: [&str; 5] = ["identity", "zstd", "br", "gzip", "deflate"];

    fn accept_with(value: &[u8]) -> Option<HeaderMap> {
        let v = HeaderValue::from_bytes(value).ok()?;
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, v);
        Some(h)
    }

    /// A well-formed `Accept-Encoding` list: codings (known, `*`, others) with q-values.
    fn list() -> impl Strategy<Value = String> {
        let coding = prop_oneof![
            Just("gzip"),
            Just("deflate"),
            Just("br"),
            Just("zstd"),
            Just("identity"),
            Just("*"),
            Just("x-other"),
        ];
        let q = prop_oneof![
            Just(String::new()),
            (0u16..=1000).prop_map(|m| format!(";q={}", f32::from(m) / 1000.0)),
            Just(";q=0".to_owned()),
            Just(";q=1".to_owned()),
        ];
        prop::collection::vec((coding, q, prop_oneof![Just(""), Just(" ")]), 0..6).prop_map(
            |items| {
                items
                    .into_iter()
                    .map(|(c, q, sp)| format!("{sp}{c}{q}"))
                    .collect::<Vec<_>>()
                    .join(",")
            },
        )
    }

    fn directive() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("no-store"),
            Just("no-cache"),
            Just("private"),
            Just("public"),
            Just("must-revalidate"),
            Just("proxy-revalidate"),
            Just("max-age"),
            Just("s-maxage"),
            Just("stale-while-revalidate"),
            Just("stale-if-error"),
            Just("MAX-AGE"),
            Just("x-ext"),
        ];
        let arg = prop_oneof![
            Just(String::new()),
            any::<u64>().prop_map(|n| format!("={n}")),
            "=\"?[0-9a-z]{0,4}\"?",
        ];
        (name, arg).prop_map(|(n, a)| format!("{n}{a}"))
    }

    /// The directives as one `Cache-Control` value.
    fn serialise(d: &Directives) -> String {
        let mut out = Vec::new();
        for (on, name) in [
            (d.no_store, "no-store"),
            (d.no_cache, "no-cache"),
            (d.private, "private"),
            (d.public, "public"),
            (d.must_revalidate, "must-revalidate"),
        ] {
            if on {
                out.push(name.to_owned());
            }
        }
        for (value, name) in [
            (d.max_age, "max-age"),
            (d.s_maxage, "s-maxage"),
            (d.stale_while_revalidate, "stale-while-revalidate"),
            (d.stale_if_error, "stale-if-error"),
        ] {
            if let Some(v) = value {
                out.push(format!("{name}={v}"));
            }
        }
        out.join(", ")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn any_accept_encoding_negotiates_one_of_five_codings_stably(
            value in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..40),
                list().prop_map(String::into_bytes),
            ]
        ) {
            if let Some(h) = accept_with(&value) {
                let coding = negotiated_coding(&h);
                prop_assert!(SHAPES.contains(&coding), "{coding}");
                // Normalised: the chosen coding, sent alone, is chosen again.
                let again = accept_with(coding.as_bytes()).unwrap();
                prop_assert_eq!(negotiated_coding(&again), coding);
                // The variant field names it and only it.
                let names = [header::ACCEPT_ENCODING];
                prop_assert_eq!(
                    variant_field(&names, &h),
                    format!("GET|accept-encoding={coding}")
                );
            }
        }

        #[test]
        fn negotiation_picks_what_the_compression_layer_sends(value in list()) {
            let h = accept_with(value.as_bytes()).unwrap();
            let preference = [Encoding::Zstd, Encoding::Br, Encoding::Gzip, Encoding::Deflate];
            let sent = negotiate(Some(&value), &preference).map_or("identity", Encoding::token);
            prop_assert_eq!(negotiated_coding(&h), sent, "{}", value);
        }

        #[test]
        fn cache_control_parses_without_panic_and_its_re_serialisation_parses_the_same(
            raw in prop::collection::vec(any::<u8>(), 0..60),
            list in prop::collection::vec(directive(), 0..6),
            sep in prop_oneof![Just(","), Just(", "), Just(" ,")],
        ) {
            for value in [raw, list.join(sep).into_bytes()] {
                let Ok(v) = HeaderValue::from_bytes(&value) else { continue };
                let mut h = HeaderMap::new();
                h.insert(header::CACHE_CONTROL, v);
                let d = Directives::parse(&h);
                let mut again = HeaderMap::new();
                again.insert(header::CACHE_CONTROL, HeaderValue::from_str(&serialise(&d)).unwrap());
                prop_assert_eq!(Directives::parse(&again), d);
            }
        }
    }
}
