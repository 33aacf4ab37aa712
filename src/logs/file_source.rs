//! The file log source: one [`FileFollower`] per configured file on its own thread, feeding
//! the [`Ingestor`] until the context is cancelled, then draining what is left. It polls as soon
//! as inotify reports a change to the file or its rotated siblings ([`Wakeup`]), and at least
//! every poll interval; every change of the file's state (unreadable, deleted, a gap) is logged
//! once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::cri::CriJoiner;
use super::file::{FileFollower, FileStatus, FollowCounters, FollowOptions, GapReason};
use super::file_watch::Wakeup;
use super::ingest::{FileState, Ingestor};
use super::source::{SourceContext, SourceHandle};

/// The shortest time between two polls, however often changes are notified.
pub(crate) const MIN_POLL_GAP: Duration = Duration::from_millis(25);

/// One file to follow.
#[derive(Clone, Debug)]
pub struct FileSource {
    /// Path of the file.
    pub path: PathBuf,
    /// Source label (`file:<name>`).
    pub label: String,
    /// PD store id the file belongs to (`""` when unknown).
    pub store: String,
    /// Read the existing content too.
    pub from_start: bool,
    /// How often the file is checked for new lines when no change is notified.
    pub poll_interval: Duration,
}

impl FileSource {
    /// Starts following the file on its own thread.
    pub fn spawn(self, ctx: SourceContext) -> std::io::Result<SourceHandle> {
        let stats = ctx
            .registry
            .register(self.label.clone(), self.store.clone());
        stats.set_file_state(&FileState::default());
        let mut follower = FileFollower::new(
            self.path.clone(),
            FollowOptions {
                from_start: self.from_start,
                max_line_bytes: ctx.max_line_bytes,
                ..FollowOptions::default()
            },
        );
        let thread = std::thread::Builder::new()
            .name(format!("log-{}", self.label))
            .spawn(move || {
                let (mut wakeup, no_watch) = Wakeup::new();
                if let Some(e) = no_watch {
                    crate::log::warn(&format!(
                        "log source {}: no change notifications ({e}); polling every {:?}",
                        stats.source, self.poll_interval
                    ));
                }
                let mut ing = Ingestor::new(stats.clone(), Some(ctx.history.clone()));
                // Kubernetes CRI files: pieces of one line are joined; other lines pass.
                let mut joiner = CriJoiner::new(ctx.max_line_bytes);
                let mut report = Report::default();
                while !ctx.cancel.is_cancelled() {
                    let started = Instant::now();
                    let polled = follower.poll(|l| joiner.push(l, &mut |l| ing.ingest_line(l)));
                    ing.flush();
                    let status = report.polled(&stats.source, &follower, polled);
                    stats.set_up(status.is_some_and(|s| s != FileStatus::Missing));
                    if let Some(status) = status {
                        stats.set_file_state(&FileState {
                            deleted: status == FileStatus::Deleted,
                            gaps: follower.counters().gaps,
                        });
                    }
                    match follower.current_file() {
                        Some(real) => wakeup.follow(&[follower.path(), real]),
                        None => wakeup.follow(&[follower.path()]),
                    }
                    wakeup.wait(self.poll_interval, || ctx.cancel.is_cancelled());
                    // A writer appending line by line notifies every write: read in batches.
                    if let Some(rest) = MIN_POLL_GAP.checked_sub(started.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
                follower.finish(|l| joiner.push(l, &mut |l| ing.ingest_line(l)));
                joiner.finish(&mut |l| ing.ingest_line(l));
                ing.flush();
            })?;
        Ok(SourceHandle::Thread(thread))
    }
}

/// What was last reported about a followed file, so that each change is logged once.
#[derive(Default)]
pub(crate) struct Report {
    last_error: String,
    deleted: bool,
    counters: FollowCounters,
    /// Deletion is expected (a file pattern's files go with their pod): not logged.
    quiet_deletion: bool,
}

impl Report {
    /// A report for a file of a pattern, whose deletion is no news.
    pub(crate) fn of_pattern_file() -> Self {
        Report {
            quiet_deletion: true,
            ..Report::default()
        }
    }

    /// Logs what changed about `follower`'s file with this poll (an error or its end, a
    /// deletion or a new file, new gaps), naming `source`; the poll's status, `None` on error.
    pub(crate) fn polled(
        &mut self,
        source: &str,
        follower: &FileFollower,
        polled: std::io::Result<FileStatus>,
    ) -> Option<FileStatus> {
        let path = follower.path().display();
        let status = match polled {
            Ok(status) => status,
            Err(e) => {
                let msg = format!("{path}: {e}");
                if msg != self.last_error {
                    crate::log::warn(&format!("log source {source}: {msg}"));
                    self.last_error = msg;
                }
                return None;
            }
        };
        if !self.last_error.is_empty() {
            crate::log::info(&format!("log source {source}: {path} readable again"));
            self.last_error.clear();
        }
        let deleted = status == FileStatus::Deleted;
        if deleted != self.deleted && !self.quiet_deletion {
            if deleted {
                crate::log::warn(&format!(
                    "log source {source}: {path} was deleted; still reading the open file until a new one appears"
                ));
            } else {
                crate::log::info(&format!(
                    "log source {source}: {path} is back; following the new file"
                ));
            }
        }
        self.deleted = deleted;
        let counters = follower.counters();
        for reason in GapReason::ALL {
            let (was, now) = (
                self.counters.gaps[reason.index()],
                counters.gaps[reason.index()],
            );
            if now > was {
                crate::log::warn(&format!(
                    "log source {source}: {path}: lines may be lost ({}): {}",
                    reason.as_str(),
                    match reason {
                        GapReason::Truncated =>
                            "truncated, and its unread end is in no rotated copy next to it",
                        GapReason::Vanished => "a rotated file was deleted before it could be read",
                    }
                ));
            }
        }
        self.counters = counters;
        Some(status)
    }
}
