//! The gRPC listener's limits: the values `Server::start_on` sets on tonic's builder, and the
//! connection cap tonic lacks. Calls are counted by [`crate::layers::GrpcMetricsLayer`].
//!
//! Limits, and where each lives:
//! - per call: `Server::timeout` (a shorter `grpc-timeout` from the client wins; tonic answers
//!   `CANCELLED`), message sizes on `IntentServiceServer` (tonic answers `OUT_OF_RANGE`), and
//!   `concurrency_limit_per_connection` (calls past it queue on their connection);
//! - per connection: HTTP/2 keepalive pings and TCP keepalive (a dead peer is found), at most
//!   [`MAX_STREAMS`] streams, the TLS handshake within [`HANDSHAKE_TIMEOUT`];
//! - per listener: at most `grpc_max_connections` open. tonic has no such option, so the
//!   accepted sockets come from [`limited`], which waits for a slot before accepting, and each
//!   socket must send its HTTP/2 preface within [`HANDSHAKE_TIMEOUT`] (hyper's HTTP/2 server
//!   waits for it forever, and a silent socket would hold a slot).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::metrics::Metrics;

/// Streams open at once on one connection (hyper's default, made explicit).
pub const MAX_STREAMS: u32 = 200;
/// Time a new connection has for its TLS handshake, and for the 24 bytes of its HTTP/2 preface.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle connection is pinged, and how long the answer may take.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// See [`KEEPALIVE_INTERVAL`].
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// TCP keepalive on accepted sockets.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// The HTTP/2 connection preface's length: `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: usize = 24;

/// The sockets `incoming` accepts, never more than `max` open at once: the next is accepted
/// only once one has closed (until then it waits in the kernel's accept queue).
pub(crate) fn limited(
    incoming: TcpIncoming,
    max: usize,
    metrics: Metrics,
) -> impl Stream<Item = io::Result<LimitedIo>> {
    let permits = Arc::new(Semaphore::new(max));
    futures_util::stream::unfold(
        (incoming, permits, metrics),
        |(mut incoming, permits, metrics)| async move {
            let permit = match permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    metrics.limit_hit("grpc", "connection_limit");
                    permits.clone().acquire_owned().await.ok()?
                }
            };
            let next = incoming.next().await?;
            let io = next.map(|stream| LimitedIo::new(stream, permit, metrics.clone()));
            Some((io, (incoming, permits, metrics)))
        },
    )
}

/// An accepted socket holding its connection slot until it is dropped, and refusing to wait
/// longer than [`HANDSHAKE_TIMEOUT`] for the client's first bytes.
pub(crate) struct LimitedIo {
    stream: TcpStream,
    /// The deadline for the preface, and how many of its bytes are still to come.
    preface: Option<(Pin<Box<tokio::time::Sleep>>, usize)>,
    metrics: Metrics,
    _permit: OwnedSemaphorePermit,
}

impl LimitedIo {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, metrics: Metrics) -> Self {
        metrics.connections("grpc", 1);
        LimitedIo {
            stream,
            preface: Some((Box::pin(tokio::time::sleep(HANDSHAKE_TIMEOUT)), PREFACE_LEN)),
            metrics,
            _permit: permit,
        }
    }
}

impl Drop for LimitedIo {
    fn drop(&mut self) {
        self.metrics.connections("grpc", -1);
    }
}

impl Connected for LimitedIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        let Some((deadline, left)) = this.preface.as_mut() else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) => {
                *left = left.saturating_sub(buf.filled().len() - before);
                if *left == 0 {
                    this.preface = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                this.metrics.limit_hit("grpc", "preface_timeout");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not start HTTP/2 in time",
                )))
            }
            other => other,
        }
    }
}

impl AsyncWrite for LimitedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
