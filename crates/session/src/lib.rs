//! Sessions as a tower layer that make instances stateless.
//!
//! # Overview
//!
//! - [`SessionManagerLayer`] puts a lazy [`Session`] in each request (an axum extractor) and
//!   writes its changes after the handler, before the response is sent
//!   ([`SessionManager`]). Built from a [`SessionConfig`]
//!   ([`from_config`](SessionManagerLayer::from_config)) or with setters.
//! - Stores behind [`Store`]: [`MemoryStore`] (moka, the embedded default for one
//!   instance) and `RedisStore` (feature `redis`, one hash per session or, with
//!   `RedisLayout::Record`, one string per session, shared by every instance through the
//!   shared `tower-scale-redis` backend; works on Redis Cluster).
//! - **Lazy and cheap**: no store call when the handler never touches the session, one read
//!   when it only reads, and only the changed fields written: two requests of one user that
//!   change different fields on two instances both keep their change. Sliding expiry
//!   refreshes the TTL at most once per [`touch_after`](SessionConfig::touch_after).
//! - **Cookie**: a 128-bit id from a CSPRNG, `HttpOnly`, `Secure` (on by default),
//!   `SameSite=Lax`, `Max-Age` equal to the server-side TTL, optional signing with rotating
//!   keys. An unknown or expired id is never adopted; a malformed, oversized or duplicated
//!   cookie gives an anonymous session. A session never modified sets no cookie.
//! - [`Session::cycle_id`] on login (session fixation), [`Session::destroy`] on logout,
//!   [`Session::destroy_all_for_user`] to log a user out everywhere.
//! - **Store failure**: a read while the store is down answers 503 (configurable) through
//!   [`SessionError`]; a failed write replaces the response with 503 (configurable, a
//!   [`Refuse`] policy with reason `"session-unavailable"`), is
//!   logged and counted (`session_operations_total{result="error"}`), never dropped silently. Every store
//!   call is bounded by the backend's command timeout.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use tower_scale_session::{MemoryStore, Session, SessionConfig, SessionError, SessionManagerLayer};
//!
//! async fn login(session: Session) -> Result<&'static str, SessionError> {
//!     session.cycle_id(); // a new id on every login: no session fixation
//!     session.set_user("alice");
//!     session.insert("name", "Alice")?;
//!     Ok("welcome")
//! }
//!
//! async fn me(session: Session) -> Result<String, SessionError> {
//!     let name: Option<String> = session.get("name").await?;
//!     Ok(name.unwrap_or_else(|| "anonymous".into()))
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One instance: sessions in memory. Many instances: `RedisStore::new(backend)`.
//! let mut config = SessionConfig::default();
//! config.secure = false; // local development over plain HTTP only
//! let sessions = SessionManagerLayer::from_config(MemoryStore::new(), &config)?;
//! let app: Router = Router::new()
//!     .route("/login", post(login))
//!     .route("/me", get(me))
//!     .layer(sessions);
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod config;
mod cookie;
mod error;
mod future;
mod id;
mod layer;
pub mod names;
mod service;
mod session;
mod sessions;
mod shared;
mod store;
#[cfg(feature = "redis")]
mod store_config;

#[doc(inline)]
pub use self::{
    config::{LocalCopyConfig, SameSite, SessionConfig},
    error::SessionError,
    future::ResponseFuture,
    id::SessionId,
    layer::SessionManagerLayer,
    names::SESSION_OPERATIONS_TOTAL,
    service::SessionManager,
    session::Session,
    sessions::Sessions,
    store::{RESERVED_PREFIX, Record, Save, SaveOutcome, Store, memory::MemoryStore},
};
#[doc(no_inline)]
pub use tower_scale_core::{BoxFuture, ConfigError, DefaultRefusal, Refusal, Refuse, StoreError};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use self::{
    store::redis::RedisStore,
    store_config::{RedisLayout, RedisStoreConfig},
};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
