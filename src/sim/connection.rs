//! Serving one TCP connection, below axum, so a fault can do what a real
//! network does: drop the connection without an answer (with a TCP reset),
//! or promise a body and close halfway through it.
//!
//! Each connection gets a kill switch, inserted into every request's
//! extensions. A handler that pulls it makes the connection task drop the
//! hyper connection future, and with it the socket, which then closes with
//! `SO_LINGER` 0: an RST instead of a FIN.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Bytes;
use axum::http::Request;
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The per-connection kill switch a handler finds in its request extensions.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionKill {
    token: CancellationToken,
    abortive: Arc<AtomicBool>,
}

impl ConnectionKill {
    /// Drops the connection without answering, with a TCP reset.
    pub fn reset(&self) {
        self.abortive.store(true, Ordering::Release);
        self.token.cancel();
    }
}

/// Serves HTTP/1.1 (with keep-alive) on `stream`, over TLS when `tls` is
/// given, until the client closes it, a handler pulls the kill switch, or
/// `stop` is cancelled (shutdown).
pub(crate) async fn serve_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    router: Router,
    stop: CancellationToken,
) {
    let kill = ConnectionKill {
        token: stop.clone(),
        abortive: Arc::new(AtomicBool::new(false)),
    };
    let stream = ResettableStream {
        stream,
        abortive: kill.abortive.clone(),
    };
    match tls {
        None => serve_http(stream, router, kill, stop).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                handshake = acceptor.accept(stream) => handshake,
                () = stop.cancelled() => return,
            };
            match handshake {
                Ok(stream) => serve_http(stream, router, kill, stop).await,
                // A client that does not trust the certificate ends here.
                Err(error) => tracing::debug!(%error, "simulator TLS handshake failed"),
            }
        }
    }
}

async fn serve_http<S>(stream: S, router: Router, kill: ConnectionKill, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let service = router.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(kill.clone());
        request
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        // Clients pool idle connections; closing them on a timer would add
        // failures that no real fault asked for.
        .header_read_timeout(None);
    let connection = builder.serve_connection(io, TowerToHyperService::new(service));
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "simulator connection ended with an error");
            }
        }
        () = stop.cancelled() => {
            // Dropping the connection future here closes the socket unanswered.
        }
    }
}

/// A TCP stream that, when its kill switch asked for it, closes with an RST.
struct ResettableStream {
    stream: TcpStream,
    abortive: Arc<AtomicBool>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.abortive.load(Ordering::Acquire) {
            // Zero linger turns the close into an RST; it never blocks. If it
            // fails, the close is an orderly FIN, which still ends the exchange.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
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
}

/// A response body that sends its bytes, then ends short of the
/// `Content-Length` the response promised; hyper then closes the connection.
///
/// Its size is unknown on purpose: hyper then trusts the `Content-Length`
/// header instead of the body. Between the bytes and the end it returns
/// `Pending` once, so hyper flushes the bytes to the socket before it gives
/// up on the connection.
pub(crate) struct TruncatedBody {
    sent: Option<Bytes>,
    paused: bool,
}

impl TruncatedBody {
    pub fn new(sent: Bytes) -> TruncatedBody {
        TruncatedBody {
            sent: Some(sent),
            paused: false,
        }
    }
}

impl hyper::body::Body for TruncatedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(bytes) = self.sent.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if !self.paused {
            self.paused = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(None)
    }
}
