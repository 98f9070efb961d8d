//! The bypass path: a request the cache does not look up, its response passed through.

use std::sync::Arc;

use http::{Request, Response};
use tower_service::Service;

use super::body::ResponseBody;
use super::key::MakeCacheKey;
use super::layer::Shared;
use crate::names;

/// A request the cache does not look up: the origin's response, passed through.
pub(super) async fn bypass<S, K, ReqBody, ResBody>(
    shared: Arc<Shared<K>>,
    mut inner: S,
    req: Request<ReqBody>,
    detail: &'static str,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    K: MakeCacheKey,
{
    names::bypass(detail.strip_prefix("fwd=bypass; detail=").unwrap_or(detail));
    Ok(shared.pass(inner.call(req).await?, detail))
}
