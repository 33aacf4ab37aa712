//! The one event path every log source feeds: raw lines → parser → classifier → per-source
//! counters (lines by level, malformed lines, events by kind) and a bounded event history.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::events::{Classifier, EventKind, LeadershipEvent};
use super::file::GapReason;
use super::parse::{Level, parse_line};
use super::reader::RawLine;

/// Counters of one log source, shared lock-free between its reader and the exposition.
#[derive(Debug)]
pub struct SourceStats {
    /// Source label (`file:<name>`, later `docker:<name>`).
    pub source: String,
    /// Store label (PD store id) or empty when unknown.
    pub store: String,
    lines_by_level: [AtomicU64; Level::ALL.len()],
    malformed: AtomicU64,
    events: [AtomicU64; EventKind::ALL.len()],
    /// Time of the newest line that carried one, in ms since the epoch; `i64::MIN` if none yet.
    last_line_millis: AtomicI64,
    /// Whether the source can currently be read (file open, container attached).
    up: AtomicBool,
    /// File sources only: 0 not reported, 1 the file is at its path, 2 it was deleted.
    file_deleted: AtomicU8,
    /// File sources only: places where lines may have been lost, by [`GapReason::index`].
    gaps: [AtomicU64; GapReason::ALL.len()],
    /// File patterns only: how many followed files map to this series; -1 for other sources.
    files: AtomicI64,
}

/// What a file source reports about its file, apart from the lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileState {
    /// The followed file was deleted and nothing is at its path (it is still read).
    pub deleted: bool,
    /// Places where lines may have been lost, by [`GapReason::index`].
    pub gaps: [u64; GapReason::ALL.len()],
}

/// A point-in-time copy of a [`SourceStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Well-formed lines by level, indexed by [`Level::index`].
    pub lines_by_level: [u64; Level::ALL.len()],
    /// Lines that did not parse (including over-long ones).
    pub malformed: u64,
    /// Events by kind, indexed by [`EventKind::index`].
    pub events: [u64; EventKind::ALL.len()],
    /// Time of the newest timestamped line, ms since the epoch.
    pub last_line_millis: Option<i64>,
}

impl StatsSnapshot {
    /// All lines seen, well-formed or not.
    pub fn lines(&self) -> u64 {
        self.lines_by_level.iter().sum::<u64>() + self.malformed
    }
}

impl SourceStats {
    /// New zeroed counters for a source.
    pub fn new(source: impl Into<String>, store: impl Into<String>) -> Self {
        SourceStats {
            source: source.into(),
            store: store.into(),
            lines_by_level: Default::default(),
            malformed: AtomicU64::new(0),
            events: Default::default(),
            last_line_millis: AtomicI64::new(i64::MIN),
            up: AtomicBool::new(false),
            file_deleted: AtomicU8::new(0),
            gaps: Default::default(),
            files: AtomicI64::new(-1),
        }
    }

    /// Records how many files of a file pattern this series counts now.
    pub fn set_files(&self, n: usize) {
        self.files
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// How many followed files a file pattern's series counts; `None` for other sources.
    pub fn files(&self) -> Option<u64> {
        u64::try_from(self.files.load(Ordering::Relaxed)).ok()
    }

    /// Records the state of a file source's file (the gaps are totals so far).
    pub fn set_file_state(&self, state: &FileState) {
        self.file_deleted
            .store(if state.deleted { 2 } else { 1 }, Ordering::Relaxed);
        for (a, v) in self.gaps.iter().zip(state.gaps) {
            a.store(v, Ordering::Relaxed);
        }
    }

    /// The state of a file source's file; `None` for other sources.
    pub fn file_state(&self) -> Option<FileState> {
        let deleted = match self.file_deleted.load(Ordering::Relaxed) {
            0 => return None,
            v => v == 2,
        };
        Some(FileState {
            deleted,
            gaps: std::array::from_fn(|i| self.gaps[i].load(Ordering::Relaxed)),
        })
    }

    /// Records whether the source can currently be read.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// Whether the source could be read at its last attempt.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let last = self.last_line_millis.load(Ordering::Relaxed);
        StatsSnapshot {
            lines_by_level: std::array::from_fn(|i| load(&self.lines_by_level[i])),
            malformed: load(&self.malformed),
            events: std::array::from_fn(|i| load(&self.events[i])),
            last_line_millis: (last != i64::MIN).then_some(last),
        }
    }

