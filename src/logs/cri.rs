//! Kubernetes CRI container log records, as kubelet's runtimes (containerd, CRI-O) write them
//! to `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`:
//! `<RFC3339Nano time> <stdout|stderr> <P|F>[:tag...] <content>`.
//!
//! A runtime splits an application line longer than its limit (containerd: 16 KiB) or written
//! in several `read()`s (CRI-O) into `P` (partial) records followed by one `F` (full, last)
//! record of the same stream; stdout and stderr records interleave in one file. [`CriJoiner`]
//! sits between a line reader and the parser: it passes every line through unchanged except
//! `P` records, which it holds per stream and joins with the next `F` record of that stream into
//! one `<time of the first piece> <stream> F <joined content>` line, bounded by the line limit
//! (a longer joined line becomes [`RawLine::TooLong`]). The parser reads the `F` record's prefix
//! ([`super::parse`]: `cri_time`, `stream`). Lines that are not CRI records pass unchanged, so a
//! file in any other format is not affected.
//!
//! Source: kubelet's parser (`staging/src/k8s.io/cri-client/pkg/logs/logs.go` `parseCRILog`),
//! containerd's writer (`internal/cri/io/logger.go`), conmon's (`src/ctr_logging.c`); see
//! `kubernetes.md` §1.1–1.2 of the project reference.

use super::reader::RawLine;
use super::timestamp;

/// The stream a CRI record was written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The container's standard output (PD's logs).
    Stdout,
    /// The container's standard error (TiKV's logs).
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// One CRI record split into its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The runtime's receive time as written (without the space after it).
    pub time: &'a [u8],
    /// The stream.
    pub stream: Stream,
    /// `P`: more pieces of this line follow; `F`: this is the last (or only) piece.
    pub partial: bool,
    /// Where the content starts in the record.
    pub content_at: usize,
}

/// Splits `line` (without its `\n`) into a CRI record, or `None` if it is not one: a valid
/// RFC 3339 time, one space, `stdout` or `stderr`, one space, a tag list whose first tag is `P`
/// or `F` (kubelet ignores further `:`-separated tags), then one space before the content or
/// the end of the line (an empty `F` record).
pub fn split_record(line: &[u8]) -> Option<Record<'_>> {
    let prefix = timestamp::parse_prefix(line).ok()?;
    split_after_time(line, prefix.len)
}

/// [`split_record`] for a line whose timestamp prefix (and its space) is already known to take
/// `time_len` bytes, as the parser knows after reading it.
pub(crate) fn split_after_time(line: &[u8], time_len: usize) -> Option<Record<'_>> {
    let time = &line[..time_len - 1];
    let rest = &line[time_len..];
    let stream = if rest.starts_with(b"stdout ") {
        Stream::Stdout
    } else if rest.starts_with(b"stderr ") {
        Stream::Stderr
    } else {
        return None;
    };
    let tags_at = time_len + 7;
    let tags = &line[tags_at..];
    let tags_len = tags.iter().position(|&c| c == b' ').unwrap_or(tags.len());
    let partial = match tags[..tags_len].split(|&c| c == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return None,
    };
    let content_at = (tags_at + tags_len + 1).min(line.len());
    Some(Record {
        time,
        stream,
        partial,
        content_at,
    })
}

/// A line being joined from `P` pieces.
#[derive(Debug, Default)]
struct Pending {
    /// `<time> <stream> F ` of the first piece, then the content so far.
    line: Vec<u8>,
    /// The joined line is longer than the limit: only its length is kept.
    too_long: Option<u64>,
}

/// Joins CRI `P` records with their `F` record, per stream; passes every other line through.
#[derive(Debug)]
pub struct CriJoiner {
    max_line: usize,
    pending: [Option<Pending>; 2],
    joined: Vec<u8>,
}

impl CriJoiner {
    /// A joiner whose joined lines are limited to `max_line` bytes (as the line reader's).
    pub fn new(max_line: usize) -> Self {
        CriJoiner {
            max_line: max_line.max(1),
            pending: [None, None],
            joined: Vec::new(),
        }
    }

    /// Whether a partial line is held (its `F` record has not arrived yet).
    pub fn has_partial(&self) -> bool {
        self.pending.iter().any(Option::is_some)
    }

    /// Hands `raw` on to `emit`, or holds it if it is a `P` record; an `F` record that ends a
    /// held line is handed on joined.
    pub fn push(&mut self, raw: RawLine<'_>, emit: &mut impl FnMut(RawLine<'_>)) {
        let RawLine::Line(line) = raw else {
            return emit(raw);
        };
        let Some(rec) = split_record(line) else {
            return emit(raw);
        };
        let i = rec.stream.index();
        let content = &line[rec.content_at..];
        let max = self.max_line;
        match (self.pending[i].take(), rec.partial) {
            (None, false) => emit(raw),
            (None, true) => {
                let mut p = Pending::default();
                p.line.extend_from_slice(rec.time);
                p.line.push(b' ');
                p.line.extend_from_slice(rec.stream.as_str().as_bytes());
                p.line.extend_from_slice(b" F ");
                self.pending[i] = Some(extend(p, content, max));
            }
            (Some(p), true) => self.pending[i] = Some(extend(p, content, max)),
            (Some(p), false) => {
                let p = extend(p, content, max);
                match p.too_long {
                    Some(len) => emit(RawLine::TooLong(len)),
                    None => {
                        self.joined = p.line;
                        emit(RawLine::Line(&self.joined));
                    }
                }
            }
        }
    }

    /// Hands on what is held at the end of the input: a line whose `F` record never came (the
    /// container exited without a newline) is still a line.
    pub fn finish(&mut self, emit: &mut impl FnMut(RawLine<'_>)) {
        for i in 0..self.pending.len() {
            if let Some(p) = self.pending[i].take() {
                match p.too_long {
                    Some(len) => emit(RawLine::TooLong(len)),
                    None => {
                        self.joined = p.line;
                        emit(RawLine::Line(&self.joined));
                    }
                }
            }
        }
    }
}

