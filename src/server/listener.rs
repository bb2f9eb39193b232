//! One accept loop for every listener (gRPC, HTTP, admin): HTTP/1.1 and HTTP/2 (h2c, or h2 over
//! TLS), with the bounds that keep a client from exhausting keygate.
//!
//! - A cap on open connections per listener: past it a new connection is closed at once
//!   (counted in `keygate_connections_refused_total`), so idle sockets cannot pile up.
//! - An idle timeout: a connection that moves no byte either way for `idle_timeout` is closed.
//! - HTTP/1: the headers of each request must arrive within `header_read_timeout` (also the
//!   limit on an idle keep-alive connection waiting for its next request).
//! - HTTP/2: at most `max_concurrent_streams` streams per connection, and a connection whose
//!   client resets streams faster than they can be answered (the "rapid reset" pattern) is sent
//!   GOAWAY by h2 once `MAX_PENDING_RESETS` resets are pending.
//!
//! A request carries the peer's address as a [`Peer`] extension.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Resets of streams not yet answered that one HTTP/2 connection may have pending before h2
/// sends GOAWAY (h2's own default, stated here so the bound is ours).
pub const MAX_PENDING_RESETS: usize = 20;

/// The peer of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// How one listener serves.
#[derive(Clone)]
pub struct Options {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_concurrent_streams: u32,
    /// Speak only HTTP/2 (the gRPC listener).
    pub http2_only: bool,
    pub drain_timeout: Duration,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Connections open now.
    pub open: IntGauge,
    /// Connections closed at once because the listener was full.
    pub refused: IntCounter,
}

/// Serves `listener` with `handler` until `shutdown`, then lets open connections finish for at
/// most `drain_timeout`.
pub async fn serve<F, Fut, B>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    opts: Options,
    handler: F,
) where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<B>, std::convert::Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(shutdown);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.max_concurrent_streams)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS);
    if opts.http2_only {
        builder = builder.http2_only();
    }
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let mut last_refusal_logged: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            opts.refused.inc();
            if last_refusal_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                last_refusal_logged = Some(Instant::now());
                tracing::warn!(
                    max_connections = opts.max_connections,
                    "listener full: closing new connections (logged once per 10 s)"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            handler(req)
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = opts.tls.clone();
        let (open, idle) = (opts.open.clone(), opts.idle_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            open.inc();
            let stream = IdleIo::new(stream, idle);
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    );
                    if let Ok(Ok(stream)) = handshake.await {
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        let _ = watcher.watch(conn.into_owned()).await;
                    }
                }
            }
            open.dec();
        });
    }
    // Bounded drain: connections that do not finish in time are dropped.
    let _ = tokio::time::timeout(opts.drain_timeout, graceful.shutdown()).await;
}

/// A connection that fails its next read once it has moved no byte for `timeout`.
///
/// The deadline is moved lazily: a read or write only notes the time, and the timer is reset
/// to the newest activity when it fires, so busy connections cost no timer work per byte.
struct IdleIo<T> {
    inner: T,
    timeout: Duration,
    last: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<T> IdleIo<T> {
    fn new(inner: T, timeout: Duration) -> IdleIo<T> {
        IdleIo {
            inner,
            timeout,
            last: Instant::now(),
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Whether the connection has been idle for its whole timeout.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            let deadline = self.last + self.timeout;
            if deadline <= Instant::now() {
                return true;
            }
            self.timer.as_mut().reset(deadline.into());
        }
        false
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection idle",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last = Instant::now();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last = Instant::now();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
