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
//! Decoding copies nothing: the body and the header values are slices of the stored bytes,
//! but for the common values of a few headers (a `Content-Length`, a usual `Content-Type`),
//! taken as static values: a body read from Redis then stays the one buffer it was read into,
//! with no reference count allocated for it.
//! Version 3 stores well-known header names as table indices; version 2 (one Redis string per
//! entry) stored every name as text, and version 1 entries were fields of one hash per group.
//! Bytes of any other version do not decode: a lookup treats them as a miss and the next store
//! overwrites them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::StoreError;
use crate::http::values;

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
                    let value = get_value(&mut buf, &name)?;
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

/// A header value written by [`put_short`]: a static value when it is a common one of its
/// header (nothing allocated, nothing shared), else a slice of the stored bytes; checked
/// either way (a corrupt value is an error, never an invalid header).
fn get_value(buf: &mut Bytes, name: &HeaderName) -> Result<HeaderValue, StoreError> {
    need(buf, 2)?;
    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
    let raw = buf.get(2..2 + len).ok_or_else(|| corrupt("truncated"))?;
    if let Some(value) = values::stored(name, raw) {
        buf.advance(2 + len);
        return Ok(value);
    }
    buf.advance(2);
    HeaderValue::from_maybe_shared(buf.split_to(len)).map_err(|_| corrupt("invalid header value"))
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
mod tests;
