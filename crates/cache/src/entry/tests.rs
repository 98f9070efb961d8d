use super::*;

fn response() -> Entry {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.append("x-many", HeaderValue::from_static("a"));
    headers.append("x-many", HeaderValue::from_static("b"));
    Entry {
        stored_at: 1_000,
        ttl_ms: 60_000,
        swr_ms: 5_000,
        sie_ms: 10_000,
        body: EntryBody::Response(StoredResponse {
            status: StatusCode::NOT_FOUND,
            age: 3,
            headers,
            body: Bytes::from_static(b"{\"a\":1}"),
        }),
    }
}

#[test]
fn response_round_trips() {
    let bytes = response().encode();
    let back = Entry::decode(bytes.clone()).unwrap();
    let EntryBody::Response(r) = back.body else {
        panic!("not a response")
    };
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.age, 3);
    assert_eq!(r.body, "{\"a\":1}");
    let many: Vec<_> = r.headers.get_all("x-many").iter().collect();
    assert_eq!(many, ["a", "b"]);
    assert_eq!(
        (back.stored_at, back.ttl_ms, back.swr_ms, back.sie_ms),
        (1_000, 60_000, 5_000, 10_000)
    );
    // Compact: 45 fixed bytes, then names, values and body with their lengths; no JSON
    // or base64 of the body. `content-type` is one byte; `x-many` is written out.
    let headers = (1 + 2 + 16) + 2 * (1 + 2 + 6 + 2 + 1);
    assert_eq!(bytes.len(), 45 + headers + 4 + 7);
}

#[test]
fn vary_and_value_round_trip() {
    let vary = Entry {
        body: EntryBody::Vary(vec![HeaderName::from_static("accept-encoding")].into()),
        ..response()
    };
    let EntryBody::Vary(names) = Entry::decode(vary.encode()).unwrap().body else {
        panic!()
    };
    assert_eq!(&*names, [HeaderName::from_static("accept-encoding")]);
    let value = Entry {
        body: EntryBody::Value(Bytes::from_static(b"42")),
        ..response()
    };
    let EntryBody::Value(v) = Entry::decode(value.encode()).unwrap().body else {
        panic!()
    };
    assert_eq!(v, "42");
    // The value is the entry's last field: a byte after it is corruption, not part of it.
    let mut extra = BytesMut::from(&value.encode()[..]);
    extra.put_u8(b'3');
    assert!(Entry::decode(extra.freeze()).is_err());
}

#[test]
fn garbage_and_truncation_are_errors_not_panics() {
    let bytes = response().encode();
    for cut in 0..bytes.len() {
        assert!(Entry::decode(bytes.slice(..cut)).is_err(), "cut at {cut}");
    }
    assert!(
        Entry::decode(Bytes::from_static(
            b"hello world, not an entry at all......"
        ))
        .is_err()
    );
    let mut extra = BytesMut::from(&bytes[..]);
    extra.put_u8(0);
    assert!(Entry::decode(extra.freeze()).is_err());
}

#[test]
fn a_stored_entry_claiming_65535_headers_is_an_error_not_a_panic() {
    // Bytes in the store are not trusted: a count beyond what a header map may hold (or
    // the bytes hold) used to panic the request that read them.
    let mut bytes = BytesMut::from(&response().encode()[..FIXED]);
    bytes.put_u16(200);
    bytes.put_u32(0);
    bytes.put_u16(u16::MAX);
    for _ in 0..u16::MAX {
        bytes.put_u8(1);
        put_short(&mut bytes, b"x");
    }
    bytes.put_u32(0);
    assert!(Entry::decode(bytes.freeze()).is_err());
}

#[test]
fn other_versions_do_not_decode() {
    // A version 1 entry (the hash-field layout), byte for byte as version 1 wrote it.
    let mut v1 = BytesMut::from(&b"TSC\x01"[..]);
    v1.put_u8(KIND_RESPONSE);
    for t in [1_000_u64, 60_000, 0, 0] {
        v1.put_u64(t);
    }
    v1.put_u16(200);
    v1.put_u32(0);
    v1.put_u16(0);
    v1.put_u32(2);
    v1.put_slice(b"{}");
    let err = Entry::decode(v1.freeze()).unwrap_err().to_string();
    assert!(err.contains("version"), "{err}");
    // A version 2 entry (every header name written out), byte for byte as version 2
    // wrote it.
    let mut v2 = BytesMut::from(&b"TSC\x02"[..]);
    v2.put_u8(KIND_RESPONSE);
    for t in [1_000_u64, 60_000, 0, 0] {
        v2.put_u64(t);
    }
    v2.put_u16(200);
    v2.put_u32(0);
    v2.put_u16(1);
    put_short(&mut v2, b"content-type");
    put_short(&mut v2, b"application/json");
    v2.put_u32(2);
    v2.put_slice(b"{}");
    let err = Entry::decode(v2.freeze()).unwrap_err().to_string();
    assert!(err.contains("version"), "{err}");
    let mut next = BytesMut::from(&response().encode()[..]);
    next[3] = 4;
    assert!(Entry::decode(next.freeze()).is_err());
}

