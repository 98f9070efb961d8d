//! Cache entries and their compact binary encoding.
//!
//! Layout (big endian): `"TSC"` and a version byte, a kind byte, four `u64` (stored at, ttl,
//! stale-while-revalidate and stale-if-error windows in milliseconds), then per kind:
//! - response: status `u16`, origin `Age` `u32`, header count `u16`, each header as its name
//!   then `u16` value length, value; body `u32` length and bytes;
//! - vary marker: count `u16`, each header name;
//! - value: `u32` length and bytes.
//!
//! A header name is one byte: `n` in `1..=WELL_KNOWN.len()` for the well-known name
//! `WELL_KNOWN[n - 1]` (taken as is when decoding: nothing to parse), or `0` followed by the
//! name with a `u16` length.
//!
//! Decoding copies nothing: the body and the header values are slices of the stored bytes.
//! Version 3 stores well-known header names as table indices; version 2 (one Redis string per
//! entry) stored every name as text, and version 1 entries were fields of one hash per group.
//! Bytes of any other version do not decode: a lookup treats them as a miss and the next store
//! overwrites them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::StoreError;

/// Magic and version of the current layout.
const MAGIC: &[u8; 4] = b"TSC\x03";
/// Fixed bytes before the kind's own part: magic and version, kind, four `u64`.
const FIXED: usize = MAGIC.len() + 1 + 4 * 8;
/// Headers a served response adds to the stored ones (`Age`, `Cache-Status`, and the
/// `Content-Length` that axum's router sets on a body of known size): decoded header maps
/// reserve room for them so that serving does not grow the map.
pub(crate) const ADDED_HEADERS: usize = 3;
const KIND_RESPONSE: u8 = 1;
const KIND_VARY: u8 = 2;
const KIND_VALUE: u8 = 3;

/// Header names stored as one byte (their index plus one). Append only: an index, once
/// written, names the same header for as long as version 3 entries exist.
static WELL_KNOWN: [HeaderName; 24] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LOCATION,
    header::CONTENT_DISPOSITION,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
    header::EXPIRES,
    header::DATE,
    header::VARY,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::X_CONTENT_TYPE_OPTIONS,
    header::STRICT_TRANSPORT_SECURITY,
    header::CONTENT_SECURITY_POLICY,
    header::X_FRAME_OPTIONS,
    header::REFERRER_POLICY,
    header::LINK,
    header::LOCATION,
    header::SERVER,
    header::ACCEPT_RANGES,
];

/// One stored thing: a response, the `Vary` marker of a URI, or a typed value.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// Wall-clock milliseconds when stored.
    pub(crate) stored_at: u64,
    /// Freshness lifetime.
    pub(crate) ttl_ms: u64,
    /// How long after going stale it may be served while one refresh runs.
    pub(crate) swr_ms: u64,
    /// How long after going stale it may be served when the origin fails.
    pub(crate) sie_ms: u64,
    pub(crate) body: EntryBody,
}

#[derive(Clone, Debug)]
pub(crate) enum EntryBody {
    Response(StoredResponse),
    Vary(Box<[HeaderName]>),
    Value(Bytes),
}

#[derive(Clone, Debug)]
pub(crate) struct StoredResponse {
    pub(crate) status: StatusCode,
    /// The `Age` the origin sent, in seconds.
    pub(crate) age: u32,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Where an entry stands at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Fresh for this many more milliseconds.
    Fresh(u64),
    /// Stale by this many milliseconds.
    Stale(u64),
}

impl Entry {
    pub(crate) fn freshness(&self, now_ms: u64) -> Freshness {
        let age = now_ms.saturating_sub(self.stored_at);
        if age < self.ttl_ms {
            Freshness::Fresh(self.ttl_ms - age)
        } else {
            Freshness::Stale(age - self.ttl_ms)
        }
    }

    pub(crate) fn is_fresh(&self, now_ms: u64) -> bool {
        matches!(self.freshness(now_ms), Freshness::Fresh(_))
    }

    /// May be served stale while one refresh runs.
    pub(crate) fn can_revalidate_stale(&self, now_ms: u64) -> bool {
        matches!(self.freshness(now_ms), Freshness::Stale(s) if s < self.swr_ms)
    }

    /// May be served stale when the origin fails.
    pub(crate) fn can_serve_on_error(&self, now_ms: u64) -> bool {
        matches!(self.freshness(now_ms), Freshness::Stale(s) if s < self.sie_ms)
    }

