//! Connections that load an HTTP server without asking it anything useful, for the server's
//! limit tests and the connection benchmark: idle ones (connected, optionally after one
//! request, then silent) and slowloris ones (one byte of an endless request head every
//! `byte_every`). A server closing them is counted; with `reconnect`, each one comes back
//! (as an attacker's would), keeping the pressure on. They run on a tokio runtime of their own
//! (one thread), so thousands cost the test little.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// What to hold against the server.
#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    /// Idle connections.
    pub idle: usize,
    /// Whether each idle connection first sends one request (and reads its answer), so it is
    /// a kept-alive connection rather than one that never asked anything.
    pub request_first: bool,
    /// Slowloris connections.
    pub slowloris: usize,
    /// How often a slowloris connection sends its next byte.
    pub byte_every: Duration,
    /// Whether a connection the server closed is opened again.
    pub reconnect: bool,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            idle: 0,
            request_first: false,
            slowloris: 0,
            byte_every: Duration::from_secs(1),
            reconnect: false,
        }
    }
}

/// Counters of one kind of connection.
#[derive(Debug, Default)]
pub struct Counts {
    /// Connected now (from the client's side: the server may not have accepted it yet).
    pub open: AtomicU64,
    /// Closed by the server so far.
    pub closed: AtomicU64,
    /// Connections that connected at least once.
    pub started: AtomicU64,
}

impl Counts {
    /// Connected now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Closed by the server so far.
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    /// Connections that connected at least once.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

/// Running load; stopped (every connection closed) on drop.
pub struct Load {
    /// The idle connections.
    pub idle: Arc<Counts>,
    /// The slowloris connections.
    pub slowloris: Arc<Counts>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    /// (idle, slowloris) asked for.
    spec_counts: (u64, u64),
}

impl Load {
    /// Opens the connections of `spec` to `addr` (in the background: see [`Load::wait_open`]).
    pub fn start(addr: SocketAddr, spec: LoadSpec) -> Load {
        let idle = Arc::new(Counts::default());
        let slowloris = Arc::new(Counts::default());
        let stop = CancellationToken::new();
        let (i, s, st) = (idle.clone(), slowloris.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..spec.idle {
                    tasks.spawn(hold(addr, spec, Kind::Idle, i.clone(), st.clone()));
                }
                for _ in 0..spec.slowloris {
                    tasks.spawn(hold(addr, spec, Kind::Slowloris, s.clone(), st.clone()));
                }
                st.cancelled().await;
                tasks.shutdown().await;
            });
        });
        Load {
            idle,
            slowloris,
            stop,
            thread: Some(thread),
            spec_counts: (spec.idle as u64, spec.slowloris as u64),
        }
    }

    /// Waits (bounded) until every connection has connected once (some may be closed, or
    /// reconnecting, by then).
    pub fn wait_started(&self) {
        super::wait::until(
            "every load connection to connect once",
            super::wait::PATIENCE,
            || {
                let now = (self.idle.started(), self.slowloris.started());
                if now == self.spec_counts {
                    Ok(())
                } else {
                    Err(format!("started: {now:?} of {:?}", self.spec_counts))
                }
            },
        );
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Idle,
    Slowloris,
}

/// One connection of `kind`, held until the server closes it (then again with `reconnect`).
async fn hold(
    addr: SocketAddr,
    spec: LoadSpec,
    kind: Kind,
    counts: Arc<Counts>,
    stop: CancellationToken,
) {
    let mut first = true;
    loop {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                // The listen backlog is full, or this process is out of descriptors.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        counts.open.fetch_add(1, Ordering::Relaxed);
        if std::mem::take(&mut first) {
            counts.started.fetch_add(1, Ordering::Relaxed);
        }
        let closed = tokio::select! {
            _ = stop.cancelled() => false,
            _ = run(&mut stream, spec, kind) => true,
        };
        counts.open.fetch_sub(1, Ordering::Relaxed);
        if !closed {
            return;
        }
        counts.closed.fetch_add(1, Ordering::Relaxed);
        if !spec.reconnect {
            stop.cancelled().await;
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

/// Plays `kind` on `stream` until the server closes it.
async fn run(stream: &mut TcpStream, spec: LoadSpec, kind: Kind) {
    let mut buf = vec![0u8; 64 * 1024];
    match kind {
        Kind::Idle => {
            if spec.request_first
                && stream
                    .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: load\r\n\r\n")
                    .await
                    .is_err()
            {
                return;
            }
            // The answer (if asked for), then nothing until the close.
            while let Ok(1..) = stream.read(&mut buf).await {}
        }
        Kind::Slowloris => {
            let head = b"GET / HTTP/1.1\r\nHost: load\r\nX-Slowloris: ";
            let (mut rd, mut wr) = stream.split();
            let dribble = async {
                for b in head.iter().chain(std::iter::repeat(&b'a')) {
                    if wr.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(spec.byte_every).await;
                }
            };
            tokio::select! {
                _ = dribble => {}
                _ = rd.read(&mut buf) => {}
            }
        }
    }
}

/// CPU time (user + system) process `pid` used so far, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / clock_ticks_per_second()
}

/// `getconf CLK_TCK` (the unit of `/proc/<pid>/stat` times).
fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
