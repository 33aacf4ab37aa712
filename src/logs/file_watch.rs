//! Wakes a file follower as soon as its file changes: inotify watches (through `notify`) on
//! the directory of the path and of the file it resolves to (or on every directory a file
//! pattern looks into), with the poll interval as the fallback when no watch can be set up (or
//! an event is lost).

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
    /// Every change in a watched directory concerns the follower (a file pattern's).
    any_name: bool,
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
            any_name: false,
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

    /// Watches exactly `dirs` (the directories a file pattern looked into), any change in them
    /// concerning the follower; directories no longer listed are unwatched, so watches never
    /// pile up as pods come and go. One that cannot be watched is tried again at the next call.
    pub(crate) fn watch_dirs(&mut self, dirs: &[PathBuf]) {
        self.any_name = true;
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        self.watched.retain(|d| {
            let keep = dirs.contains(d);
            if !keep {
                // Already gone with its directory, or dropped now.
                let _ = watcher.unwatch(d);
            }
            keep
        });
        for dir in dirs {
            if !self.watched.contains(dir)
                && watcher.watch(dir, RecursiveMode::NonRecursive).is_ok()
            {
                self.watched.push(dir.clone());
            }
        }
    }

    /// How many directories are watched now.
    #[cfg(test)]
    fn watched(&self) -> usize {
        self.watched.len()
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
            || self.any_name
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_watches_exactly_its_directories_and_wakes_on_any_change() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let (mut w, err) = Wakeup::new();
        assert!(err.is_none(), "inotify: {err:?}");
        w.watch_dirs(&[a.clone(), b.clone(), tmp.path().join("not-yet")]);
        assert_eq!(w.watched(), 2);
        // A pod directory gone from the expansion is unwatched; a removed one is dropped too.
        std::fs::remove_dir(&a).unwrap();
        w.watch_dirs(std::slice::from_ref(&b));
        assert_eq!(w.watched(), 1);
        // Settled once a wait lasts its whole (short) bound: nothing is pending any more.
        let quiet = (0..100).any(|_| {
            let t = Instant::now();
            w.wait(Duration::from_millis(200), || false);
            t.elapsed() >= Duration::from_millis(200)
        });
        assert!(quiet, "notifications never stopped");
        // A new name of any kind wakes the wait long before its bound.
        std::fs::create_dir(b.join("tidb_basic-tikv-0_0a1b2c3d")).unwrap();
        let started = Instant::now();
        w.wait(Duration::from_secs(60), || false);
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
