//! RetryPolicy on tower's retry layer, with paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::retry::RetryLayer;
use tower::retry::budget::TpsBudget;
use tower::{Service, ServiceExt};
use tower_scale_breaker::RetryPolicy;

type Script = Arc<Mutex<Vec<Result<(StatusCode, Option<&'static str>), &'static str>>>>;

/// A downstream answering from `script` in order (then 200), logging when each attempt came.
fn downstream(
    script: Script,
    log: Arc<Mutex<Vec<Instant>>>,
) -> impl Service<
    Request<Full<bytes::Bytes>>,
    Response = Response<()>,
    Error = &'static str,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_req: Request<Full<bytes::Bytes>>| {
        log.lock().unwrap().push(Instant::now());
        let next = {
            let mut s = script.lock().unwrap();
            if s.is_empty() {
                Ok((StatusCode::OK, None))
            } else {
                s.remove(0)
            }
        };
        async move {
            let (status, retry_after) = next?;
            let mut res = Response::builder().status(status);
            if let Some(ra) = retry_after {
                res = res.header("retry-after", ra);
            }
            Ok(res.body(()).unwrap())
        }
    })
}

async fn run(
    policy: RetryPolicy,
    method: Method,
    body: &'static str,
    script: Vec<Result<(StatusCode, Option<&'static str>), &'static str>>,
) -> (Result<StatusCode, &'static str>, Vec<Instant>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut svc = tower::ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(downstream(Arc::new(Mutex::new(script)), Arc::clone(&log)));
    let req = Request::builder()
        .method(method)
        .uri("http://downstream/x")
        .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
        .unwrap();
    let result = svc
        .ready()
        .await
        .unwrap()
        .call(req)
        .await
        .map(|r| r.status());
    let log = log.lock().unwrap().clone();
    (result, log)
}

const UNAVAILABLE: Result<(StatusCode, Option<&str>), &str> =
    Ok((StatusCode::SERVICE_UNAVAILABLE, None));

#[tokio::test(start_paused = true)]
async fn retries_with_jittered_exponential_backoff_until_success() {
    let policy = RetryPolicy::new()
        .max_attempts(4)
        .backoff(Duration::from_millis(100), Duration::from_secs(1));
    let (result, log) = run(
        policy,
        Method::GET,
        "",
        vec![UNAVAILABLE, Err("reset"), UNAVAILABLE],
    )
    .await;
    assert_eq!(result, Ok(StatusCode::OK));
    assert_eq!(log.len(), 4, "3 failures, then success");
    // Full jitter: the n-th wait is drawn in [0, 100 ms × 2^n). tokio's timer rounds a sleep
    // up to the next whole millisecond, so a draw in the last millisecond sleeps the bound
    // itself: at most the bound, then.
    for (n, pair) in log.windows(2).enumerate() {
        let wait = pair[1] - pair[0];
        assert!(
            wait <= Duration::from_millis(100 << n),
            "wait {n} was {wait:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts() {
    let (result, log) = run(
        RetryPolicy::new().max_attempts(2),
        Method::GET,
        "",
        vec![UNAVAILABLE, UNAVAILABLE, UNAVAILABLE],
    )
    .await;
    assert_eq!(result, Ok(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(log.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn honours_retry_after_exactly_and_refuses_too_long_ones() {
    let (result, log) = run(
        RetryPolicy::new(),
        Method::GET,
        "",
        vec![Ok((StatusCode::TOO_MANY_REQUESTS, Some("3")))],
    )
    .await;
    assert_eq!(result, Ok(StatusCode::OK));
    assert_eq!(log[1] - log[0], Duration::from_secs(3));

    let (result, log) = run(
        RetryPolicy::new().max_retry_after(Duration::from_secs(10)),
        Method::GET,
        "",
        vec![Ok((StatusCode::SERVICE_UNAVAILABLE, Some("60")))],
    )
    .await;
    assert_eq!(result, Ok(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        log.len(),
        1,
        "a 60 s Retry-After is past the 10 s limit: no retry"
    );
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_methods_are_sent_once_unless_allowed() {
    let (result, log) = run(RetryPolicy::new(), Method::POST, "order", vec![UNAVAILABLE]).await;
    assert_eq!(
        (result, log.len()),
        (Ok(StatusCode::SERVICE_UNAVAILABLE), 1)
    );
    let (result, log) = run(
        RetryPolicy::new().idempotent_only(false),
        Method::POST,
        "order",
        vec![UNAVAILABLE],
    )
    .await;
    assert_eq!((result, log.len()), (Ok(StatusCode::OK), 2));
}

#[tokio::test(start_paused = true)]
async fn bodies_past_the_cap_are_not_replayed() {
    let (result, log) = run(
        RetryPolicy::new().max_replay_body(4),
        Method::PUT,
        "too large",
        vec![UNAVAILABLE],
    )
    .await;
    assert_eq!(
        (result, log.len()),
        (Ok(StatusCode::SERVICE_UNAVAILABLE), 1)
    );
    let (result, log) = run(
        RetryPolicy::new().max_replay_body(64),
        Method::PUT,
        "fits",
        vec![UNAVAILABLE],
    )
    .await;
    assert_eq!((result, log.len()), (Ok(StatusCode::OK), 2));
}

#[tokio::test(start_paused = true)]
async fn other_statuses_are_not_retried() {
    let (result, log) = run(
        RetryPolicy::new(),
        Method::GET,
        "",
        vec![Ok((StatusCode::INTERNAL_SERVER_ERROR, None))],
    )
    .await;
    assert_eq!(
        (result, log.len()),
        (Ok(StatusCode::INTERNAL_SERVER_ERROR), 1)
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_stops_retry_storms() {
    // No free retries per second and no percentage: every retry needs budget that is never
    // earned.
    let policy = RetryPolicy::new().budget(TpsBudget::new(Duration::from_secs(10), 0, 0.0));
    let (result, log) = run(policy, Method::GET, "", vec![UNAVAILABLE]).await;
    assert_eq!(
        (result, log.len()),
        (Ok(StatusCode::SERVICE_UNAVAILABLE), 1)
    );
}

#[test]
fn the_body_is_replayed_byte_for_byte() {
    // Cloned requests carry the same body.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        let svc = tower::service_fn(move |req: Request<Full<bytes::Bytes>>| {
            let seen = Arc::clone(&seen2);
            async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let mut seen = seen.lock().unwrap();
                seen.push(body);
                let status = if seen.len() < 2 {
                    StatusCode::BAD_GATEWAY
                } else {
                    StatusCode::OK
                };
                Ok::<_, &str>(Response::builder().status(status).body(()).unwrap())
            }
        });
        let mut svc = tower::ServiceBuilder::new()
            .layer(RetryLayer::new(RetryPolicy::new()))
            .service(svc);
        let req = Request::put("/x")
            .body(Full::new(bytes::Bytes::from_static(b"payload")))
            .unwrap();
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![bytes::Bytes::from_static(b"payload"); 2]
        );
    });
}
