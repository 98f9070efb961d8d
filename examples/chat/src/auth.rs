//! Login with a signed username cookie.
//!
//! tower-scale-session did not exist yet when this example was written, so the user's name
//! travels in a cookie signed with HMAC-SHA256 (the `cookie` crate's signed jar): every
//! instance that shares `CHAT_SECRET` accepts it, and a client cannot forge another name.

use axum::http::{HeaderMap, HeaderValue, header};
use cookie::{Cookie, CookieJar, Key, SameSite};
use sha2::{Digest, Sha512};

/// The cookie holding the signed user name.
pub const COOKIE: &str = "chat_user";

/// The signing key, derived from a secret shared by every instance.
pub fn key_from_secret(secret: &[u8]) -> Key {
    Key::from(Sha512::digest(secret).as_slice())
}

/// A valid user name: 1 to 32 letters, digits, `_` or `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The `Set-Cookie` value that logs `name` in.
pub fn login_cookie(key: &Key, name: &str) -> HeaderValue {
    let mut jar = CookieJar::new();
    jar.signed_mut(key).add(
        Cookie::build((COOKIE, name.to_owned()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax),
    );
    let cookie = jar.get(COOKIE).map(ToString::to_string).unwrap_or_default();
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Cookie` request header value a client sends after logging in as `name` (for tests and
/// scripted clients).
pub fn cookie_header(key: &Key, name: &str) -> String {
    let set = login_cookie(key, name);
    let set = set.to_str().unwrap_or_default();
    set.split(';').next().unwrap_or_default().to_owned()
}

/// The logged-in user of a request, if its cookie carries a valid signature.
pub fn user(key: &Key, headers: &HeaderMap) -> Option<String> {
    let mut jar = CookieJar::new();
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for cookie in Cookie::split_parse(value).flatten() {
            jar.add_original(cookie.into_owned());
        }
    }
    let name = jar.signed(key).get(COOKIE)?.value().to_owned();
    valid_name(&name).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_names_round_trip_and_forgeries_fail() {
        let key = key_from_secret(b"secret");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            cookie_header(&key, "alice").parse().unwrap(),
        );
        assert_eq!(user(&key, &headers).as_deref(), Some("alice"));
        // Another instance with another secret does not accept it.
        assert_eq!(user(&key_from_secret(b"other"), &headers), None);
        // Nor does a hand-written cookie.
        headers.insert(header::COOKIE, "chat_user=alice".parse().unwrap());
        assert_eq!(user(&key, &headers), None);
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(valid_name("bob_2"));
    }
}
