//! The Redis store's record layout ([`RedisLayout::Record`](crate::RedisLayout::Record)): the
//! whole session as one string value, a JSON object of its fields (their JSON text as is) and
//! the store's own meta, always in this order: `{"__exp":E,"__idx":I,"__end":N,"__user":"u",
//! ...fields}` (`__exp` always, the others when set).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Serialize;
use serde_json::value::RawValue;
use tower_scale_core::StoreError;
use tower_scale_redis::redis::{self, Script};
use tower_scale_redis::{Error as RedisError, RedisBackend};

use super::{ENDS_FIELD, EXPIRES_FIELD, INDEXED_FIELD, Record, SaveOutcome, USER_FIELD};

/// Sets a record's `__exp` (and `__idx`) and its TTL, keeping everything else as stored now:
/// the sliding refresh, which never overwrites a change made since the session was read.
///
/// `KEYS[1]` the record. `ARGV`: expiry (ms since the epoch), `__idx` (`''`: keep), TTL in ms.
/// Returns 1 saved, 0 missing.
static REFRESH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("refresh.lua")));

/// The parts of a record to write: the meta, then the fields.
pub(super) struct Encoded<'a> {
    pub(super) expires_at: u64,
    pub(super) indexed_until: Option<u64>,
    pub(super) ends_at: Option<u64>,
    pub(super) user: Option<&'a str>,
}

impl Encoded<'_> {
    /// The record's bytes: the meta, then `kept` (fields already stored, JSON text known to be
    /// valid) and `set` (checked to be JSON text: the record must stay readable).
    pub(super) fn encode<'f>(
        &self,
        kept: impl Iterator<Item = (&'f str, &'f str)>,
        set: &[(String, String)],
    ) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::with_capacity(
            64 + set
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>(),
        );
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(EXPIRES_FIELD.as_bytes());
        out.extend_from_slice(b"\":");
        push_number(&mut out, self.expires_at);
        if let Some(until) = self.indexed_until {
            push_name(&mut out, INDEXED_FIELD);
            push_number(&mut out, until);
        }
        if let Some(end) = self.ends_at {
            push_name(&mut out, ENDS_FIELD);
            push_number(&mut out, end);
        }
        if let Some(user) = self.user {
            push_name(&mut out, USER_FIELD);
            push_string(&mut out, user);
        }
        for (name, json) in kept {
            push_name(&mut out, name);
            out.extend_from_slice(json.as_bytes());
        }
        for (name, json) in set {
            if serde_json::from_str::<&RawValue>(json).is_err() {
                return Err(StoreError::new(format!(
                    "the value of session field `{name}` is not JSON text"
                )));
            }
            push_name(&mut out, name);
            out.extend_from_slice(json.as_bytes());
        }
        out.push(b'}');
        Ok(out)
    }
}

fn push_number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// `,"name":`, the name escaped as JSON.
fn push_name(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    push_string(out, name);
    out.push(b':');
}

fn push_string(out: &mut Vec<u8>, s: &str) {
    // Writing a `str` into a `Vec` cannot fail.
    let _ = s.serialize(&mut serde_json::Serializer::new(&mut *out));
}

/// A record read back; `Err` for a value this store did not write.
pub(super) fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
    let corrupt = || {
        StoreError::corrupt(
            "session value is not a record written by tower-scale-session (`__exp` missing or unreadable)",
        )
    };
    let mut map: HashMap<String, &RawValue> =
        serde_json::from_slice(bytes).map_err(|_| corrupt())?;
    let number = |v: Option<&RawValue>| v.and_then(|v| v.get().parse::<u64>().ok());
    let expires_at = number(map.remove(EXPIRES_FIELD)).ok_or_else(corrupt)?;
    let user = match map.remove(USER_FIELD) {
        Some(v) => Some(serde_json::from_str::<String>(v.get()).map_err(|_| corrupt())?),
        None => None,
    };
    let ends_at = number(map.remove(ENDS_FIELD));
    let indexed = number(map.remove(INDEXED_FIELD));
    let fields = map
        .into_iter()
        .map(|(k, v)| (k, v.get().to_owned()))
        .collect();
    Ok(Record::new(fields, expires_at, user)
        .with_user_indexed_until(indexed)
        .with_ends_at(ends_at))
}

