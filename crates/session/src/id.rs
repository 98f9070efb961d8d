use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;

/// Random bytes in a session id: 128 bits.
const ID_BYTES: usize = 16;
/// Length of the id's text form (base64url without padding).
const ID_LEN: usize = 22;

/// A session id: 128 random bits from a CSPRNG (rand's thread-local ChaCha12, seeded and
/// reseeded from the operating system), shown as 22 base64url characters.
///
/// A client can only ever present an id; it is never adopted unless the store knows it.
/// [`SessionId::parse`] accepts only the exact form [`SessionId::random`] produces, so a
/// malformed value never reaches the store.
///
/// ```
/// use tower_scale_session::SessionId;
///
/// let id = SessionId::random();
/// assert_eq!(id.as_str().len(), 22);
/// assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
/// assert_eq!(SessionId::parse("../../etc/passwd"), None);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId([u8; ID_LEN]);

impl SessionId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut raw = [0u8; ID_BYTES];
        rand::rng().fill_bytes(&mut raw);
        let mut text = [0u8; ID_LEN];
        let written = URL_SAFE_NO_PAD
            .encode_slice(raw, &mut text)
            .unwrap_or_default();
        debug_assert_eq!(written, ID_LEN);
        Self(text)
    }

    /// Parses the text form; anything that [`random`](Self::random) could not have produced
    /// (wrong length, other characters, non-canonical trailing bits) is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != ID_LEN {
            return None;
        }
        // Decoding checks the alphabet and rejects non-canonical trailing bits.
        let mut raw = [0u8; ID_BYTES + 2];
        match URL_SAFE_NO_PAD.decode_slice(bytes, &mut raw) {
            Ok(ID_BYTES) => {}
            _ => return None,
        }
        let mut out = [0u8; ID_LEN];
        out.copy_from_slice(bytes);
        Some(Self(out))
    }

    /// The text form (22 base64url characters).
    pub fn as_str(&self) -> &str {
        // Only ever built from base64url output or validated base64url input: ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionId {
    /// Shows only a prefix: a full id in a log is a credential in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", &self.as_str()[..6])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_parse_and_differ() {
        let a = SessionId::random();
        let b = SessionId::random();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.as_str()), Some(a.clone()));
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn rejects_everything_else() {
        let good = SessionId::random();
        for bad in [
            "",
            "short",
            "aaaaaaaaaaaaaaaaaaaaaaa",    // 23
            "aaaaaaaaaaaaaaaaaaaaa",      // 21
            "aaaaaaaaaaaaaaaaaaaa+/",     // standard alphabet
            "aaaaaaaaaaaaaaaaaaaaa=",     // padding
            "aaaaaaaaaaaaaaaaaaaa\u{e9}", // non-ASCII, 22 bytes
            "AAAAAAAAAAAAAAAAAAAAAB",     // non-canonical trailing bits
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
        let mut s = good.as_str().to_owned();
        s.push('a');
        assert_eq!(SessionId::parse(&s), None);
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// An id's text from its 16 random bytes.
        fn text(raw: [u8; ID_BYTES]) -> String {
            URL_SAFE_NO_PAD.encode(raw)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            #[test]
            fn parsing_any_text_never_panics_and_accepts_only_canonical_ids(input in any::<String>()) {
                if let Some(id) = SessionId::parse(&input) {
                    prop_assert_eq!(id.as_str(), input.as_str());
                    let raw = URL_SAFE_NO_PAD.decode(&input).unwrap();
                    prop_assert_eq!(raw.len(), ID_BYTES);
                    prop_assert_eq!(URL_SAFE_NO_PAD.encode(raw), input);
                }
            }

            #[test]
            fn ids_round_trip(raw in any::<[u8; ID_BYTES]>()) {
                let text = text(raw);
                let id = SessionId::parse(&text).unwrap();
                prop_assert_eq!(id.as_str(), text.as_str());
                prop_assert_eq!(SessionId::parse(&id.to_string()), Some(id));
                let random = SessionId::random();
                prop_assert_eq!(SessionId::parse(random.as_str()), Some(random));
            }

            #[test]
            fn ids_of_the_wrong_length_are_refused(input in "[A-Za-z0-9_-]{0,64}") {
                prop_assume!(input.len() != ID_LEN);
                prop_assert_eq!(SessionId::parse(&input), None);
            }

            #[test]
            fn ids_with_a_character_outside_the_alphabet_are_refused(
                raw in any::<[u8; ID_BYTES]>(),
                at in 0..ID_LEN,
                bad in any::<char>().prop_filter("outside base64url", |c| {
                    !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                }),
            ) {
                let mut chars: Vec<char> = text(raw).chars().collect();
                chars[at] = bad;
                let input: String = chars.into_iter().collect();
                prop_assert_eq!(SessionId::parse(&input), None);
            }
        }
    }
}