    /// Whether the entry has any use left (fresh, or within a stale window).
    pub(crate) fn is_usable(&self, now_ms: u64) -> bool {
        match self.freshness(now_ms) {
            Freshness::Fresh(_) => true,
            Freshness::Stale(s) => s < self.swr_ms.max(self.sie_ms),
        }
    }

    /// How long the store keeps it: the freshness lifetime plus the longer stale window.
    pub(crate) fn store_ttl_ms(&self) -> u64 {
        self.ttl_ms
            .saturating_add(self.swr_ms.max(self.sie_ms))
            .max(1)
    }

    /// Age in whole seconds, the origin's `Age` included (RFC 9111 §4.2.3).
    pub(crate) fn age_secs(&self, now_ms: u64) -> u64 {
        let resident = now_ms.saturating_sub(self.stored_at) / 1000;
        let origin = match &self.body {
            EntryBody::Response(r) => u64::from(r.age),
            _ => 0,
        };
        resident + origin
    }

    pub(crate) fn encode(&self) -> Bytes {
        let extra = match &self.body {
            EntryBody::Response(r) => {
                r.body.len()
                    + r.headers
                        .iter()
                        .map(|(n, v)| name_len(n) + v.len() + 2)
                        .sum::<usize>()
                    + 12
            }
            EntryBody::Vary(names) => names.iter().map(name_len).sum::<usize>() + 2,
            EntryBody::Value(v) => v.len() + 4,
        };
        let mut out = BytesMut::with_capacity(FIXED + extra);
        out.put_slice(MAGIC);
        out.put_u8(match &self.body {
            EntryBody::Response(_) => KIND_RESPONSE,
            EntryBody::Vary(_) => KIND_VARY,
            EntryBody::Value(_) => KIND_VALUE,
        });
        out.put_u64(self.stored_at);
        out.put_u64(self.ttl_ms);
        out.put_u64(self.swr_ms);
        out.put_u64(self.sie_ms);
        match &self.body {
            EntryBody::Response(r) => {
                out.put_u16(r.status.as_u16());
                out.put_u32(r.age);
                let count = r.headers.len().min(usize::from(u16::MAX));
                out.put_u16(count as u16);
                for (name, value) in r.headers.iter().take(count) {
                    put_name(&mut out, name);
                    put_short(&mut out, value.as_bytes());
                }
                put_long(&mut out, &r.body);
            }
            EntryBody::Vary(names) => {
                out.put_u16(names.len() as u16);
                for name in names.iter() {
                    put_name(&mut out, name);
                }
            }
            EntryBody::Value(v) => put_long(&mut out, v),
        }
        out.freeze()
    }

    pub(crate) fn decode(mut buf: Bytes) -> Result<Self, StoreError> {
        if buf.len() < FIXED || buf[..3] != MAGIC[..3] {
            return Err(corrupt("bad magic"));
        }
        if buf[3] != MAGIC[3] {
            return Err(corrupt("another layout version"));
        }
        buf.advance(4);
        let kind = buf.get_u8();
        let stored_at = buf.get_u64();
        let ttl_ms = buf.get_u64();
        let swr_ms = buf.get_u64();
        let sie_ms = buf.get_u64();
        let body = match kind {
            KIND_RESPONSE => {
                need(&buf, 8)?;
                let status =
                    StatusCode::from_u16(buf.get_u16()).map_err(|_| corrupt("invalid status"))?;
                let age = buf.get_u32();
                let count = buf.get_u16();
                // Each field takes at least 3 bytes; a count the bytes cannot hold, or a map
                // larger than a `HeaderMap` may be, is corruption (not a panic).
                if usize::from(count) * 3 > buf.remaining() {
                    return Err(corrupt("truncated"));
                }
                let mut headers = HeaderMap::try_with_capacity(usize::from(count) + ADDED_HEADERS)
                    .map_err(|_| corrupt("too many headers"))?;
                let mut last: Option<HeaderName> = None;
                for _ in 0..count {
                    // A well-known name is taken from the table; another is parsed in place.
                    let name = get_name(&mut buf).ok_or_else(|| corrupt("invalid header name"))?;
                    let value = get_short(&mut buf)?;
                    let value = HeaderValue::from_maybe_shared(value)
                        .map_err(|_| corrupt("invalid header value"))?;
                    // A name's values are written together (as a map iterates them): bytes
                    // with them apart were not written by `encode`.
                    let again = last.as_ref() == Some(&name);
                    let existed = headers
                        .try_append(name.clone(), value)
                        .map_err(|_| corrupt("too many headers"))?;
                    if existed && !again {
                        return Err(corrupt("a header's values apart"));
                    }
                    last = Some(name);
                }
                let body = get_last(&mut buf)?;
                EntryBody::Response(StoredResponse {
                    status,
                    age,
                    headers,
                    body,
                })
            }
            KIND_VARY => {
                need(&buf, 2)?;
                let count = buf.get_u16();
                let mut names = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    names.push(get_name(&mut buf).ok_or_else(|| corrupt("invalid vary name"))?);
                }
                EntryBody::Vary(names.into())
            }
            KIND_VALUE => EntryBody::Value(get_last(&mut buf)?),
            _ => return Err(corrupt("unknown kind")),
        };
        if buf.has_remaining() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(Self {
            stored_at,
            ttl_ms,
            swr_ms,
            sie_ms,
            body,
        })
    }
}

