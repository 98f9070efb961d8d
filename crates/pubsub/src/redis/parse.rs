//! Parsing of stream replies (RESP2 arrays, or RESP3 maps), without a map per entry.

use bytes::Bytes;
use redis::Value;

use crate::MessageId;

/// One stream entry: its id and its `d` field.
pub(crate) type Entry = (MessageId, Bytes);

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn into_bytes(v: Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::from(b)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        _ => None,
    }
}

/// `[id, [field, value, ...]]`; entries without a `d` field (written by someone else) are
/// skipped.
fn entry(v: Value) -> Option<Entry> {
    let Value::Array(parts) = v else { return None };
    let mut parts = parts.into_iter();
    let id = MessageId::parse_bytes(bytes(&parts.next()?)?)?;
    let Value::Array(fields) = parts.next()? else {
        return None;
    };
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if bytes(&name) == Some(b"d") {
            return Some((id, into_bytes(value)?));
        }
    }
    None
}

/// An `XRANGE`/`XREVRANGE` reply, in reply order.
pub(crate) fn entries(v: Value) -> Vec<Entry> {
    match v {
        Value::Array(items) => items.into_iter().filter_map(entry).collect(),
        _ => Vec::new(),
    }
}

/// An `XREAD` reply: entries per stream key (nil when the block timed out).
pub(crate) fn xread(v: Value) -> Vec<(Vec<u8>, Vec<Entry>)> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| {
                let Value::Array(kv) = item else { return None };
                let mut kv = kv.into_iter();
                Some((kv.next()?, kv.next()?))
            })
            .collect(),
        Value::Map(pairs) => pairs,
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((bytes(&k)?.to_vec(), entries(v))))
        .collect()
}

/// From an `XINFO STREAM` reply: `last-generated-id` and `max-deleted-entry-id`
/// (Redis 7+).
pub(crate) fn xinfo(v: Value) -> (Option<MessageId>, Option<MessageId>) {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Array(items) => {
            let mut items = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        _ => Vec::new(),
    };
    let mut last = None;
    let mut deleted = None;
    for (k, v) in &pairs {
        let id = || bytes(v).and_then(MessageId::parse_bytes);
        match bytes(k) {
            Some(b"last-generated-id") => last = id(),
            Some(b"max-deleted-entry-id") => deleted = id(),
            _ => {}
        }
    }
    (last, deleted)
}

/// From a `CLUSTER SLOTS` reply, the address of the master serving `slot`: its host (empty
/// when the node did not say, meaning the address it was reached at) and port.
pub(crate) fn slot_owner(v: Value, slot: i64) -> Option<(String, u16)> {
    let Value::Array(ranges) = v else { return None };
    ranges.into_iter().find_map(|range| {
        let Value::Array(parts) = range else {
            return None;
        };
        let mut parts = parts.into_iter();
        let (Some(Value::Int(start)), Some(Value::Int(end))) = (parts.next(), parts.next()) else {
            return None;
        };
        if !(start..=end).contains(&slot) {
            return None;
        }
        // The master comes first: [host, port, id, ...].
        let Some(Value::Array(master)) = parts.next() else {
            return None;
        };
        let mut master = master.into_iter();
        let host = String::from_utf8_lossy(bytes(&master.next()?)?).into_owned();
        let Some(Value::Int(port)) = master.next() else {
            return None;
        };
        let host = if host == "?" { String::new() } else { host };
        Some((host, u16::try_from(port).ok()?))
    })
}

