//! The tower layers the listeners share, so that no handler repeats them:
//!
//! - [`ReadBodyLayer`] (HTTP): a request's body is read whole, within a deadline and a size
//!   limit, before the router or the concurrency limit sees the request. A client that trickles
//!   its body gets 408 and the connection is closed; it never holds a concurrency slot.
//! - [`GrpcMetricsLayer`] (gRPC): every call counted by method and status code, with the
//!   latency of unary calls, read from what tonic puts on the wire (`grpc-status` in the
//!   response headers for an immediate error, in the trailers otherwise).
//!
//! Invariants: metric labels are bounded (methods come from the schema, codes from the gRPC
//! code table, anything else is `unknown`); a gRPC call is recorded exactly once, whether it
//! ends with headers, with trailers, or is dropped (timed out, or the client went away).

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use futures_util::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::{Layer, Service, ServiceExt};

use crate::metrics::Metrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads each request's body before the inner service runs: whole within `deadline` of the
/// request's headers, at most `limit` bytes. Past the deadline: 408 and the connection closed;
/// past the limit: 413; a body the client broke off: 400. The inner service gets the bytes.
#[derive(Clone, Debug)]
pub struct ReadBodyLayer {
    deadline: Duration,
    limit: usize,
    metrics: Metrics,
    listener: &'static str,
}

impl ReadBodyLayer {
    /// Bodies read within `deadline`, up to `limit` bytes; refusals counted for `listener`.
    pub fn new(deadline: Duration, limit: usize, metrics: Metrics, listener: &'static str) -> Self {
        ReadBodyLayer {
            deadline,
            limit,
            metrics,
            listener,
        }
    }
}

impl<S> Layer<S> for ReadBodyLayer {
    type Service = ReadBody<S>;

    fn layer(&self, inner: S) -> ReadBody<S> {
        ReadBody {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`ReadBodyLayer`].
#[derive(Clone, Debug)]
pub struct ReadBody<S> {
    inner: S,
    layer: ReadBodyLayer,
}

/// An answer that also closes the connection: what is left of the request is not read.
fn refuse(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

impl<S, B> Service<Request<B>> for ReadBody<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service (the concurrency limit) is made ready in `call`, once the body is
        // in: a slow sender must not hold a slot while it sends.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let ReadBodyLayer {
            deadline,
            limit,
            metrics,
            listener,
        } = self.layer.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let too_large = || {
                metrics.limit_hit(listener, "body_too_large");
                Ok(refuse(StatusCode::PAYLOAD_TOO_LARGE))
            };
            // A declared length past the limit is refused before a byte of it is read.
            if body.size_hint().lower() > limit as u64 {
                return too_large();
            }
            let read = tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await;
            let bytes = match read {
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(),
                // The client broke the body off, or framed it wrongly.
                Ok(Err(_)) => return Ok(refuse(StatusCode::BAD_REQUEST)),
                Err(_) => {
                    metrics.limit_hit(listener, "body_read_timeout");
                    tracing::debug!(listener, "request body not received in time; closing");
                    return Ok(refuse(StatusCode::REQUEST_TIMEOUT));
                }
            };
            inner
                .oneshot(Request::from_parts(parts, Body::from(bytes)))
                .await
        })
    }
}

/// The gRPC method label of each path this server serves.
#[derive(Debug)]
struct Methods {
    /// `/intentkit.v1.IntentService/`.
    prefix: String,
    /// Method name → (label, whether its answer is a stream).
    by_name: HashMap<String, (Arc<str>, bool)>,
    unknown: Arc<str>,
}

impl Methods {
    /// `IntentService`'s methods, read from the schema compiled into `intentkit-proto`: a
    /// method added there is labelled without a change here.
    fn from_schema() -> Self {
        use prost::Message;
        let service = intentkit_proto::v1::intent_service_server::SERVICE_NAME;
        let set = prost_types::FileDescriptorSet::decode(intentkit_proto::FILE_DESCRIPTOR_SET)
            .unwrap_or_default();
        let mut by_name = HashMap::new();
        for file in &set.file {
            for s in &file.service {
                if format!("{}.{}", file.package(), s.name()) != service {
                    continue;
                }
                for m in &s.method {
                    let streams = m.server_streaming() || m.client_streaming();
                    by_name.insert(m.name().to_string(), (Arc::from(m.name()), streams));
                }
            }
        }
        Methods {
            prefix: format!("/{service}/"),
            by_name,
            unknown: Arc::from("unknown"),
        }
    }

