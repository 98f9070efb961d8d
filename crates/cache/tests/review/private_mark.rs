//! Item 1: a response the session layer (inside the cache) makes personal is not stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{Request, header};
use axum::routing::get;
use tower_layer::Layer;
use tower_scale_cache::ResponseCacheLayer;
use tower_scale_core::PrivateMark;
use tower_service::Service;

use crate::support::{calls, count, counter, eventually, fetch, stores};

/// What a session layer inside the cache does when the handler writes to the session: it
/// sets the request's [`PrivateMark`] (while `on` is true).
#[derive(Clone)]
struct MarkPrivate {
    on: Arc<AtomicBool>,
}

impl<S> Layer<S> for MarkPrivate {
    type Service = MarkPrivateService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MarkPrivateService {
            inner,
            on: self.on.clone(),
        }
    }
}

#[derive(Clone)]
struct MarkPrivateService<S> {
    inner: S,
    on: Arc<AtomicBool>,
}

impl<S, B> Service<Request<B>> for MarkPrivateService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        if self.on.load(Ordering::SeqCst)
            && let Some(mark) = req.extensions().get::<PrivateMark>()
        {
            mark.set();
        }
        self.inner.call(req)
    }
}

fn app(
    layer: ResponseCacheLayer,
    on: &Arc<AtomicBool>,
    calls: &Arc<std::sync::atomic::AtomicUsize>,
) -> Router {
    let calls = calls.clone();
    Router::new()
        .route(
            "/page",
            get(move || {
                let n = count(&calls);
                async move {
                    (
                        [(header::CACHE_CONTROL, "max-age=10")],
                        format!("page #{n}"),
                    )
                }
            }),
        )
        .layer(MarkPrivate { on: on.clone() })
        .layer(layer)
}

#[tokio::test]
async fn response_the_session_layer_made_personal_is_never_stored() {
    let stores = stores();
    for (name, cache) in &stores.caches {
        let on = Arc::new(AtomicBool::new(true));
        let n = counter();
        let app = app(ResponseCacheLayer::new(cache.clone()), &on, &n);
        let first = fetch(&app, "/page").await;
        assert_eq!(first.text(), "page #1", "{name}");
        assert_eq!(
            first.cache_status(),
            "tower-scale; fwd=uri-miss; detail=private",
            "{name}"
        );
        let second = fetch(&app, "/page").await;
        assert_eq!(
            second.text(),
            "page #2",
            "{name}: the personal page was stored"
        );
        assert_eq!(calls(&n), 2, "{name}");
        // Unmarked, the same page is stored.
        on.store(false, Ordering::SeqCst);
        fetch(&app, "/page").await;
        assert_eq!(fetch(&app, "/page").await.text(), "page #3", "{name}");
    }
}

#[tokio::test]
async fn personal_background_refresh_does_not_replace_the_shared_entry() {
    let stores = stores();
    for (name, cache) in &stores.caches {
        let on = Arc::new(AtomicBool::new(false));
        let n = counter();
        let layer = ResponseCacheLayer::new(cache.clone())
            .stale_while_revalidate(Duration::from_secs(3600));
        let app = app(layer, &on, &n);
        let before = calls(&n);
        assert_eq!(
            fetch(&app, "/page").await.text(),
            format!("page #{}", before + 1)
        );
        stores.clock.advance(Duration::from_secs(11));
        on.store(true, Ordering::SeqCst);
        // Stale: served at once while a background request refreshes it, marked personal.
        let stale = fetch(&app, "/page").await;
        assert_eq!(stale.text(), format!("page #{}", before + 1), "{name}");
        eventually("the refresh ran", || calls(&n) == before + 2).await;
        // Once that refresh is over, a stale request starts another one; had it been stored,
        // requests would get its fresh response instead.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while calls(&n) < before + 3 {
            let again = fetch(&app, "/page").await;
            assert_eq!(
                again.text(),
                format!("page #{}", before + 1),
                "{name}: the personal refresh replaced the shared entry"
            );
            assert!(
                again.cache_status().contains("stale"),
                "{name}: {}",
                again.cache_status()
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: no second refresh"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
