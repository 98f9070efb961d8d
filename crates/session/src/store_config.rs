//! The Redis store's settings: how a session is laid out in Redis.

use serde::{Deserialize, Serialize};

/// How [`RedisStore`](crate::RedisStore) keeps a session in Redis. Both keep the same data,
/// the same user index and the same guarantees against reviving a session logged out
/// elsewhere; they differ in what concurrent writers of one session keep, and in what each
/// request costs Redis (the [session guide](https://github.com/tower-scale/tower-scale/blob/main/docs/session.md#redis-layouts-and-round-trips)
/// has the commands of both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RedisLayout {
    /// One hash per session, one hash field per session field (the default). An update
    /// writes only the fields it changed: two requests of one user that change different
    /// fields on two instances at once both keep their change. Costs a Lua script per update
    /// and a `MULTI`/`EXEC` transaction per new session.
    #[default]
    Hash,
    /// The whole session as one string value (a JSON object of its fields and the store's
    /// own `__exp`, `__user`, `__end`, `__idx`). A new session is one `SET .. NX`, a read one
    /// `GET`, an update of a session read in the same request one `SET .. XX`, a logout one
    /// `GETDEL`. Concurrent writers of one session: the last write wins, for the whole
    /// session (as in tower-sessions and express-session).
    Record,
}

/// Settings of [`RedisStore`](crate::RedisStore), all with defaults; deserializable (the
/// stack's `[session.redis]` table).
///
/// ```
/// use tower_scale_session::{RedisLayout, RedisStoreConfig};
///
/// let config: RedisStoreConfig = serde_json::from_str(r#"{ "layout": "record" }"#).unwrap();
/// assert_eq!(config.layout, RedisLayout::Record);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisStoreConfig {
    /// How a session is laid out in Redis: `hash` (the default) or `record`.
    pub layout: RedisLayout,
}