    fn add(&self, t: &StatsSnapshot) {
        let add = |a: &AtomicU64, v: u64| {
            if v != 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        };
        for (a, v) in self.lines_by_level.iter().zip(t.lines_by_level) {
            add(a, v);
        }
        add(&self.malformed, t.malformed);
        for (a, v) in self.events.iter().zip(t.events) {
            add(a, v);
        }
        if let Some(ms) = t.last_line_millis {
            self.last_line_millis.fetch_max(ms, Ordering::Relaxed);
        }
    }
}

/// One event kept for diagnosis (region ids live here, never in labels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Source label of the line.
    pub source: String,
    /// Store label of the source.
    pub store: String,
    /// The line's own time, RFC 3339 with its offset.
    pub time: Option<String>,
    /// The classified event.
    pub event: LeadershipEvent,
    /// The decoded log message.
    pub message: String,
}

/// Bounded, most-recent-last history of leadership events shared by all sources.
#[derive(Debug)]
pub struct EventHistory {
    cap: usize,
    entries: Mutex<VecDeque<HistoryEntry>>,
}

impl EventHistory {
    /// A history keeping at most `cap` events.
    pub fn new(cap: usize) -> Self {
        EventHistory {
            cap,
            entries: Mutex::new(VecDeque::with_capacity(cap.min(1024))),
        }
    }

    /// Appends, dropping the oldest entry when full.
    pub fn push(&self, e: HistoryEntry) {
        if self.cap == 0 {
            return;
        }
        let mut q = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == self.cap {
            q.pop_front();
        }
        q.push_back(e);
    }

    /// The most events kept.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// A copy of the kept events, oldest first.
    pub fn recent(&self) -> Vec<HistoryEntry> {
        let q = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().cloned().collect()
    }
}

/// Feeds raw lines of one source into its counters; tallies locally and publishes on
/// [`Ingestor::flush`] so the per-line cost stays free of atomics.
pub struct Ingestor {
    stats: Arc<SourceStats>,
    history: Option<Arc<EventHistory>>,
    classifier: Classifier,
    tally: StatsSnapshot,
    track_time: bool,
}

impl Ingestor {
    /// An ingestor publishing into `stats` and, if given, recording events into `history`.
    pub fn new(stats: Arc<SourceStats>, history: Option<Arc<EventHistory>>) -> Self {
        Ingestor {
            stats,
            history,
            classifier: Classifier::new(),
            tally: StatsSnapshot::default(),
            track_time: true,
        }
    }

    /// Skips computing the last line time (batch counting does not need it).
    pub fn without_line_times(mut self) -> Self {
        self.track_time = false;
        self
    }

    /// The counters this ingestor publishes into.
    pub fn stats(&self) -> &Arc<SourceStats> {
        &self.stats
    }

    /// Processes one raw line; returns the event it carried, if any.
    pub fn ingest(&mut self, raw: RawLine<'_>) -> Option<LeadershipEvent> {
        let RawLine::Line(bytes) = raw else {
            self.tally.malformed += 1;
            return None;
        };
        let Ok(line) = parse_line(bytes) else {
            self.tally.malformed += 1;
            return None;
        };
        self.tally.lines_by_level[line.level.index()] += 1;
        let event = self.classifier.classify(&line);
        if self.track_time
            && let Some(t) = line.time
        {
            let ms = t.timestamp_millis();
            let last = self.tally.last_line_millis.get_or_insert(ms);
            *last = (*last).max(ms);
        }
        if let Some(ev) = event {
            self.tally.events[ev.kind.index()] += 1;
            if let Some(h) = &self.history {
                h.push(HistoryEntry {
                    source: self.stats.source.clone(),
                    store: self.stats.store.clone(),
                    time: line.time.map(|t| t.to_rfc3339()),
                    event: ev,
                    message: line
                        .message
                        .map(|m| m.decode().into_owned())
                        .unwrap_or_default(),
                });
            }
        }
        event
    }

    /// [`Self::ingest`] without the event, for use as a line sink.
    pub fn ingest_line(&mut self, raw: RawLine<'_>) {
        self.ingest(raw);
    }

    /// Publishes the local tally into the shared counters.
    pub fn flush(&mut self) {
        self.stats.add(&self.tally);
        self.tally = StatsSnapshot::default();
    }
}

impl Drop for Ingestor {
    fn drop(&mut self) {
        self.flush();
    }
}
