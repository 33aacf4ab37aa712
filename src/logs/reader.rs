//! Splits a byte stream into lines with bounded memory: a partial last line is held until its
//! newline arrives, and a line longer than the maximum is reported (with its length) instead of
//! being buffered.

use std::io::{self, Read};

use memchr::memchr;

/// One physical line handed to a consumer.
#[derive(Debug, PartialEq, Eq)]
pub enum RawLine<'a> {
    /// A complete line without its `\n` (a `\r` before it is left for the parser).
    Line(&'a [u8]),
    /// A line longer than the maximum; only its length in bytes (without `\n`) is known.
    TooLong(u64),
}

/// A run of complete lines, or the length of one over-long line that was skipped.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// One or more complete lines, the last one ending in `\n`.
    Lines(&'a [u8]),
    /// A line longer than the maximum; only its length in bytes (without `\n`) is known.
    TooLong(u64),
}

/// Splits a [`Chunk::Lines`] into lines, reporting those over `max_line` as too long.
pub fn split_chunk(chunk: &[u8], max_line: usize, mut emit: impl FnMut(RawLine<'_>)) {
    let mut rest = chunk;
    while !rest.is_empty() {
        let (line, next) = match memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        if line.len() > max_line {
            emit(RawLine::TooLong(line.len() as u64));
        } else {
            emit(RawLine::Line(line));
        }
        rest = next;
    }
}

const READ_CHUNK: usize = 256 * 1024;

/// Incremental line splitter over any reader.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    /// Where to resume searching for `\n` (everything in `start..scan` has none).
    scan: usize,
    max_line: usize,
    /// Length of an over-long line being skipped, until its newline.
    discarding: Option<u64>,
    /// Bytes consumed from `inner` so far.
    consumed: u64,
}

impl<R: Read> LineReader<R> {
    /// Wraps `inner`; lines longer than `max_line` bytes are reported as [`RawLine::TooLong`].
    pub fn new(inner: R, max_line: usize) -> Self {
        let max_line = max_line.max(1);
        LineReader {
            inner,
            buf: vec![0; READ_CHUNK.min(max_line + 1).max(4096)],
            start: 0,
            end: 0,
            scan: 0,
            max_line,
            discarding: None,
            consumed: 0,
        }
    }

    /// Total bytes read from the underlying reader.
    pub fn bytes_read(&self) -> u64 {
        self.consumed
    }

    /// True when a partial line (or an over-long line being skipped) is pending.
    pub fn has_partial(&self) -> bool {
        self.end > self.start || self.discarding.is_some()
    }

