//! The one HTTP/1 accept loop (the exporter's endpoints and the demo's simulated cluster), on
//! one or more listening sockets ([`listen`]). Every connection is tracked ([`tracker`]): a
//! new one has `header_read_timeout` for its first request head, a kept-alive one is closed
//! after `idle_timeout` without a request, and at `max_connections` the connection idle the
//! longest is closed for the new one (with none idle, new ones wait in the kernel's backlog).
//! An accept that fails for the lack of file descriptors or memory (`EMFILE`, `ENFILE`,
//! `ENOBUFS`, `ENOMEM`) sheds the connection idle the longest and pauses 1 ms (its descriptor
//! is free by then), or, with none idle, backs off 10 ms doubling to 1 s: the loop never
//! spins, and a new scraper gets in as soon as a descriptor is free. At cancellation the loop
//! stops accepting, idle connections are closed and open requests finish, bounded by a drain
//! timeout.
//!
//! Each connection runs [`conn::serve`], generic over its byte stream, which takes the stream
//! from a handshake future bounded by the first request's deadline: that is where a TLS layer
//! wraps the accepted `TcpStream` (see [`connection`]).

pub(crate) mod conn;
pub mod listen;
pub mod tracker;

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

pub use listen::{ListenError, bind};
use tracker::{Conn, Tracker};
pub use tracker::{ConnectionStats, Limits, ShedReason};

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

/// How a server runs: its connection limits, its drain bound, where it counts, and TLS.
#[derive(Clone)]
pub struct ServeOptions {
    /// How long open requests get to finish after cancellation.
    pub drain: Duration,
    /// Timeouts and the connection cap.
    pub limits: Limits,
    /// The server's counters (open connections, sheds, failed accepts).
    pub stats: Arc<ConnectionStats>,
    /// Each connection through this TLS handshake first (from `--web.config.file`).
    pub tls: Option<TlsAccept>,
}

/// Turns an accepted connection into a TLS one (the handshake), or `None` when the handshake
/// failed (the connection is then closed).
pub(crate) type TlsAccept = Arc<
    dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = Option<TlsStream<TcpStream>>> + Send>>
        + Send
        + Sync,
>;

impl ServeOptions {
    /// The default [`Limits`], fresh counters, this drain bound.
    pub fn new(drain: Duration) -> ServeOptions {
        ServeOptions {
            drain,
            limits: Limits::default(),
            stats: Arc::default(),
            tls: None,
        }
    }
}

