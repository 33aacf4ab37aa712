//! The connection tracker: every open connection with what it is doing (waiting for a request,
//! reading a request head, answering one), the cap on open connections, which connection to
//! shed (the one idle the longest) and when a connection without a request in flight is due to
//! be closed. Time is passed in, so the rules are tested without sleeping.
//!
//! A connection is *idle* while no request is in flight: from its accept, or from the moment
//! its last response was written out, until the head of its next request has been read whole.
//! A partly received request head is idle too (nothing has been handed to a handler yet), so a
//! slowloris client is shed like any idle connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The largest default of `max_connections` ([`Limits::default_max_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Connections the server is closing that may still hold their descriptors beyond
/// `max_connections`: past this, a new connection waits until they have closed, so a burst of
/// connections at the cap cannot run the process out of file descriptors before the tasks of
/// the shed ones have run.
pub(crate) const CLOSING_SLACK: usize = 16;

/// The connection limits of one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A new connection's first request head must be complete this long after the accept (a
    /// TLS handshake counts in it); a later request's head this long after its first byte.
    pub header_read_timeout: Duration,
    /// A connection that answered a request is closed when no next request starts this long.
    pub idle_timeout: Duration,
    /// Open connections at most: at the cap the one idle the longest is closed for a new one;
    /// with none idle, new connections wait (in the kernel's backlog) until one ends.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_connections: Limits::default_max_connections(open_files_limit()),
        }
    }
}

impl Limits {
    /// Half the open-file limit (the other half stays for log files, PD and Prometheus
    /// clients), at most [`DEFAULT_MAX_CONNECTIONS`], at least 8.
    pub fn default_max_connections(open_files: Option<u64>) -> usize {
        let half = open_files.map_or(u64::MAX, |n| n / 2);
        usize::try_from(half)
            .unwrap_or(usize::MAX)
            .clamp(8, DEFAULT_MAX_CONNECTIONS)
    }
}

/// The soft `RLIMIT_NOFILE` of this process (`None`: unlimited or unknown).
pub fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Why the server closed a connection that had no request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShedReason {
    /// No whole request head within `header_read_timeout`.
    HeaderTimeout,
    /// No next request within `idle_timeout`.
    IdleTimeout,
    /// The idle one of longest standing, closed for a new connection at `max_connections`.
    MaxConnections,
    /// The idle one of longest standing, closed to free a file descriptor when accepting
    /// failed for the lack of one (or of kernel memory).
    FdLimit,
}

impl ShedReason {
    /// Every reason, in the order of [`ShedReason::as_str`]'s label values.
    pub const ALL: [ShedReason; 4] = [
        ShedReason::HeaderTimeout,
        ShedReason::IdleTimeout,
        ShedReason::MaxConnections,
        ShedReason::FdLimit,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::HeaderTimeout => "header_timeout",
            ShedReason::IdleTimeout => "idle_timeout",
            ShedReason::MaxConnections => "max_connections",
            ShedReason::FdLimit => "fd_limit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The server's connection counters, read by the exposition.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    max_connections: AtomicU64,
    shed: [AtomicU64; 4],
    accept_errors: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// The cap in force (0 before a server runs).
    pub fn max_connections(&self) -> u64 {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// Connections closed by the server for `reason` so far.
    pub fn shed(&self, reason: ShedReason) -> u64 {
        self.shed[reason.index()].load(Ordering::Relaxed)
    }

    /// Accepts that failed for the lack of file descriptors or memory (each one backed off).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    pub(crate) fn count_accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one connection is doing.
#[derive(Debug)]
struct State {
    /// Requests handed to the handler whose response is not written out yet (0 or 1: HTTP/1
    /// answers one request at a time).
    in_flight: u32,
    /// Whether a response was written out on it.
    served: bool,
    /// When it last became idle (its accept, or its last response written out).
    idle_since: Instant,
    /// When the first byte of the next request head arrived (while idle).
    head_since: Option<Instant>,
    /// Set once the server decided to close it.
    closing: bool,
}

/// One open connection, shared by its task and the tracker.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    accepted: Instant,
    state: Mutex<State>,
    /// Cancelled when the server wants it closed (shed, or the server's drain).
    close: CancellationToken,
    /// Tells the accept loop that a connection became idle (something can be shed again).
    room: Arc<Notify>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    /// Bytes of a request arrived.
    pub(crate) fn bytes_read(&self, now: Instant) {
        let mut s = lock(&self.state);
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(now);
        }
    }

    /// A whole request head was read and handed to the handler.
    pub(crate) fn request_started(&self) {
        let mut s = lock(&self.state);
        s.in_flight += 1;
        s.head_since = None;
    }

    /// The response to a request was written out (or abandoned).
    pub(crate) fn response_done(&self, now: Instant) {
        let mut s = lock(&self.state);
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.served = true;
            s.idle_since = now;
            s.head_since = None;
            drop(s);
            self.room.notify_one();
        }
    }

