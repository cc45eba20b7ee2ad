//! The provider-facing HTTP receiver (`POST /webhooks/pientegra/{account}`,
//! `POST /callbacks/decentro/{account}`) and the metrics endpoint. The receiver hands the raw
//! bytes and headers to the engine and answers exactly as it says (status, body): 2xx taken,
//! 4xx refused, 404 unknown account, 5xx not stored or not confirmed yet (the provider
//! retries). The same answer comes back from the `HandleWebhook` RPC and the C ABI.
//!
//! Both listeners are served by [`serve`]: hyper's HTTP/1 connection builder with a timer, so
//! that a client has `header_read_timeout` to send each request's headers (idle keep-alive
//! included), under a cap on open connections, and behind the tower stack in [`stack`]: a
//! whole-request timeout, the body read within its own deadline and size limit, and a limit on
//! requests handled at once. A slow client therefore holds one connection for a bounded time
//! and never a slot of the engine's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use intentkit_core::{Engine, Provider, WebhookAnswer, WebhookOutcome};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::{Service, ServiceBuilder};

use crate::config::ServerConfig;
use crate::layers::ReadBodyLayer;
use crate::metrics::Metrics;
use crate::service::stopped;

#[derive(Clone)]
struct Receiver {
    engine: Engine,
    metrics: Metrics,
}

/// Hands the delivery to the engine and gives the provider the engine's answer as it is.
async fn deliver(
    r: &Receiver,
    provider: Provider,
    account: String,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse + use<> {
    let lookup = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let answer = r
        .engine
        .handle_webhook(provider, &account, lookup, &body)
        .await;
    let outcome = answer.outcome.as_str();
    r.metrics.webhook(provider.as_str(), outcome);
    // The account is logged only once it is known to be one of ours: the path is the
    // sender's text.
    let known = answer.outcome != WebhookOutcome::UnknownAccount;
    let account = if known { account.as_str() } else { "?" };
    // Refusals and unconfirmed claims are the sender's doing, and anyone can send them: they
    // are counted in the metrics and logged at debug, so a flood cannot flood the log. A
    // delivery we could not take (our store, a provider look-up) is ours to look at.
    match answer.outcome {
        WebhookOutcome::RetryLater => tracing::warn!(
            provider = provider.as_str(),
            account,
            outcome,
            reason = answer.reason,
            detail = answer.detail,
            "delivery not taken; the provider will send it again"
        ),
        _ => tracing::debug!(
            provider = provider.as_str(),
            account,
            outcome,
            reason = answer.reason,
            "delivery"
        ),
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
}

/// The receiver's routes, with a body limit (413 past it). `/webhooks/{provider}/{account}` and
/// `/callbacks/{provider}/{account}` are the same: each provider's documentation names one
/// (`/webhooks/pientegra/...`, `/callbacks/decentro/...`), and a new provider needs no route.
pub fn receiver(engine: Engine, metrics: Metrics, body_limit: usize) -> Router {
    let state = Receiver { engine, metrics };
    let handler = post(
        |State(r): State<Receiver>,
         Path((provider, account)): Path<(String, String)>,
         headers: HeaderMap,
         body: Bytes| async move {
            match provider.parse::<Provider>() {
                Ok(p) => deliver(&r, p, account, headers, body).await.into_response(),
                Err(_) => {
                    // Metrics labels stay bounded: an unknown path is counted once, as such.
                    r.metrics
                        .webhook("unknown", WebhookOutcome::UnknownAccount.as_str());
                    let answer = WebhookAnswer::standard(WebhookOutcome::UnknownAccount, None);
                    (
                        StatusCode::NOT_FOUND,
                        [(header::CONTENT_TYPE, "application/json")],
                        answer.body,
                    )
                        .into_response()
                }
            }
        },
    );
    Router::new()
        .route("/webhooks/{provider}/{account}", handler.clone())
        .route("/callbacks/{provider}/{account}", handler)
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// `GET /metrics` in Prometheus' text format.
pub fn metrics(metrics: Metrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Metrics>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.render(),
                )
            }),
        )
        .with_state(metrics)
}

/// How an HTTP listener guards itself against slow and numerous clients; from `[server]`.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Time to send a request's headers, from when the connection opens or its previous
    /// answer was sent; past it, the connection is closed.
    pub header_read_timeout: Duration,
    /// Time to send the whole body, from the headers; 408 and closed past it.
    pub body_read_timeout: Duration,
    /// Time to answer, from the headers; 503 (`RETRY_LATER`) past it.
    pub request_timeout: Duration,
    /// Largest body, in bytes; 413 past it.
    pub body_limit: usize,
    /// Open connections; past it, new ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Requests handled at once (their bodies already read); the rest wait.
    pub concurrency: usize,
}

