//! A forwarding reverse proxy with the response cache in between: every request goes to the
//! origin (method, path and query, headers, body; hop-by-hop fields dropped), through
//! [`ResponseCacheLayer`]. It is what `scripts/cache-conformance.sh` puts between the
//! conformance suite's client and its origin server.
//!
//! Run with
//!
//! ```not_rust
//! PORT=8001 cargo run -p example-cache-proxy -- --origin 127.0.0.1:8000
//! cargo run -p example-cache-proxy -- --origin 127.0.0.1:8000 --redis redis://127.0.0.1:6390
//! curl -i http://127.0.0.1:8001/some/path   # Cache-Status: tower-scale; fwd=uri-miss; ...
//! ```
//!
//! It listens on `HOST` (default `127.0.0.1`) and `PORT` (default 8001), as every example does.
//! Options (or environment): `--origin HOST:PORT` (`ORIGIN`, required), `--redis URL` (`REDIS_URL`; the memory store without
//! it), `--config JSON` (`CACHE_CONFIG`: a `ResponseCacheConfig`, default the
//! [`ResponseCacheConfig::standards`] preset with `cache_authorized` and `public` on).

use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::{ServiceBuilder, service_fn};
use tower_scale_cache::{Cache, RedisStore, ResponseCacheConfig, ResponseCacheLayer};
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_shutdown::{Shutdown, ShutdownConfig};

#[tokio::main]
async fn main() -> ExitCode {
    example_support::exit_code(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let opts = Options::parse()?;
    let cache = match &opts.redis {
        Some(url) => Cache::new(RedisStore::new(RedisBackend::new(RedisConfig::new(url))?)),
        None => Cache::memory(),
    };
    let layer = ResponseCacheLayer::from_config(cache, &opts.config)?;
    let origin = opts.origin;
    let forward = service_fn(move |req: Request<Body>| forward(origin, req));
    // The cache sees the origin's response as sent (its own rules drop what `Connection`
    // names); the hop-by-hop fields are removed from what leaves the proxy.
    let service = ServiceBuilder::new()
        .map_response(|mut res: Response<_>| {
            drop_hop_by_hop(res.headers_mut());
            res
        })
        .layer(layer)
        .service(forward);
    let app = Router::new().fallback_service(service);
    let listener = TcpListener::bind(opts.listen).await?;
    eprintln!(
        "cache-proxy on http://{} -> http://{origin} ({} store)",
        listener.local_addr()?,
        if opts.redis.is_some() {
            "redis"
        } else {
            "memory"
        }
    );
    // No `/readyz` here for a load balancer to watch: no pre-stop delay. SIGTERM or Ctrl-C
    // drains through the serve loop, which closes no connection a client may be sending on.
    let shutdown = Shutdown::new({
        let mut config = ShutdownConfig::default();
        config.pre_stop_delay = Duration::ZERO;
        config
    });
    shutdown.listen_for_signals();
    let serve = shutdown.serve(listener, app);
    let report = shutdown.run(serve.into_future()).await;
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}

/// The command line, each option falling back to its environment variable.
struct Options {
    origin: SocketAddr,
    listen: SocketAddr,
    redis: Option<String>,
    config: ResponseCacheConfig,
}

impl Options {
    fn parse() -> Result<Self, Box<dyn std::error::Error>> {
        let mut origin = std::env::var("ORIGIN").ok();
        let mut redis = std::env::var("REDIS_URL").ok();
        let mut config = std::env::var("CACHE_CONFIG").ok();
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let slot = match flag.as_str() {
                "--origin" => &mut origin,
                "--redis" => &mut redis,
                "--config" => &mut config,
                other => return Err(format!("unknown option {other:?}").into()),
            };
            *slot = Some(args.next().ok_or_else(|| format!("{flag} needs a value"))?);
        }
        let origin = origin.ok_or("--origin HOST:PORT (or ORIGIN) is required")?;
        let config = match config {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| format!("--config is not a ResponseCacheConfig: {e}"))?,
            None => {
                let mut c = ResponseCacheConfig::standards();
                c.cache_authorized = true;
                c.public = true;
                c
            }
        };
        Ok(Self {
            origin: origin
                .parse()
                .map_err(|e| format!("--origin {origin:?}: {e}"))?,
            listen: example_support::listen_addr(8001)?,
            redis: redis.filter(|u| !u.is_empty()),
            config,
        })
    }
}

/// Sends `req` to the origin on a connection of its own (hop-by-hop fields dropped) and
/// answers with the origin's response as it came, or 502 when the origin cannot be reached.
async fn forward(origin: SocketAddr, mut req: Request<Body>) -> Result<Response<Body>, Infallible> {
    drop_hop_by_hop(req.headers_mut());
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *req.uri_mut() = Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"));
    match send(origin, req).await {
        Ok(res) => Ok(res.map(Body::new)),
        Err(e) => {
            eprintln!("origin {origin}: {e}");
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::BAD_GATEWAY;
            Ok(res)
        }
    }
}

async fn send(
    origin: SocketAddr,
    req: Request<Body>,
) -> Result<Response<hyper::body::Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(origin).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

/// Removes the hop-by-hop fields (RFC 9110 §7.6.1): `Connection` and the fields it names.
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}
