//! An axum app with sqlx and two PostgreSQL pools, a primary and a replica, routed by
//! tower-scale-replica's [`ReadWriteLayer`]: reads (`GET`) query the replica, writes (`POST`) the
//! primary, and for a window after a client's own write its reads query the primary too
//! (read-your-writes), tracked in a signed cookie so it holds on every instance that shares the
//! secret.
//!
//! Every response says which database served it (`served_by`, from `SELECT
//! current_database()`, and the `x-served-by` header).

use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header::HeaderName};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tower_scale_replica::{DbRoute, ForceTargetLayer, ReadWriteLayer, Target};

/// The primary and the replica pool.
#[derive(Clone, Debug)]
pub struct Pools {
    /// Writes, and reads that must see them.
    pub primary: PgPool,
    /// Reads.
    pub replica: PgPool,
}

impl Pools {
    /// Lazily connecting pools (the app starts while a database is down; a request that needs
    /// it gets `503`), each waiting at most `acquire_timeout` for a connection.
    pub fn connect_lazy(
        primary_url: &str,
        replica_url: &str,
        acquire_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        let options = || {
            PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(acquire_timeout)
        };
        Ok(Self {
            primary: options().connect_lazy(primary_url)?,
            replica: options().connect_lazy(replica_url)?,
        })
    }

    /// The pool for a routing decision.
    pub fn for_route(&self, route: DbRoute) -> &PgPool {
        match route.target {
            Target::Primary => &self.primary,
            Target::Replica => &self.replica,
        }
    }
}

/// Creates the `items` table where it is missing. On a real replica, replication brings the
/// schema; this example's "replica" is a second database, so it is created on both.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS items (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// An item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Item {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
}

/// `POST /items` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    /// 1 to 200 characters.
    pub name: String,
}

/// The routes (`GET`/`POST /items`, `GET /items/fresh` always on the primary), with `layer` as
/// the router's [`ReadWriteLayer`].
pub fn app(pools: Pools, layer: ReadWriteLayer) -> Router {
    Router::new()
        .route("/items", get(list).post(create))
        .route(
            "/items/fresh",
            get(list).route_layer(ForceTargetLayer::primary()),
        )
        .with_state(pools)
        .layer(layer)
}

/// The `x-served-by` header.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

fn served(database: &str, status: StatusCode, body: serde_json::Value) -> Response {
    let mut res = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(database) {
        res.headers_mut().insert(SERVED_BY, v);
    }
    res
}

fn db_error(route: DbRoute, e: &sqlx::Error) -> Response {
    tracing::error!(target = route.target.as_str(), error = %e, "database unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "error": format!("the {} database is unavailable", route.target.as_str()),
        })),
    )
        .into_response()
}

async fn list(State(pools): State<Pools>, Extension(route): Extension<DbRoute>) -> Response {
    let pool = pools.for_route(route);
    let result = async {
        let mut tx = pool.begin().await?;
        let (database,): (String,) = sqlx::query_as("SELECT current_database()")
            .fetch_one(&mut *tx)
            .await?;
        let items: Vec<Item> = sqlx::query_as("SELECT id, name FROM items ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>((database, items))
    }
    .await;
    match result {
        Ok((database, items)) => served(
            &database,
            StatusCode::OK,
            json!({ "served_by": database, "items": items }),
        ),
        Err(e) => db_error(route, &e),
    }
}

async fn create(
    State(pools): State<Pools>,
    Extension(route): Extension<DbRoute>,
    body: Result<Json<NewItem>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(b) => b,
        Err(e) => return (e.status(), Json(json!({ "error": e.body_text() }))).into_response(),
    };
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "name must have 1 to 200 characters" })),
        )
            .into_response();
    }
    // ReadWriteLayer routes every POST to the primary.
    let pool = pools.for_route(route);
    let result = sqlx::query_as::<_, (i64, String)>(
        "INSERT INTO items (name) VALUES ($1) RETURNING id, current_database()",
    )
    .bind(name)
    .fetch_one(pool)
    .await;
    match result {
        Ok((id, database)) => served(
            &database,
            StatusCode::CREATED,
            json!({ "served_by": database, "item": Item { id, name: name.to_owned() } }),
        ),
        Err(e) => db_error(route, &e),
    }
}
