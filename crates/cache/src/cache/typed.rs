//! The typed cache-aside API: `get_or_fetch` and its variants, `get` and `set`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower_scale_core::millis;

use super::{Cache, Coordinated};
use crate::Error;
use crate::entry::{Entry, EntryBody};
use crate::flight::{Join, Leader, Outcome};
use crate::store::VALUE_FIELD;

/// How a typed value is cached: lifetime, stale window, tags.
///
/// ```
/// use std::time::Duration;
/// use tower_scale_cache::FetchOptions;
///
/// let options = FetchOptions::new(Duration::from_secs(60))
///     .stale(Duration::from_secs(30))
///     .tag("users");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchOptions {
    /// How long the value is fresh.
    pub ttl: Duration,
    /// How long after that it may still be served: while another instance holds the
    /// cross-instance lock, or when the fetch fails.
    pub stale: Duration,
    /// Tags, purged together with [`Cache::invalidate_tag`].
    pub tags: Vec<String>,
}

impl FetchOptions {
    /// Fresh for `ttl`, no stale window, no tags.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            ..Self::default()
        }
    }

    /// The stale window.
    #[must_use]
    pub fn stale(mut self, stale: Duration) -> Self {
        self.stale = stale;
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// What a typed leader hands its followers.
type TypedOutcome<E> = Result<Arc<Entry>, Arc<E>>;

impl Cache {
    /// Returns the cached value of `key`, or runs `fetch` once (for all concurrent callers of
    /// this instance; for all instances with the cross-instance lock) and caches its value for
    /// `ttl`.
    ///
    /// The store failing never fails the call: `fetch` runs and its value is returned.
    ///
    /// # Errors
    ///
    /// The error of `fetch`, shared (`Arc`) with the callers that waited for it, as moka's
    /// `try_get_with` does.
    pub async fn get_or_fetch<T, F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        fetch: F,
    ) -> Result<T, Arc<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Send + Sync + 'static,
    {
        self.get_or_fetch_with(key, &FetchOptions::new(ttl), fetch)
            .await
    }

    /// [`get_or_fetch`](Cache::get_or_fetch) with a stale window and tags.
    ///
    /// # Errors
    ///
    /// As [`get_or_fetch`](Cache::get_or_fetch); with a stale window, a failing `fetch`
    /// returns the stale value instead.
    pub async fn get_or_fetch_with<T, F, Fut, E>(
        &self,
        key: &str,
        options: &FetchOptions,
        fetch: F,
    ) -> Result<T, Arc<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Send + Sync + 'static,
    {
        self.fetch_coded::<Json<T>, F, Fut, E>(key, options, fetch)
            .await
    }

    /// [`get_or_fetch`](Cache::get_or_fetch) for bytes stored as they are, without serde: an
    /// already serialized document, a rendered page, an image. A hit is the stored bytes
    /// (shared, not copied); nothing is parsed.
    ///
    /// A key holds either kind: bytes stored by this method are not a valid JSON value for
    /// [`get_or_fetch`](Cache::get_or_fetch) in general (and the other way round they are
    /// JSON text), so read a key with the method that wrote it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use tower_scale_cache::{Cache, MemoryStore};
    ///
    /// let cache = Cache::new(MemoryStore::default());
    /// let page = cache
    ///     .get_or_fetch_bytes("page:home", Duration::from_secs(60), || async {
    ///         Ok::<_, std::io::Error>(Bytes::from_static(b"<h1>home</h1>"))
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(page, "<h1>home</h1>");
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get_or_fetch`](Cache::get_or_fetch).
    pub async fn get_or_fetch_bytes<F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        fetch: F,
    ) -> Result<Bytes, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Send + Sync + 'static,
    {
        self.get_or_fetch_bytes_with(key, &FetchOptions::new(ttl), fetch)
            .await
    }

    /// [`get_or_fetch_bytes`](Cache::get_or_fetch_bytes) with a stale window and tags.
    ///
    /// # Errors
    ///
    /// As [`get_or_fetch_with`](Cache::get_or_fetch_with).
    pub async fn get_or_fetch_bytes_with<F, Fut, E>(
        &self,
        key: &str,
        options: &FetchOptions,
        fetch: F,
    ) -> Result<Bytes, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Send + Sync + 'static,
    {
        self.fetch_coded::<Raw, F, Fut, E>(key, options, fetch)
            .await
    }

    /// The body of the `get_or_fetch` methods, for values stored with the codec `C`.
    async fn fetch_coded<C, F, Fut, E>(
        &self,
        key: &str,
        options: &FetchOptions,
        fetch: F,
    ) -> Result<C::Value, Arc<E>>
    where
        C: Codec,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C::Value, E>>,
        E: Send + Sync + 'static,
    {
        let mark = self.inner.flights.mark();
        let stale = match self.lookup(key, VALUE_FIELD).await {
            Ok(Some(entry)) => {
                let now = self.now_ms();
                if entry.is_fresh(now)
                    && let Some(v) = decode_value::<C>(&entry)
                {
                    return Ok(v);
                }
                (entry.is_usable(now) && decode_value::<C>(&entry).is_some()).then_some(entry)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, key, "cache store unavailable; fetching");
                None
            }
        };
        let mut fetch = Some(fetch);
        loop {
            match self.join_flight(key, VALUE_FIELD) {
                Join::Follower(f) => match f.wait().await {
                    None => continue,
                    Some(outcome) => match outcome.downcast_ref::<TypedOutcome<E>>() {
                        Some(Ok(entry)) => {
                            if let Some(v) = decode_value::<C>(entry) {
                                return Ok(v);
                            }
                        }
                        Some(Err(e)) => return Err(Arc::clone(e)),
                        None => {}
                    },
                },
                Join::Leader(leader) => {
                    // A flight that ended since the read may have stored the value it missed
                    // (with the lock, `coordinate` reads again anyway).
                    let reread = self.inner.lock.is_none() && leader.ended_since(mark);
                    if reread
                        && let Ok(Some(entry)) = self.lookup(key, VALUE_FIELD).await
                        && entry.is_fresh(self.now_ms())
                        && let Some(v) = decode_value::<C>(&entry)
                    {
                        leader.finish(Arc::new(Ok::<_, Arc<E>>(entry)) as Outcome);
                        return Ok(v);
                    }
                    return self
                        .lead_typed::<C, F, Fut, E>(key, options, stale, leader, fetch.take())
                        .await;
                }
            }
            // A follower that could not use the leader's outcome fetches by itself.
            let fetch = fetch.take().map(|f| f());
            return match fetch {
                Some(fut) => fut.await.map_err(Arc::new),
                None => unreachable!("fetch is taken once"),
            };
        }
    }

    async fn lead_typed<C, F, Fut, E>(
        &self,
        key: &str,
        options: &FetchOptions,
        stale: Option<Arc<Entry>>,
        leader: Leader,
        fetch: Option<F>,
    ) -> Result<C::Value, Arc<E>>
    where
        C: Codec,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C::Value, E>>,
        E: Send + Sync + 'static,
    {
        let finish = |leader: Leader, o: TypedOutcome<E>| {
            leader.finish(Arc::new(o) as Outcome);
        };
        let coordinated = self
            .coordinate(key, VALUE_FIELD, stale.is_some(), || async {
                self.lookup(key, VALUE_FIELD).await.ok().flatten()
            })
            .await;
        let token = match coordinated {
            Coordinated::Filled(entry) => {
                if let Some(v) = decode_value::<C>(&entry) {
                    finish(leader, Ok(entry));
                    return Ok(v);
                }
                None
            }
            Coordinated::ServeStale => {
                if let Some(entry) = &stale
                    && let Some(v) = decode_value::<C>(entry)
                {
                    finish(leader, Ok(Arc::clone(entry)));
                    return Ok(v);
                }
                None
            }
            Coordinated::Fetch(token) => token,
        };
        let Some(fetch) = fetch else {
            unreachable!("the leader holds the fetch")
        };
        let result = fetch().await;
        let outcome = match result {
            Ok(value) => match C::encode(&value) {
                Ok(bytes) => {
                    let entry = Arc::new(Entry {
                        stored_at: self.now_ms(),
                        ttl_ms: millis(options.ttl),
                        swr_ms: millis(options.stale),
                        sie_ms: millis(options.stale),
                        body: EntryBody::Value(bytes),
                    });
                    // After a store that did not answer, the lock expires by itself.
                    if self
                        .save(key, &[(VALUE_FIELD, Arc::clone(&entry))], &options.tags, 0)
                        .await
                    {
                        self.unlock(key, VALUE_FIELD, token).await;
                    }
                    finish(leader, Ok(entry));
                    return Ok(value);
                }
                Err(e) => {
                    tracing::warn!(error = %e, key, "value not cacheable: serialization failed");
                    self.unlock(key, VALUE_FIELD, token).await;
                    drop(leader);
                    return Ok(value);
                }
            },
            Err(e) => e,
        };
        self.unlock(key, VALUE_FIELD, token).await;
        if let Some(entry) = stale
            && entry.can_serve_on_error(self.now_ms())
            && let Some(v) = decode_value::<C>(&entry)
        {
            finish(leader, Ok(entry));
            return Ok(v);
        }
        let e = Arc::new(outcome);
        finish(leader, Err(Arc::clone(&e)));
        Err(e)
    }

    /// The fresh cached value of `key`, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails, [`Error::Codec`] when the stored value is not a
    /// `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.lookup(key, VALUE_FIELD).await? {
            Some(entry) if entry.is_fresh(self.now_ms()) => match &entry.body {
                EntryBody::Value(bytes) => serde_json::from_slice(bytes)
                    .map(Some)
                    .map_err(|e| Error::Codec(e.to_string())),
                _ => Err(Error::Codec("not a typed value".into())),
            },
            _ => Ok(None),
        }
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] when `value` cannot be serialized, [`Error::Store`] when the store
    /// fails.
    pub async fn set<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        options: &FetchOptions,
    ) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Codec(e.to_string()))?;
        let entry = Entry {
            stored_at: self.now_ms(),
            ttl_ms: millis(options.ttl),
            swr_ms: millis(options.stale),
            sie_ms: millis(options.stale),
            body: EntryBody::Value(Bytes::from(bytes)),
        };
        let ttl = Duration::from_millis(entry.store_ttl_ms());
        self.store()
            .put(key, &[(VALUE_FIELD, entry.encode())], ttl, &options.tags)
            .await?;
        self.purge_local_and_remote(Some(&[key.to_owned()])).await
    }
}