    /// The label of `path`, and whether it streams; `None` for health checks and reflection,
    /// which probes and tooling call and which say nothing about the service.
    fn label(&self, path: &str) -> Option<(Arc<str>, bool)> {
        if let Some(name) = path.strip_prefix(&self.prefix)
            && let Some(known) = self.by_name.get(name)
        {
            return Some(known.clone());
        }
        if path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.") {
            return None;
        }
        // Any other path is the sender's text: one label for all of them.
        Some((self.unknown.clone(), false))
    }
}

/// Records every gRPC call in [`Metrics`]: `intentkit_grpc_requests_total{method, code}` and,
/// for unary calls, `intentkit_grpc_request_duration_seconds{method}`.
///
/// The code is what the client reads: `grpc-status` in the response headers when tonic answers
/// at once (an error from a handler, the interceptor, a message over the size limit, an unknown
/// method), else in the trailers at the end of the body, which this layer wraps to see them
/// (a success, or an error in the middle of a stream). A call dropped before either (tonic's
/// timeout, which answers `CANCELLED`, or a client that went away) is recorded as `CANCELLED`.
/// Codes are not taken from `tonic::Status` where it is created because many statuses are
/// created inside tonic (decoding limits, timeouts, unknown methods), where no code of ours runs.
///
/// The layer runs inside tonic's per-connection concurrency limit and timeout, so a call's
/// latency starts once it has a slot.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
    methods: Arc<Methods>,
}

impl GrpcMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        GrpcMetricsLayer {
            metrics,
            methods: Arc::new(Methods::from_schema()),
        }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

/// One call's record, made once: by its status, or as `CANCELLED` when dropped unfinished.
struct Record {
    metrics: Metrics,
    method: Arc<str>,
    streams: bool,
    start: Instant,
    done: bool,
}

impl Record {
    fn finish(&mut self, code: &str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let seconds = (!self.streams).then(|| self.start.elapsed().as_secs_f64());
        self.metrics.request(&self.method, code, seconds);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.finish("CANCELLED");
    }
}

/// The code name of the `grpc-status` in `headers`, if there is one.
fn grpc_code(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .and_then(|n| intentkit_proto::Code::ALL.get(n).copied());
    Some(code.map_or("UNKNOWN", |c| c.name()))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let record = self
            .layer
            .methods
            .label(request.uri().path())
            .map(|(method, streams)| Record {
                metrics: self.layer.metrics.clone(),
                method,
                streams,
                start: Instant::now(),
                done: false,
            });
        let call = self.inner.call(request);
        Box::pin(async move {
            let mut record = record;
            // An error here is the transport's (tonic turns it into a status outside this
            // layer); dropping the record counts it as cancelled.
            let response = call.await?;
            if let Some(r) = record.as_mut()
                && let Some(code) = grpc_code(response.headers())
            {
                r.finish(code);
            }
            Ok(response.map(|body| {
                tonic::body::Body::new(RecordedBody {
                    inner: body,
                    record: record.filter(|r| !r.done),
                })
            }))
        })
    }
}

/// A response body that records its call when the trailers go by.
struct RecordedBody<B> {
    inner: B,
    record: Option<Record>,
}

impl<B> HttpBody for RecordedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = ready!(std::pin::Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(r) = this.record.as_mut() {
            match &frame {
                Some(Ok(f)) => {
                    if let Some(code) = f.trailers_ref().and_then(grpc_code) {
                        r.finish(code);
                    }
                }
                // The stream was cut, or ended without a status: clients read either as an
                // error with no better code.
                Some(Err(_)) | None => r.finish("UNKNOWN"),
            }
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_schema_and_labels_stay_bounded() {
        let m = Methods::from_schema();
        let (label, streams) = m.label("/intentkit.v1.IntentService/GetIntent").unwrap();
        assert_eq!((&*label, streams), ("GetIntent", false));
        let (label, streams) = m.label("/intentkit.v1.IntentService/StreamEvents").unwrap();
        assert_eq!((&*label, streams), ("StreamEvents", true));
        for path in [
            "/intentkit.v1.IntentService/NoSuchMethod",
            "/evil.Service/x",
            "/",
        ] {
            assert_eq!(&*m.label(path).unwrap().0, "unknown", "{path}");
        }
        assert!(m.label("/grpc.health.v1.Health/Check").is_none());
    }

    #[test]
    fn a_status_is_read_by_its_number() {
        let mut h = HeaderMap::new();
        assert_eq!(grpc_code(&h), None);
        h.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(grpc_code(&h), Some("NOT_FOUND"));
        h.insert("grpc-status", HeaderValue::from_static("99"));
        assert_eq!(grpc_code(&h), Some("UNKNOWN"));
    }
}