    /// The underlying reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Reads until the underlying reader reports end of input, emitting every complete line.
    /// A trailing partial line stays buffered for the next call (or [`LineReader::finish`]).
    pub fn read_available(&mut self, mut emit: impl FnMut(RawLine<'_>)) -> io::Result<()> {
        loop {
            self.drain_lines(&mut emit);
            if !self.fill()? {
                return Ok(());
            }
        }
    }

    /// Emits the pending partial line, if any, as a line of its own (at a true end of input).
    pub fn finish(&mut self, mut emit: impl FnMut(RawLine<'_>)) {
        if let Some(len) = self.discarding.take() {
            emit(RawLine::TooLong(len + (self.end - self.start) as u64));
        } else if self.end > self.start {
            emit(RawLine::Line(&self.buf[self.start..self.end]));
        }
        self.clear();
    }

    /// Replaces the underlying reader, dropping any partial line (call `finish` first to keep it).
    pub fn reset(&mut self, inner: R) {
        self.inner = inner;
        self.consumed = 0;
        self.clear();
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.scan = 0;
        self.discarding = None;
    }

    /// Like [`LineReader::read_available`] but hands over runs of complete lines at once:
    /// each [`Chunk::Lines`] holds one or more whole lines, each ending in `\n`. Lines in a
    /// chunk may still exceed the maximum; split them with [`split_chunk`].
    pub fn read_chunks(&mut self, mut emit: impl FnMut(Chunk<'_>)) -> io::Result<()> {
        loop {
            if let Some(len) = self.discarding {
                // Finish skipping the over-long line first.
                if let Some(i) = memchr(b'\n', &self.buf[self.start..self.end]) {
                    emit(Chunk::TooLong(len + i as u64));
                    self.discarding = None;
                    self.start += i + 1;
                }
            }
            if self.discarding.is_none() {
                let from = self.scan.max(self.start);
                if let Some(i) = memchr::memrchr(b'\n', &self.buf[from..self.end]) {
                    let last = from + i;
                    emit(Chunk::Lines(&self.buf[self.start..=last]));
                    self.start = last + 1;
                }
            }
            self.scan = self.end;
            let pending = self.end - self.start;
            if pending > self.max_line || (self.discarding.is_some() && pending > 0) {
                *self.discarding.get_or_insert(0) += pending as u64;
                self.start = self.end;
                self.scan = self.end;
            }
            if !self.fill()? {
                return Ok(());
            }
        }
    }

    /// Reads once into the free space; false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        self.make_room();
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    self.consumed += n as u64;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn drain_lines(&mut self, emit: &mut impl FnMut(RawLine<'_>)) {
        while let Some(i) = memchr(b'\n', &self.buf[self.scan..self.end]) {
            let nl = self.scan + i;
            if let Some(len) = self.discarding.take() {
                emit(RawLine::TooLong(len + (nl - self.start) as u64));
            } else if nl - self.start > self.max_line {
                emit(RawLine::TooLong((nl - self.start) as u64));
            } else {
                emit(RawLine::Line(&self.buf[self.start..nl]));
            }
            self.start = nl + 1;
            self.scan = self.start;
        }
        self.scan = self.end;
        // A partial line already over the limit is dropped and only its length kept.
        let pending = self.end - self.start;
        if pending > self.max_line {
            *self.discarding.get_or_insert(0) += pending as u64;
            self.start = self.end;
            self.scan = self.end;
        }
    }

    /// Ensures free space after `end`, moving the partial line to the front or growing the buffer
    /// (never beyond what one line of `max_line` bytes needs).
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.scan = 0;
        }
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scan -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let target = (self.buf.len() * 2).min(self.max_line + 1 + READ_CHUNK);
            self.buf.resize(target.max(self.buf.len() + 1), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns its data in fixed-size pieces, like a pipe or a growing file.
    struct Pieces<'a> {
        data: &'a [u8],
        piece: usize,
    }

    impl Read for Pieces<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.piece.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn collect(data: &[u8], piece: usize, max: usize) -> Vec<Result<Vec<u8>, u64>> {
        let mut r = LineReader::new(Pieces { data, piece }, max);
        let mut out = Vec::new();
        let mut push = |l: RawLine<'_>| {
            out.push(match l {
                RawLine::Line(b) => Ok(b.to_vec()),
                RawLine::TooLong(n) => Err(n),
            })
        };
        r.read_available(&mut push).unwrap();
        r.finish(&mut push);
        out
    }

    #[test]
    fn splits_lines_across_any_read_size() {
        let data = b"alpha\r\nbeta\n\ngamma";
        for piece in [1, 2, 3, 7, 1000] {
            assert_eq!(
                collect(data, piece, 100),
                vec![
                    Ok(b"alpha\r".to_vec()),
                    Ok(b"beta".to_vec()),
                    Ok(Vec::new()),
                    Ok(b"gamma".to_vec())
                ],
                "piece {piece}"
            );
        }
    }

    #[test]
    fn over_long_lines_are_reported_with_their_length_and_not_buffered() {
        let mut data = vec![b'x'; 10_000];
        data.extend_from_slice(b"\nok\n");
        data.extend(std::iter::repeat_n(b'y', 5000));
        for piece in [1, 100, 4096, 1 << 20] {
            let got = collect(&data, piece, 64);
            assert_eq!(got, vec![Err(10_000), Ok(b"ok".to_vec()), Err(5000)]);
        }
        let r = LineReader::new(
            Pieces {
                data: &data,
                piece: 1 << 20,
            },
            64,
        );
        assert!(r.buf.len() <= 4096, "buffer sized by the limit");
    }

    fn collect_chunked(data: &[u8], piece: usize, max: usize) -> Vec<Result<Vec<u8>, u64>> {
        let mut r = LineReader::new(Pieces { data, piece }, max);
        let mut out = Vec::new();
        let mut push = |l: RawLine<'_>| {
            out.push(match l {
                RawLine::Line(b) => Ok(b.to_vec()),
                RawLine::TooLong(n) => Err(n),
            })
        };
        r.read_chunks(|c| match c {
            Chunk::Lines(b) => {
                assert_eq!(b.last(), Some(&b'\n'), "chunks hold whole lines");
                split_chunk(b, max, &mut push)
            }
            Chunk::TooLong(n) => push(RawLine::TooLong(n)),
        })
        .unwrap();
        r.finish(&mut push);
        out
    }

    #[test]
    fn chunked_reading_yields_exactly_the_lines_of_line_reading() {
        let mut data = Vec::new();
        for i in 0..300 {
            data.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, (i * 37) % 150));
            data.push(b'\n');
        }
        data.extend_from_slice(b"tail without newline");
        for piece in [1, 5, 64, 100, 4096, 1 << 20] {
            for max in [10, 64, 149, 10_000] {
                assert_eq!(
                    collect_chunked(&data, piece, max),
                    collect(&data, piece, max),
                    "piece {piece} max {max}"
                );
            }
        }
    }

    #[test]
    fn partial_line_waits_for_its_newline() {
        let mut r = LineReader::new(io::Cursor::new(b"one\ntw".to_vec()), 100);
        let mut lines = Vec::new();
        r.read_available(|l| lines.push(format!("{l:?}"))).unwrap();
        assert_eq!(lines, vec![format!("{:?}", RawLine::Line(b"one"))]);
        assert!(r.has_partial());
        r.get_mut().get_mut().extend_from_slice(b"o\n");
        r.read_available(|l| lines.push(format!("{l:?}"))).unwrap();
        assert_eq!(lines[1], format!("{:?}", RawLine::Line(b"two")));
        assert!(!r.has_partial());
        assert_eq!(r.bytes_read(), 8);
    }
}