fn decode_value<C: Codec>(entry: &Entry) -> Option<C::Value> {
    match &entry.body {
        EntryBody::Value(bytes) => C::decode(bytes),
        _ => None,
    }
}

/// How the `get_or_fetch` methods turn a value into stored bytes and back.
trait Codec {
    type Value;
    /// The bytes to store, or why `value` cannot be stored.
    fn encode(value: &Self::Value) -> Result<Bytes, String>;
    /// The value of stored bytes; `None` (logged) when they do not decode, a miss.
    fn decode(bytes: &Bytes) -> Option<Self::Value>;
}

/// serde values as JSON ([`Cache::get_or_fetch`]).
struct Json<T>(std::marker::PhantomData<fn() -> T>);

impl<T: Serialize + DeserializeOwned> Codec for Json<T> {
    type Value = T;

    fn encode(value: &T) -> Result<Bytes, String> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    fn decode(bytes: &Bytes) -> Option<T> {
        match serde_json::from_slice(bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::debug!(error = %e, "cached value does not decode; refetching");
                None
            }
        }
    }
}

/// Bytes as they are ([`Cache::get_or_fetch_bytes`]).
struct Raw;

impl Codec for Raw {
    type Value = Bytes;

    fn encode(value: &Bytes) -> Result<Bytes, String> {
        Ok(value.clone())
    }

    fn decode(bytes: &Bytes) -> Option<Bytes> {
        Some(bytes.clone())
    }
}
