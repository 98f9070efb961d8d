//! The HTTP side: `POST /videos` enqueues, `GET /videos/{id}` reports.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tower_scale_shutdown::Shutdown;

use crate::job::{VideoJob, VideoQueue};
use crate::status::{StatusError, StatusStore};
use crate::transcode::VideoSpec;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The queue.
    pub storage: oxana::Storage,
    /// The statuses.
    pub statuses: StatusStore,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("statuses", &self.statuses)
            .finish_non_exhaustive()
    }
}

/// The server's routes: `POST /videos`, `GET /videos/{id}`, `/livez` and `/readyz` (ready
/// while Redis answers and no shutdown has started), every request tracked by `shutdown`.
pub fn app(state: AppState, shutdown: &Shutdown) -> Router {
    let backend = state.statuses.backend().clone();
    Router::new()
        .route("/videos", post(create))
        .route("/videos/{id}", get(status))
        .with_state(state)
        .layer(shutdown.layer())
        .merge(
            shutdown
                .health()
                .check("redis", move || {
                    let backend = backend.clone();
                    async move { backend.ping().await.map(|_| ()).map_err(|e| e.to_string()) }
                })
                .routes(),
        )
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn unavailable(e: &impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "Redis unavailable");
    let mut res = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("try again later: {e}"),
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    res
}

/// `POST /videos` with an optional JSON [`VideoSpec`] (empty body: the defaults): records the
/// video as queued, enqueues its job, answers `202` with its id.
async fn create(State(state): State<AppState>, body: Bytes) -> Response {
    let spec: VideoSpec = if body.iter().all(u8::is_ascii_whitespace) {
        VideoSpec::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(spec) => spec,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
        }
    };
    if let Err(e) = spec.validate() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    // The status exists before the job can start, so the worker always finds it.
    if let Err(e) = state.statuses.create(&id, &spec).await {
        return unavailable(&e);
    }
    let job = VideoJob {
        video_id: id.clone(),
        spec,
    };
    if let Err(e) = state.storage.enqueue(VideoQueue, job).await {
        if let Err(e) = state.statuses.remove(&id).await {
            tracing::warn!(video = %id, error = %e, "cannot remove the status of a job not enqueued");
        }
        return unavailable(&e);
    }
    tracing::info!(video = %id, ?spec, "enqueued");
    let location = format!("/videos/{id}");
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location.clone())],
        Json(json!({ "id": id, "status_url": location })),
    )
        .into_response()
}

/// `GET /videos/{id}`: the [`VideoStatus`](crate::VideoStatus), or `404`.
async fn status(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return error(StatusCode::BAD_REQUEST, "invalid video id");
    }
    match state.statuses.get(&id).await {
        Ok(Some(s)) => Json(s).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no video {id}")),
        Err(e @ StatusError::Corrupt(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => unavailable(&e),
    }
}
