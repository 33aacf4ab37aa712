//! The file-pattern log source: a `logs.files` path with wildcards, such as kubelet's
//! `/var/log/pods/*_basic-tikv-*_*/tikv/*.log`, on its own thread.
//!
//! - The pattern is expanded again every second (or every poll interval, if longer), at most
//!   [`MAX_FILES`] files; each match gets its own [`FileFollower`] (so kubelet's rename-and-reopen
//!   rotation, `0.log` → `0.log.<timestamp>`, is followed as for any file: the renamed file is read
//!   to its end, never its later `.gz`) and its own [`CriJoiner`] (a `P` piece at the end of the
//!   renamed file joins the `F` record in the new one).
//! - A file found after the first expansion and born since the one before it (a new pod, a
//!   container restart's `1.log`) is read from its start; one that no longer matches (its pod
//!   gone) is read on for [`GONE_GRACE`] (a reopen that comes back keeps its follower), then
//!   drained and closed.
//! - Each file maps to a store by the pod in its path ([`pod_of`]) with
//!   [`StoreMatcher::store_of_pod`], the rule of the Prometheus mapping, against PD's stores as of
//!   the last poll (remapped when they change), unless the entry names a `store`. Lines go to
//!   one series per (pattern, store): `source` is the pattern's label, never a file, pod or uid,
//!   so a restart or a re-created pod continues the same counters; the `store=""` series (files
//!   that map to no store) always exists. A store's series is dropped once no file maps to it
//!   and PD no longer lists it, so the series stay bounded by PD's stores over any pod churn.
//! - `source_up` is 0 while the pattern's base directory (or a directory under it) cannot be
//!   read or a followed file fails; every change is logged once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::cri::CriJoiner;
use super::file::{FileFollower, FollowOptions, GapReason};
use super::file_source::{MIN_POLL_GAP, Report};
use super::file_watch::Wakeup;
use super::glob::expand;
use super::ingest::{FileState, Ingestor, SourceStats};
use super::pod_path::pod_of;
use super::rotated::born_since;
use super::source::{SourceContext, SourceHandle};
use crate::domain::{PathPattern, Store, StoreMatcher};

/// The most files one pattern follows at once (the first ones in path order).
pub(crate) const MAX_FILES: usize = 64;
/// The shortest time between two expansions of the pattern.
const SCAN_MIN: Duration = Duration::from_secs(1);
/// How long a file that no longer matches is still read (longer than the follower's
/// `rotate_wait`, so a late writer is drained, and than a rename-and-reopen takes).
pub(crate) const GONE_GRACE: Duration = Duration::from_secs(10);
/// How long the source waits for PD's first store list before its first expansion.
const READY_WAIT: Duration = Duration::from_secs(30);

/// One `logs.files` entry whose path is a pattern.
#[derive(Clone, Debug)]
pub(crate) struct GlobSource {
    /// The pattern, checked.
    pub(crate) pattern: PathPattern,
    /// The pattern as configured (for log lines).
    pub(crate) path: PathBuf,
    /// Source label (`file:<name>`).
    pub(crate) label: String,
    /// The store every file belongs to (`logs.files[].store`), instead of the pod mapping.
    pub(crate) store: Option<String>,
    /// Read the files that exist at the first expansion from their start.
    pub(crate) from_start: bool,
    /// How often files are polled when no change is notified.
    pub(crate) poll_interval: Duration,
}

impl GlobSource {
    /// Starts following the pattern on its own thread.
    pub(crate) fn spawn(self, ctx: SourceContext) -> std::io::Result<SourceHandle> {
        let name = format!("log-{}", self.label);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(self, ctx))?;
        Ok(SourceHandle::Thread(thread))
    }
}

