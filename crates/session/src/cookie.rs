use cookie::{Cookie, SameSite as CookieSameSite};
#[cfg(feature = "signed")]
use cookie::{CookieJar, Key};
use http::{HeaderMap, HeaderValue, header};

use crate::SessionId;
use crate::config::{SameSite, SessionConfig};

/// Cookie headers longer than this (all `Cookie` lines together) are ignored: the request is
/// anonymous. Browsers send at most about 4 KiB per cookie.
const MAX_COOKIE_HEADER: usize = 8 * 1024;

/// Without the `signed` feature no signing key can exist (the config refuses
/// `signing_keys`): cookies are unsigned.
#[cfg(not(feature = "signed"))]
#[derive(Clone)]
enum Key {}

/// How the session cookie is read and written.
#[derive(Clone)]
pub(crate) struct CookieSettings {
    name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    same_site: SameSite,
    max_age_secs: i64,
    /// Signing keys: the first signs, all verify. Empty: unsigned.
    keys: Vec<Key>,
}

impl std::fmt::Debug for CookieSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieSettings")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .field("max_age_secs", &self.max_age_secs)
            .field("signing_keys", &self.keys.len())
            .finish()
    }
}

impl CookieSettings {
    /// The cookie settings of a (validated) config.
    pub(crate) fn new(config: &SessionConfig) -> Self {
        Self {
            name: config.cookie_name.clone(),
            path: config.path.clone(),
            domain: config.domain.clone(),
            secure: config.secure,
            same_site: config.same_site,
            max_age_secs: i64::try_from(config.ttl.as_secs()).unwrap_or(i64::MAX),
            keys: config
                .signing_keys
                .iter()
                .filter_map(|secret| derive_key(secret))
                .collect(),
        }
    }

    /// The session id the request presents, if exactly one well-formed (and, with signing,
    /// correctly signed) session cookie is present. Anything else is an anonymous request:
    /// never an error, never a store call.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Option<SessionId> {
        let mut total = 0;
        let mut found: Option<Option<SessionId>> = None;
        for line in headers.get_all(header::COOKIE) {
            total += line.len();
            if total > MAX_COOKIE_HEADER {
                return None;
            }
            let line = line.to_str().ok()?;
            for cookie in Cookie::split_parse(line).flatten() {
                if cookie.name() != self.name {
                    continue;
                }
                if found.is_some() {
                    // Two session cookies (e.g. one planted for a parent domain): trust
                    // neither.
                    return None;
                }
                found = Some(self.verify(cookie.value()));
            }
        }
        found.flatten()
    }

    fn verify(&self, value: &str) -> Option<SessionId> {
        if self.keys.is_empty() {
            return SessionId::parse(value);
        }
        verify_signed(&self.keys, &self.name, value)
    }

    /// `Set-Cookie` for a live session, with `Max-Age` equal to the server-side TTL.
    pub(crate) fn set(&self, id: &SessionId) -> HeaderValue {
        self.header(id.as_str(), self.max_age_secs)
    }

    /// `Set-Cookie` that removes the session cookie.
    pub(crate) fn removal(&self) -> HeaderValue {
        self.header("", 0)
    }

    fn header(&self, value: &str, max_age: i64) -> HeaderValue {
        let mut cookie = Cookie::build((self.name.as_str(), value))
            .path(self.path.as_str())
            .http_only(true)
            .secure(self.secure)
            .same_site(match self.same_site {
                SameSite::Strict => CookieSameSite::Strict,
                SameSite::Lax => CookieSameSite::Lax,
                SameSite::None => CookieSameSite::None,
            })
            .max_age(cookie::time::Duration::seconds(max_age))
            .build();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.as_str());
        }
        let text = match self.keys.first() {
            Some(key) if !value.is_empty() => sign(key, cookie, &self.name),
            _ => cookie.to_string(),
        };
        // Name, path and domain were validated at build time and the value is base64:
        // the header is always valid.
        HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// The signing key of a secret (validated at build time).
#[cfg(feature = "signed")]
#[allow(clippy::unnecessary_wraps)]
fn derive_key(secret: &str) -> Option<Key> {
    Some(Key::derive_from(secret.as_bytes()))
}

/// Without the `signed` feature the config refuses signing secrets: none reaches here.
#[cfg(not(feature = "signed"))]
fn derive_key(_secret: &str) -> Option<Key> {
    None
}