/// Adds `content` to `p`, keeping only the length once the line exceeds `max_line`.
fn extend(mut p: Pending, content: &[u8], max_line: usize) -> Pending {
    if let Some(len) = &mut p.too_long {
        *len += content.len() as u64;
    } else if p.line.len() + content.len() > max_line {
        p.too_long = Some((p.line.len() + content.len()) as u64);
        p.line = Vec::new();
    } else {
        p.line.extend_from_slice(content);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str], max: usize) -> Vec<String> {
        let mut j = CriJoiner::new(max);
        let mut out = Vec::new();
        let mut emit = |l: RawLine<'_>| {
            out.push(match l {
                RawLine::Line(b) => String::from_utf8_lossy(b).into_owned(),
                RawLine::TooLong(n) => format!("<too long: {n}>"),
            })
        };
        for l in lines {
            j.push(RawLine::Line(l.as_bytes()), &mut emit);
        }
        j.finish(&mut emit);
        out
    }

    #[test]
    fn splits_the_records_kubelet_accepts() {
        // kubelet's TestParseLog lines (kubernetes.md §1.3).
        let r =
            split_record(b"2016-10-20T18:39:20.57606443Z stdout F cri stdout test log").unwrap();
        assert_eq!(r.time, b"2016-10-20T18:39:20.57606443Z");
        assert_eq!((r.stream, r.partial), (Stream::Stdout, false));
        assert_eq!(r.content_at, 39);
        let r = split_record(b"2016-10-20T18:39:20.57606443Z stdout P:TAG1:TAG2 partial").unwrap();
        assert!(r.partial);
        // CRI-O: nine digits and a numeric offset.
        let line = b"2020-01-26T03:17:29.346494690+00:00 stderr F 2020/01/26 provider.go:117";
        let r = split_record(line).unwrap();
        assert_eq!(r.stream, Stream::Stderr);
        assert_eq!(&line[r.content_at..], b"2020/01/26 provider.go:117");
        // An empty application line.
        let r = split_record(b"2016-10-20T18:39:20.57606443Z stdout F ").unwrap();
        assert_eq!(r.content_at, 39, "empty content");
        let r = split_record(b"2016-10-20T18:39:20.57606443Z stdout F").unwrap();
        assert_eq!(r.content_at, 38, "empty content");
    }

    #[test]
    fn other_lines_are_not_records() {
        for line in [
            "[2026/08/01 10:00:00.123 +00:00] [INFO] [lib.rs:1] [\"Welcome to TiKV\"]",
            "2016-10-20T18:39:20.57606443Z [2026/08/01 10:00:00.123 +00:00] [INFO] [x]",
            "2016-10-20T18:39:20.57606443Z stdin F x",
            "2016-10-20T18:39:20.57606443Z stdout X x",
            "2016-10-20T18:39:20.57606443Z stdout FF x",
            "2016-10-20T18:39:20Q stdout F x",
        ] {
            assert_eq!(split_record(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn joins_partials_per_stream_and_passes_the_rest() {
        let out = run(
            &[
                "2023-01-27T13:40:28.1Z stderr P [2026/08/01 10:00:00.123 +00:00] [IN",
                "2023-01-27T13:40:28.2Z stdout F starting tikv-server",
                "2023-01-27T13:40:28.3Z stderr P FO] [lib.rs:1]",
                "plain line",
                "2023-01-27T13:40:28.4Z stderr F  [\"Welcome\"]",
                "2023-01-27T13:40:28.5Z stderr F next",
            ],
            1 << 20,
        );
        assert_eq!(
            out,
            [
                "2023-01-27T13:40:28.2Z stdout F starting tikv-server",
                "plain line",
                "2023-01-27T13:40:28.1Z stderr F [2026/08/01 10:00:00.123 +00:00] [INFO] [lib.rs:1] [\"Welcome\"]",
                "2023-01-27T13:40:28.5Z stderr F next",
            ]
        );
    }

    #[test]
    fn a_joined_line_over_the_limit_is_too_long_and_the_next_is_intact() {
        let out = run(
            &[
                "2023-01-27T13:40:28.1Z stderr P 0123456789",
                "2023-01-27T13:40:28.2Z stderr P 0123456789",
                "2023-01-27T13:40:28.3Z stderr F 0123456789",
                "2023-01-27T13:40:28.4Z stderr F ok",
            ],
            40,
        );
        // The prefix of the joined line (32 bytes) counts towards the limit, as in the file.
        assert_eq!(
            out,
            ["<too long: 62>", "2023-01-27T13:40:28.4Z stderr F ok"]
        );
    }

    #[test]
    fn a_partial_without_its_final_piece_is_handed_on_at_the_end() {
        // conmon: a container that exits without a newline leaves a P record (conmon#252).
        let out = run(
            &["2021-03-29T21:16:20.753110058-04:00 stdout P blah"],
            1 << 20,
        );
        assert_eq!(out, ["2021-03-29T21:16:20.753110058-04:00 stdout F blah"]);
    }
}
