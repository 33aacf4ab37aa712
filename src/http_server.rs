//! The one HTTP/1 accept loop (the exporter's endpoints and the demo's simulated cluster): every
//! connection is tracked, and at cancellation the loop stops accepting, open connections finish
//! their request in flight (idle keep-alive connections are closed), bounded by a drain timeout.
//! With a [`TlsAccept`] (from `--web.config.file`), each connection is TLS: its handshake runs
//! in the connection's own task, so a slow client never holds up the accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

/// A response with its whole body in memory.
pub type Reply = Response<Full<Bytes>>;

/// A request handler: any async function from a request to a reply.
pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// Wraps a synchronous handler as a [`Handler`].
pub fn sync_handler(f: impl Fn(Request<Incoming>) -> Reply + Send + Sync + 'static) -> Handler {
    Arc::new(move |req| {
        let reply = f(req);
        Box::pin(async move { reply })
    })
}

/// Turns an accepted connection into a TLS one (the handshake, bounded in time), or `None`
/// when the handshake failed (the connection is then closed).
pub(crate) type TlsAccept = Arc<
    dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = Option<TlsStream<TcpStream>>> + Send>>
        + Send
        + Sync,
>;

/// Serves `listener` until `cancel`, then drains open connections for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    handler: Handler,
    cancel: CancellationToken,
    drain: Duration,
) {
    serve_with(listener, handler, None, cancel, drain).await
}

/// [`serve`], each connection through `tls` first when given.
pub(crate) async fn serve_with(
    listener: TcpListener,
    handler: Handler,
    tls: Option<TlsAccept>,
    cancel: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            c = listener.accept() => c,
            _ = cancel.cancelled() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let handler = handler.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let io = match tls {
                Some(accept) => match accept(stream).await {
                    Some(s) => Either::Right(s),
                    None => return,
                },
                None => Either::Left(stream),
            };
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
            let _ = watcher.watch(conn).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A request in flight when the server is cancelled still gets its whole answer; the
    /// server returns once it is answered, and accepts nothing new meanwhile.
    #[tokio::test]
    async fn cancellation_drains_the_request_in_flight() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let started_tx = std::sync::Mutex::new(Some(started_tx));
        let handler: Handler = Arc::new(move |_req| {
            if let Some(tx) = started_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Response::new(Full::new(Bytes::from_static(b"done")))
            })
        });
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            handler,
            cancel.clone(),
            Duration::from_secs(30),
        ));
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        started_rx.await.unwrap();
        cancel.cancel();
        let mut reply = Vec::new();
        let read = async {
            let mut buf = [0u8; 1024];
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                reply.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the connection is answered and closed");
        let text = String::from_utf8_lossy(&reply);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.ends_with("done"), "{text}");
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("the server returns after draining")
            .unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer listening"
        );
    }
}