#[test]
fn well_known_names_are_one_byte_and_others_round_trip() {
    // Every name of the table, and names that are not in it (standard or not).
    let mut headers = HeaderMap::new();
    for (i, name) in WELL_KNOWN.iter().enumerate() {
        headers.insert(name.clone(), HeaderValue::from(i));
    }
    headers.insert(header::WARNING, HeaderValue::from_static("199 - x"));
    headers.insert("x-custom", HeaderValue::from_static("y"));
    let entry = Entry {
        body: EntryBody::Response(StoredResponse {
            status: StatusCode::OK,
            age: 0,
            headers: headers.clone(),
            body: Bytes::new(),
        }),
        ..response()
    };
    let bytes = entry.encode();
    let EntryBody::Response(r) = Entry::decode(bytes.clone()).unwrap().body else {
        panic!("not a response")
    };
    assert_eq!(r.headers, headers);
    let values: usize = headers.values().map(|v| 2 + v.len()).sum();
    let names = WELL_KNOWN.len() + (3 + "warning".len()) + (3 + "x-custom".len());
    assert_eq!(bytes.len(), 45 + names + values + 4);
    // A code past the table is an error, not a panic.
    let mut unknown = BytesMut::from(&response().encode()[..]);
    let at = 45; // the first header's name code
    assert_eq!(unknown[at], 1, "content-type is the first well-known name");
    unknown[at] = u8::try_from(WELL_KNOWN.len() + 1).unwrap();
    assert!(Entry::decode(unknown.freeze()).is_err());
}

#[test]
fn decoding_shares_the_stored_bytes() {
    let bytes = response().encode();
    let EntryBody::Response(r) = Entry::decode(bytes.clone()).unwrap().body else {
        panic!("not a response")
    };
    let within = |p: *const u8| bytes.as_ptr_range().contains(&p);
    assert!(
        within(r.body.as_ptr()),
        "the body is a slice of the stored bytes"
    );
    for value in r.headers.get_all("x-many") {
        assert!(within(value.as_bytes().as_ptr()), "so are header values");
    }
    // A common value of its header is a static value instead: the body read from Redis
    // stays the buffer it was read into, no reference count allocated for it.
    let value = r.headers.get("content-type").unwrap();
    assert_eq!(value, "application/json");
    assert!(!within(value.as_bytes().as_ptr()), "a static value");
    assert!(
        r.headers.capacity() >= r.headers.len() + ADDED_HEADERS,
        "room for Age and Cache-Status"
    );
}

#[test]
fn common_values_decode_to_the_same_bytes_and_others_are_checked() {
    let with = |name: &str, value: &[u8]| {
        let mut e = response();
        let EntryBody::Response(r) = &mut e.body else {
            unreachable!()
        };
        r.headers = HeaderMap::new();
        // A placeholder of the same length, then overwritten in the encoded bytes with
        // `value`, which may be any bytes (as a corrupted store could hold them).
        r.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(&"a".repeat(value.len())).unwrap(),
        );
        let mut bytes = BytesMut::from(&e.encode()[..]);
        // The value ends where the body's length and the 7-byte body begin.
        let at = bytes.len() - 4 - 7 - value.len();
        assert_eq!(
            &bytes[at..at + value.len()],
            "a".repeat(value.len()).as_bytes()
        );
        bytes[at..at + value.len()].copy_from_slice(value);
        Entry::decode(bytes.freeze())
    };
    for (name, value) in [
        ("content-length", "1024"),
        ("content-length", "0"),
        ("content-length", "01"),
        ("content-length", "123456"),
        ("content-type", "application/json"),
        ("content-type", "application/x-ndjson"),
        ("content-encoding", "gzip"),
        ("etag", "\"1024\""),
    ] {
        let e = with(name, value.as_bytes()).unwrap();
        let EntryBody::Response(r) = &e.body else {
            panic!()
        };
        assert_eq!(r.headers.get(name).unwrap(), value, "{name}: {value}");
    }
    // A control byte is refused in a common header's value as in any other.
    for name in ["content-length", "content-type", "x-custom"] {
        assert!(with(name, b"10\n4").is_err(), "{name}");
        assert!(with(name, b"\x7f").is_err(), "{name}");
    }
}

