//! Wakes a file follower as soon as its file changes: inotify watches (through `notify`) on
//! the directory of the path and of the file it resolves to, with the poll interval as the
//! fallback when no watch can be set up (or an event is lost).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use notify::event::EventKind;
use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};

/// How often a wait checks whether it should stop (shutdown), whatever the poll interval.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// Change notifications for the directories of one followed file.
pub(crate) struct Wakeup {
    watcher: Option<RecommendedWatcher>,
    events: Receiver<notify::Result<Event>>,
    watched: Vec<PathBuf>,
    /// File-name prefixes that concern the follower (the stems of the path and its target).
    stems: Vec<String>,
}

impl Wakeup {
    /// Change notifications, or only the poll interval when inotify is not available (the
    /// error says why).
    pub(crate) fn new() -> (Self, Option<notify::Error>) {
        let (tx, events) = channel();
        let (watcher, error) = match notify::recommended_watcher(tx) {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e)),
        };
        let wakeup = Wakeup {
            watcher,
            events,
            watched: Vec::new(),
            stems: Vec::new(),
        };
        (wakeup, error)
    }

    /// Watches the directory of each file (once); a directory that cannot be watched (not there
    /// yet) is tried again at the next call.
    pub(crate) fn follow(&mut self, files: &[&Path]) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for file in files {
            if let Some(stem) = stem_of(file)
                && !self.stems.contains(&stem)
            {
                self.stems.push(stem);
            }
            let dir = match file.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !self.watched.contains(&dir)
                && watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok()
            {
                self.watched.push(dir);
            }
        }
    }

    /// Waits until a relevant change is notified, `timeout` passes or `stop()` holds (checked
    /// every [`STOP_CHECK`]); drains every queued notification, so one poll answers them all.
    pub(crate) fn wait(&self, timeout: Duration, stop: impl Fn() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stop() {
                return;
            }
            let slice = left.min(STOP_CHECK);
            match self.events.recv_timeout(slice) {
                Ok(ev) if self.concerns(&ev) => break,
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                // No watcher: only the interval is left.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(slice),
            }
        }
        while self.events.try_recv().is_ok() {}
    }

    /// Opening and reading (ours included) change nothing; a queue overflow may hide anything.
    fn concerns(&self, ev: &notify::Result<Event>) -> bool {
        let Ok(ev) = ev else { return true };
        if matches!(ev.kind, EventKind::Access(_)) {
            return false;
        }
        ev.need_rescan()
            || ev.paths.iter().any(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| self.stems.iter().any(|s| n.starts_with(s.as_str())))
            })
    }
}

/// `tikv.log` → `tikv`: rotated names start with it.
fn stem_of(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    Some(name.split('.').next().unwrap_or(name).to_owned())
}
