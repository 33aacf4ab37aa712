//! Follows a log file like `tail -F`, by polling: starts at the end (or the start), survives
//! rename-and-create rotation (the old file is read to its end, then the new one from its
//! start) and copytruncate (size below the read offset → reopen from 0), and holds a partial
//! last line until its newline arrives.
//!
//! Known limit shared by every poller: with copytruncate, lines written between the copy and the
//! truncation are in the rotated copy only, and a file truncated *and* refilled past the old
//! offset between two polls cannot be told from one that grew.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::parse::DEFAULT_MAX_LINE_BYTES;
use super::reader::{LineReader, RawLine};

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

/// One open file and the offset its reader started at.
struct OpenFile {
    reader: LineReader<File>,
    id: FileId,
    base: u64,
}

impl OpenFile {
    fn open(path: &Path, at_end: bool, max_line: usize) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let id = FileId::of(&file.metadata()?);
        let base = if at_end {
            file.seek(SeekFrom::End(0))?
        } else {
            0
        };
        Ok(OpenFile {
            reader: LineReader::new(file, max_line),
            id,
            base,
        })
    }

    fn offset(&self) -> u64 {
        self.base + self.reader.bytes_read()
    }
}

/// What a poll found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileStatus {
    /// The file is open and was read to its current end.
    Open,
    /// The path does not exist (yet); nothing is open.
    Missing,
}

/// Counts of what happened to the file over its life, for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowCounters {
    /// Rename-and-create rotations seen.
    pub rotations: u64,
    /// Truncations seen (copytruncate or `> file`).
    pub truncations: u64,
}

/// A polling follower of one path.
pub struct FileFollower {
    path: PathBuf,
    opts: FollowOptions,
    current: Option<OpenFile>,
    /// A rotated-away file read until its deadline, for writers that reopen late.
    draining: Vec<(OpenFile, Instant)>,
    first_open_done: bool,
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
            first_open_done: false,
            counters: FollowCounters::default(),
        }
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rotations and truncations seen so far.
    pub fn counters(&self) -> FollowCounters {
        self.counters
    }

    /// Reads everything new, emitting complete lines in file order (a rotated file's remaining
    /// lines before the new file's).
    pub fn poll(&mut self, mut emit: impl FnMut(RawLine<'_>)) -> io::Result<FileStatus> {
        let now = Instant::now();
        let mut i = 0;
        while i < self.draining.len() {
            let (old, deadline) = &mut self.draining[i];
            old.reader.read_available(&mut emit)?;
            if now >= *deadline {
                old.reader.finish(&mut emit);
                self.draining.remove(i);
            } else {
                i += 1;
            }
        }

        if let Some(cur) = &mut self.current {
            cur.reader.read_available(&mut emit)?;
        }
        let meta = match fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let Some(meta) = meta else {
            // Renamed away and not yet recreated: keep reading what we have open.
            self.first_open_done = true;
            return Ok(if self.current.is_some() {
                FileStatus::Open
            } else {
                FileStatus::Missing
            });
        };
        if !meta.is_file() {
            // Never opened: opening a FIFO blocks until a writer appears (and then shutdown
            // with it), and a device never ends.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file (a FIFO, socket, device or directory); only regular files are followed",
            ));
        }
        match self.current.take() {
            None => {
                let at_end = !self.first_open_done && !self.opts.from_start;
                self.open_and_read(at_end, &mut emit)?;
            }
            Some(mut cur) if FileId::of(&meta) != cur.id => {
                self.counters.rotations += 1;
                cur.reader.read_available(&mut emit)?;
                if self.opts.rotate_wait.is_zero() {
                    cur.reader.finish(&mut emit);
                } else {
                    self.draining.push((cur, now + self.opts.rotate_wait));
                }
                self.open_and_read(false, &mut emit)?;
            }
            Some(mut cur) if meta.len() < cur.offset() => {
                // Truncated in place (or replaced by a file that reused the inode): what is
                // still buffered is the cut-off end of a line; keep it as a line of its own.
                self.counters.truncations += 1;
                cur.reader.finish(&mut emit);
                self.open_and_read(false, &mut emit)?;
            }
            Some(cur) => self.current = Some(cur),
        }
        Ok(FileStatus::Open)
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

    fn open_and_read(
        &mut self,
        at_end: bool,
        emit: &mut impl FnMut(RawLine<'_>),
    ) -> io::Result<()> {
        self.first_open_done = true;
        let mut f = OpenFile::open(&self.path, at_end, self.opts.max_line_bytes)?;
        f.reader.read_available(emit)?;
        self.current = Some(f);
        Ok(())
    }
}
