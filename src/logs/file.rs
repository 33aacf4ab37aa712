//! Follows a log file like `tail -F`, one [`FileFollower::poll`] at a time (the file source
//! calls it on every change notification and at its poll interval).
//!
//! A file is known by its device and inode, never by its name, and read by offset:
//! - it starts at the end of an existing file (or its start), reads a file that appears later
//!   from its start, and holds a partial last line until its newline arrives;
//! - rename-and-create rotation: the old file is read to its end and kept open for late writes
//!   (`rotate_wait`), then the new one is read from its start; files that were created *and*
//!   rotated away between two polls are found among the rotated siblings (`name.1`,
//!   `name.<date>`, `name-<date>`, `stem.<timestamp>.ext`, never compressed ones) by their birth
//!   time and read, oldest first, before the newest;
//! - a file seen before (a symlink swapped back, a rotated file met again) is resumed at the
//!   offset already read, never re-read; an existing file swapped in under the path (a symlink
//!   pointed at another old file) is read from its end;
//! - truncation (copytruncate, `> file`), also when the file was refilled past the offset before
//!   this poll (the first bytes changed): the unread end is read from the rotated copy when one
//!   with the same first bytes is found, then the file from offset 0; when no copy holds it, a
//!   [`GapReason::Truncated`] gap is counted; a file emptied before any of it was read (changed
//!   since the last look, now empty) is read from a non-empty copy born since that look, and
//!   without one is taken as only touched (nothing is known lost);
//! - a deleted file stays open and read ([`FileStatus::Deleted`]) until a file appears at the
//!   path.
//!
//! Where lines may have been lost they are counted as gaps, never silently dropped: a truncation
//! whose unread end is in no copy, and rotated files listed but deleted before they could be
//! opened ([`GapReason::Vanished`]). Not seen at all: lines written between copytruncate's copy
//! and its truncation (they are in neither file), and a file created and deleted entirely
//! between two polls.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::parse::DEFAULT_MAX_LINE_BYTES;
use super::reader::{LineReader, RawLine};
use super::rotated::{BIRTH_SLACK, birth, born_since, older_first, rotated_siblings};

/// How many leading bytes of a file identify its content (for truncation and inode reuse):
/// several lines, as lines logged in the same millisecond may share their first hundred bytes.
const HEAD_LEN: usize = 1024;
/// Rotated files kept open at once; the oldest is finished early beyond this.
const MAX_DRAINING: usize = 64;
/// Closed files whose offset is remembered, so that meeting one again never re-reads it (a
/// few seconds of rotation every 40 ms, while a catch-up has not settled).
const MAX_REMEMBERED: usize = 256;
/// Listings of the rotated files taken at most per rotation, until one finds nothing new.
const CATCH_UP_PASSES: usize = 4;

/// How to follow a file.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// Read an existing file from its start instead of its end on the first open.
    pub from_start: bool,
    /// Longest line accepted; longer ones are reported as [`RawLine::TooLong`].
    pub max_line_bytes: usize,
    /// How long a rotated-away file is still read for late writes before it is closed.
    pub rotate_wait: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            from_start: false,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            rotate_wait: Duration::from_secs(5),
        }
    }
}

/// Why lines of a followed file may have been lost (the `reason` label of
/// `tikv_log_gaps_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapReason {
    /// The file was truncated and its unread end was not found in a rotated copy.
    Truncated,
    /// A rotated file was deleted before it could be opened.
    Vanished,
}

impl GapReason {
    /// Every reason, in label order.
    pub const ALL: [GapReason; 2] = [GapReason::Truncated, GapReason::Vanished];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Truncated => "truncated",
            GapReason::Vanished => "vanished",
        }
    }

    /// Position in [`GapReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Identity of a file on disk (device and inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(m: &fs::Metadata) -> Self {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// Where to start reading a newly opened file.
#[derive(Clone, Copy, Debug)]
enum Start {
    Beginning,
    End,
    At(u64),
}

/// One open file, the offset its reader started at, and its first bytes.
struct OpenFile {
    reader: LineReader<File>,
    id: FileId,
    base: u64,
    /// Where the file was when it was opened, symlinks resolved (its rotated siblings are there).
    real: PathBuf,
    /// Up to [`HEAD_LEN`] first bytes, as far as they were read.
    head: Vec<u8>,
    /// While nothing of it has been read: its modification time at the last look, and when
    /// that look was (a file emptied before its first bytes were read shows only in these).
    unread_look: Option<(SystemTime, SystemTime)>,
}

