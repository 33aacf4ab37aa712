//! The one HTTP/1 accept loop (the exporter's endpoints and the demo's simulated cluster): every
//! connection is tracked, and at cancellation the loop stops accepting, open connections finish
//! their request in flight (idle keep-alive connections are closed), bounded by a drain timeout.

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
use tokio::net::TcpListener;
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

/// Serves `listener` until `cancel`, then drains open connections for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    handler: Handler,
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
        let conn =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
}
