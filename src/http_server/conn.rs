//! One connection: hyper's HTTP/1 over any byte stream, watched so that its [`Conn`] knows when
//! request bytes arrive, when a request is handed to the handler and when its response has
//! been written out; closed by the server at its deadline ([`Conn::deadline`]) or when shed.
//!
//! hyper's own `header_read_timeout` is off: it restarts whenever hyper waits for a head, idle
//! keep-alive time included, so it cannot tell a slowloris client from an idle one. A
//! connection that never had a request is closed by dropping it (hyper would wait for a first
//! request); one that answered requests by hyper's graceful shutdown, which flushes what is
//! still buffered; either way at most `header_read_timeout` later.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Handler;
use super::tracker::{Conn, Tracker};

/// Serves HTTP/1 on the stream `handshake` gives (the TCP stream itself, or a TLS stream over
/// it) until the peer or the server closes it. The handshake and the first request head share
/// the `header_read_timeout` from the accept.
pub(crate) async fn serve<I>(
    handshake: impl Future<Output = io::Result<I>>,
    conn: &Arc<Conn>,
    handler: Handler,
    tracker: &Tracker,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = *tracker.limits();
    let Some((first_head_due, reason)) = conn.deadline(&limits) else {
        return;
    };
    let io = tokio::select! {
        io = handshake => match io {
            Ok(io) => io,
            Err(_) => return,
        },
        _ = tokio::time::sleep_until(first_head_due.into()) => {
            tracker.expire(conn, reason);
            return;
        }
        _ = conn.close_requested().cancelled() => return,
    };
    let svc = {
        let conn = conn.clone();
        service_fn(move |req: Request<Incoming>| {
            let in_flight = InFlight::start(conn.clone());
            let reply = handler(req);
            async move {
                let reply = reply.await;
                Ok::<_, Infallible>(reply.map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let http = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(
            TokioIo::new(Watched {
                io,
                conn: conn.clone(),
            }),
            svc,
        );
    let mut http = std::pin::pin!(http);
    let close = conn.close_requested().clone();
    let mut close_requested = std::pin::pin!(close.cancelled());
    let mut due = std::pin::pin!(tokio::time::sleep_until(first_head_due.into()));
    let mut armed = first_head_due;
    let mut closing = false;
    poll_fn(|cx| {
        loop {
            if http.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if closing {
                // Bounded: a peer that does not read what is flushed is dropped.
                return due.as_mut().poll(cx);
            }
            if close_requested.as_mut().poll(cx).is_pending() {
                let Some((at, reason)) = conn.deadline(&limits) else {
                    return Poll::Pending;
                };
                if at != armed {
                    due.as_mut().reset(at.into());
                    armed = at;
                }
                ready!(due.as_mut().poll(cx));
                tracker.expire(conn, reason);
            }
            // Shed, drained, or due: without a request yet there is nothing to flush.
            if !conn.served() && !conn.busy() {
                return Poll::Ready(());
            }
            http.as_mut().graceful_shutdown();
            closing = true;
            due.as_mut()
                .reset((Instant::now() + limits.header_read_timeout).into());
        }
    })
    .await;
}

/// A request in flight on a connection, from its head to the end of its response.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn start(conn: Arc<Conn>) -> InFlight {
        conn.request_started();
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.response_done(Instant::now());
    }
}

/// A response body that ends its request's [`InFlight`] when hyper is done with it (written
/// out, or the connection dropped).
struct Tracked {
    body: Full<Bytes>,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's byte stream, telling its [`Conn`] when request bytes arrive.
struct Watched<I> {
    io: I,
    conn: Arc<Conn>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.bytes_read(Instant::now());
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