    /// Whether a request is in flight.
    pub(crate) fn busy(&self) -> bool {
        lock(&self.state).in_flight > 0
    }

    /// Whether a response was written out on it.
    pub(crate) fn served(&self) -> bool {
        lock(&self.state).served
    }

    /// When it is due to be closed and why; `None` while a request is in flight.
    pub(crate) fn deadline(&self, limits: &Limits) -> Option<(Instant, ShedReason)> {
        let s = lock(&self.state);
        if s.in_flight > 0 {
            None
        } else if !s.served {
            Some((
                self.accepted + limits.header_read_timeout,
                ShedReason::HeaderTimeout,
            ))
        } else if let Some(head) = s.head_since {
            Some((head + limits.header_read_timeout, ShedReason::HeaderTimeout))
        } else {
            Some((s.idle_since + limits.idle_timeout, ShedReason::IdleTimeout))
        }
    }

    /// Cancelled when the server wants this connection closed.
    pub(crate) fn close_requested(&self) -> &CancellationToken {
        &self.close
    }
}

/// Every open connection of one server.
#[derive(Debug, Default)]
struct Registry {
    conns: HashMap<u64, Arc<Conn>>,
    next_id: u64,
    /// How many of `conns` the server is closing (they no longer count against the cap).
    closing: usize,
}

/// The open connections of one server, its cap and its counters.
#[derive(Debug)]
pub(crate) struct Tracker {
    limits: Limits,
    stats: Arc<ConnectionStats>,
    registry: Mutex<Registry>,
    room: Arc<Notify>,
    /// The parent of every connection's close token: cancelled to drain them all.
    all: CancellationToken,
}

