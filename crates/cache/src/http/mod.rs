//! The HTTP response cache layer.

mod body;
mod key;
mod layer;
mod policy;
mod values;

pub use self::body::ResponseBody;
pub use self::key::{CacheKey, DefaultKey, MakeCacheKey};
pub use self::layer::{
    CACHE_STATUS, CacheTags, ResponseCache, ResponseCacheConfig, ResponseCacheLayer, ResponseFuture,
};
