//! Follows the stdout and stderr of Docker containers through the engine API (bollard) and feeds
//! every line into the same [`Ingestor`] path as log files: parser → events → counters.
//!
//! **Tasks.** A supervisor task connects to the engine (with backoff), watches the events
//! stream and re-lists the running containers after every (re)connection and every 10 s. Each
//! selected container name gets one follower task that inspects the container, asks the parser
//! where to resume, and streams `logs?follow&stdout&stderr&timestamps&since=..` frames into a
//! **bounded** channel (backpressure: a slow parser stops the socket reads; nothing queues
//! without limit). One parser thread owns all per-container state: it rebuilds lines from
//! frames (per-stream buffers; Docker's 16 KiB partial messages merged back; TTY output),
//! drops lines already counted, and ingests the rest.
//!
//! **Exactly once.** Docker's `since` has whole seconds. The parser remembers, for the newest
//! second it counted (and any older second a half-received line started in), a multiset of
//! (docker timestamp, line hash). A re-attach resumes from that second and drops the replayed
//! lines found in the multiset, so nothing is lost or counted twice across a stream break,
//! `docker restart`, stop + start or an engine restart. A container re-created under the same
//! name (a new id) is read from its beginning.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder, LogsOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures_util::{FutureExt, StreamExt};
use memchr::{memchr, memmem};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::ingest::{EventHistory, Ingestor, SourceStats};
use super::reader::RawLine;
use super::timestamp::{self, NANOS_PER_SECOND, TimestampPrefix};
use crate::config::DockerLogsConfig;
use tokio_util::sync::CancellationToken;

use super::source::{LogRegistry, SourceContext, SourceHandle, StoreLookup};
use crate::domain::{Store, host_of};

/// Marks a line that carried no docker timestamp (never deduplicated).
const NO_TS: i64 = i64::MIN;
/// Frames handed to the parser at once, at most.
const BATCH_BYTES: usize = 256 * 1024;
const BATCH_FRAMES: usize = 4096;
/// How long frames wait for more before they are handed to the parser.
const LINGER: Duration = Duration::from_millis(2);
/// Batches in flight between the follower tasks and the parser.
const CHANNEL_BATCHES: usize = 8;
/// More (timestamp, hash) pairs than this in the resume window are dropped oldest first.
const MAX_WINDOW_ENTRIES: usize = 1 << 20;
/// How often the running containers are listed again (events can be missed across reconnects).
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// Wait at most this long for the first PD poll before attaching (for the store mapping).
const READY_WAIT: Duration = Duration::from_secs(30);
/// Timeout for the response head of every request (not for the followed streams themselves).
const REQUEST_TIMEOUT_SECS: u64 = 30;

/// Docker's default socket.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

// ---------------------------------------------------------------------------------------------
// Pure helpers: name patterns, store mapping.

/// Whether `name` matches `pattern`, where `*` matches any run of characters and `?` one.
/// Without wildcards this is exact equality (Docker's own `name=` filter matches substrings).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Which containers to follow: any name pattern (none given: any name) and every label.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    names: Vec<String>,
    labels: Vec<(String, Option<String>)>,
}

impl Selector {
    /// From `logs.docker.containers` and `logs.docker.labels` (`key=value` or `key`).
    pub fn new(containers: &[String], labels: &[String]) -> Self {
        Selector {
            names: containers.iter().map(|c| c.trim().to_owned()).collect(),
            labels: labels
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => (k.trim().to_owned(), Some(v.to_owned())),
                    None => (l.trim().to_owned(), None),
                })
                .collect(),
        }
    }

    /// Whether the container `name` (without Docker's leading `/`) with `labels` is followed.
    pub fn matches(&self, name: &str, labels: &HashMap<String, String>) -> bool {
        (self.names.is_empty() || self.names.iter().any(|p| glob_match(p, name)))
            && self.labels.iter().all(|(k, v)| {
                labels
                    .get(k)
                    .is_some_and(|have| v.as_ref().is_none_or(|v| v == have))
            })
    }

    /// Patterns without wildcards: containers known by name before they exist.
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .filter(|n| !n.contains(['*', '?']))
            .map(String::as_str)
    }
}

/// Every name and address a container answers to: its name, hostname, network aliases and
/// DNS names, and IP addresses.
pub fn container_addresses(name: &str, info: &ContainerInspectResponse) -> Vec<String> {
    let mut out = vec![name.to_owned()];
    if let Some(h) = info.config.as_ref().and_then(|c| c.hostname.clone()) {
        out.push(h);
    }
    let networks = info
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref());
    for ep in networks.into_iter().flat_map(|n| n.values()) {
        out.extend(ep.aliases.iter().flatten().cloned());
        out.extend(ep.dns_names.iter().flatten().cloned());
        out.extend(ep.ip_address.clone());
        out.extend(ep.global_ipv6_address.clone());
    }
    out.retain(|a| !a.is_empty());
    out.sort();
    out.dedup();
    out
}

