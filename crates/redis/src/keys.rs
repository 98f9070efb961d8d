use std::sync::Arc;

/// Builds every Redis key tower-scale writes: `<prefix>:<concern>:<key>`.
///
/// Keys that a script touches together share a hash tag (`{...}`), so they land in one slot
/// and the script runs on Redis Cluster as well as on one server.
///
/// ```
/// use tower_scale_redis::Keys;
///
/// let keys = Keys::new("shop");
/// assert_eq!(keys.key("session", "abc"), "shop:session:abc");
/// assert_eq!(keys.tagged("session", "abc", "fields"), "shop:session:{abc}:fields");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: impl Into<Arc<str>>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:<concern>:<key>`.
    pub fn key(&self, concern: &str, key: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + concern.len() + key.len() + 2);
        out.push_str(&self.prefix);
        out.push(':');
        out.push_str(concern);
        out.push(':');
        out.push_str(key);
        out
    }

    /// `<prefix>:<concern>:{<tag>}:<suffix>`: every key with the same `concern` and `tag`
    /// hashes to the same cluster slot. Braces in `tag` are replaced by `_` so a caller's
    /// value can never move the hash tag.
    pub fn tagged(&self, concern: &str, tag: &str, suffix: &str) -> String {
        let mut out =
            String::with_capacity(self.prefix.len() + concern.len() + tag.len() + suffix.len() + 5);
        out.push_str(&self.prefix);
        out.push(':');
        out.push_str(concern);
        out.push_str(":{");
        out.extend(
            tag.chars()
                .map(|c| if matches!(c, '{' | '}') { '_' } else { c }),
        );
        out.push_str("}:");
        out.push_str(suffix);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_in_tags_are_neutralised() {
        let k = Keys::new("p");
        let a = k.tagged("c", "user}{1", "a");
        assert_eq!(a, "p:c:{user__1}:a");
        assert_eq!(k.key("c", "x"), "p:c:x");
    }
}
