//! The server against real sockets: timeouts, the cap, the drain, the accept backoff.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn failed_accepts_back_off_doubling_to_a_second() {
    let ms: Vec<u128> = (1..=9).map(|n| pause(n).as_millis()).collect();
    assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    assert_eq!(pause(u32::MAX), MAX_PAUSE);
}

/// A failure that shed a connection pauses 1 ms; failures that could shed nothing double
/// their pause from 10 ms (restarting after an accept or a shed); all of it is one episode
/// until accepts have worked for QUIET.
#[test]
fn an_episode_of_failed_accepts_ends_after_a_quiet_while() {
    let e = io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
    assert!(out_of_resources(&e));
    assert!(!out_of_resources(&io::Error::from(
        io::ErrorKind::ConnectionAborted
    )));
    let t0 = Instant::now();
    let mut x = Exhaustion::default();
    assert_eq!(x.failed(&e, false, t0), FIRST_PAUSE);
    assert_eq!(x.failed(&e, false, t0), FIRST_PAUSE * 2);
    assert_eq!(x.failed(&e, true, t0), SHED_PAUSE);
    assert_eq!(x.failed(&e, false, t0), FIRST_PAUSE);
    x.accepted(t0 + Duration::from_millis(50));
    assert_eq!(
        x.failed(&e, false, t0 + Duration::from_secs(1)),
        FIRST_PAUSE
    );
    assert_eq!(x.episode.map(|(n, _)| n), Some(5));
    x.accepted(t0 + Duration::from_secs(2));
    assert!(x.episode.is_some(), "not quiet yet");
    x.accepted(t0 + Duration::from_secs(1) + QUIET);
    assert_eq!(x.episode, None);
}

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
        vec![listener],
        handler,
        cancel.clone(),
        ServeOptions::new(Duration::from_secs(30)),
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

/// A server on loopback whose `/slow` waits for [`Server::release`]; everything else is `ok`.
struct Server {
    addr: std::net::SocketAddr,
    stats: Arc<ConnectionStats>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    gate: Arc<tokio::sync::Semaphore>,
    slow_started: Arc<tokio::sync::Notify>,
}

/// How long a test waits for something that must happen (never reached unless broken).
const BOUND: Duration = Duration::from_secs(30);

fn limits(header: Duration, idle: Duration, max_connections: usize) -> Limits {
    Limits {
        header_read_timeout: header,
        idle_timeout: idle,
        max_connections,
    }
}

impl Server {
    async fn start(limits: Limits, drain: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let slow_started = Arc::new(tokio::sync::Notify::new());
        let (g, started) = (gate.clone(), slow_started.clone());
        let handler: Handler = Arc::new(move |req: Request<Incoming>| {
            let slow = req.uri().path() == "/slow";
            let (g, started) = (g.clone(), started.clone());
            Box::pin(async move {
                if slow {
                    started.notify_one();
                    g.acquire().await.unwrap().forget();
                }
                Response::new(Full::new(Bytes::from_static(b"ok")))
            })
        });
        let stats = Arc::new(ConnectionStats::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(
            vec![listener],
            handler,
            cancel.clone(),
            ServeOptions {
                drain,
                limits,
                stats: stats.clone(),
                tls: None,
            },
        ));
        Server {
            addr,
            stats,
            cancel,
            task,
            gate,
            slow_started,
        }
    }

    async fn connect(&self) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(self.addr).await.unwrap()
    }

    /// Lets one `/slow` request finish.
    fn release(&self) {
        self.gate.add_permits(1);
    }

    /// Waits (bounded) until `open` connections are tracked.
    async fn wait_open(&self, open: u64) {
        tokio::time::timeout(BOUND, async {
            while self.stats.open() != open {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("open {} != {open}", self.stats.open()));
    }
}

/// Sends `GET path` on a kept-alive connection and reads the whole response's body.
async fn get(stream: &mut tokio::net::TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::timeout(BOUND, read_response(stream))
        .await
        .expect("answered")
}

async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("content-length")
                .parse()
                .unwrap();
            if body.len() >= length {
                assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
                return body.to_owned();
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the response: {text}");
        raw.extend_from_slice(&buf[..n]);
    }
}

/// Waits (bounded) until the server closes `stream`; returns how long that took.
async fn closed(stream: &mut tokio::net::TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
    start.elapsed()
}