/// Whether an open file still holds what was read of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// It does.
    No,
    /// Shorter than the offset, or grown with other first bytes.
    Yes,
    /// Nothing of it was read, it is empty and it changed since the last look, or may have
    /// (written and emptied since, or only touched): a cut only if a copy born since that look
    /// (the time given) is found.
    Unread(SystemTime),
}

impl OpenFile {
    fn new(
        mut file: File,
        id: FileId,
        real: PathBuf,
        start: Start,
        max_line: usize,
    ) -> io::Result<Self> {
        let base = match start {
            Start::Beginning => 0,
            Start::End => file.seek(SeekFrom::End(0))?,
            Start::At(off) => file.seek(SeekFrom::Start(off))?,
        };
        let mut f = OpenFile {
            reader: LineReader::new(file, max_line),
            id,
            base,
            real,
            head: Vec::new(),
            unread_look: None,
        };
        f.update_head()?;
        Ok(f)
    }

    fn offset(&self) -> u64 {
        self.base + self.reader.bytes_read()
    }

    fn file(&mut self) -> &mut File {
        self.reader.get_mut()
    }

    /// Completes the recorded first bytes up to what has been read.
    fn update_head(&mut self) -> io::Result<()> {
        let want = (self.offset().min(HEAD_LEN as u64)) as usize;
        if self.head.len() < want {
            let have = self.head.len();
            let mut buf = vec![0; want - have];
            let n = read_at_most(self.file(), have as u64, &mut buf)?;
            self.head.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    /// Whether the file no longer holds what was read: shorter than the offset, or grown with
    /// other first bytes (truncated and refilled since the last look); for a file of which
    /// nothing was read, whether it was emptied since the last look. `look` is now.
    fn was_cut(&mut self, look: SystemTime) -> io::Result<Cut> {
        let meta = self.file().metadata()?;
        let (len, offset) = (meta.len(), self.offset());
        let last = self.unread_look.take();
        if offset == 0 {
            let mtime_now = meta.modified().ok();
            self.unread_look = mtime_now.map(|m| (m, look));
            // Changed since, or changed so shortly before that look that a later change may
            // carry the same time (the file clock is coarse).
            if let (0, Some((mtime, at))) = (len, last)
                && (mtime_now != Some(mtime)
                    || at.duration_since(mtime).map_or(true, |d| d < BIRTH_SLACK))
            {
                return Ok(Cut::Unread(at));
            }
            return Ok(Cut::No);
        }
        if len < offset {
            return Ok(Cut::Yes);
        }
        if len > offset && !self.head.is_empty() {
            return Ok(if starts_with(self.reader.get_mut(), &self.head)? {
                Cut::No
            } else {
                Cut::Yes
            });
        }
        Ok(Cut::No)
    }

    /// Reads the (truncated) file again from offset 0.
    fn restart(&mut self) -> io::Result<()> {
        self.file().seek(SeekFrom::Start(0))?;
        let file = self.file().try_clone()?;
        self.reader.reset(file);
        self.base = 0;
        self.head.clear();
        Ok(())
    }

    fn remembered(&self) -> Remembered {
        Remembered {
            id: self.id,
            offset: self.offset(),
            head: self.head.clone(),
        }
    }
}

/// A closed file and how far it was read.
struct Remembered {
    id: FileId,
    offset: u64,
    head: Vec<u8>,
}

/// What a poll found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileStatus {
    /// The file is open and was read to its current end.
    Open,
    /// The path does not exist (yet); nothing is open.
    Missing,
    /// The file that was followed was deleted and nothing is at its path: it is still open and
    /// read (its writer may still append to it), but no one else can see what it holds.
    Deleted,
}

/// Counts of what happened to the file over its life, for diagnostics, tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowCounters {
    /// Rename-and-create rotations seen (files that replaced the followed one at its path).
    pub rotations: u64,
    /// Truncations seen (copytruncate or `> file`).
    pub truncations: u64,
    /// Rotated files that were found among the siblings only (created and rotated away between
    /// two polls) and read from there.
    pub caught_up: u64,
    /// Places where lines may have been lost, by [`GapReason::index`].
    pub gaps: [u64; GapReason::ALL.len()],
}

/// A follower of one path.
pub struct FileFollower {
    path: PathBuf,
    opts: FollowOptions,
    current: Option<OpenFile>,
    /// Rotated-away files, oldest first, read until their deadline for writers that reopen late.
    draining: Vec<(OpenFile, Instant)>,
    /// Files closed, newest last.
    remembered: VecDeque<Remembered>,
    first_open_done: bool,
    /// When the previous poll looked at the path: a file born since is new to us.
    last_look: SystemTime,
    /// Rotated files born since then and never seen are read when a rotation is found.
    caught_up_to: SystemTime,
    /// Whether the last catch-up found every rotated file (else `caught_up_to` stays).
    catch_up_settled: bool,
    counters: FollowCounters,
}