/// The PD store a container belongs to: the explicit mapping, else the one store whose
/// `address` or `status_address` host is one of the container's names or addresses (a
/// fully qualified host also matches by its first label); `""` when none or several match.
pub fn map_store(
    name: &str,
    addresses: &[String],
    explicit: &BTreeMap<String, String>,
    stores: &[Store],
) -> String {
    if let Some(s) = explicit.get(name) {
        return s.clone();
    }
    let known = |host: &str| {
        if host.is_empty() {
            return false;
        }
        let first = (host.parse::<std::net::IpAddr>().is_err())
            .then(|| host.split('.').next())
            .flatten();
        addresses.iter().any(|a| {
            a.eq_ignore_ascii_case(host) || first.is_some_and(|f| a.eq_ignore_ascii_case(f))
        })
    };
    let mut ids: Vec<u64> = stores
        .iter()
        .filter(|s| known(host_of(&s.address)) || known(host_of(&s.status_address)))
        .map(|s| s.id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [one] => one.to_string(),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Line assembly.

/// Which stream a frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// Multiplexed stdout (or stdin) frames.
    Stdout,
    /// Multiplexed stderr frames.
    Stderr,
    /// A TTY container's raw output (no stream headers).
    Console,
}

impl StreamKind {
    fn index(self) -> usize {
        self as usize
    }

    /// The kind and payload of a bollard frame.
    pub fn of(frame: &LogOutput) -> (StreamKind, &[u8]) {
        match frame {
            LogOutput::StdOut { message } | LogOutput::StdIn { message } => {
                (StreamKind::Stdout, message)
            }
            LogOutput::StdErr { message } => (StreamKind::Stderr, message),
            LogOutput::Console { message } => (StreamKind::Console, message),
        }
    }
}

/// The line being rebuilt on one stream.
#[derive(Debug)]
struct Partial {
    /// Content so far (for Console: the raw bytes including the timestamp prefix).
    buf: Vec<u8>,
    /// Docker timestamp of the line (its first chunk).
    ts: i64,
    /// A line is in progress.
    open: bool,
    /// Length of an over-long line being skipped.
    too_long: Option<u64>,
}

impl Partial {
    fn new() -> Self {
        Partial {
            buf: Vec::new(),
            ts: NO_TS,
            open: false,
            too_long: None,
        }
    }

    fn append(&mut self, data: &[u8], limit: usize) {
        if let Some(n) = &mut self.too_long {
            *n += data.len() as u64;
        } else if self.buf.len() + data.len() > limit {
            self.too_long = Some((self.buf.len() + data.len()) as u64);
            self.buf.clear();
            if self.buf.capacity() > 64 * 1024 {
                self.buf = Vec::new();
            }
        } else {
            self.buf.extend_from_slice(data);
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
        self.ts = NO_TS;
        self.open = false;
        self.too_long = None;
    }
}

/// Rebuilds a container's log lines from `docker logs --timestamps` frames.
///
/// A multiplexed frame is one Docker message: `<timestamp> <bytes>`, a whole line ending in
/// `\n` or, for lines over 16 KiB, a partial chunk without it; the chunks of one line carry
/// the same timestamp, and each is merged into the line without its prefix. TTY output
/// (`Console`) has no frames: lines are cut at `\n`, and the prefixes Docker put before each
/// 16 KiB chunk appear inside the line; they are removed. Lines longer than the limit are
/// reported as [`RawLine::TooLong`] and never buffered.
#[derive(Debug)]
pub struct LineAssembler {
    streams: [Partial; 3],
    max_line: usize,
}

impl LineAssembler {
    /// An assembler reporting lines over `max_line` bytes as too long.
    pub fn new(max_line: usize) -> Self {
        LineAssembler {
            streams: [Partial::new(), Partial::new(), Partial::new()],
            max_line: max_line.max(1),
        }
    }

    /// Feeds one frame; `emit(docker_ts_nanos, line)` is called for each completed line
    /// (`i64::MIN` when the line had no timestamp prefix).
    pub fn push(
        &mut self,
        kind: StreamKind,
        bytes: &[u8],
        emit: &mut impl FnMut(i64, RawLine<'_>),
    ) {
        let max = self.max_line;
        let p = &mut self.streams[kind.index()];
        if kind == StreamKind::Console {
            // The raw line keeps its prefix until it is complete; allow for the prefix.
            let limit = max + 64;
            let mut rest = bytes;
            while !rest.is_empty() {
                match memchr(b'\n', rest) {
                    Some(i) => {
                        if !p.open {
                            p.open = true;
                        }
                        Self::console_append(p, &rest[..i], limit);
                        Self::finish_console(p, max, emit);
                        rest = &rest[i + 1..];
                    }
                    None => {
                        p.open = true;
                        Self::console_append(p, rest, limit);
                        rest = &[];
                    }
                }
            }
            return;
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            // Every message starts with its timestamp; a continuation chunk repeats it.
            if let Ok(prefix) = timestamp::parse_prefix(rest) {
                if !p.open {
                    p.ts = prefix.nanos;
                }
                rest = &rest[prefix.len..];
            }
            p.open = true;
            match memchr(b'\n', rest) {
                Some(i) => {
                    p.append(&rest[..i], max);
                    Self::finish(p, emit);
                    rest = &rest[i + 1..];
                }
                None => {
                    p.append(rest, max);
                    rest = &[];
                }
            }
        }
    }

    fn console_append(p: &mut Partial, data: &[u8], limit: usize) {
        if p.too_long.is_none() && p.buf.len() + data.len() > limit && p.ts == NO_TS {
            // Keep the line's timestamp before its bytes are dropped.
            let mut head = p.buf.clone();
            head.extend_from_slice(&data[..data.len().min(64)]);
            p.ts = timestamp::parse_prefix(&head).map_or(NO_TS, |prefix| prefix.nanos);
        }
        p.append(data, limit);
    }

    fn finish(p: &mut Partial, emit: &mut impl FnMut(i64, RawLine<'_>)) {
        match p.too_long {
            Some(n) => emit(p.ts, RawLine::TooLong(n)),
            None => emit(p.ts, RawLine::Line(&p.buf)),
        }
        p.reset();
    }

    fn finish_console(p: &mut Partial, max: usize, emit: &mut impl FnMut(i64, RawLine<'_>)) {
        if let Some(n) = p.too_long {
            // Approximate: the prefix is counted in the length.
            emit(p.ts, RawLine::TooLong(n));
            p.reset();
            return;
        }
        let TimestampPrefix { nanos: ts, len: n } =
            timestamp::parse_prefix(&p.buf).unwrap_or(TimestampPrefix {
                nanos: NO_TS,
                len: 0,
            });
        let content = &p.buf[n..];
        let prefix = &p.buf[..n];
        let line: std::borrow::Cow<'_, [u8]> = if n > 0 && memmem::find(content, prefix).is_some() {
            let mut out = Vec::with_capacity(content.len());
            let mut last = 0;
            for at in memmem::find_iter(content, prefix) {
                if at >= last {
                    out.extend_from_slice(&content[last..at]);
                    last = at + n;
                }
            }
            out.extend_from_slice(&content[last..]);
            out.into()
        } else {
            content.into()
        };
        if line.len() > max {
            emit(ts, RawLine::TooLong(line.len() as u64));
        } else {
            emit(ts, RawLine::Line(&line));
        }
        p.reset();
    }

    /// Timestamp of the oldest line still in progress, if any.
    pub fn oldest_open(&self) -> Option<i64> {
        self.streams
            .iter()
            .filter(|p| p.open)
            .filter_map(|p| {
                if p.ts != NO_TS {
                    Some(p.ts)
                } else {
                    timestamp::parse_prefix(&p.buf)
                        .ok()
                        .map(|prefix| prefix.nanos)
                }
            })
            .min()
    }

    /// Drops every line in progress (before a re-attach replays them).
    pub fn reset(&mut self) {
        for p in &mut self.streams {
            p.reset();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Exactly-once resumption.

/// A hasher for keys that already are hashes.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type KeyMap = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

/// What was counted recently, to drop it when a re-attach replays it.
///
/// `window` holds the keys of the lines counted (a hash of docker timestamp and content; 8
/// bytes each, in a plain list per second) for every second a re-attach may resume from. At a
/// re-attach the keys of the replayed seconds become a budget (a multiset): a replayed line
/// whose key is in the budget (up to its count) is dropped; anything else is new.
#[derive(Debug, Default)]
pub struct Dedupe {
    max_ts: Option<i64>,
    window: VecDeque<(i64, Vec<u64>)>,
    entries: usize,
    budget: KeyMap,
    replay_upto: i64,
    overflowed: bool,
}

impl Dedupe {
    /// True when the line (docker timestamp, key) is to be counted; false for a replay of a
    /// line already counted.
    pub fn admit(&mut self, ts: i64, key: u64) -> bool {
        if ts == NO_TS {
            return true;
        }
        if ts <= self.replay_upto
            && let Some(c) = self.budget.get_mut(&key)
            && *c > 0
        {
            *c -= 1;
            return false;
        }
        if !self.budget.is_empty()
            && ts.div_euclid(NANOS_PER_SECOND) > self.replay_upto.div_euclid(NANOS_PER_SECOND) + 1
        {
            // Well past the replayed range: nothing left to drop.
            self.budget = KeyMap::default();
        }
        let sec = ts.div_euclid(NANOS_PER_SECOND);
        let pos = self.window.iter().rposition(|(s, _)| *s <= sec);
        let bucket = match pos {
            Some(i) if self.window[i].0 == sec => &mut self.window[i].1,
            Some(i) => {
                self.window.insert(i + 1, (sec, Vec::new()));
                &mut self.window[i + 1].1
            }
            None => {
                self.window.push_front((sec, Vec::new()));
                &mut self.window[0].1
            }
        };
        bucket.push(key);
        self.entries += 1;
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        true
    }

    /// Forgets seconds before `keep_from` (and the oldest ones past the size limit).
    pub fn prune(&mut self, keep_from: i64) {
        while let Some((s, m)) = self.window.front() {
            let over = self.entries > MAX_WINDOW_ENTRIES && self.window.len() > 1;
            if *s >= keep_from && !over {
                break;
            }
            if *s >= keep_from && !self.overflowed {
                self.overflowed = true;
                crate::log::warn(
                    "docker source: over a million lines in one second; a re-attach in that second may count some lines twice",
                );
            }
            self.entries -= m.len();
            self.window.pop_front();
        }
    }

    /// The second to resume from: the newest counted one, or the one a line still in
    /// progress started in, whichever is older; `None` if nothing was counted.
    pub fn resume_second(&self, open_line: Option<i64>) -> Option<i64> {
        let newest = self.max_ts.map(|t| t.div_euclid(NANOS_PER_SECOND));
        let open = open_line.map(|t| t.div_euclid(NANOS_PER_SECOND));
        match (newest, open) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts a replay from second `since`: lines counted in it or later are dropped once.
    pub fn begin_replay(&mut self, since: i64) {
        self.budget.clear();
        for (s, keys) in &self.window {
            if *s >= since {
                for k in keys {
                    *self.budget.entry(*k).or_insert(0) += 1;
                }
            }
        }
        self.replay_upto = self.max_ts.unwrap_or(NO_TS);
    }

    /// Newest docker timestamp counted.
    pub fn newest(&self) -> Option<i64> {
        self.max_ts
    }

    /// Keys held (for tests and memory checks).
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

// ---------------------------------------------------------------------------------------------
// The parser thread.

enum Msg {
    /// Make a source known before its container is seen (up = 0).
    Register { name: Arc<str>, store: String },
    /// A follower is about to (re)attach to container `id`: where to resume?
    Attach {
        name: Arc<str>,
        id: String,
        store: String,
        reply: oneshot::Sender<(i32, Arc<SourceStats>)>,
    },
    /// Frames of the current attachment of `name`.
    Frames {
        name: Arc<str>,
        frames: Vec<LogOutput>,
    },
}

struct Tracked {
    id: String,
    stats: Arc<SourceStats>,
    ing: Ingestor,
    asm: LineAssembler,
    dedupe: Dedupe,
}

struct Parser {
    tracked: HashMap<Arc<str>, Tracked>,
    registry: Arc<LogRegistry>,
    history: Arc<EventHistory>,
    max_line: usize,
    /// Lines the engine received before this (docker time, ns) are not counted.
    cutoff: i64,
    hasher: RandomState,
}

impl Parser {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Msg::Register { name, store } => {
                    self.stats_for(&name, store);
                }
                Msg::Attach {
                    name,
                    id,
                    store,
                    reply,
                } => {
                    let r = self.attach(&name, id, store);
                    let _ = reply.send(r);
                }
                Msg::Frames { name, frames } => self.frames(&name, &frames),
            }
        }
        for t in self.tracked.values_mut() {
            t.ing.flush();
        }
    }

    fn stats_for(&mut self, name: &Arc<str>, store: String) -> Arc<SourceStats> {
        let new_stats = |up: bool| {
            let s = Arc::new(SourceStats::new(format!("docker:{name}"), store.clone()));
            s.set_up(up);
            s
        };
        match self.tracked.get_mut(name) {
            Some(t) if t.stats.store == store => t.stats.clone(),
            Some(t) => {
                // The store mapping changed: the series move to the new store label.
                t.ing.flush();
                let s = new_stats(t.stats.is_up());
                self.registry.upsert(s.clone());
                t.ing = Ingestor::new(s.clone(), Some(self.history.clone()));
                t.stats = s.clone();
                s
            }
            None => {
                let s = new_stats(false);
                self.registry.upsert(s.clone());
                self.tracked.insert(
                    name.clone(),
                    Tracked {
                        id: String::new(),
                        stats: s.clone(),
                        ing: Ingestor::new(s.clone(), Some(self.history.clone())),
                        asm: LineAssembler::new(self.max_line),
                        dedupe: Dedupe::default(),
                    },
                );
                s
            }
        }
    }

    fn attach(&mut self, name: &Arc<str>, id: String, store: String) -> (i32, Arc<SourceStats>) {
        let stats = self.stats_for(name, store);
        let cutoff = self.cutoff;
        let t = self.tracked.get_mut(name).expect("tracked by stats_for");
        if t.id != id {
            // A container never seen, or a new one under the same name: from its beginning.
            t.id = id;
            t.asm.reset();
            t.dedupe = Dedupe::default();
        }
        let since = t
            .dedupe
            .resume_second(t.asm.oldest_open())
            .unwrap_or(if cutoff == i64::MIN {
                0
            } else {
                cutoff.div_euclid(NANOS_PER_SECOND)
            });
        t.dedupe.begin_replay(since);
        // The replay delivers lines in progress again, from their start.
        t.asm.reset();
        (since.clamp(0, i64::from(i32::MAX)) as i32, stats)
    }

    fn frames(&mut self, name: &str, frames: &[LogOutput]) {
        let Some(t) = self.tracked.get_mut(name) else {
            return;
        };
        let hasher = &self.hasher;
        let cutoff = self.cutoff;
        let Tracked {
            ing, asm, dedupe, ..
        } = t;
        let mut emit = |ts: i64, raw: RawLine<'_>| {
            if ts != NO_TS && ts < cutoff {
                return;
            }
            let key = match raw {
                RawLine::Line(b) => hasher.hash_one((ts, b)),
                RawLine::TooLong(n) => hasher.hash_one((ts, n, "too long")),
            };
            if dedupe.admit(ts, key) {
                ing.ingest(raw);
            }
        };
        for f in frames {
            let (kind, bytes) = StreamKind::of(f);
            asm.push(kind, bytes, &mut emit);
        }
        ing.flush();
        if let Some(newest) = dedupe.newest() {
            let keep = asm.oldest_open().map_or(newest, |o| o.min(newest));
            dedupe.prune(keep.div_euclid(NANOS_PER_SECOND));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Engine connection, supervisor and followers.

/// Connects to `host` (`unix://`, a socket path, `tcp://` or `http://`); unset: `DOCKER_HOST`,
/// else the local socket. The API version is negotiated separately.
pub fn connect(host: Option<&str>) -> Result<Docker, DockerError> {
    let env = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
    let host = host.map(str::to_owned).or(env);
    let host = host.as_deref().unwrap_or(DEFAULT_HOST).trim();
    if host.starts_with('/') || host.starts_with("unix://") {
        Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else {
        Err(DockerError::UnsupportedURISchemeError {
            uri: host.to_owned(),
        })
    }
}

fn unix_secs() -> i64 {
    crate::clock::unix_now_nanos().div_euclid(NANOS_PER_SECOND)
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Exponential backoff between `min` and `max`.
struct Backoff {
    min: Duration,
    max: Duration,
    cur: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max, cur: min }
    }
    fn next(&mut self) -> Duration {
        let d = self.cur;
        self.cur = (self.cur * 2).min(self.max);
        d
    }
    fn reset(&mut self) {
        self.cur = self.min;
    }
}

/// What a follower is told to follow.
#[derive(Clone, Debug, Default)]
struct Target {
    id: Option<String>,
    generation: u64,
}

struct Ctx {
    cfg: DockerLogsConfig,
    selector: Selector,
    stores: StoreLookup,
    tx: mpsc::Sender<Msg>,
    engine: watch::Receiver<Option<Docker>>,
}

impl Ctx {
    async fn attach(
        &self,
        name: &Arc<str>,
        id: &str,
        store: String,
    ) -> Option<(i32, Arc<SourceStats>)> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Attach {
                name: name.clone(),
                id: id.to_owned(),
                store,
                reply,
            })
            .await
            .ok()?;
        rx.await.ok()
    }

    fn store_for(&self, name: &str, addresses: &[String]) -> String {
        map_store(name, addresses, &self.cfg.stores, &self.stores.stores())
    }
}

enum Outcome {
    /// The follow stream of a running container ended: look again at once.
    Reattach,
    /// The container is not running and its log was read to the end.
    Stopped,
    /// The container no longer exists.
    Gone,
    /// The engine connection changed (lost, or replaced after a reconnect).
    EngineChanged,
    /// The target changed to another container.
    Retarget,
    /// A request failed; retry after a backoff.
    Failed(String),
    /// Nothing to follow (no engine or no container yet).
    Idle,
    /// The source is shutting down.
    Shutdown,
}

/// Frames collected for one hand-over to the parser.
#[derive(Default)]
struct Batch {
    frames: Vec<LogOutput>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, f: LogOutput) {
        self.bytes += f.as_ref().len();
        self.frames.push(f);
    }

    fn full(&self) -> bool {
        self.bytes >= BATCH_BYTES || self.frames.len() >= BATCH_FRAMES
    }

    fn take(&mut self) -> Vec<LogOutput> {
        self.bytes = 0;
        std::mem::take(&mut self.frames)
    }
}

struct Follower {
    ctx: Arc<Ctx>,
    name: Arc<str>,
    target: watch::Receiver<Target>,
    engine: watch::Receiver<Option<Docker>>,
    attached: Arc<AtomicBool>,
    stats: Option<Arc<SourceStats>>,
}

impl Follower {
    async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut last_error = String::new();
        loop {
            let docker = self.engine.borrow_and_update().clone();
            let id = self.target.borrow_and_update().id.clone();
            let started = Instant::now();
            let outcome = match (docker, id) {
                (Some(d), Some(id)) => AssertUnwindSafe(self.attach_once(&d, &id))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        Outcome::Failed("panic while reading the log stream".into())
                    }),
                _ => Outcome::Idle,
            };
            self.attached.store(false, Ordering::Relaxed);
            if let Some(s) = &self.stats {
                s.set_up(false);
            }
            match outcome {
                Outcome::Shutdown => return,
                Outcome::EngineChanged | Outcome::Retarget => continue,
                Outcome::Reattach => {
                    if started.elapsed() < Duration::from_secs(1) {
                        tokio::time::sleep(backoff.next()).await;
                    } else {
                        backoff.reset();
                    }
                    continue;
                }
                Outcome::Failed(e) => {
                    if e != last_error {
                        crate::log::warn(&format!("log source docker:{}: {e}", self.name));
                        last_error = e;
                    }
                    let pause = backoff.next();
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        r = self.engine.changed() => if r.is_err() { return },
                        r = self.target.changed() => if r.is_err() { return },
                    }
                    continue;
                }
                Outcome::Stopped | Outcome::Gone | Outcome::Idle => {
                    backoff.reset();
                    last_error.clear();
                }
            }
            tokio::select! {
                r = self.engine.changed() => if r.is_err() { return },
                r = self.target.changed() => if r.is_err() { return },
            }
        }
    }

    async fn attach_once(&mut self, d: &Docker, id: &str) -> Outcome {
        let info = tokio::select! {
            r = d.inspect_container(id, None::<InspectContainerOptions>) => r,
            r = self.engine.changed() => return if r.is_err() { Outcome::Shutdown } else { Outcome::EngineChanged },
        };
        let info = match info {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => return Outcome::Gone,
            Err(e) => return Outcome::Failed(format!("inspect: {e}")),
        };
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let store = self
            .ctx
            .store_for(&self.name, &container_addresses(&self.name, &info));
        let Some((since, stats)) = self.ctx.attach(&self.name, id, store).await else {
            return Outcome::Shutdown;
        };
        self.stats = Some(stats.clone());
        let opts = LogsOptionsBuilder::default()
            .follow(running)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(since)
            .build();
        let mut stream = std::pin::pin!(d.logs(id, Some(opts)));
        if running {
            stats.set_up(true);
            self.attached.store(true, Ordering::Relaxed);
        }
        // Frames are collected for up to LINGER (or a full batch) before they go to the
        // parser: under a flood each socket read holds a frame or two, and one hand-over per
        // frame would cost more than the parsing.
        let mut batch = Batch::default();
        let mut flush_at: Option<tokio::time::Instant> = None;
        let end = loop {
            if batch.full() {
                if !self.hand_over(&mut batch).await {
                    return Outcome::Shutdown;
                }
                flush_at = None;
            }
            let linger = async {
                match flush_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                r = self.engine.changed() => {
                    // What was read is real: count it; the re-attach drops its replay.
                    if r.is_err() || !self.hand_over(&mut batch).await {
                        return Outcome::Shutdown;
                    }
                    return Outcome::EngineChanged;
                }
                r = self.target.changed() => {
                    if r.is_err() || !self.hand_over(&mut batch).await {
                        return Outcome::Shutdown;
                    }
                    if self.target.borrow_and_update().id.as_deref() != Some(id) {
                        return Outcome::Retarget;
                    }
                }
                () = linger => {
                    if !self.hand_over(&mut batch).await {
                        return Outcome::Shutdown;
                    }
                    flush_at = None;
                }
                item = stream.next() => match item {
                    Some(Ok(f)) => {
                        batch.push(f);
                        flush_at.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
                    }
                    None => break Ok(()),
                    Some(Err(e)) => break Err(e),
                },
            }
        };
        if !self.hand_over(&mut batch).await {
            return Outcome::Shutdown;
        }
        match end {
            Ok(()) if running => Outcome::Reattach,
            Ok(()) => Outcome::Stopped,
            Err(e) if is_not_found(&e) => Outcome::Gone,
            Err(e) => Outcome::Failed(format!("logs: {e}")),
        }
    }

    /// Sends the collected frames to the parser (waiting while its queue is full); false when
    /// the parser is gone.
    async fn hand_over(&self, batch: &mut Batch) -> bool {
        if batch.frames.is_empty() {
            return true;
        }
        let msg = Msg::Frames {
            name: self.name.clone(),
            frames: batch.take(),
        };
        self.ctx.tx.send(msg).await.is_ok()
    }
}

struct FollowerHandle {
    target: watch::Sender<Target>,
    attached: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

struct Supervisor {
    ctx: Arc<Ctx>,
    engine_tx: watch::Sender<Option<Docker>>,
    stop: CancellationToken,
    followers: HashMap<String, FollowerHandle>,
    /// Time (Unix seconds) of the newest event seen: the events stream resumes there.
    event_since: Option<i64>,
}

impl Supervisor {
    async fn run(mut self) {
        let mut stores = self.ctx.stores.clone();
        stores.wait_first(READY_WAIT, &self.stop).await;
        let exact: Vec<String> = self.ctx.selector.exact_names().map(str::to_owned).collect();
        for name in exact {
            let store = self.ctx.store_for(&name, std::slice::from_ref(&name));
            let _ = self
                .ctx
                .tx
                .send(Msg::Register {
                    name: name.as_str().into(),
                    store,
                })
                .await;
        }
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let mut last_error = String::new();
        while !self.stop.is_cancelled() {
            let result = self.connected(&mut backoff).await;
            if self.engine_tx.borrow().is_some() {
                // It was connected: report the next failure even if it is the same as before.
                last_error.clear();
            }
            self.engine_tx.send_replace(None);
            match result {
                Ok(()) => break,
                Err(e) => {
                    if e != last_error {
                        crate::log::warn(&format!("docker source: {e}; retrying"));
                        last_error = e;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next()) => {}
                _ = self.stop.cancelled() => break,
            }
        }
        self.engine_tx.send_replace(None);
        for (_, f) in self.followers.drain() {
            f.task.abort();
            let _ = f.task.await;
        }
    }

    /// One engine connection: until the stop signal (`Ok`) or a failure (`Err`).
    async fn connected(&mut self, backoff: &mut Backoff) -> Result<(), String> {
        let docker = connect(self.ctx.cfg.host.as_deref()).map_err(|e| format!("connect: {e}"))?;
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|_| "engine did not answer /version within 10s".to_owned())?
            .map_err(|e| format!("engine unreachable: {e}"))?;
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("event", vec!["start", "rename"]),
        ]);
        // The stream is requested only when first polled, after the listing below: start it
        // a little in the past (or at the last event seen) so no start in between is missed.
        let since = self
            .event_since
            .unwrap_or_else(|| unix_secs().saturating_sub(2))
            .to_string();
        let opts = EventsOptionsBuilder::default()
            .filters(&filters)
            .since(&since)
            .build();
        let mut events = std::pin::pin!(docker.events(Some(opts)));
        self.engine_tx.send_replace(Some(docker.clone()));
        self.resync(&docker).await?;
        let v = docker.client_version();
        crate::log::info(&format!(
            "docker source: connected (API {}.{}); following {} containers",
            v.major_version,
            v.minor_version,
            self.followers.len()
        ));
        backoff.reset();
        let mut tick = tokio::time::interval(RESYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        if let Some(t) = ev.time {
                            self.event_since = Some(self.event_since.map_or(t, |s| s.max(t)));
                        }
                        let id = ev.actor.and_then(|a| a.id);
                        match (ev.action.as_deref(), id) {
                            (Some("start"), Some(id)) => self.started(&docker, &id).await,
                            _ => self.resync(&docker).await?,
                        }
                    }
                    Some(Err(e)) => return Err(format!("events stream: {e}")),
                    None => return Err("events stream ended".into()),
                },
                _ = tick.tick() => {
                    tokio::time::timeout(Duration::from_secs(10), docker.ping())
                        .await
                        .map_err(|_| "engine did not answer a ping within 10s".to_owned())?
                        .map_err(|e| format!("ping: {e}"))?;
                    self.resync(&docker).await?;
                }
            }
        }
    }

    /// A container started: follow it if it is selected.
    async fn started(&mut self, docker: &Docker, id: &str) {
        let Ok(info) = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        else {
            return;
        };
        let name = info
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned();
        let labels = info
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        if !name.is_empty() && self.ctx.selector.matches(&name, &labels) {
            self.retarget(&name, id, true);
        }
    }

    /// Lists the running containers and makes sure every selected one is followed.
    async fn resync(&mut self, docker: &Docker) -> Result<(), String> {
        let opts = ListContainersOptionsBuilder::default().all(false).build();
        let list = docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| format!("list containers: {e}"))?;
        for c in list {
            let (Some(id), Some(name)) = (c.id, c.names.as_ref().and_then(|n| n.first())) else {
                continue;
            };
            let name = name.trim_start_matches('/');
            if self
                .ctx
                .selector
                .matches(name, c.labels.as_ref().unwrap_or(&HashMap::new()))
            {
                self.retarget(name, &id, false);
            }
        }
        Ok(())
    }

    /// Points the follower of `name` at container `id`; with `force`, or when it is not
    /// attached, it looks at the container again.
    fn retarget(&mut self, name: &str, id: &str, force: bool) {
        let exists = self
            .followers
            .get(name)
            .is_some_and(|f| !f.task.is_finished());
        if !exists {
            let (target, rx) = watch::channel(Target::default());
            let attached = Arc::new(AtomicBool::new(false));
            let follower = Follower {
                ctx: self.ctx.clone(),
                name: name.into(),
                target: rx,
                engine: self.ctx.engine.clone(),
                attached: attached.clone(),
                stats: None,
            };
            let task = tokio::spawn(follower.run());
            self.followers.insert(
                name.to_owned(),
                FollowerHandle {
                    target,
                    attached,
                    task,
                },
            );
        }
        let f = &self.followers[name];
        let same = f.target.borrow().id.as_deref() == Some(id);
        if force || !same || !f.attached.load(Ordering::Relaxed) {
            f.target.send_modify(|t| {
                t.id = Some(id.to_owned());
                t.generation += 1;
            });
        }
    }
}

