//! Keys are injective: distinct inputs never share a Redis key, and a tag with braces still
//! keeps a script's keys in one Redis Cluster slot (issue 21).

use std::sync::LazyLock;
use std::time::Duration;

use tower_scale_redis::redis::Script;
use tower_scale_redis::{Keys, RedisBackend, RedisConfig};
use tower_scale_testkit::RedisCluster;

/// Sets two keys and returns their sum: on a cluster, only when both are in one slot.
static TWO_KEYS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[2]); \
         return tonumber(redis.call('GET', KEYS[1])) + tonumber(redis.call('GET', KEYS[2]))",
    )
});

/// Tags that the old `_` replacement wrote alike, in groups.
const LOOKALIKE_TAGS: [&[&str]; 3] = [
    &["{a}", "_a_", "{a_", "_a}", "}a{"],
    &["user}{1", "user__1", "user{}1"],
    &["{", "}", "_"],
];

#[test]
fn braces_in_a_tag_cannot_pick_another_tags_keys() {
    let keys = Keys::new("p");
    for group in LOOKALIKE_TAGS {
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                assert_ne!(
                    keys.tagged("c", a, "s"),
                    keys.tagged("c", b, "s"),
                    "tags {a:?} and {b:?} share a key"
                );
            }
        }
    }
}

#[test]
fn a_separator_in_the_concern_cannot_pick_another_concerns_keys() {
    let keys = Keys::new("p");
    assert_ne!(keys.key("a:b", "c"), keys.key("a", "b:c"));
    assert_ne!(keys.tagged("a:{b", "c", "s"), keys.tagged("a", "b", "s"));
    assert_ne!(
        keys.tagged("a:{b}:x", "y", "s"),
        keys.tagged("a", "b}:x:{y", "s")
    );
}

#[tokio::test]
async fn tags_with_braces_keep_a_scripts_keys_in_one_cluster_slot() {
    let cluster = RedisCluster::start();
    let mut config = RedisConfig::cluster(cluster.urls());
    config.command_timeout = Duration::from_secs(2);
    let b = RedisBackend::new(config).unwrap();
    for (i, tag) in LOOKALIKE_TAGS.iter().flat_map(|g| g.iter()).enumerate() {
        let k1 = b.keys().tagged("test", tag, "a");
        let k2 = b.keys().tagged("test", tag, "b");
        assert_eq!(cluster.keyslot(&k1), cluster.keyslot(&k2), "{k1} {k2}");
        let i = i64::try_from(i).unwrap();
        let sum: i64 = b
            .invoke(TWO_KEYS.key(&k1).key(&k2).arg(i).arg(1))
            .await
            .unwrap();
        assert_eq!(sum, i + 1);
    }
}

mod properties {
    use proptest::prelude::*;
    use tower_scale_redis::Keys;

    const PREFIX: &str = "p";

    /// Strings over the characters that matter (the escapes, the separator, braces) and a
    /// few others, so that look-alike inputs are common.
    fn part() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ab_%:{}7BDé]{0,8}").unwrap()
    }

    /// Undoes the escaping of a concern; `None` if `s` is not one [`Keys`] writes.
    fn unescape_concern(s: &str) -> Option<String> {
        if s.contains([':', '{', '}']) {
            return None;
        }
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('%') {
            out.push_str(&rest[..i]);
            let c = match rest.get(i + 1..i + 3)? {
                "25" => '%',
                "3A" => ':',
                "7B" => '{',
                "7D" => '}',
                _ => return None,
            };
            out.push(c);
            rest = &rest[i + 3..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// Undoes the escaping of a tag; `None` if `s` is not one [`Keys`] writes.
    fn unescape_tag(s: &str) -> Option<String> {
        if s.contains('}') {
            return None;
        }
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            out.push(match c {
                '{' => match chars.next()? {
                    '{' => '{',
                    '_' => '}',
                    _ => return None,
                },
                c => c,
            });
        }
        Some(out)
    }

    /// The concern and the rest of a key, split at the first separator after the prefix.
    fn split_concern(key: &str) -> (String, &str) {
        let rest = key
            .strip_prefix(PREFIX)
            .and_then(|k| k.strip_prefix(':'))
            .expect("the prefix");
        let (concern, rest) = rest.split_once(':').expect("a separator after the concern");
        (unescape_concern(concern).expect("an escaped concern"), rest)
    }

    /// `(concern, tag, suffix)` read back from a tagged key, checking that Redis Cluster's
    /// hash tag (from the first `{` to the first `}` after it) is exactly the escaped tag.
    fn parse_tagged(key: &str) -> (String, String, String) {
        let (concern, rest) = split_concern(key);
        let rest = rest.strip_prefix('{').expect("the tag's opening brace");
        let close = rest.find('}').expect("the tag's closing brace");
        let escaped = &rest[..close];
        let suffix = rest[close + 1..].strip_prefix(':').expect("a separator");
        let open = key.find('{').expect("a brace");
        let hash_tag_end = open + 1 + key[open + 1..].find('}').expect("a closing brace");
        assert_eq!(
            &key[open + 1..hash_tag_end],
            escaped,
            "the hash tag of {key:?}"
        );
        let tag = unescape_tag(escaped).expect("an escaped tag");
        (concern, tag, suffix.to_owned())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// A tagged key reads back to its inputs (so no two inputs share a key), its concern
        /// holds no separator or brace, and its hash tag is the escaped tag alone.
        #[test]
        fn tagged_keys_read_back_and_keep_their_hash_tag(
            concern in part(), tag in part(), suffix in part(),
        ) {
            let key = Keys::new(PREFIX).tagged(&concern, &tag, &suffix);
            prop_assert_eq!(parse_tagged(&key), (concern, tag, suffix));
        }

        /// A plain key reads back to its inputs.
        #[test]
        fn plain_keys_read_back(concern in part(), key in part()) {
            let built = Keys::new(PREFIX).key(&concern, &key);
            let (read_concern, read_key) = split_concern(&built);
            prop_assert_eq!((read_concern.as_str(), read_key), (concern.as_str(), key.as_str()));
        }

        /// Distinct inputs give distinct keys, checked on pairs directly; keys of one concern
        /// and tag share a hash tag whatever their suffixes.
        #[test]
        fn distinct_inputs_give_distinct_keys(
            a in (part(), part(), part()), b in (part(), part(), part()),
        ) {
            let keys = Keys::new(PREFIX);
            let (ka, kb) = (keys.tagged(&a.0, &a.1, &a.2), keys.tagged(&b.0, &b.1, &b.2));
            prop_assert_eq!(a == b, ka == kb, "{:?} {:?}", ka, kb);
            let (pa, pb) = (keys.key(&a.0, &a.1), keys.key(&b.0, &b.1));
            prop_assert_eq!((&a.0, &a.1) == (&b.0, &b.1), pa == pb, "{:?} {:?}", pa, pb);
            let same_tag = keys.tagged(&a.0, &a.1, &b.2);
            let hash_tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
            prop_assert_eq!(hash_tag(&ka), hash_tag(&same_tag));
        }
    }
}