impl FileFollower {
    /// A follower of `path`; nothing is opened until the first [`FileFollower::poll`].
    pub fn new(path: impl Into<PathBuf>, opts: FollowOptions) -> Self {
        FileFollower {
            path: path.into(),
            opts,
            current: None,
            draining: Vec::new(),
            remembered: VecDeque::new(),
            first_open_done: false,
            last_look: SystemTime::now(),
            caught_up_to: SystemTime::now(),
            catch_up_settled: true,
            counters: FollowCounters::default(),
        }
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the file currently followed is, symlinks resolved (`None` when none is open).
    pub fn current_file(&self) -> Option<&Path> {
        self.current.as_ref().map(|f| f.real.as_path())
    }

    /// Rotations, truncations and gaps seen so far.
    pub fn counters(&self) -> FollowCounters {
        self.counters
    }

    /// Reads everything new, emitting complete lines in file order (rotated files' remaining
    /// lines, oldest file first, before the newest file's).
    pub fn poll(&mut self, mut emit: impl FnMut(RawLine<'_>)) -> io::Result<FileStatus> {
        let now = Instant::now();
        let look = SystemTime::now();
        let mut i = 0;
        while i < self.draining.len() {
            self.read(Slot::Draining(i), &mut emit)?;
            if now >= self.draining[i].1 {
                let (old, _) = self.draining.remove(i);
                self.close(old, &mut emit);
            } else {
                i += 1;
            }
        }
        if self.current.is_some() {
            self.read(Slot::Current, &mut emit)?;
        }

        let meta = match fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if meta.as_ref().is_some_and(|m| !m.is_file()) {
            // Never opened: opening a FIFO blocks until a writer appears (and then shutdown
            // with it), and a device never ends.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file (a FIFO, socket, device or directory); only regular files are followed",
            ));
        }
        let meta_was_missing = meta.is_none();
        let status = match meta {
            None => {
                // Renamed away and not yet recreated, or deleted: keep reading what is open.
                self.first_open_done = true;
                match &mut self.current {
                    None => FileStatus::Missing,
                    Some(cur) => {
                        if cur.file().metadata()?.nlink() == 0 {
                            FileStatus::Deleted
                        } else {
                            FileStatus::Open
                        }
                    }
                }
            }
            Some(meta) => {
                let id = FileId::of(&meta);
                match self.current.take() {
                    Some(cur) if cur.id == id => self.current = Some(cur),
                    Some(cur) => {
                        self.counters.rotations += 1;
                        let old_real = cur.real.clone();
                        self.retire(cur, now, &mut emit);
                        // Open the newest first, so that the listing cannot take it for a
                        // missed one; read it last.
                        self.switch()?;
                        self.catch_up(&old_real, now, &mut emit)?;
                        if self.current.is_some() {
                            self.read(Slot::Current, &mut emit)?;
                        }
                    }
                    None => {
                        self.switch()?;
                        if self.current.is_some() {
                            self.read(Slot::Current, &mut emit)?;
                        }
                    }
                }
                if self.current.is_some() {
                    FileStatus::Open
                } else {
                    FileStatus::Missing
                }
            }
        };
        // Only a look that found the path's file open (or nothing at the path) tells that a
        // file born later is new: after a failed switch the next poll must still take it as new.
        if self.current.is_some() || meta_was_missing {
            self.last_look = look;
            if self.catch_up_settled {
                self.caught_up_to = look;
            }
        }
        Ok(status)
    }