impl Tracker {
    /// A tracker enforcing `limits`, counting into `stats`.
    pub(crate) fn new(limits: Limits, stats: Arc<ConnectionStats>) -> Tracker {
        stats
            .max_connections
            .store(limits.max_connections as u64, Ordering::Relaxed);
        Tracker {
            limits,
            stats,
            registry: Mutex::new(Registry::default()),
            room: Arc::new(Notify::new()),
            all: CancellationToken::new(),
        }
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// Registers a connection accepted at `now`; [`Tracker::release`] it when it ends.
    pub(crate) fn admit(&self, now: Instant) -> Arc<Conn> {
        let mut r = lock(&self.registry);
        r.next_id += 1;
        let conn = Arc::new(Conn {
            id: r.next_id,
            accepted: now,
            state: Mutex::new(State {
                in_flight: 0,
                served: false,
                idle_since: now,
                head_since: None,
                closing: false,
            }),
            close: self.all.child_token(),
            room: self.room.clone(),
        });
        r.conns.insert(conn.id, conn.clone());
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        conn
    }

    /// Forgets a connection that ended.
    pub(crate) fn release(&self, conn: &Conn) {
        let mut r = lock(&self.registry);
        if r.conns.remove(&conn.id).is_some() {
            self.stats.open.fetch_sub(1, Ordering::Relaxed);
            if lock(&conn.state).closing {
                r.closing -= 1;
            }
        }
        drop(r);
        self.room.notify_one();
    }

    /// Open connections the server is not closing already.
    pub(crate) fn live(&self) -> usize {
        let r = lock(&self.registry);
        r.conns.len() - r.closing
    }

    /// Whether a new connection needs room made for it (the cap is reached).
    pub(crate) fn is_full(&self) -> bool {
        self.live() >= self.limits.max_connections
    }

    /// Whether so many connections are still closing that a new one must wait for them to end
    /// (they hold descriptors: at most [`CLOSING_SLACK`] beyond the cap).
    pub(crate) fn closing_backlog(&self) -> bool {
        lock(&self.registry).conns.len() >= self.limits.max_connections + CLOSING_SLACK
    }

    /// Resolves after a connection ended or became idle (so one may be shed now).
    pub(crate) async fn room_changed(&self) {
        self.room.notified().await;
    }

    /// Closes the connection idle the longest (the oldest accept among equals), counting it
    /// under `reason`; false when every connection has a request in flight.
    pub(crate) fn shed_oldest_idle(&self, reason: ShedReason) -> bool {
        let mut r = lock(&self.registry);
        let oldest = r
            .conns
            .values()
            .filter_map(|c| {
                let s = lock(&c.state);
                shedable(&s).then_some((s.idle_since, c.id, c))
            })
            .min_by_key(|(since, id, _)| (*since, *id))
            .map(|(_, _, c)| c.clone());
        let Some(conn) = oldest else { return false };
        lock(&conn.state).closing = true;
        r.closing += 1;
        drop(r);
        self.stats.shed[reason.index()].fetch_add(1, Ordering::Relaxed);
        conn.close.cancel();
        true
    }

    /// Marks `conn`, past its [`Conn::deadline`], as closing for `reason` and counts it;
    /// false (nothing counted) when the server was closing it already.
    pub(crate) fn expire(&self, conn: &Conn, reason: ShedReason) -> bool {
        let mut r = lock(&self.registry);
        let mut s = lock(&conn.state);
        if s.closing || !r.conns.contains_key(&conn.id) {
            return false;
        }
        s.closing = true;
        drop(s);
        r.closing += 1;
        self.stats.shed[reason.index()].fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Asks every connection to close (idle ones at once, busy ones after their response).
    pub(crate) fn close_all(&self) {
        self.all.cancel();
    }
}

fn shedable(s: &State) -> bool {
    s.in_flight == 0 && !s.closing
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);

    fn tracker(max: usize) -> Tracker {
        Tracker::new(
            Limits {
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(90),
                max_connections: max,
            },
            Arc::default(),
        )
    }

    #[test]
    fn the_default_cap_is_half_the_open_file_limit_within_bounds() {
        assert_eq!(Limits::default_max_connections(Some(256)), 128);
        assert_eq!(Limits::default_max_connections(Some(1024)), 512);
        assert_eq!(Limits::default_max_connections(Some(1 << 20)), 512);
        assert_eq!(Limits::default_max_connections(Some(10)), 8);
        assert_eq!(Limits::default_max_connections(None), 512);
    }

    /// Before its first request a connection has `header_read_timeout` from its accept (bytes
    /// arriving do not extend it); after a response, `idle_timeout` until the next request's
    /// first byte, then `header_read_timeout` from that byte; none while a request is in flight.
    #[test]
    fn deadlines_follow_what_the_connection_does() {
        let t = tracker(8);
        let l = *t.limits();
        let t0 = Instant::now();
        let c = t.admit(t0);
        assert_eq!(
            c.deadline(&l),
            Some((t0 + 10 * T, ShedReason::HeaderTimeout))
        );
        c.bytes_read(t0 + 3 * T);
        assert_eq!(
            c.deadline(&l),
            Some((t0 + 10 * T, ShedReason::HeaderTimeout))
        );
        c.request_started();
        assert!(c.busy());
        assert_eq!(c.deadline(&l), None);
        c.bytes_read(t0 + 4 * T);
        assert_eq!(c.deadline(&l), None, "bytes read while busy");
        c.response_done(t0 + 5 * T);
        assert!(!c.busy() && c.served());
        assert_eq!(c.deadline(&l), Some((t0 + 95 * T, ShedReason::IdleTimeout)));
        c.bytes_read(t0 + 50 * T);
        c.bytes_read(t0 + 55 * T);
        assert_eq!(
            c.deadline(&l),
            Some((t0 + 60 * T, ShedReason::HeaderTimeout))
        );
        c.request_started();
        c.response_done(t0 + 61 * T);
        assert_eq!(
            c.deadline(&l),
            Some((t0 + 151 * T, ShedReason::IdleTimeout))
        );
    }

    /// At the cap the connection idle the longest goes first, whether it never sent a request
    /// or answered one long ago; busy ones never; each shed is counted once under its reason.
    #[test]
    fn shedding_takes_the_longest_idle_and_never_a_busy_one() {
        let t = tracker(3);
        let t0 = Instant::now();
        let a = t.admit(t0);
        let b = t.admit(t0 + T);
        let c = t.admit(t0 + 2 * T);
        assert!(t.is_full());
        assert_eq!(t.stats().open(), 3);
        assert_eq!(t.stats().max_connections(), 3);
        // a answers a request at t0+5: now b (idle since t0+1) is the longest idle.
        a.request_started();
        a.response_done(t0 + 5 * T);
        c.request_started();
        assert!(t.shed_oldest_idle(ShedReason::MaxConnections));
        assert!(b.close_requested().is_cancelled());
        assert!(!a.close_requested().is_cancelled());
        assert_eq!(t.live(), 2, "a closing connection leaves room");
        assert!(!t.is_full());
        assert!(t.shed_oldest_idle(ShedReason::FdLimit));
        assert!(a.close_requested().is_cancelled());
        // Only c is left and it is busy.
        assert!(!t.shed_oldest_idle(ShedReason::MaxConnections));
        assert!(!c.close_requested().is_cancelled());
        assert_eq!(t.stats().shed(ShedReason::MaxConnections), 1);
        assert_eq!(t.stats().shed(ShedReason::FdLimit), 1);
        assert_eq!(t.stats().open(), 3, "open until their tasks end");
        t.release(&b);
        t.release(&a);
        assert_eq!((t.stats().open(), t.live()), (1, 1));
        t.release(&c);
        t.release(&c);
        assert_eq!((t.stats().open(), t.live()), (0, 0));
    }

    /// Shed connections leave room under the cap at once, but while they have not ended they
    /// hold descriptors: [`CLOSING_SLACK`] of them beyond the cap make new connections wait.
    #[test]
    fn connections_still_closing_hold_back_new_ones_past_the_slack() {
        let t = tracker(2);
        let t0 = Instant::now();
        let mut conns = vec![t.admit(t0), t.admit(t0)];
        for i in 0..CLOSING_SLACK {
            assert!(t.is_full() && !t.closing_backlog(), "{i} closing");
            assert!(t.shed_oldest_idle(ShedReason::MaxConnections));
            conns.push(t.admit(t0 + T));
        }
        assert_eq!(t.stats().open(), (2 + CLOSING_SLACK) as u64);
        assert!(
            t.closing_backlog(),
            "{CLOSING_SLACK} closing beyond the cap"
        );
        let closed = conns.remove(0);
        t.release(&closed);
        assert!(!t.closing_backlog(), "one ended");
        assert_eq!(t.live(), 2);
    }

    /// A connection that becomes idle, or ends, wakes an accept loop waiting for room.
    #[tokio::test]
    async fn becoming_idle_or_ending_makes_room() {
        let t = tracker(1);
        let t0 = Instant::now();
        let a = t.admit(t0);
        a.request_started();
        assert!(t.is_full() && !t.shed_oldest_idle(ShedReason::MaxConnections));
        let waiting = t.room_changed();
        a.response_done(t0 + T);
        tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("woken");
        assert!(t.shed_oldest_idle(ShedReason::MaxConnections));
        let waiting = t.room_changed();
        t.release(&a);
        tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("woken");
        assert!(!t.is_full());
    }

    /// A deadline expiry is counted once, and not at all for a connection already being shed.
    #[test]
    fn expiry_is_counted_once() {
        let t = tracker(4);
        let t0 = Instant::now();
        let a = t.admit(t0);
        let b = t.admit(t0 + T);
        assert!(t.expire(&a, ShedReason::HeaderTimeout));
        assert!(!t.expire(&a, ShedReason::HeaderTimeout));
        assert!(t.shed_oldest_idle(ShedReason::MaxConnections));
        assert!(b.close_requested().is_cancelled(), "a is closing already");
        assert!(!t.expire(&b, ShedReason::IdleTimeout));
        assert_eq!(t.stats().shed(ShedReason::HeaderTimeout), 1);
        assert_eq!(t.stats().shed(ShedReason::IdleTimeout), 0);
        assert_eq!(t.live(), 0);
        t.close_all();
        t.release(&a);
        t.release(&b);
        assert_eq!(t.stats().open(), 0);
    }

    #[test]
    fn closing_all_cancels_every_connection() {
        let t = tracker(4);
        let a = t.admit(Instant::now());
        a.request_started();
        t.close_all();
        assert!(a.close_requested().is_cancelled());
        assert!(t.admit(Instant::now()).close_requested().is_cancelled());
    }
}