/// A connection that sends nothing and one that sends a header byte every 50 ms are both
/// closed once `header_read_timeout` has passed since their accept, and counted.
#[tokio::test]
async fn no_whole_request_head_in_time_closes_the_connection() {
    let header = Duration::from_millis(400);
    let s = Server::start(limits(header, BOUND, 16), BOUND).await;
    let mut silent = s.connect().await;
    let mut slowloris = s.connect().await;
    let (mut rd, mut wr) = slowloris.split();
    let dribble = async {
        for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let watch = async {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(BOUND, rd.read(&mut buf)).await;
        start.elapsed()
    };
    let (_, slowloris_closed) = tokio::join!(dribble, watch);
    let silent_closed = closed(&mut silent).await;
    // Measured from the client's connect, which precedes the accept.
    assert!(
        slowloris_closed >= header - Duration::from_millis(50),
        "{slowloris_closed:?}"
    );
    assert!(slowloris_closed < BOUND, "closed by the server");
    assert!(silent_closed < BOUND);
    s.wait_open(0).await;
    assert_eq!(s.stats.shed(ShedReason::HeaderTimeout), 2);
    let mut fresh = s.connect().await;
    assert_eq!(get(&mut fresh, "/").await, "ok");
}

/// After a response, a kept-alive connection waits for its next request up to `idle_timeout`
/// (far longer than `header_read_timeout`); a next request's first byte starts the header
/// timeout again.
#[tokio::test]
async fn kept_alive_connections_close_after_the_idle_timeout() {
    let header = Duration::from_millis(300);
    let idle = Duration::from_secs(4);
    let s = Server::start(limits(header, idle, 16), BOUND).await;
    let mut c = s.connect().await;
    assert_eq!(get(&mut c, "/").await, "ok");
    tokio::time::sleep(header * 3).await;
    assert_eq!(
        get(&mut c, "/").await,
        "ok",
        "still open past the header timeout"
    );
    let waited = closed(&mut c).await;
    assert!(waited >= idle - Duration::from_millis(100), "{waited:?}");
    assert_eq!(s.stats.shed(ShedReason::IdleTimeout), 1);
    assert_eq!(s.stats.shed(ShedReason::HeaderTimeout), 0);

    let mut c = s.connect().await;
    assert_eq!(get(&mut c, "/").await, "ok");
    c.write_all(b"G").await.unwrap();
    let waited = closed(&mut c).await;
    assert!(
        waited < idle,
        "a started head has the header timeout: {waited:?}"
    );
    assert_eq!(s.stats.shed(ShedReason::HeaderTimeout), 1);
}

/// At the cap a new connection is served and the connection idle the longest (here one that
/// never sent a request, older than one that was answered) is closed for it.
#[tokio::test]
async fn at_the_cap_the_connection_idle_the_longest_makes_room() {
    let s = Server::start(limits(BOUND, BOUND, 2), BOUND).await;
    let mut never = s.connect().await;
    let mut answered = s.connect().await;
    assert_eq!(get(&mut answered, "/").await, "ok");
    s.wait_open(2).await;
    let mut new = s.connect().await;
    assert_eq!(get(&mut new, "/").await, "ok");
    closed(&mut never).await;
    assert_eq!(get(&mut answered, "/").await, "ok", "not shed");
    assert_eq!(s.stats.shed(ShedReason::MaxConnections), 1);
    s.wait_open(2).await;
    assert_eq!(s.stats.max_connections(), 2);
}

/// With every connection busy at the cap, a new one waits (not refused, not accepted over the
/// cap) and is served as soon as the busy one has answered.
#[tokio::test]
async fn with_every_connection_busy_a_new_one_waits_for_room() {
    let s = Server::start(limits(BOUND, BOUND, 1), BOUND).await;
    let mut busy = s.connect().await;
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    s.slow_started.notified().await;
    let mut waiting = s.connect().await;
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let early = tokio::time::timeout(Duration::from_millis(300), waiting.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "not answered while the only slot is busy: {early:?} {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(s.stats.open(), 1);
    s.release();
    assert_eq!(
        tokio::time::timeout(BOUND, read_response(&mut busy))
            .await
            .unwrap(),
        "ok"
    );
    assert_eq!(
        tokio::time::timeout(BOUND, read_response(&mut waiting))
            .await
            .unwrap(),
        "ok"
    );
    closed(&mut busy).await;
    assert_eq!(s.stats.shed(ShedReason::MaxConnections), 1);
}

/// At cancellation idle connections (answered or not) are closed at once: the server returns
/// long before its drain bound.
#[tokio::test]
async fn the_drain_closes_idle_connections_at_once() {
    let s = Server::start(limits(BOUND, BOUND, 16), BOUND * 2).await;
    let mut never = s.connect().await;
    let mut answered = s.connect().await;
    assert_eq!(get(&mut answered, "/").await, "ok");
    s.wait_open(2).await;
    s.cancel.cancel();
    tokio::time::timeout(BOUND, s.task)
        .await
        .expect("returns without waiting for the drain bound")
        .unwrap();
    closed(&mut never).await;
    closed(&mut answered).await;
}