impl HttpLimits {
    /// The limits `config` sets.
    pub fn from_config(config: &ServerConfig) -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_millis(config.http_header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(config.http_body_read_timeout_ms),
            request_timeout: Duration::from_millis(config.http_request_timeout_ms),
            body_limit: config.webhook_body_limit,
            max_connections: config.http_max_connections,
            concurrency: config.http_concurrency_limit,
        }
    }
}

/// The answer to a request that ran out of time: the engine's own "retry later" (503), which
/// a provider sends again. What the engine did meanwhile is atomic, and a redelivery of an
/// applied webhook is a duplicate.
fn out_of_time(
    metrics: &Metrics,
    listener: &'static str,
    result: Result<Response<Body>, tower::BoxError>,
) -> Result<Response<Body>, tower::BoxError> {
    // Never an error: hyper would close the connection without an answer.
    Ok(result.unwrap_or_else(|e| {
        if e.is::<tower::timeout::error::Elapsed>() {
            metrics.limit_hit(listener, "request_timeout");
            tracing::warn!(listener, "request not answered in time; told to retry");
        } else {
            tracing::error!(listener, error = %e, "request failed");
        }
        let answer = WebhookAnswer::standard(WebhookOutcome::RetryLater, None);
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            answer.body,
        )
            .into_response()
    }))
}

/// `router` behind the request limits, outermost first: the whole-request timeout (from the
/// headers: body, queueing and handler), the body read (its own deadline and size), then the
/// concurrency limit, which a request therefore enters with its body in hand.
pub fn stack<B>(
    router: Router,
    limits: &HttpLimits,
    metrics: Metrics,
    listener: &'static str,
) -> impl Service<Request<B>, Response = Response<Body>, Error = tower::BoxError, Future: Send + 'static>
+ Clone
+ Send
+ 'static
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let m = metrics.clone();
    ServiceBuilder::new()
        .map_result(move |r| out_of_time(&m, listener, r))
        .timeout(limits.request_timeout)
        .layer(ReadBodyLayer::new(
            limits.body_read_timeout,
            limits.body_limit,
            metrics,
            listener,
        ))
        .concurrency_limit(limits.concurrency)
        .service(router)
}

/// Serves `router` on `listener` until `stop` turns true, under `limits`; `name` labels its
/// metrics and logs.
///
/// Past `max_connections`, the loop stops accepting until a connection closes: new clients
/// wait in the kernel's accept queue (their connect succeeds; their request is read once a
/// slot frees), rather than being accepted and closed, so that a provider's delivery is late
/// rather than failed while slow clients time out.
///
/// On `stop`: no new connections (the listener is closed); a connection with a request in
/// the service finishes it (the answer is sent, then the connection closes); one with none,
/// idle or still sending headers, is closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    metrics: Metrics,
    name: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    let service = stack(router, &limits, metrics.clone(), name);
    // HTTP/1 only: providers deliver over HTTP/1.1, and the auto builder's version sniffing
    // would read without a timeout.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics.limit_hit(name, "connection_limit");
                tracing::debug!(
                    listener = name,
                    "connection limit reached; waiting for one to close"
                );
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = stopped(&mut stop) => break,
                }
            }
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionRefused
                    ) {
                        // E.g. out of file descriptors: give connections time to close.
                        tracing::warn!(listener = name, error = %e, "accept failed; retrying in 1 s");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = stopped(&mut stop) => break,
                        }
                    }
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        // Small answers: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms to each.
        let _ = stream.set_nodelay(true);
        let (builder, service, stop, metrics) = (
            builder.clone(),
            service.clone(),
            stop.clone(),
            metrics.clone(),
        );
        connections.spawn(async move {
            let _permit = permit;
            metrics.connections(name, 1);
            connection(&builder, stream, service, stop, &metrics, name).await;
            metrics.connections(name, -1);
        });
    }
    // Closing the listener now: the kernel refuses new connections instead of queueing them.
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until it closes, or until `stop` and it has no request in the service.
async fn connection<S>(
    builder: &auto::Builder<TokioExecutor>,
    stream: tokio::net::TcpStream,
    service: S,
    mut stop: watch::Receiver<bool>,
    metrics: &Metrics,
    name: &'static str,
) where
    S: Service<Request<hyper::body::Incoming>, Response = Response<Body>, Error = tower::BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let busy = Arc::new(AtomicUsize::new(0));
    let service = TowerToHyperService::new(InFlight {
        inner: service,
        busy: busy.clone(),
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            // No more requests on this connection; the one in the service, if any, finishes.
            conn.as_mut().graceful_shutdown();
            loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    // Nothing in the service: idle, or a request whose headers are still
                    // coming (not one we have; the client may send it again elsewhere).
                    () = tokio::time::sleep(Duration::from_millis(50)) => {
                        if busy.load(Ordering::Acquire) == 0 {
                            return;
                        }
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        let timed_out = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout);
        if timed_out {
            metrics.limit_hit(name, "header_read_timeout");
            tracing::debug!(
                listener = name,
                "request headers not received in time; closed"
            );
        } else {
            tracing::debug!(listener = name, error = %e, "connection ended with an error");
        }
    }
}

