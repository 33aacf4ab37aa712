//! The sink: one thread that every follower's frames go to. It owns all per-container state:
//! it rebuilds lines from frames ([`LineAssembler`]), drops the lines a re-attach replays that
//! were already counted ([`Dedupe`]) and those received before the exporter started (unless
//! `from_start`), and ingests the rest (parser → events → counters). It also answers where a
//! (re)attach resumes.
//!
//! It runs on its own OS thread, fed through a bounded channel: parsing is CPU work, and a
//! slow sink makes the followers wait instead of queueing without limit.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use bollard::container::LogOutput;
use tokio::sync::{mpsc, oneshot};

use super::assemble::{LineAssembler, NO_TS, StreamKind};
use super::dedupe::Dedupe;
use crate::logs::ingest::{EventHistory, Ingestor, SourceStats};
use crate::logs::reader::RawLine;
use crate::logs::source::LogRegistry;
use crate::logs::timestamp::NANOS_PER_SECOND;

/// What the supervisor and the followers tell the sink.
pub(crate) enum SinkMsg {
    /// Make a source known before its container is seen (up = 0).
    Register {
        /// Container name.
        name: Arc<str>,
        /// PD store id (`""` when unknown).
        store: String,
    },
    /// A follower is about to (re)attach to container `id`: where to resume?
    Attach {
        /// Container name.
        name: Arc<str>,
        /// Container id.
        id: String,
        /// PD store id (`""` when unknown).
        store: String,
        /// Gets the second (Unix time) to resume from and the container's counters.
        reply: oneshot::Sender<(i32, Arc<SourceStats>)>,
    },
    /// Frames of the current attachment of `name`.
    Frames {
        /// Container name.
        name: Arc<str>,
        /// The frames, in the order they were read.
        frames: Vec<LogOutput>,
    },
}

/// Everything the sink keeps for one container name.
struct Container {
    /// Id of the container last attached under this name.
    id: String,
    /// Its counters (replaced when its store mapping changes).
    stats: Arc<SourceStats>,
    /// Parses and counts its lines.
    ing: Ingestor,
    /// Rebuilds its lines from frames.
    asm: LineAssembler,
    /// Drops the replays of lines it already counted.
    dedupe: Dedupe,
}

/// Owns the state of every followed container; see the module documentation.
pub(crate) struct Sink {
    /// Per container name.
    tracked: HashMap<Arc<str>, Container>,
    /// Where the containers' counters are registered.
    registry: Arc<LogRegistry>,
    /// Where leadership events go.
    history: Arc<EventHistory>,
    /// Longest accepted line in bytes.
    max_line: usize,
    /// Lines the engine received before this (docker time, ns) are not counted.
    cutoff: i64,
    /// Hashes (docker timestamp, line) into the keys [`Dedupe`] remembers.
    hasher: RandomState,
}

impl Sink {
    /// A sink counting into `registry` and `history`, skipping lines received before `cutoff`
    /// (docker time in ns; `i64::MIN`: none).
    pub(crate) fn new(
        registry: Arc<LogRegistry>,
        history: Arc<EventHistory>,
        max_line: usize,
        cutoff: i64,
    ) -> Self {
        Sink {
            tracked: HashMap::new(),
            registry,
            history,
            max_line,
            cutoff,
            hasher: RandomState::new(),
        }
    }

    /// Handles messages until every sender is gone, then flushes every container's counts.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<SinkMsg>) {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                SinkMsg::Register { name, store } => {
                    self.stats_for(&name, store);
                }
                SinkMsg::Attach {
                    name,
                    id,
                    store,
                    reply,
                } => {
                    let r = self.attach(&name, id, store);
                    let _ = reply.send(r);
                }
                SinkMsg::Frames { name, frames } => self.count_frames(&name, &frames),
            }
        }
        for t in self.tracked.values_mut() {
            t.ing.flush();
        }
    }

    /// The counters of `name` for `store`, made (with `up` = 0) or replaced as needed.
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
                    Container {
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

    /// Prepares a (re)attach to container `id`: the second to resume from and the counters.
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

    /// Rebuilds the lines of `frames`, drops replays and lines before the cutoff, counts the rest.
    fn count_frames(&mut self, name: &str, frames: &[LogOutput]) {
        let Some(t) = self.tracked.get_mut(name) else {
            return;
        };
        let hasher = &self.hasher;
        let cutoff = self.cutoff;
        let Container {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::timestamp::tests::nanos as ts;

    fn sink(cutoff: i64) -> (Sink, Arc<LogRegistry>) {
        let registry = Arc::new(LogRegistry::new());
        let history = Arc::new(EventHistory::new(100));
        (
            Sink::new(registry.clone(), history, 1 << 20, cutoff),
            registry,
        )
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
    fn sink_resumes_without_loss_or_double_count() {
        let (mut p, registry) = sink(i64::MIN);
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
        p.count_frames(
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
        p.count_frames(
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
        p.count_frames("tikv0", &[leader("12.000000000", 4)]);
        assert_eq!(lines(&stats), 6);
        // A new store mapping replaces the source (same label, once) in the exported list.
        let (_, moved) = p.attach(&name, "id2".into(), "7".into());
        let list = registry.list();
        assert_eq!(list.len(), 1);
        assert!(Arc::ptr_eq(&list[0], &moved));
        assert_eq!(
            (moved.source.as_str(), moved.store.as_str()),
            ("docker:tikv0", "7")
        );
    }

    #[test]
    fn lines_before_the_cutoff_are_not_counted() {
        let (mut p, _) = sink(ts("2026-11-22T03:17:10.300000000Z"));
        let name: Arc<str> = "c".into();
        let (since, stats) = p.attach(&name, "id".into(), String::new());
        assert_eq!(
            i64::from(since),
            ts("2026-11-22T03:17:10Z") / NANOS_PER_SECOND
        );
        p.count_frames("c", &[leader("10.100000000", 1), leader("10.500000000", 2)]);
        assert_eq!(stats.snapshot().lines(), 1);
    }
}