    /// Emits every pending partial line and closes all files (end of following).
    pub fn finish(&mut self, mut emit: impl FnMut(RawLine<'_>)) {
        for (mut old, _) in self.draining.drain(..) {
            old.reader.finish(&mut emit);
        }
        if let Some(mut cur) = self.current.take() {
            cur.reader.finish(&mut emit);
        }
    }

    fn slot(&mut self, slot: Slot) -> &mut OpenFile {
        match slot {
            Slot::Current => self.current.as_mut().expect("current file is open"),
            Slot::Draining(i) => &mut self.draining[i].0,
        }
    }

    /// Reads one open file to its end, handling a truncation first.
    fn read(&mut self, slot: Slot, emit: &mut impl FnMut(RawLine<'_>)) -> io::Result<()> {
        let cut = self.slot(slot).was_cut(SystemTime::now())?;
        if cut != Cut::No {
            // Out of its slot while the siblings are searched (they must not include it).
            let mut f = self.slot_take(slot);
            let born_after = match cut {
                Cut::Unread(at) => Some(at),
                _ => None,
            };
            let found = self.recover_cut_off_end(&mut f.0, born_after, emit);
            if cut == Cut::Yes && !found {
                self.counters.gaps[GapReason::Truncated.index()] += 1;
            }
            // Emptied before any of it was read: a truncation only if its lines were found in
            // a copy (else it may only have been touched, and nothing is known lost).
            let restarted = if cut == Cut::Yes || found {
                self.counters.truncations += 1;
                // What is still buffered is the cut-off end of a line: a line of its own.
                f.0.reader.finish(&mut *emit);
                f.0.restart()
            } else {
                Ok(())
            };
            // Back in its slot whatever happens: an I/O error loses nothing for the next poll.
            self.slot_put(slot, f);
            restarted?;
        }
        let f = self.slot(slot);
        f.reader.read_available(&mut *emit)?;
        f.update_head()
    }

    /// Takes the file out of its slot (with its rotate-wait deadline when draining).
    fn slot_take(&mut self, slot: Slot) -> (OpenFile, Option<Instant>) {
        match slot {
            Slot::Current => (self.current.take().expect("current file is open"), None),
            Slot::Draining(i) => {
                let (f, d) = self.draining.remove(i);
                (f, Some(d))
            }
        }
    }

    /// Puts back what [`FileFollower::slot_take`] took.
    fn slot_put(&mut self, slot: Slot, (f, deadline): (OpenFile, Option<Instant>)) {
        match (slot, deadline) {
            (Slot::Draining(i), Some(d)) => self.draining.insert(i, (f, d)),
            _ => self.current = Some(f),
        }
    }

    /// Looks for the rotated copy of a truncated file (same first bytes; for a file of which
    /// nothing was read, a non-empty copy born since `born_after`) and reads what it has past
    /// the offset already read. True when a copy was found.
    fn recover_cut_off_end(
        &mut self,
        f: &mut OpenFile,
        born_after: Option<SystemTime>,
        emit: &mut impl FnMut(RawLine<'_>),
    ) -> bool {
        let offset = f.offset();
        let mut best: Option<(File, fs::Metadata)> = None;
        for (path, meta) in rotated_siblings(&f.real).0 {
            let id = FileId::of(&meta);
            if id == f.id || self.is_known(id) || meta.len() < f.head.len() as u64 {
                continue;
            }
            if born_after.is_some_and(|t| meta.len() == 0 || !born_since(&meta, t)) {
                continue;
            }
            let Ok(copy) = File::open(&path) else {
                continue;
            };
            if !starts_with(&copy, &f.head).unwrap_or(false) {
                continue;
            }
            if best.as_ref().is_none_or(|(_, b)| birth(&meta) > birth(b)) {
                best = Some((copy, meta));
            }
        }
        let Some((mut copy, meta)) = best else {
            return false;
        };
        if meta.len() > offset && copy.seek(SeekFrom::Start(offset)).is_ok() {
            let original = std::mem::replace(f.reader.get_mut(), copy);
            // The copy may fail to read; what it gave is emitted, the rest is the copy's loss.
            let _ = f.reader.read_available(&mut *emit);
            *f.reader.get_mut() = original;
        }
        self.remember(Remembered {
            id: FileId::of(&meta),
            offset: meta.len(),
            head: f.head.clone(),
        });
        true
    }

    /// A file no longer at the path: kept open for late writes, or closed at once.
    fn retire(&mut self, f: OpenFile, now: Instant, emit: &mut impl FnMut(RawLine<'_>)) {
        if self.opts.rotate_wait.is_zero() {
            self.close(f, emit);
            return;
        }
        self.draining.push((f, now + self.opts.rotate_wait));
        if self.draining.len() > MAX_DRAINING {
            let (oldest, _) = self.draining.remove(0);
            self.close(oldest, emit);
        }
    }

    fn close(&mut self, mut f: OpenFile, emit: &mut impl FnMut(RawLine<'_>)) {
        f.reader.finish(&mut *emit);
        self.remember(f.remembered());
    }

    fn remember(&mut self, r: Remembered) {
        self.remembered.retain(|m| m.id != r.id);
        if self.remembered.len() == MAX_REMEMBERED {
            self.remembered.pop_front();
        }
        self.remembered.push_back(r);
    }

    fn is_known(&self, id: FileId) -> bool {
        self.current.as_ref().is_some_and(|f| f.id == id)
            || self.draining.iter().any(|(f, _)| f.id == id)
            || self.remembered.iter().any(|r| r.id == id)
    }

    /// Reads the files that were created at the path and rotated away between two looks
    /// (next to the file that was followed, born since the last complete catch-up, never
    /// seen), oldest first. A listing taken while the rotator renames files may miss one or
    /// name one that moved on: the listing is taken again until it finds nothing new (at most
    /// [`CATCH_UP_PASSES`] times), and when it never settles the next rotation looks back as
    /// far again. A file listed but gone everywhere at the end is a [`GapReason::Vanished`] gap.
    fn catch_up(
        &mut self,
        old_real: &Path,
        now: Instant,
        emit: &mut impl FnMut(RawLine<'_>),
    ) -> io::Result<()> {
        let mut unopened: Vec<FileId> = Vec::new();
        let mut settled = false;
        for _ in 0..CATCH_UP_PASSES {
            let (listed, mut raced) = rotated_siblings(old_real);
            let mut missed: Vec<(PathBuf, fs::Metadata)> = listed
                .into_iter()
                .filter(|(_, m)| !self.is_known(FileId::of(m)) && born_since(m, self.caught_up_to))
                .collect();
            missed.sort_by(|(pa, ma), (pb, mb)| older_first(pa, ma, pb, mb));
            let mut found = false;
            for (path, meta) in missed {
                let listed_id = FileId::of(&meta);
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        unopened.push(listed_id);
                        raced = true;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let id = FileId::of(&file.metadata()?);
                if id != listed_id || self.is_known(id) {
                    // Renamed once more since the listing: the next listing has it.
                    raced = true;
                    continue;
                }
                let f = OpenFile::new(file, id, path, Start::Beginning, self.opts.max_line_bytes)?;
                self.counters.caught_up += 1;
                found = true;
                self.draining.push((f, now + self.opts.rotate_wait));
                let last = self.draining.len() - 1;
                self.read(Slot::Draining(last), emit)?;
                if self.opts.rotate_wait.is_zero() {
                    let (f, _) = self.draining.remove(last);
                    self.close(f, emit);
                }
            }
            if !found && !raced {
                settled = true;
                break;
            }
        }
        unopened.sort_by_key(|id| (id.dev, id.ino));
        unopened.dedup();
        let vanished = unopened.iter().filter(|id| !self.is_known(**id)).count();
        self.counters.gaps[GapReason::Vanished.index()] += vanished as u64;
        self.catch_up_settled = settled;
        Ok(())
    }

    /// Makes the file now at the path the current one (not read yet).
    fn switch(&mut self) -> io::Result<()> {
        let first = !self.first_open_done;
        let file = match File::open(&self.path) {
            Ok(f) => f,
            // Gone again since the stat: the next poll looks once more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        self.first_open_done = true;
        let meta = file.metadata()?;
        let id = FileId::of(&meta);
        if let Some(pos) = self.draining.iter().position(|(f, _)| f.id == id) {
            // A rotated file back at the path (a symlink swapped back): go on where it was.
            let (f, _) = self.draining.remove(pos);
            self.current = Some(f);
            return Ok(());
        }
        let start = match self.remembered.iter().position(|r| r.id == id) {
            Some(pos) => {
                let r = self.remembered.remove(pos).expect("position is in range");
                if meta.len() >= r.offset && starts_with(&file, &r.head)? {
                    Start::At(r.offset)
                } else {
                    // The inode was reused for another file.
                    self.fresh_start(first, &meta)
                }
            }
            None => self.fresh_start(first, &meta),
        };
        let real = fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        self.current = Some(OpenFile::new(
            file,
            id,
            real,
            start,
            self.opts.max_line_bytes,
        )?);
        Ok(())
    }

    /// Where to start a file never read before.
    fn fresh_start(&self, first: bool, meta: &fs::Metadata) -> Start {
        if first {
            if self.opts.from_start {
                Start::Beginning
            } else {
                Start::End
            }
        } else if born_since(meta, self.last_look) {
            Start::Beginning
        } else {
            // An existing file put under the path (a symlink pointed at another old file): its
            // content was written before we looked, like a file that exists at the start.
            Start::End
        }
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Current,
    Draining(usize),
}

/// Reads up to `buf.len()` bytes at `off`; fewer at the end of the file.
fn read_at_most(file: &File, off: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// True when the file begins with `head`.
fn starts_with(file: &File, head: &[u8]) -> io::Result<bool> {
    let mut buf = vec![0; head.len()];
    let n = read_at_most(file, 0, &mut buf)?;
    Ok(n == head.len() && buf == head)
}
