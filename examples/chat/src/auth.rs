//! Login through `tower-scale-session`: `POST /login` starts a session bound to the user
//! (in Redis with several instances, so a login on one instance holds on every other),
//! `POST /logout` ends it, and every chat route reads the user from the session.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tower_scale_session::{Session, SessionError};

/// The session field holding the logged-in user's name.
pub const USER: &str = "name";

/// A valid user name: 1 to 32 letters, digits, `_` or `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Logs `name` in: a new session id (no fixation), bound to the user.
pub fn log_in(session: &Session, name: &str) -> Result<(), SessionError> {
    session.cycle_id();
    session.set_user(name);
    session.insert(USER, name)
}

/// The logged-in user, or the response to send: 401 when nobody is logged in, 503 when the
/// session store is unavailable.
pub async fn user(session: &Session) -> Result<String, Response> {
    match session.get::<String>(USER).await {
        Ok(Some(name)) if valid_name(&name) => Ok(name),
        Ok(_) => Err((StatusCode::UNAUTHORIZED, "log in first: POST /login").into_response()),
        Err(e) => Err(e.into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"x".repeat(33)));
        assert!(valid_name("bob_2"));
    }
}
