use std::sync::Arc;

/// Builds every Redis key tower-scale writes: `<prefix>:<concern>:<key>`, or
/// `<prefix>:<concern>:{<tag>}:<suffix>` for keys a script touches together.
///
/// Keys that a script touches together share a hash tag (`{...}`), so they land in one slot
/// and the script runs on Redis Cluster as well as on one server.
///
/// # Distinct inputs, distinct keys
///
/// The mapping is injective: two different `(concern, key)` or `(concern, tag, suffix)`
/// inputs never give the same key, whatever characters they hold, and a caller's value can
/// never move a key's hash tag. To that end two parts are escaped:
///
/// - In the **concern**, `%`, `{`, `}` and `:` are written `%25`, `%7B`, `%7D` and `%3A`, so
///   that it never holds the separator or a brace.
/// - In the **tag**, `{` is written `{{` and `}` is written `{_`, so that it never holds a
///   `}`: the hash tag Redis Cluster reads (from the first `{` to the first `}` after it) is
///   always exactly the escaped tag, and every key with the same concern and tag is in one
///   slot. A tag without braces is written unchanged.
///
/// The `key` of [`Keys::key`] and the `suffix` of [`Keys::tagged`] are the last part of the
/// key and are written as given: nothing follows them, so they cannot be confused with
/// another part. (In a [`Keys::key`] key a `{...}` in `key` forms a hash tag of its own,
/// which only decides the slot of that one key.)
///
/// A tag that is empty gives `{}`, which Redis Cluster does not read as a hash tag: such keys
/// are placed by their whole name.
///
/// ```
/// use tower_scale_redis::Keys;
///
/// let keys = Keys::new("shop");
/// assert_eq!(keys.key("session", "abc"), "shop:session:abc");
/// assert_eq!(keys.tagged("session", "abc", "fields"), "shop:session:{abc}:fields");
/// // Braces in a tag are escaped, never dropped: these two stay apart.
/// assert_eq!(keys.tagged("cache", "/x?q={a}", "i"), "shop:cache:{/x?q={{a{_}:i");
/// assert_eq!(keys.tagged("cache", "/x?q=_a_", "i"), "shop:cache:{/x?q=_a_}:i");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    /// Keys under `prefix`.
    ///
    /// The prefix is written as given; [`RedisConfig::validate`](crate::RedisConfig::validate)
    /// rejects a configured prefix with braces, whitespace or control characters.
    pub fn new(prefix: impl Into<Arc<str>>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:<concern>:<key>`, with `concern` escaped (see [`Keys`]).
    pub fn key(&self, concern: &str, key: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + concern.len() + key.len() + 2);
        self.push_concern_base(&mut out, concern);
        out.push_str(key);
        out
    }

    /// `<prefix>:<concern>:{<tag>}:<suffix>`, with `concern` and `tag` escaped (see [`Keys`]):
    /// every key with the same `concern` and `tag` hashes to the same cluster slot, and a
    /// caller's value can never move the hash tag.
    pub fn tagged(&self, concern: &str, tag: &str, suffix: &str) -> String {
        let mut out =
            String::with_capacity(self.prefix.len() + concern.len() + tag.len() + suffix.len() + 5);
        self.push_tagged_base(&mut out, concern, tag);
        out.push_str(suffix);
        out
    }

    /// Appends `<prefix>:<concern>:{<tag>}:`, escaped as [`Keys::tagged`] writes it, to `out`:
    /// for a caller that writes several keys of one tag into one buffer (append the suffix,
    /// use the key, truncate back to the length after this call).
    ///
    /// ```
    /// use tower_scale_redis::Keys;
    ///
    /// let keys = Keys::new("p");
    /// let mut key = String::new();
    /// keys.push_tagged_base(&mut key, "ratelimit", "a{b}");
    /// key.push('0');
    /// assert_eq!(key, keys.tagged("ratelimit", "a{b}", "0"));
    /// ```
    pub fn push_tagged_base(&self, out: &mut String, concern: &str, tag: &str) {
        self.push_concern_base(out, concern);
        out.push('{');
        push_escaped(out, tag, |c| match c {
            '{' => Some("{{"),
            '}' => Some("{_"),
            _ => None,
        });
        out.push_str("}:");
    }

    /// Appends `<prefix>:<concern>:` to `out`.
    fn push_concern_base(&self, out: &mut String, concern: &str) {
        out.push_str(&self.prefix);
        out.push(':');
        push_escaped(out, concern, |c| match c {
            '%' => Some("%25"),
            ':' => Some("%3A"),
            '{' => Some("%7B"),
            '}' => Some("%7D"),
            _ => None,
        });
        out.push(':');
    }
}

/// Appends `s` to `out`, each character for which `escape` gives a replacement replaced by
/// it; runs of other characters are copied whole.
fn push_escaped(out: &mut String, s: &str, escape: impl Fn(char) -> Option<&'static str>) {
    let mut copied = 0;
    for (i, c) in s.char_indices() {
        if let Some(replacement) = escape(c) {
            out.push_str(&s[copied..i]);
            out.push_str(replacement);
            copied = i + c.len_utf8();
        }
    }
    out.push_str(&s[copied..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_in_tags_are_escaped() {
        let k = Keys::new("p");
        assert_eq!(k.tagged("c", "user}{1", "a"), "p:c:{user{_{{1}:a");
        assert_eq!(k.tagged("c", "user__1", "a"), "p:c:{user__1}:a");
        assert_eq!(k.key("c", "x"), "p:c:x");
        assert_eq!(k.key("a:b%{c}", "x"), "p:a%3Ab%25%7Bc%7D:x");
    }
}