/// The id of a cookie value signed with any of `keys` (not empty).
#[cfg(feature = "signed")]
fn verify_signed(keys: &[Key], name: &str, value: &str) -> Option<SessionId> {
    // A signed value is a 44-character MAC followed by the id.
    if value.len() > 128 {
        return None;
    }
    let mut jar = CookieJar::new();
    jar.add_original(Cookie::new(name.to_owned(), value.to_owned()));
    keys.iter()
        .find_map(|key| jar.signed(key).get(name))
        .and_then(|cookie| SessionId::parse(cookie.value()))
}

/// Without the `signed` feature there are no keys to verify with.
#[cfg(not(feature = "signed"))]
fn verify_signed(keys: &[Key], _name: &str, _value: &str) -> Option<SessionId> {
    match keys.first() {
        Some(key) => match *key {},
        None => None,
    }
}

/// The `Set-Cookie` text of `cookie` signed with `key`.
#[cfg(feature = "signed")]
fn sign(key: &Key, cookie: Cookie<'_>, name: &str) -> String {
    let mut jar = CookieJar::new();
    jar.signed_mut(key).add(cookie.into_owned());
    jar.get(name).map(ToString::to_string).unwrap_or_default()
}

/// Without the `signed` feature no key exists.
#[cfg(not(feature = "signed"))]
fn sign(key: &Key, _cookie: Cookie<'_>, _name: &str) -> String {
    match *key {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(keys: Vec<Key>) -> CookieSettings {
        CookieSettings {
            name: "sid".into(),
            path: "/".into(),
            domain: None,
            secure: true,
            same_site: SameSite::Lax,
            max_age_secs: 3600,
            keys,
        }
    }

    fn headers(lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(header::COOKIE, HeaderValue::from_bytes(l).unwrap());
        }
        h
    }

    #[test]
    fn reads_one_cookie_among_others() {
        let s = settings(vec![]);
        let id = SessionId::random();
        let line = format!("a=1; sid={id}; b=2");
        assert_eq!(s.read(&headers(&[line.as_bytes()])), Some(id.clone()));
        // Split over two Cookie lines (HTTP/2 style).
        let line2 = format!("sid={id}");
        assert_eq!(s.read(&headers(&[b"a=1", line2.as_bytes()])), Some(id));
    }

    #[test]
    fn malformed_duplicated_or_oversized_is_anonymous() {
        let s = settings(vec![]);
        let id = SessionId::random();
        let dup = format!("sid={id}; sid={}", SessionId::random());
        let dup_same = format!("sid={id}; sid={id}");
        let huge = format!("x={}; sid={id}", "a".repeat(MAX_COOKIE_HEADER));
        let cases: Vec<Vec<u8>> = vec![
            dup.into_bytes(),
            dup_same.into_bytes(),
            huge.into_bytes(),
            b"sid=".to_vec(),
            b"sid".to_vec(),
            b";;;=;".to_vec(),
            b"sid=%00%ff".to_vec(),
            b"sid=\xff\xfe".to_vec(),
            format!("sid={id}x").into_bytes(),
        ];
        for case in cases {
            assert_eq!(
                s.read(&headers(&[&case])),
                None,
                "{:?}",
                String::from_utf8_lossy(&case)
            );
        }
        assert_eq!(s.read(&HeaderMap::new()), None);
    }

    #[test]
    fn set_cookie_attributes() {
        let mut s = settings(vec![]);
        s.domain = Some("example.com".into());
        let id = SessionId::random();
        let v = s.set(&id);
        let v = v.to_str().unwrap();
        assert!(v.starts_with(&format!("sid={id}")), "{v}");
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=3600",
            "Domain=example.com",
        ] {
            assert!(v.contains(attr), "{attr} missing in {v}");
        }
        let r = s.removal();
        assert!(r.to_str().unwrap().contains("Max-Age=0"));
        s.secure = false;
        assert!(!s.set(&id).to_str().unwrap().contains("Secure"));
    }

    #[cfg(feature = "signed")]
    #[test]
    fn signed_cookies_verify_with_any_key_and_reject_tampering() {
        let old = Key::derive_from(&[1u8; 32]);
        let new = Key::derive_from(&[2u8; 32]);
        let id = SessionId::random();
        let signed_old = settings(vec![old.clone()]).set(&id);
        let pair = |v: &HeaderValue| v.to_str().unwrap().split(';').next().unwrap().to_owned();
        let rotated = settings(vec![new.clone(), old]);
        // Signed with the old key, still accepted after rotation.
        assert_eq!(
            rotated.read(&headers(&[pair(&signed_old).as_bytes()])),
            Some(id.clone())
        );
        // New cookies are signed with the first key.
        let signed_new = rotated.set(&id);
        assert_eq!(
            settings(vec![new]).read(&headers(&[pair(&signed_new).as_bytes()])),
            Some(id.clone())
        );
        // Unsigned, or signed with an unknown key, or tampered: anonymous.
        let plain = format!("sid={id}");
        assert_eq!(rotated.read(&headers(&[plain.as_bytes()])), None);
        let other = settings(vec![Key::derive_from(&[3u8; 32])]).set(&id);
        assert_eq!(rotated.read(&headers(&[pair(&other).as_bytes()])), None);
        let mut tampered = pair(&signed_new);
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(rotated.read(&headers(&[tampered.as_bytes()])), None);
    }

    mod properties {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use proptest::prelude::*;

        use super::*;

        fn id(raw: [u8; 16]) -> SessionId {
            SessionId::parse(&URL_SAFE_NO_PAD.encode(raw)).unwrap()
        }

        /// The `name=value` pair of a `Set-Cookie` header.
        #[cfg(feature = "signed")]
        fn pair(v: &HeaderValue) -> String {
            v.to_str().unwrap().split(';').next().unwrap().to_owned()
        }

        /// `Cookie` lines: arbitrary bytes, or cookie-shaped text often naming `sid`.
        fn lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
            let line = prop_oneof![
                prop::collection::vec(any::<u8>(), 0..120),
                "((sid|a|sid )=[ -~]{0,60}(;|; )?){0,4}".prop_map(String::into_bytes),
                (any::<[u8; 16]>(), "[ -~]{0,10}")
                    .prop_map(|(raw, tail)| { format!("a=1; sid={}{tail}", id(raw)).into_bytes() }),
            ];
            prop::collection::vec(line, 0..4)
        }

        fn cookie_headers(lines: &[Vec<u8>]) -> HeaderMap {
            let mut h = HeaderMap::new();
            for line in lines {
                // Bytes a header value cannot hold never reach the layer.
                if let Ok(v) = HeaderValue::from_bytes(line) {
                    h.append(header::COOKIE, v);
                }
            }
            h
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            #[test]
            fn any_cookie_header_never_panics(lines in lines()) {
                let h = cookie_headers(&lines);
                let all: Vec<&str> = h.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
                let every = [
                    settings(vec![]),
                    #[cfg(feature = "signed")]
                    settings(vec![Key::derive_from(&[1u8; 32])]),
                ];
                for s in every {
                    if let Some(id) = s.read(&h) {
                        // Only an id the headers hold, and only unsigned (no MAC was made).
                        prop_assert!(s.keys.is_empty());
                        prop_assert!(all.iter().any(|l| l.contains(id.as_str())));
                    }
                }
            }

            #[cfg(feature = "signed")]
            #[test]
            fn a_signed_value_verifies(raw in any::<[u8; 16]>(), rotated in any::<bool>()) {
                let key = Key::derive_from(&[1u8; 32]);
                let id = id(raw);
                let signed = pair(&settings(vec![key.clone()]).set(&id));
                let mut keys = vec![key];
                if rotated {
                    keys.insert(0, Key::derive_from(&[2u8; 32]));
                }
                prop_assert_eq!(settings(keys).read(&headers(&[signed.as_bytes()])), Some(id));
            }

            #[cfg(feature = "signed")]
            #[test]
            fn a_tampered_signed_value_never_verifies(
                raw in any::<[u8; 16]>(),
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
            ) {
                let s = settings(vec![Key::derive_from(&[1u8; 32])]);
                let signed = pair(&s.set(&id(raw)));
                let mut tampered = signed.into_bytes();
                // Any byte of the value (after `sid=`), changed.
                let at = "sid=".len() + at.index(tampered.len() - "sid=".len());
                prop_assume!(tampered[at] != byte);
                tampered[at] = byte;
                prop_assert_eq!(s.read(&cookie_headers(&[tampered])), None);
            }

            #[cfg(feature = "signed")]
            #[test]
            fn arbitrary_signed_values_never_verify(value in prop::collection::vec(any::<u8>(), 0..200)) {
                let s = settings(vec![Key::derive_from(&[1u8; 32])]);
                let mut line = b"sid=".to_vec();
                line.extend_from_slice(&value);
                prop_assert_eq!(s.read(&cookie_headers(&[line])), None);
            }
        }
    }
}