/// Counts a connection's requests from when hyper hands one to the service until its answer's
/// body has been given back (sent), so that shutdown knows whether a connection is busy.
#[derive(Clone)]
struct InFlight<S> {
    inner: S,
    busy: Arc<AtomicUsize>,
}

/// One request in flight, until dropped.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, R> Service<R> for InFlight<S>
where
    S: Service<R, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.busy.fetch_add(1, Ordering::AcqRel);
        let busy = Busy(self.busy.clone());
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| Body::new(Held { body, _busy: busy })))
        })
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
struct Held {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Instant;

    use tower::ServiceExt;

    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(600),
            body_limit: 1_024,
            max_connections: 8,
            concurrency: 1,
        }
    }

    /// A router whose `/slow` takes `ms` and whose `/echo` answers with the body's length.
    fn router(ms: u64) -> Router {
        Router::new()
            .route(
                "/slow",
                post(move || async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "done"
                }),
            )
            .route(
                "/echo",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
    }

    fn post_to(path: &str, body: Body) -> Request<Body> {
        Request::post(path).body(body).unwrap()
    }

    async fn text(r: Response<Body>) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_body_is_read_within_its_deadline_and_size_or_refused_and_closed() {
        let svc = stack(router(0), &limits(), Metrics::new(), "test");
        let r = svc
            .clone()
            .oneshot(post_to("/echo", Body::from("hello")))
            .await
            .unwrap();
        assert_eq!((r.status(), text(r).await.as_str()), (StatusCode::OK, "5"));

        // A body that never ends: 408 at its deadline, and the connection is to be closed.
        let start = Instant::now();
        let never = Body::from_stream(futures_util::stream::pending::<Result<Bytes, Infallible>>());
        let r = svc.clone().oneshot(post_to("/echo", never)).await.unwrap();
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );

        // Too large: declared, or streamed without a length.
        let r = svc
            .clone()
            .oneshot(post_to("/echo", Body::from(vec![b'x'; 2_000])))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let chunks = futures_util::stream::iter(
            (0..3).map(|_| Ok::<_, Infallible>(Bytes::from(vec![b'x'; 500]))),
        );
        let r = svc
            .oneshot(post_to("/echo", Body::from_stream(chunks)))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_request_not_answered_in_time_is_told_to_retry() {
        let metrics = Metrics::new();
        let svc = stack(router(5_000), &limits(), metrics.clone(), "test");
        let start = Instant::now();
        let r = svc.oneshot(post_to("/slow", Body::empty())).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(text(r).await, r#"{"error":{"code":"RETRY_LATER"}}"#);
        assert!(
            metrics.render().contains(
                r#"intentkit_limit_hits_total{listener="test",limit="request_timeout"} 1"#
            )
        );
    }

    #[tokio::test]
    async fn requests_past_the_concurrency_limit_wait_their_turn() {
        // One at a time, 250 ms each: the second is answered after the first.
        let svc = stack(router(250), &limits(), Metrics::new(), "test");
        let start = Instant::now();
        let (a, b) = tokio::join!(
            svc.clone().oneshot(post_to("/slow", Body::empty())),
            svc.clone().oneshot(post_to("/slow", Body::empty())),
        );
        assert_eq!(a.unwrap().status(), StatusCode::OK);
        assert_eq!(b.unwrap().status(), StatusCode::OK);
        assert!(
            start.elapsed() >= Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );

        // A third waiting behind two would pass the request timeout (600 ms) while queued: the
        // wait counts against it.
        let (a, b, c) = tokio::join!(
            svc.clone().oneshot(post_to("/slow", Body::empty())),
            svc.clone().oneshot(post_to("/slow", Body::empty())),
            svc.clone().oneshot(post_to("/slow", Body::empty())),
        );
        let mut statuses = [a, b, c].map(|r| r.unwrap().status().as_u16());
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 200, 503]);
    }
}
