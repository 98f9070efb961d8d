//! The HTTP response cache layer: its config, layer, service and future, and one module per
//! request path (lookup, forward and the miss leader, bypass, unsafe-method purges).

mod body;
mod bypass;
mod config;
mod forward;
mod future;
mod key;
mod layer;
mod lead;
mod lookup;
mod policy;
mod purge;
mod range;
mod respond;
mod revalidate;
mod service;
mod store_response;
pub(crate) mod values;

pub use self::body::ResponseBody;
pub use self::config::ResponseCacheConfig;
pub use self::future::ResponseFuture;
pub use self::key::{CacheKey, DefaultKey, MakeCacheKey};
pub use self::layer::ResponseCacheLayer;
pub use self::respond::CACHE_STATUS;
pub use self::service::ResponseCache;
pub use self::store_response::CacheTags;