#[test]
fn freshness_windows() {
    let e = response();
    assert_eq!(e.freshness(1_000), Freshness::Fresh(60_000));
    assert!(e.is_fresh(60_999));
    assert!(!e.is_fresh(61_000));
    assert!(e.can_revalidate_stale(65_999));
    assert!(!e.can_revalidate_stale(66_000));
    assert!(e.can_serve_on_error(70_999));
    assert!(!e.can_serve_on_error(71_000));
    assert!(e.is_usable(70_999));
    assert!(!e.is_usable(71_000));
    assert_eq!(e.store_ttl_ms(), 70_000);
    assert_eq!(e.age_secs(3_500), 5, "2 s resident + 3 s origin Age");
}

mod props {
    use proptest::prelude::*;

    use super::*;

    fn name() -> impl Strategy<Value = HeaderName> {
        prop_oneof![
            (0..WELL_KNOWN.len()).prop_map(|i| WELL_KNOWN[i].clone()),
            "[a-z0-9-]{1,12}".prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()),
        ]
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let headers =
            prop::collection::vec((name(), prop::collection::vec(b' '..=b'~', 0..20)), 0..12);
        let body = prop_oneof![
            (
                100u16..=999,
                any::<u32>(),
                headers,
                prop::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(status, age, headers, body)| {
                    let mut map = HeaderMap::new();
                    for (n, v) in headers {
                        map.append(n, HeaderValue::from_bytes(&v).unwrap());
                    }
                    EntryBody::Response(StoredResponse {
                        status: StatusCode::from_u16(status).unwrap(),
                        age,
                        headers: map,
                        body: Bytes::from(body),
                    })
                }),
            prop::collection::vec(name(), 0..6).prop_map(|n| EntryBody::Vary(n.into())),
            prop::collection::vec(any::<u8>(), 0..64)
                .prop_map(|v| EntryBody::Value(Bytes::from(v))),
        ];
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), body).prop_map(
            |(stored_at, ttl_ms, swr_ms, sie_ms, body)| Entry {
                stored_at,
                ttl_ms,
                swr_ms,
                sie_ms,
                body,
            },
        )
    }

    fn same(a: &Entry, b: &Entry) -> bool {
        let times = |e: &Entry| (e.stored_at, e.ttl_ms, e.swr_ms, e.sie_ms);
        times(a) == times(b)
            && match (&a.body, &b.body) {
                (EntryBody::Response(x), EntryBody::Response(y)) => {
                    x.status == y.status
                        && x.age == y.age
                        && x.headers == y.headers
                        && x.body == y.body
                }
                (EntryBody::Vary(x), EntryBody::Vary(y)) => x == y,
                (EntryBody::Value(x), EntryBody::Value(y)) => x == y,
                _ => false,
            }
    }

    /// Bytes that look like an entry (the current magic, a kind) followed by anything, or
    /// anything at all.
    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            (1u8..=3, prop::collection::vec(any::<u8>(), 32..200)).prop_map(|(kind, rest)| {
                let mut v = MAGIC.to_vec();
                v.push(kind);
                v.extend(rest);
                v
            }),
            entry().prop_flat_map(|e| {
                let bytes = e.encode().to_vec();
                let len = bytes.len();
                (Just(bytes), 0..len, any::<u8>()).prop_map(|(mut b, at, x)| {
                    b[at] = x;
                    b
                })
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn an_encoded_entry_decodes_to_the_same_entry(e in entry()) {
            let back = Entry::decode(e.encode()).unwrap();
            prop_assert!(same(&e, &back), "{e:?} came back as {back:?}");
        }

        #[test]
        fn any_bytes_decode_without_panic_and_a_decoded_entry_re_encodes_to_them(
            b in bytes()
        ) {
            if let Ok(e) = Entry::decode(Bytes::from(b.clone())) {
                prop_assert_eq!(&e.encode()[..], &b[..]);
            }
        }
    }
}
