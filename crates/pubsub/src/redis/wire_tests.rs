//! Property tests of what the crate writes to Redis and reads back: stream entries and the
//! replies that carry them, message ids, and the keys and channels of rooms.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use redis::Value;
use tower_scale_redis::Keys;

use super::parse::{after_reconnect, entries, slot_owner, xinfo, xread};
use super::room_key;
use crate::rooms::Registry;
use crate::{Delivery, Event, MessageId, PubSubConfig};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(10_000)
}

/// A bulk string, often one the decoders look for.
fn word() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"d".to_vec()),
        Just(b"m".to_vec()),
        Just(b"last-generated-id".to_vec()),
        Just(b"max-deleted-entry-id".to_vec()),
        Just(b"?".to_vec()),
        (any::<u64>(), any::<u64>()).prop_map(|(ms, seq)| format!("{ms}-{seq}").into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ]
}

/// Any reply shape, nested a few levels.
fn reply() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        Just(Value::Okay),
        any::<i64>().prop_map(Value::Int),
        (0i64..20_000).prop_map(Value::Int),
        word().prop_map(Value::BulkString),
        ".{0,8}".prop_map(Value::SimpleString),
        any::<f64>().prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Set),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

fn bulk(b: &[u8]) -> Value {
    Value::BulkString(b.to_vec())
}

/// A stream entry as `append.lua` writes it and `XRANGE`/`XREAD` return it.
fn written_entry(id: MessageId, mid: &str, payload: &[u8]) -> Value {
    Value::Array(vec![
        bulk(id.to_string().as_bytes()),
        Value::Array(vec![
            bulk(b"m"),
            bulk(mid.as_bytes()),
            bulk(b"d"),
            bulk(payload),
        ]),
    ])
}

/// Room names: any text, and short ones made of the characters that escaping and hash tags
/// care about, so that near-collisions (`{`, `%7B`, `_`) come up often.
fn room() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[{}%_7BDx:]{0,6}"]
}

/// The hash tag Redis Cluster hashes for `key`: what lies between the first `{` and the
/// first `}` after it, when not empty.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let len = key[open + 1..].find('}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoders_never_panic_on_any_reply(v in reply(), slot in 0i64..20_000) {
        let listed = match &v {
            Value::Array(items) => items.len(),
            _ => 0,
        };
        prop_assert!(entries(v.clone()).len() <= listed);
        for (_, read) in xread(v.clone()) {
            for (id, _) in read {
                prop_assert_eq!(id.to_string().parse::<MessageId>(), Ok(id));
            }
        }
        let (last, deleted) = xinfo(v.clone());
        let position = last.unwrap_or(MessageId::ZERO);
        let (_, resume) = after_reconnect(position, Some((last, deleted)));
        prop_assert!(resume == position || resume == MessageId::ZERO);
        let is_array = matches!(v, Value::Array(_));
        if let Some((host, _)) = slot_owner(v, slot) {
            prop_assert!(is_array);
            prop_assert_ne!(host, "?", "an unknown host is the address it was reached at");
        }
    }

    #[test]
    fn a_written_entry_reads_back_in_every_reply_shape(
        ms in any::<u64>(),
        seq in any::<u64>(),
        mid in "[0-9a-f]{16}:[0-9]{1,20}",
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        key in proptest::collection::vec(any::<u8>(), 1..32),
    ) {
        let id = MessageId::new(ms, seq);
        let stream = || Value::Array(vec![written_entry(id, &mid, &payload)]);
        let want = vec![(id, Bytes::from(payload.clone()))];
        prop_assert_eq!(&entries(stream()), &want);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk(&key), stream()])]);
        let resp3 = Value::Map(vec![(bulk(&key), stream())]);
        for reply in [resp2, resp3] {
            prop_assert_eq!(xread(reply), vec![(key.clone(), want.clone())]);
        }
    }

    #[test]
    fn message_ids_round_trip_and_any_text_is_safe(
        ms in any::<u64>(),
        seq in any::<u64>(),
        text in ".{0,40}",
        raw in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let id = MessageId::new(ms, seq);
        prop_assert_eq!(id.to_string().parse::<MessageId>(), Ok(id));
        prop_assert_eq!(MessageId::parse_bytes(id.to_string().as_bytes()), Some(id));
        // Any text either is an id, written back the same way it reads, or is refused.
        if let Ok(parsed) = text.parse::<MessageId>() {
            prop_assert_eq!(parsed.to_string().parse::<MessageId>(), Ok(parsed));
        } else {
            let err = text.parse::<MessageId>().unwrap_err();
            prop_assert!(err.to_string().contains("not a message id"));
        }
        let _ = MessageId::parse_bytes(&raw);
    }

    #[test]
    fn distinct_rooms_never_share_a_channel_or_stream(a in room(), b in room()) {
        prop_assume!(a != b);
        let keys = Keys::new("ts");
        for delivery in [Delivery::PubSub, Delivery::Stream] {
            for tag in [None, Some("ts:streams")] {
                prop_assert_ne!(
                    room_key(&keys, tag, &a, delivery),
                    room_key(&keys, tag, &b, delivery),
                    "{:?} {:?}", delivery, tag
                );
            }
        }
    }

    #[test]
    fn a_room_name_cannot_move_its_stream_to_another_slot(room in room()) {
        let keys = Keys::new("ts");
        // On a cluster every stream shares the broadcaster's tag, whatever the room.
        let key = room_key(&keys, Some("ts:streams"), &room, Delivery::Stream);
        prop_assert_eq!(hash_tag(&key), Some("ts:streams"));
        // On one server the tag is the whole room, braces escaped: no brace is left inside.
        let key = room_key(&keys, None, &room, Delivery::Stream);
        prop_assert_eq!(key.matches('{').count(), 1, "{}", key);
        prop_assert_eq!(key.matches('}').count(), 1, "{}", key);
    }

    #[test]
    fn a_message_on_a_rooms_channel_reaches_that_room(
        room in room(),
        other in room(),
        payload in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        prop_assume!(room != other);
        let keys = Keys::new("ts");
        let channel = |r: &str| -> Arc<str> { room_key(&keys, None, r, Delivery::PubSub).into() };
        let registry = Registry::new(&PubSubConfig::default());
        let mut joined = registry.join(&room, Delivery::PubSub, || Some(channel(&room)));
        let mut elsewhere = registry.join(&other, Delivery::PubSub, || Some(channel(&other)));
        for r in registry.lock().rooms.values_mut() {
            r.confirmed = true;
        }
        registry.dispatch(&channel(&room), Bytes::from(payload.clone()));
        let Ok(Event::Message(m)) = joined.rx.try_recv() else {
            return Err(TestCaseError::fail("the room got nothing"));
        };
        prop_assert_eq!(m.room(), room.as_str());
        prop_assert_eq!(m.payload().as_ref(), payload.as_slice());
        prop_assert!(elsewhere.rx.try_recv().is_err(), "another room got it");
        // Once the room is gone, its channel leads nowhere.
        prop_assert!(registry.leave(&room).is_some());
        prop_assert!(!registry.lock().by_channel.contains_key(&*channel(&room)));
    }
}