/// `SET key value PX ttl NX|XX`: `Saved` when written, else `missing` (the condition failed).
pub(super) async fn set(
    backend: &RedisBackend,
    key: &str,
    value: &[u8],
    ttl_ms: u64,
    create: bool,
) -> Result<SaveOutcome, RedisError> {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key)
        .arg(value)
        .arg("PX")
        .arg(ttl_ms)
        .arg(if create { "NX" } else { "XX" });
    let written: Option<String> = backend.query(&cmd).await?;
    Ok(match (written, create) {
        (Some(_), _) => SaveOutcome::Saved,
        (None, true) => SaveOutcome::Collision,
        (None, false) => SaveOutcome::Missing,
    })
}

/// The sliding refresh: `__exp`, `__idx` (when given) and the TTL of the record as stored now.
pub(super) async fn refresh(
    backend: &RedisBackend,
    key: &str,
    expires_at: u64,
    indexed_until: Option<u64>,
    ttl_ms: u64,
) -> Result<SaveOutcome, RedisError> {
    let mut invocation = REFRESH.key(key);
    invocation.arg(expires_at);
    match indexed_until {
        Some(until) => invocation.arg(until),
        None => invocation.arg(""),
    };
    invocation.arg(ttl_ms);
    let status: i64 = backend.invoke(&invocation).await?;
    Ok(if status == 1 {
        SaveOutcome::Saved
    } else {
        SaveOutcome::Missing
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let set = vec![
            ("count".to_owned(), "0".to_owned()),
            (
                "quote \" and \\ and é".to_owned(),
                "{\"a\":[1,2]}".to_owned(),
            ),
        ];
        let meta = Encoded {
            expires_at: 1_700_000_000_000,
            indexed_until: Some(1_700_000_600_000),
            ends_at: Some(1_700_000_900_000),
            user: Some("al\"ice"),
        };
        let kept = [("theme", "\"dark\"")];
        let bytes = meta.encode(kept.into_iter(), &set).unwrap();
        let record = decode(&bytes).unwrap();
        assert_eq!(record.expires_at, 1_700_000_000_000);
        assert_eq!(record.user_indexed_until, Some(1_700_000_600_000));
        assert_eq!(record.ends_at, Some(1_700_000_900_000));
        assert_eq!(record.user.as_deref(), Some("al\"ice"));
        assert_eq!(record.fields.len(), 3);
        assert_eq!(record.fields["count"], "0");
        assert_eq!(record.fields["quote \" and \\ and é"], "{\"a\":[1,2]}");
        assert_eq!(record.fields["theme"], "\"dark\"");
        // The refresh script relies on `__exp` first, `__idx` right after it.
        assert!(bytes.starts_with(b"{\"__exp\":1700000000000,\"__idx\":1700000600000,"));
    }

    #[test]
    fn a_bare_record_is_compact() {
        let meta = Encoded {
            expires_at: 1_700_000_000_000,
            indexed_until: None,
            ends_at: None,
            user: None,
        };
        let set = vec![("count".to_owned(), "0".to_owned())];
        let bytes = meta.encode(std::iter::empty(), &set).unwrap();
        assert_eq!(bytes, b"{\"__exp\":1700000000000,\"count\":0}");
    }

    #[test]
    fn a_value_that_is_not_json_or_a_foreign_value_is_refused() {
        let meta = Encoded {
            expires_at: 1,
            indexed_until: None,
            ends_at: None,
            user: None,
        };
        let set = vec![("a".to_owned(), "not json".to_owned())];
        let e = meta.encode(std::iter::empty(), &set).unwrap_err();
        assert!(e.to_string().contains("`a`"), "{e}");
        for foreign in [
            &b"plain text"[..],
            b"{\"count\":1}",
            b"{\"__exp\":\"x\"}",
            b"[1]",
        ] {
            assert!(decode(foreign).unwrap_err().is_corrupt());
        }
    }
}