/// Whether `headers` fit the response layout: at most `u16::MAX` fields, each name and value
/// at most `u16::MAX` bytes (a response that does not is not stored rather than stored cut).
pub(crate) fn headers_fit(headers: &HeaderMap) -> bool {
    let max = usize::from(u16::MAX);
    headers.len() <= max
        && headers
            .iter()
            .all(|(n, v)| n.as_str().len() <= max && v.len() <= max)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::corrupt(what)
}

fn need(buf: &Bytes, n: usize) -> Result<(), StoreError> {
    if buf.remaining() < n {
        Err(corrupt("truncated"))
    } else {
        Ok(())
    }
}

pub(crate) fn put_short(out: &mut BytesMut, bytes: &[u8]) {
    let len = bytes.len().min(usize::from(u16::MAX));
    out.put_u16(len as u16);
    out.put_slice(&bytes[..len]);
}

fn put_long(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.put_slice(bytes);
}

pub(crate) fn get_short(buf: &mut Bytes) -> Result<Bytes, StoreError> {
    need(buf, 2)?;
    let len = usize::from(buf.get_u16());
    need(buf, len)?;
    Ok(buf.split_to(len))
}

/// The index plus one of a well-known name, else 0.
fn name_code(name: &HeaderName) -> u8 {
    WELL_KNOWN
        .iter()
        .position(|n| n == name)
        .and_then(|i| u8::try_from(i + 1).ok())
        .unwrap_or(0)
}

/// Encoded length of a header name.
fn name_len(name: &HeaderName) -> usize {
    if name_code(name) == 0 {
        3 + name.as_str().len()
    } else {
        1
    }
}

/// Writes a header name: its well-known code, or 0 and the name with its length.
fn put_name(out: &mut BytesMut, name: &HeaderName) {
    let code = name_code(name);
    out.put_u8(code);
    if code == 0 {
        put_short(out, name.as_str().as_bytes());
    }
}

/// A header name written by [`put_name`], read in place; `None` if truncated, invalid, an
/// unknown code, or not as `put_name` writes it (a name of the table written out, uppercase).
fn get_name(buf: &mut Bytes) -> Option<HeaderName> {
    let code = *buf.first()?;
    if code != 0 {
        let name = WELL_KNOWN.get(usize::from(code) - 1)?.clone();
        buf.advance(1);
        return Some(name);
    }
    if buf.remaining() < 3 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[1], buf[2]]));
    let raw = buf.get(3..3 + len)?;
    let name = HeaderName::from_bytes(raw).ok()?;
    // Only the form `put_name` writes: lowercase, and not a name of the table.
    if name.as_str().as_bytes() != raw || name_code(&name) != 0 {
        return None;
    }
    buf.advance(3 + len);
    Some(name)
}

/// The last field (a response's body, a value): a `u32` length and that many bytes, which
/// must end the entry. The rest of `buf` itself is taken, not a copy and not split off: a value
/// read from Redis (a buffer of its own, which no header value shares) stays unshared, with no
/// reference count allocated for it.
fn get_last(buf: &mut Bytes) -> Result<Bytes, StoreError> {
    need(buf, 4)?;
    let len = buf.get_u32() as usize;
    need(buf, len)?;
    if buf.len() > len {
        return Err(corrupt("trailing bytes"));
    }
    Ok(std::mem::take(buf))
}

#[cfg(test)]
mod tests {
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
        let value = r.headers.get("content-type").unwrap();
        assert!(within(value.as_bytes().as_ptr()), "so are header values");
        assert!(
            r.headers.capacity() >= r.headers.len() + ADDED_HEADERS,
            "room for Age and Cache-Status"
        );
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
}