fn run(src: GlobSource, ctx: SourceContext) {
    let started = SystemTime::now();
    let (mut wakeup, no_watch) = Wakeup::new();
    if let Some(e) = no_watch {
        crate::log::warn(&format!(
            "log source {}: no change notifications ({e}); polling every {:?}",
            src.label, src.poll_interval
        ));
    }
    if src.store.is_none() {
        // Files map to stores by PD's list: the first one decides where the first lines go.
        let waiting = Instant::now();
        while !ctx.stores.is_known() && waiting.elapsed() < READY_WAIT && !ctx.cancel.is_cancelled()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut st = Pattern::new(src, ctx, started);
    let scan_every = st.src.poll_interval.max(SCAN_MIN);
    let mut last_scan: Option<Instant> = None;
    while !st.ctx.cancel.is_cancelled() {
        let round = Instant::now();
        if last_scan.is_none_or(|t| t.elapsed() >= scan_every) {
            st.scan();
            last_scan = Some(round);
        }
        st.poll();
        wakeup.watch_dirs(&st.watch_list());
        wakeup.wait(st.src.poll_interval, || st.ctx.cancel.is_cancelled());
        if let Some(rest) = MIN_POLL_GAP.checked_sub(round.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    st.finish();
}

/// One followed file of the pattern.
struct Followed {
    follower: FileFollower,
    joiner: CriJoiner,
    /// Counts into the series of `store`.
    ing: Ingestor,
    store: String,
    report: Report,
    /// The follower's gaps already added to its series.
    gaps: [u64; GapReason::ALL.len()],
    /// The last poll succeeded.
    ok: bool,
    /// Since when the file no longer matches the pattern.
    gone_since: Option<Instant>,
}

impl Followed {
    /// Hands what the follower and the joiner still hold to the counters.
    fn drain(&mut self) {
        let (joiner, ing) = (&mut self.joiner, &mut self.ing);
        self.follower
            .finish(|l| joiner.push(l, &mut |l| ing.ingest_line(l)));
        joiner.finish(&mut |l| ing.ingest_line(l));
        ing.flush();
    }
}

/// The counters of one (pattern, store) and the gaps of its files so far (dropped ones too).
struct Series {
    stats: Arc<SourceStats>,
    gaps: [u64; GapReason::ALL.len()],
}

/// Everything the source's thread keeps.
struct Pattern {
    src: GlobSource,
    ctx: SourceContext,
    files: BTreeMap<PathBuf, Followed>,
    series: BTreeMap<String, Series>,
    /// The series that always exists: the entry's store, else `""`.
    home: String,
    matcher: StoreMatcher,
    /// The store list `matcher` was built from.
    stores: Option<Arc<[Store]>>,
    /// When the last successful expansion began: files born since are new.
    scanned_at: SystemTime,
    scanned_once: bool,
    /// The directories the last expansion looked into.
    dirs: Vec<PathBuf>,
    /// The last expansion's problem, as logged (empty: none).
    scan_error: String,
    truncated: bool,
}

impl Pattern {
    fn new(src: GlobSource, ctx: SourceContext, started: SystemTime) -> Self {
        let home = src.store.clone().unwrap_or_default();
        let mut p = Pattern {
            src,
            ctx,
            files: BTreeMap::new(),
            series: BTreeMap::new(),
            home: home.clone(),
            matcher: StoreMatcher::default(),
            stores: None,
            scanned_at: started,
            scanned_once: false,
            dirs: Vec::new(),
            scan_error: String::new(),
            truncated: false,
        };
        p.series_of(&home);
        p.publish();
        p
    }

    /// The series of `store`, registered on first use.
    fn series_of(&mut self, store: &str) -> Arc<SourceStats> {
        let (registry, label) = (&self.ctx.registry, &self.src.label);
        self.series
            .entry(store.to_owned())
            .or_insert_with(|| Series {
                stats: registry.series(label, store),
                gaps: [0; GapReason::ALL.len()],
            })
            .stats
            .clone()
    }

    /// The store of the file at `path`: the entry's, else the pod's in PD's list.
    fn store_of(&self, path: &Path) -> String {
        if let Some(s) = &self.src.store {
            return s.clone();
        }
        pod_of(path)
            .and_then(|p| self.matcher.store_of_pod(p.pod, Some(p.namespace)))
            .map_or_else(String::new, |id| id.to_string())
    }

    /// Expands the pattern: follows new files, marks files that no longer match.
    fn scan(&mut self) {
        self.remap();
        let look = SystemTime::now();
        let now = Instant::now();
        let expansion = match expand(&self.src.pattern, MAX_FILES) {
            Ok(x) => x,
            Err(e) => {
                // The open files are still read; the next expansion tries again.
                self.report_scan(format!(
                    "cannot read {} (the base directory of {}): {e}",
                    self.src.pattern.base().display(),
                    self.src.path.display()
                ));
                return;
            }
        };
        self.report_scan(match &expansion.error {
            Some((dir, e)) => format!("cannot read {}: {e}", dir.display()),
            None => String::new(),
        });
        if expansion.truncated != self.truncated {
            if expansion.truncated {
                crate::log::warn(&format!(
                    "log source {}: more than {MAX_FILES} files match {}; following the first {MAX_FILES} in path order",
                    self.src.label,
                    self.src.path.display()
                ));
            } else {
                crate::log::info(&format!(
                    "log source {}: {MAX_FILES} files or fewer match again; following all",
                    self.src.label
                ));
            }
            self.truncated = expansion.truncated;
        }
        for path in &expansion.files {
            if let Some(f) = self.files.get_mut(path) {
                f.gone_since = None;
                continue;
            }
            let from_start = (self.src.from_start && !self.scanned_once)
                || std::fs::metadata(path).is_ok_and(|m| born_since(&m, self.scanned_at));
            self.follow(path.clone(), from_start);
        }
        for (path, f) in &mut self.files {
            if f.gone_since.is_none() && expansion.files.binary_search(path).is_err() {
                f.gone_since = Some(now);
            }
        }
        self.dirs = expansion.dirs;
        self.scanned_at = look;
        self.scanned_once = true;
    }

    /// Logs a change of the expansion's problem (`""`: none) once.
    fn report_scan(&mut self, problem: String) {
        if problem == self.scan_error {
            return;
        }
        if problem.is_empty() {
            crate::log::info(&format!(
                "log source {}: {} can be read again",
                self.src.label,
                self.src.path.display()
            ));
        } else {
            crate::log::warn(&format!("log source {}: {problem}", self.src.label));
        }
        self.scan_error = problem;
    }

    fn follow(&mut self, path: PathBuf, from_start: bool) {
        let store = self.store_of(&path);
        let stats = self.series_of(&store);
        crate::log::info(&format!(
            "log source {}: following {}{} (store {})",
            self.src.label,
            path.display(),
            if from_start { " from its start" } else { "" },
            if store.is_empty() { "unknown" } else { &store }
        ));
        let max = self.ctx.max_line_bytes;
        let follower = FileFollower::new(
            path.clone(),
            FollowOptions {
                from_start,
                max_line_bytes: max,
                ..FollowOptions::default()
            },
        );
        self.files.insert(
            path,
            Followed {
                follower,
                joiner: CriJoiner::new(max),
                ing: Ingestor::new(stats, Some(self.ctx.history.clone())),
                store,
                report: Report::of_pattern_file(),
                gaps: [0; GapReason::ALL.len()],
                ok: true,
                gone_since: None,
            },
        );
    }

    /// Maps every file again when PD's store list changed, and drops the series of stores PD
    /// no longer lists and no file maps to.
    fn remap(&mut self) {
        if self.src.store.is_some() || !self.ctx.stores.is_known() {
            return;
        }
        let stores = self.ctx.stores.stores();
        if self
            .stores
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &stores))
        {
            return;
        }
        self.matcher = StoreMatcher::new(&stores, None);
        self.stores = Some(stores.clone());
        let paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        for path in paths {
            let store = self.store_of(&path);
            if self.files[&path].store == store {
                continue;
            }
            let stats = self.series_of(&store);
            let f = self.files.get_mut(&path).expect("listed above");
            crate::log::info(&format!(
                "log source {}: {} now maps to store {}",
                self.src.label,
                path.display(),
                if store.is_empty() { "unknown" } else { &store }
            ));
            f.ing.flush();
            f.ing = Ingestor::new(stats, Some(self.ctx.history.clone()));
            f.store = store;
        }
        let listed: Vec<String> = stores.iter().map(|s| s.id.to_string()).collect();
        let unused: Vec<String> = self
            .series
            .keys()
            .filter(|s| {
                **s != self.home
                    && !listed.contains(s)
                    && !self.files.values().any(|f| &f.store == *s)
            })
            .cloned()
            .collect();
        for store in unused {
            self.series.remove(&store);
            self.ctx.registry.remove(&self.src.label, &store);
        }
    }

    /// Reads every file, closes those gone for [`GONE_GRACE`], publishes the state.
    fn poll(&mut self) {
        let now = Instant::now();
        let label = &self.src.label;
        let mut done = Vec::new();
        for (path, f) in &mut self.files {
            let (joiner, ing) = (&mut f.joiner, &mut f.ing);
            let polled = f
                .follower
                .poll(|l| joiner.push(l, &mut |l| ing.ingest_line(l)));
            ing.flush();
            f.ok = f.report.polled(label, &f.follower, polled).is_some();
            let gaps = f.follower.counters().gaps;
            if let Some(s) = self.series.get_mut(&f.store) {
                for (total, (now, was)) in s.gaps.iter_mut().zip(gaps.iter().zip(f.gaps)) {
                    *total += now - was;
                }
            }
            f.gaps = gaps;
            if f.gone_since
                .is_some_and(|t| now.duration_since(t) >= GONE_GRACE)
            {
                done.push(path.clone());
            }
        }
        for path in done {
            if let Some(mut f) = self.files.remove(&path) {
                f.drain();
                crate::log::info(&format!(
                    "log source {label}: {} no longer matches; read to its end and closed",
                    path.display()
                ));
            }
        }
        self.publish();
    }

    /// Up, followed files and gaps of every series.
    fn publish(&self) {
        let up = self.scan_error.is_empty() && self.files.values().all(|f| f.ok);
        for (store, s) in &self.series {
            s.stats.set_up(up);
            s.stats
                .set_files(self.files.values().filter(|f| &f.store == store).count());
            s.stats.set_file_state(&FileState {
                deleted: false,
                gaps: s.gaps,
            });
        }
    }

    /// The directories to watch: those the expansion looked into, and where the followed
    /// files really are (a symlinked file's rotated siblings are next to its target).
    fn watch_list(&self) -> Vec<PathBuf> {
        let mut dirs = self.dirs.clone();
        for f in self.files.values() {
            if let Some(dir) = f.follower.current_file().and_then(Path::parent)
                && !dirs.iter().any(|d| d == dir)
            {
                dirs.push(dir.to_path_buf());
            }
        }
        dirs
    }

    /// Drains every file (shutdown).
    fn finish(&mut self) {
        for f in self.files.values_mut() {
            f.drain();
        }
        self.publish();
    }
}