/// The Docker log source; see the module documentation.
#[derive(Clone, Debug)]
pub struct DockerSource {
    cfg: DockerLogsConfig,
}

impl DockerSource {
    /// A source following the containers `cfg` selects.
    pub fn new(cfg: &DockerLogsConfig) -> Self {
        DockerSource { cfg: cfg.clone() }
    }

    /// Starts following; the containers' counters appear in the registry as
    /// `docker:<container name>`. Must be called inside a Tokio runtime. At cancellation every
    /// task stops, then the parser finishes what it received and publishes its counts.
    pub fn spawn(self, ctx: SourceContext) -> SourceHandle {
        let cfg = self.cfg;
        let cutoff = if cfg.from_start {
            i64::MIN
        } else {
            crate::clock::unix_now_nanos()
        };
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let parser = Parser {
            tracked: HashMap::new(),
            registry: ctx.registry.clone(),
            history: ctx.history.clone(),
            max_line: ctx.max_line_bytes,
            cutoff,
            hasher: RandomState::new(),
        };
        let (engine_tx, engine_rx) = watch::channel(None);
        let shared = Arc::new(Ctx {
            selector: Selector::new(&cfg.containers, &cfg.labels),
            cfg,
            stores: ctx.stores.clone(),
            tx,
            engine: engine_rx,
        });
        let supervisor = Supervisor {
            ctx: shared,
            engine_tx,
            stop: ctx.cancel.clone(),
            followers: HashMap::new(),
            event_since: None,
        };
        SourceHandle::Task(tokio::spawn(async move {
            let parser = match std::thread::Builder::new()
                .name("docker-logs".into())
                .spawn(move || parser.run(rx))
            {
                Ok(p) => p,
                Err(e) => {
                    crate::log::warn(&format!("docker source: cannot start its thread: {e}"));
                    return;
                }
            };
            let mut supervisor = tokio::spawn(supervisor.run());
            tokio::select! {
                _ = &mut supervisor => {}
                _ = ctx.cancel.cancelled() => {
                    if tokio::time::timeout(Duration::from_secs(5), &mut supervisor)
                        .await
                        .is_err()
                    {
                        // Only reached if the supervisor ignores cancellation.
                        supervisor.abort();
                    }
                }
            }
            let join = tokio::task::spawn_blocking(move || parser.join());
            let _ = tokio::time::timeout(Duration::from_secs(5), join).await;
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::logs::timestamp::tests::nanos as ts;

    #[test]
    fn globs_are_exact_unless_wildcards() {
        assert!(glob_match("tikv0", "tikv0"));
        assert!(!glob_match("tikv", "tikv0"));
        assert!(!glob_match("tikv", "my-tikv"));
        assert!(glob_match("tikv-*", "tikv-0"));
        assert!(glob_match("tikv-*", "tikv-"));
        assert!(!glob_match("tikv-*", "pd-tikv-0"));
        assert!(glob_match("*tikv*", "pd-tikv-0"));
        assert!(glob_match("tikv?", "tikv1"));
        assert!(!glob_match("tikv?", "tikv10"));
        assert!(glob_match("a*b*c", "aXXbYYbZc"));
        assert!(!glob_match("a*b*c", "aXXbYYbZ"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn selector_combines_names_and_labels() {
        let labels: HashMap<String, String> = [
            ("com.docker.compose.service".to_owned(), "tikv".to_owned()),
            ("tier".to_owned(), "db".to_owned()),
        ]
        .into();
        let s = Selector::new(
            &[],
            &["com.docker.compose.service=tikv".into(), "tier".into()],
        );
        assert!(s.matches("anything", &labels));
        assert!(!s.matches("anything", &HashMap::new()));
        let s = Selector::new(&["pd-*".into(), "tikv0".into()], &["tier=db".into()]);
        assert!(s.matches("tikv0", &labels));
        assert!(!s.matches("tikv1", &labels));
        assert!(!s.matches("pd-0", &HashMap::new()));
        assert_eq!(s.exact_names().collect::<Vec<_>>(), ["tikv0"]);
    }

    fn store(id: u64, address: &str, status: &str) -> Store {
        Store {
            address: address.into(),
            status_address: status.into(),
            ..Store::new(id, crate::domain::StoreState::Up)
        }
    }

    #[test]
    fn containers_map_to_stores_by_host() {
        assert_eq!(host_of("tikv-1:20160"), "tikv-1");
        assert_eq!(host_of("http://[::1]:20180/x"), "::1");
        assert_eq!(host_of("10.0.0.5:20160"), "10.0.0.5");
        assert_eq!(host_of("tikv-1"), "tikv-1");
        let stores = [
            store(1, "tikv0:20160", "tikv0:20180"),
            store(2, "172.18.0.7:20160", "172.18.0.7:20180"),
            store(4, "tikv-2.tikv-peer.ns.svc:20160", ""),
            store(5, "127.0.0.1:20160", ""),
            store(6, "127.0.0.1:20161", ""),
        ];
        let none = BTreeMap::new();
        let addrs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(map_store("tikv0", &addrs(&["tikv0"]), &none, &stores), "1");
        assert_eq!(
            map_store("c", &addrs(&["c", "172.18.0.7"]), &none, &stores),
            "2"
        );
        assert_eq!(
            map_store("tikv-2", &addrs(&["tikv-2"]), &none, &stores),
            "4"
        );
        // Several stores behind one address: ambiguous, so unmapped.
        assert_eq!(map_store("x", &addrs(&["127.0.0.1"]), &none, &stores), "");
        assert_eq!(map_store("y", &addrs(&["y"]), &none, &stores), "");
        let explicit = BTreeMap::from([("y".to_owned(), "9".to_owned())]);
        assert_eq!(map_store("y", &addrs(&["y"]), &explicit, &stores), "9");
    }

    fn frame(kind: StreamKind, s: &[u8]) -> (StreamKind, Vec<u8>) {
        (kind, s.to_vec())
    }

    fn assemble(frames: &[(StreamKind, Vec<u8>)], max: usize) -> Vec<(i64, Result<String, u64>)> {
        let mut a = LineAssembler::new(max);
        let mut out = Vec::new();
        for (k, b) in frames {
            a.push(*k, b, &mut |ts, raw| {
                out.push((
                    ts,
                    match raw {
                        RawLine::Line(l) => Ok(String::from_utf8_lossy(l).into_owned()),
                        RawLine::TooLong(n) => Err(n),
                    },
                ))
            });
        }
        out
    }

    const T1: &str = "2026-11-22T03:17:01.703711218Z ";
    const T2: &str = "2026-11-22T03:17:01.704139840Z ";

    #[test]
    fn partial_messages_merge_into_one_line_per_stream() {
        use StreamKind::*;
        let a = "a".repeat(16384);
        let b = "b".repeat(16384);
        let frames = [
            frame(Stderr, format!("{T1}{a}").as_bytes()),
            frame(Stdout, format!("{T2}out\n").as_bytes()),
            frame(Stderr, format!("{T1}{b}").as_bytes()),
            frame(Stderr, format!("{T1}end\n").as_bytes()),
            frame(Stdout, format!("{T2}x\n{T2}y\n").as_bytes()),
        ];
        let got = assemble(&frames, 1 << 20);
        let t1 = ts(T1.trim());
        let t2 = ts(T2.trim());
        assert_eq!(
            got,
            vec![
                (t2, Ok("out".into())),
                (t1, Ok(format!("{a}{b}end"))),
                (t2, Ok("x".into())),
                (t2, Ok("y".into())),
            ]
        );
        // Over the limit: reported with its length, never buffered.
        let got = assemble(&frames, 20_000);
        assert_eq!(got[1], (t1, Err(16384 * 2 + 3)));
    }

    #[test]
    fn tty_output_loses_the_repeated_prefixes() {
        use StreamKind::*;
        let a = "a".repeat(16384);
        let line = format!("{T1}{a}{T1}{a}{T1}tail\r\n{T2}next\r\n");
        let t1 = ts(T1.trim());
        let t2 = ts(T2.trim());
        // Whole lines (unix socket) or arbitrary pieces (TCP) give the same result.
        for piece in [line.len(), 7, 16_000] {
            let frames: Vec<_> = line
                .as_bytes()
                .chunks(piece)
                .map(|c| frame(Console, c))
                .collect();
            let got = assemble(&frames, 1 << 20);
            assert_eq!(
                got,
                vec![(t1, Ok(format!("{a}{a}tail\r"))), (t2, Ok("next\r".into()))],
                "piece {piece}"
            );
        }
        let got = assemble(&[frame(Console, line.as_bytes())], 1000);
        assert_eq!(got[0].0, t1);
        assert!(got[0].1.is_err());
        assert_eq!(got[1], (t2, Ok("next\r".into())));
    }

    fn parser(cutoff: i64) -> (Parser, Arc<LogRegistry>) {
        let shared = Arc::new(LogRegistry::new());
        let p = Parser {
            tracked: HashMap::new(),
            registry: shared.clone(),
            history: Arc::new(EventHistory::new(100)),
            max_line: 1 << 20,
            cutoff,
            hasher: RandomState::new(),
        };
        (p, shared)
    }

    fn leader(at: &str, region: u64) -> LogOutput {
        LogOutput::StdErr {
            message: format!(
                "2026-11-22T03:17:{at}Z [2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [region_id={region}]\n"
            )
            .into(),
        }
    }

    #[test]
    fn parser_resumes_without_loss_or_double_count() {
        let (mut p, shared) = parser(i64::MIN);
        let name: Arc<str> = "tikv0".into();
        let (since, stats) = p.attach(&name, "id1".into(), String::new());
        assert_eq!(since, 0);
        let long_start = LogOutput::StdOut {
            message: format!(
                "2026-11-22T03:17:10.900000000Z [2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [region_id=9] [x={}",
                "y".repeat(16_000)
            )
            .into(),
        };
        let long_end = LogOutput::StdOut {
            message: "2026-11-22T03:17:10.900000000Z ]\n".into(),
        };
        // Two lines in second :10, one in :11, and a long stdout line started in :10.
        p.frames(
            "tikv0",
            &[
                leader("10.100000000", 1),
                leader("10.500000000", 2),
                long_start.clone(),
                leader("11.200000000", 3),
            ],
        );
        let lines = |s: &SourceStats| s.snapshot().lines();
        assert_eq!(lines(&stats), 3);
        // Re-attach: resume from the second the unfinished line started in; the replay
        // repeats what was counted (dropped), the whole long line and then new lines.
        let (since, _) = p.attach(&name, "id1".into(), String::new());
        assert_eq!(
            i64::from(since),
            ts("2026-11-22T03:17:10Z") / NANOS_PER_SECOND
        );
        p.frames(
            "tikv0",
            &[
                leader("10.100000000", 1),
                leader("10.500000000", 2),
                long_start,
                leader("11.200000000", 3),
                long_end,
                leader("12.000000000", 4),
            ],
        );
        let snap = stats.snapshot();
        assert_eq!(snap.lines(), 5);
        assert_eq!(
            snap.events[crate::logs::events::EventKind::BecameLeader.index()],
            5
        );
        // A new container under the same name starts over and counts everything.
        let (since, _) = p.attach(&name, "id2".into(), String::new());
        assert_eq!(since, 0);
        p.frames("tikv0", &[leader("12.000000000", 4)]);
        assert_eq!(lines(&stats), 6);
        // A new store mapping replaces the source (same label, once) in the exported list.
        let (_, moved) = p.attach(&name, "id2".into(), "7".into());
        let list = shared.list();
        assert_eq!(list.len(), 1);
        assert!(Arc::ptr_eq(&list[0], &moved));
        assert_eq!(
            (moved.source.as_str(), moved.store.as_str()),
            ("docker:tikv0", "7")
        );
    }

    #[test]
    fn lines_before_the_cutoff_are_not_counted() {
        let (mut p, _) = parser(ts("2026-11-22T03:17:10.300000000Z"));
        let name: Arc<str> = "c".into();
        let (since, stats) = p.attach(&name, "id".into(), String::new());
        assert_eq!(
            i64::from(since),
            ts("2026-11-22T03:17:10Z") / NANOS_PER_SECOND
        );
        p.frames("c", &[leader("10.100000000", 1), leader("10.500000000", 2)]);
        assert_eq!(stats.snapshot().lines(), 1);
    }

    #[test]
    fn a_replay_drops_exactly_what_was_counted() {
        let mut d = Dedupe::default();
        let s = 1_000 * NANOS_PER_SECOND;
        // Two identical lines (same nanosecond, same content) and others in two seconds.
        let counted = [(s - 5, 1), (s + 1, 2), (s + 1, 2), (s + 7, 3)];
        for (t, k) in counted {
            assert!(d.admit(t, k));
        }
        assert_eq!(d.resume_second(None), Some(1_000));
        assert_eq!(d.resume_second(Some(s - 5)), Some(999));
        d.prune(1_000);
        assert_eq!(d.len(), 3);
        d.begin_replay(1_000);
        // The replay repeats second 1000, then goes on with new lines.
        assert!(!d.admit(s + 1, 2));
        assert!(!d.admit(s + 1, 2));
        assert!(
            d.admit(s + 3, 9),
            "unseen line in the replayed second is new"
        );
        assert!(!d.admit(s + 7, 3));
        assert!(
            d.admit(s + 8, 3),
            "after the replayed range nothing is dropped"
        );
        assert!(d.admit(s + 1, 2), "a third copy was never counted");
        // A second re-attach replays the same second again, now with everything counted.
        d.begin_replay(1_000);
        for (t, k) in [
            (s + 1, 2),
            (s + 1, 2),
            (s + 1, 2),
            (s + 3, 9),
            (s + 7, 3),
            (s + 8, 3),
        ] {
            assert!(!d.admit(t, k), "{t} {k}");
        }
        assert!(d.admit(s + NANOS_PER_SECOND, 1));
        d.prune(1_001);
        assert_eq!(d.len(), 1);
    }
}
