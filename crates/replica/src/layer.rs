//! [`ReadWriteLayer`]: its constructor and setters, and the decision it shares with its
//! services (read or write, the signed read-your-writes cookie).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cookie::{Cookie, CookieJar, Key, SameSite};
use http::{HeaderValue, Method, Request, header};
use tower_layer::Layer;
use tower_scale_core::{Clock, SystemClock};

use crate::error::Error;
use crate::route::{DbRoute, Reason, Target};
use crate::service::ReadWrite;

/// Routes reads to replicas and writes to the primary, with read-your-writes through a signed
/// cookie. See the [crate docs](crate).
#[derive(Clone)]
pub struct ReadWriteLayer {
    state: Arc<State>,
}

#[derive(Clone)]
pub(crate) struct State {
    key: Key,
    window: Duration,
    cookie_name: String,
    secure: bool,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for ReadWriteLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadWriteLayer")
            .field("window", &self.state.window)
            .field("cookie_name", &self.state.cookie_name)
            .field("secure", &self.state.secure)
            .finish_non_exhaustive()
    }
}

impl ReadWriteLayer {
    /// A layer signing its cookie with a key derived from `secret` (at least 32 bytes; the same
    /// on every instance). Defaults: window 5 s, cookie `ts_rw`, not `Secure`.
    pub fn new(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < 32 {
            return Err(Error::KeyTooShort(secret.len()));
        }
        Ok(Self {
            state: Arc::new(State {
                key: Key::derive_from(secret),
                window: Duration::from_secs(5),
                cookie_name: "ts_rw".to_owned(),
                secure: false,
                clock: Arc::new(SystemClock),
            }),
        })
    }

    fn map(self, f: impl FnOnce(&mut State)) -> Self {
        let mut state = Arc::unwrap_or_clone(self.state);
        f(&mut state);
        Self {
            state: Arc::new(state),
        }
    }

    /// How long after a write the client's reads go to the primary (default 5 s). Choose it
    /// longer than the replication lag you tolerate.
    #[must_use]
    pub fn window(self, window: Duration) -> Self {
        self.map(|s| s.window = window)
    }

    /// The cookie's name (default `ts_rw`).
    pub fn cookie_name(self, name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(Error::CookieName(name));
        }
        Ok(self.map(|s| s.cookie_name = name))
    }

    /// Marks the cookie `Secure` (send it over HTTPS only). Default off.
    #[must_use]
    pub fn secure(self, secure: bool) -> Self {
        self.map(|s| s.secure = secure)
    }

    /// Replaces the wall clock (tests).
    #[must_use]
    pub fn clock(self, clock: impl Clock) -> Self {
        self.map(|s| s.clock = Arc::new(clock))
    }
}

impl State {
    /// The millisecond timestamp until which this request's client reads from the primary.
    fn primary_until<B>(&self, req: &Request<B>) -> Option<u64> {
        let jar = CookieJar::new();
        let signed = jar.signed(&self.key);
        req.headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| Cookie::parse(c.trim().to_owned()).ok())
            .filter(|c| c.name() == self.cookie_name)
            .find_map(|c| signed.verify(c)?.value().parse().ok())
    }

    pub(crate) fn decide<B>(&self, req: &Request<B>) -> DbRoute {
        if !is_safe(req.method()) {
            return DbRoute {
                target: Target::Primary,
                reason: Reason::Write,
            };
        }
        match self.primary_until(req) {
            Some(until) if self.clock.now_ms() < until => DbRoute {
                target: Target::Primary,
                reason: Reason::RecentWrite,
            },
            _ => DbRoute {
                target: Target::Replica,
                reason: Reason::Read,
            },
        }
    }

    pub(crate) fn cookie(&self) -> Option<HeaderValue> {
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let until = self.clock.now_ms().saturating_add(window_ms);
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(
            Cookie::build((self.cookie_name.clone(), until.to_string()))
                .path("/")
                .http_only(true)
                .secure(self.secure)
                .same_site(SameSite::Lax)
                .max_age(cookie::time::Duration::seconds(
                    i64::try_from(self.window.as_secs()).unwrap_or(i64::MAX) + 1,
                )),
        );
        let cookie = jar.delta().next()?;
        HeaderValue::from_str(&cookie.to_string()).ok()
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl<S> Layer<S> for ReadWriteLayer {
    type Service = ReadWrite<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadWrite::new(inner, Arc::clone(&self.state))
    }
}