/// What a stream room must do after its reader reconnected, given the stream's state.
/// Returns whether messages may have been missed, and the position to read from.
pub(crate) fn after_reconnect(
    position: MessageId,
    info: Option<(Option<MessageId>, Option<MessageId>)>,
) -> (bool, MessageId) {
    match info {
        // The stream is gone (Redis lost its data, or it was deleted).
        None | Some((None, _)) => (position != MessageId::ZERO, MessageId::ZERO),
        // A new stream that never reached our position: the old one was lost.
        Some((Some(last), _)) if last < position => (true, MessageId::ZERO),
        // Entries after our position were trimmed before we read them.
        Some((_, Some(deleted))) if deleted > position => (true, position),
        _ => (false, position),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn raw_entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    fn range(start: i64, end: i64, host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![bulk(host), Value::Int(port), bulk("id")]),
            // A replica, never chosen.
            Value::Array(vec![bulk("10.0.0.9"), Value::Int(7000), bulk("id2")]),
        ])
    }

    #[test]
    fn slot_owner_is_the_master_of_the_range_holding_the_slot() {
        let reply = || {
            Value::Array(vec![
                range(0, 5460, "127.0.0.1", 7001),
                range(5461, 10922, "", 7002),
                range(10923, 16383, "?", 7003),
            ])
        };
        assert_eq!(slot_owner(reply(), 0), Some(("127.0.0.1".into(), 7001)));
        assert_eq!(slot_owner(reply(), 5460), Some(("127.0.0.1".into(), 7001)));
        assert_eq!(slot_owner(reply(), 5461), Some((String::new(), 7002)));
        assert_eq!(slot_owner(reply(), 16383), Some((String::new(), 7003)));
        assert_eq!(slot_owner(reply(), 16384), None);
        assert_eq!(slot_owner(Value::Nil, 1), None);
        let bad_port = Value::Array(vec![range(0, 16383, "h", 70_000)]);
        assert_eq!(slot_owner(bad_port, 1), None);
    }

    #[test]
    fn entries_take_the_data_field_and_skip_foreign_entries() {
        let reply = Value::Array(vec![
            raw_entry("5-1", &["m", "a:1", "d", "hello"]),
            raw_entry("5-2", &["other", "x"]),
            raw_entry("bad", &["d", "x"]),
            raw_entry("6-0", &["d", ""]),
        ]);
        assert_eq!(
            entries(reply),
            vec![
                (MessageId::new(5, 1), Bytes::from_static(b"hello")),
                (MessageId::new(6, 0), Bytes::new()),
            ]
        );
    }

    #[test]
    fn xread_in_resp2_and_resp3_shapes() {
        let stream = || Value::Array(vec![raw_entry("1-0", &["d", "x"])]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("k"), stream()])]);
        let resp3 = Value::Map(vec![(bulk("k"), stream())]);
        for reply in [resp2, resp3] {
            let read = xread(reply);
            assert_eq!(read.len(), 1);
            assert_eq!(read[0].0, b"k");
            assert_eq!(read[0].1[0].0, MessageId::new(1, 0));
        }
        assert!(xread(Value::Nil).is_empty());
    }

    #[test]
    fn xinfo_fields() {
        let reply = Value::Array(vec![
            bulk("length"),
            Value::Int(3),
            bulk("last-generated-id"),
            bulk("9-2"),
            bulk("max-deleted-entry-id"),
            bulk("4-0"),
        ]);
        assert_eq!(
            xinfo(reply),
            (Some(MessageId::new(9, 2)), Some(MessageId::new(4, 0)))
        );
    }

    #[test]
    fn gaps_after_reconnect() {
        let id = MessageId::new;
        // Nothing seen, nothing there: no gap.
        assert_eq!(
            after_reconnect(MessageId::ZERO, None),
            (false, MessageId::ZERO)
        );
        // The stream vanished under us.
        assert_eq!(after_reconnect(id(5, 0), None), (true, MessageId::ZERO));
        // Recreated from scratch (ids went backwards).
        assert_eq!(
            after_reconnect(id(5, 0), Some((Some(id(3, 0)), None))),
            (true, MessageId::ZERO)
        );
        // Trimmed past our position.
        assert_eq!(
            after_reconnect(id(5, 0), Some((Some(id(9, 0)), Some(id(6, 0))))),
            (true, id(5, 0))
        );
        // Trimmed only what we had read: fine.
        assert_eq!(
            after_reconnect(id(5, 0), Some((Some(id(9, 0)), Some(id(4, 0))))),
            (false, id(5, 0))
        );
    }
}
