//! Rebuilds log lines from the frames of `docker logs --timestamps`: one buffer per stream,
//! Docker's 16 KiB partial messages merged back, TTY output cut at `\n` with the repeated
//! timestamp prefixes removed, over-long lines reported by length and never buffered.

use bollard::container::LogOutput;
use memchr::{memchr, memmem};

use crate::logs::reader::RawLine;
use crate::logs::timestamp::{self, TimestampPrefix};

/// Marks a line that carried no docker timestamp (never deduplicated).
pub(crate) const NO_TS: i64 = i64::MIN;

/// Which stream a frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// Multiplexed stdout (or stdin) frames.
    Stdout,
    /// Multiplexed stderr frames.
    Stderr,
    /// A TTY container's raw output (no stream headers).
    Console,
}

impl StreamKind {
    /// Position of the stream's buffer in [`LineAssembler`].
    fn index(self) -> usize {
        self as usize
    }

    /// The kind and payload of a bollard frame.
    pub(crate) fn of(frame: &LogOutput) -> (StreamKind, &[u8]) {
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
    /// No line in progress.
    fn new() -> Self {
        Partial {
            buf: Vec::new(),
            ts: NO_TS,
            open: false,
            too_long: None,
        }
    }

    /// Adds `data` to the line, or only counts it once the line is over `limit` bytes.
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

    /// Forgets the line in progress (and a large buffer).
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
pub(crate) struct LineAssembler {
    /// The line in progress per [`StreamKind`].
    streams: [Partial; 3],
    /// Longer lines are reported as too long.
    max_line: usize,
}

impl LineAssembler {
    /// An assembler reporting lines over `max_line` bytes as too long.
    pub(crate) fn new(max_line: usize) -> Self {
        LineAssembler {
            streams: [Partial::new(), Partial::new(), Partial::new()],
            max_line: max_line.max(1),
        }
    }

    /// Feeds one frame; `emit(docker_ts_nanos, line)` is called for each completed line
    /// (`i64::MIN` when the line had no timestamp prefix).
    pub(crate) fn push(
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

    /// Appends TTY bytes, keeping the line's timestamp even when its bytes are dropped.
    fn console_append(p: &mut Partial, data: &[u8], limit: usize) {
        if p.too_long.is_none() && p.buf.len() + data.len() > limit && p.ts == NO_TS {
            // Keep the line's timestamp before its bytes are dropped.
            let mut head = p.buf.clone();
            head.extend_from_slice(&data[..data.len().min(64)]);
            p.ts = timestamp::parse_prefix(&head).map_or(NO_TS, |prefix| prefix.nanos);
        }
        p.append(data, limit);
    }

    /// Emits the completed multiplexed line.
    fn finish(p: &mut Partial, emit: &mut impl FnMut(i64, RawLine<'_>)) {
        match p.too_long {
            Some(n) => emit(p.ts, RawLine::TooLong(n)),
            None => emit(p.ts, RawLine::Line(&p.buf)),
        }
        p.reset();
    }

    /// Emits the completed TTY line without its timestamp prefixes.
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
    pub(crate) fn oldest_open(&self) -> Option<i64> {
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
    pub(crate) fn reset(&mut self) {
        for p in &mut self.streams {
            p.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::timestamp::tests::nanos as ts;

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
}