/// The first pause after a failed accept that could shed nothing, doubled at each such failure
/// in a row up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The pause after a failed accept that shed a connection: time for its task to close it, so
/// the next accept has a descriptor (it bounds the loop to 1000 accepts a second).
const SHED_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause after failed accepts.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Serves `listeners` until `cancel`, then drains open connections for at most `opts.drain`.
pub async fn serve(
    listeners: Vec<TcpListener>,
    handler: Handler,
    cancel: CancellationToken,
    opts: ServeOptions,
) {
    let tracker = Arc::new(Tracker::new(opts.limits, opts.stats));
    let mut tasks = JoinSet::new();
    let mut next = 0;
    let mut exhaustion = Exhaustion::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(_) = tasks.join_next() => continue,
            accepted = accept_any(&listeners, &mut next) => accepted,
        };
        match accepted {
            Ok(stream) => {
                exhaustion.accepted(Instant::now());
                if !make_room(&tracker, &mut tasks, &cancel).await {
                    break;
                }
                let conn = tracker.admit(Instant::now());
                tasks.spawn(connection(
                    stream,
                    conn,
                    handler.clone(),
                    tracker.clone(),
                    opts.tls.clone(),
                ));
            }
            Err(e) => {
                // Any other error is the peer's (it went away before the accept): the shortest
                // pause, in case it repeats.
                let pause = if out_of_resources(&e) {
                    tracker.stats().count_accept_error();
                    let shed = tracker.shed_oldest_idle(ShedReason::FdLimit);
                    exhaustion.failed(&e, shed, Instant::now())
                } else {
                    FIRST_PAUSE
                };
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    drop(listeners);
    tracker.close_all();
    let _ = tokio::time::timeout(opts.drain, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// An episode of accepts failing for the lack of resources: logged when it starts and when an
/// accept works [`QUIET`] after the last failure (at the limit, accepts that shed a connection
/// first alternate with failures: that is one episode, not a line per accept).
#[derive(Debug, Default)]
struct Exhaustion {
    /// Failures in a row that could shed nothing (the pause doubles with each).
    in_a_row: u32,
    /// Failures in this episode and when the last one was; `None` outside of one.
    episode: Option<(u64, Instant)>,
}

/// How long accepts must work before an episode of failures is over.
const QUIET: Duration = Duration::from_secs(5);

impl Exhaustion {
    /// Counts a failed accept (`shed`: it closed an idle connection); returns how long to
    /// pause before the next one.
    fn failed(&mut self, e: &io::Error, shed: bool, now: Instant) -> Duration {
        let count = match self.episode {
            None => {
                crate::log::warn(&format!(
                    "cannot accept connections: {e}; closing the connection idle the longest at each failure, pausing {}ms after one, or 10ms doubling up to {}s while none is idle",
                    SHED_PAUSE.as_millis(),
                    MAX_PAUSE.as_secs()
                ));
                1
            }
            Some((n, _)) => n + 1,
        };
        self.episode = Some((count, now));
        if shed {
            self.in_a_row = 0;
            return SHED_PAUSE;
        }
        self.in_a_row = self.in_a_row.saturating_add(1);
        pause(self.in_a_row)
    }

    /// An accept worked.
    fn accepted(&mut self, now: Instant) {
        self.in_a_row = 0;
        if let Some((n, last)) = self.episode
            && now.duration_since(last) >= QUIET
        {
            crate::log::info(&format!(
                "accepting connections again ({n} accepts failed for the lack of file descriptors or memory)"
            ));
            self.episode = None;
        }
    }
}

/// The pause after the `n`th failed accept in a row (n ≥ 1).
fn pause(n: u32) -> Duration {
    FIRST_PAUSE
        .saturating_mul(1 << n.saturating_sub(1).min(10))
        .min(MAX_PAUSE)
}

/// Below the cap, or at it once the connection idle the longest is shed; with every
/// connection busy, waits (holding the one accepted; the next ones wait in the kernel's
/// backlog) until one ends or becomes idle. Also waits, silently, while more connections than
/// [`CLOSING_SLACK`](tracker::CLOSING_SLACK) beyond the cap are still closing (their tasks
/// have not run yet: under load a burst of accepts outruns them). False when cancelled
/// meanwhile.
async fn make_room(tracker: &Tracker, tasks: &mut JoinSet<()>, cancel: &CancellationToken) -> bool {
    let mut logged = false;
    loop {
        if tracker.is_full() && !tracker.shed_oldest_idle(ShedReason::MaxConnections) {
            if !logged {
                crate::log::warn(&format!(
                    "all {} connections (web.max_connections) have a request in flight: new connections wait until one has answered",
                    tracker.limits().max_connections
                ));
                logged = true;
            }
        } else if !tracker.closing_backlog() {
            break;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return false,
            Some(_) = tasks.join_next() => {}
            _ = tracker.room_changed() => {}
        }
    }
    if logged {
        crate::log::info("a connection is free again: accepting");
    }
    true
}

/// The next connection on any of `listeners`, taking them in turn (`next` is where to start).
async fn accept_any(listeners: &[TcpListener], next: &mut usize) -> io::Result<TcpStream> {
    poll_fn(|cx| {
        let n = listeners.len();
        for k in 0..n {
            let i = (*next + k) % n;
            if let Poll::Ready(accepted) = listeners[i].poll_accept(cx) {
                *next = (i + 1) % n;
                return Poll::Ready(accepted.map(|(stream, _)| stream));
            }
        }
        Poll::Pending
    })
    .await
}

/// Accept errors that a pause and a freed descriptor can cure.
fn out_of_resources(e: &io::Error) -> bool {
    use rustix::io::Errno;
    Errno::from_io_error(e)
        .is_some_and(|n| [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM].contains(&n))
}

/// One accepted connection, until it ends; then the tracker forgets it.
async fn connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    handler: Handler,
    tracker: Arc<Tracker>,
    tls: Option<TlsAccept>,
) {
    struct Release<'a>(&'a Tracker, &'a Conn);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.release(self.1);
        }
    }
    let _release = Release(&tracker, &conn);
    let _ = stream.set_nodelay(true);
    // The TLS handshake (when configured) is bounded by the first request's
    // header_read_timeout; the stream it gives is served.
    let handshake = async move {
        match tls {
            Some(accept) => accept(stream)
                .await
                .map(Either::Right)
                .ok_or_else(|| io::Error::other("TLS handshake failed")),
            None => Ok(Either::Left(stream)),
        }
    };
    conn::serve(handshake, &conn, handler, &tracker).await;
}

#[cfg(test)]
mod tests;
