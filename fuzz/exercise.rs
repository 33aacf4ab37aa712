//! What the `parse_line` fuzz target does with one input, shared with the corpus replay test.
//!
//! Included with `#[path]` by `fuzz/fuzz_targets/parse_line.rs` (under cargo-fuzz) and by
//! `tests/fuzz_corpus.rs` (under `cargo test`, which replays `fuzz/corpus/parse_line/` and
//! `fuzz/regressions/`). Every check panics on failure, which libFuzzer reports as a crash.
//!
//! For one input it:
//! - parses it as a line and touches everything a consumer can ask for (tokens, fields, time,
//!   classification), checking the invariants below;
//! - checks that trailing `\n`, `\r\n` and blanks do not change the result, and that adding or
//!   removing a container timestamp prefix only changes `docker_time`;
//! - parses each of its `\n`-separated lines the same way;
//! - splits it into lines with [`LineReader`] (line-wise and chunk-wise, small maximum lengths,
//!   several read sizes) and compares both against a plain split; then does the same with the
//!   input repeated past the reader's 4 KiB buffer, so that the buffer is compacted and grown.

use std::io::{self, Read};
use std::sync::OnceLock;

use chrono::{DateTime, SecondsFormat};
use tikv_health_exporter::logs::events::{Classifier, EventKind};
use tikv_health_exporter::logs::parse::{Level, LogLine, LogTime, Token, parse_line};
use tikv_health_exporter::logs::reader::{Chunk, LineReader, RawLine, split_chunk};

/// A `docker logs --timestamps` prefix, prepended to lines that have none.
const DOCKER_PREFIX: &str = "2023-01-07T08:49:18.857903341Z";

/// Maximum line lengths given to the line reader: small, so that inputs exceed them.
const MAX_LINES: [usize; 2] = [7, 64];

/// Sizes of the pieces the line reader gets from its reader (`usize::MAX`: all at once).
const PIECES: [usize; 3] = [1, 5, usize::MAX];

/// The input is also read repeated to at least this length, past the reader's initial buffer.
const LONG_INPUT: usize = 6000;

/// Maximum line lengths for the repeated input; the larger one makes the reader grow its buffer.
const LONG_MAX_LINES: [usize; 2] = [64, 5000];

/// Read size for the repeated input (an odd size, so reads straddle the buffer's end).
const LONG_PIECE: usize = 777;

/// Runs every check on one input.
pub fn exercise(data: &[u8]) {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    let classifier = CLASSIFIER.get_or_init(Classifier::new);

    check_line(data, classifier);
    if data.contains(&b'\n') {
        for line in data.split(|&c| c == b'\n') {
            check_line(line, classifier);
        }
    }
    for max_line in MAX_LINES {
        for piece in PIECES {
            check_reader(data, max_line, piece);
        }
    }
    if !data.is_empty() {
        let long = data.repeat(LONG_INPUT / data.len() + 1);
        for max_line in LONG_MAX_LINES {
            check_reader(&long, max_line, LONG_PIECE);
        }
    }
}

/// Parses `data` as one line, touches the result and checks its variants.
fn check_line(data: &[u8], classifier: &Classifier) {
    let parsed = parse_line(data);
    if let Ok(line) = &parsed {
        touch(line, data, classifier);
    }

    // A physical line (no `\n`) parses the same with a line ending or trailing blanks. A line
    // that already ends in `\r` is excluded: only one `\r` before the `\n` is stripped.
    if !data.contains(&b'\n') && data.last() != Some(&b'\r') {
        let want = format!("{parsed:?}");
        for suffix in [&b"\n"[..], b"\r\n", b" \t ", b" \r\n"] {
            let variant = [data, suffix].concat();
            let got = parse_line(&variant);
            assert_eq!(
                format!("{got:?}"),
                want,
                "appending {suffix:?} changed the result"
            );
            if let Ok(line) = &got {
                touch(line, &variant, classifier);
            }
        }
    }

    let Ok(line) = parsed else { return };
    match line.docker_time {
        Some(ts) => {
            // Without its container prefix the line is the same line.
            let rest = &data[ts.len() + 1..];
            let bare = parse_line(rest).unwrap_or_else(|e| {
                panic!("line without its docker prefix {ts:?} does not parse: {e}")
            });
            assert_eq!(bare.docker_time, None);
            assert_eq!(summary(&bare), summary(&line), "docker prefix removed");
            touch(&bare, rest, classifier);
        }
        None => {
            // With a container prefix the line is the same line.
            let variant = [DOCKER_PREFIX.as_bytes(), b" ", data].concat();
            let prefixed = parse_line(&variant)
                .unwrap_or_else(|e| panic!("line with a docker prefix does not parse: {e}"));
            assert_eq!(prefixed.docker_time, Some(DOCKER_PREFIX));
            assert_eq!(summary(&prefixed), summary(&line), "docker prefix added");
            touch(&prefixed, &variant, classifier);
        }
    }
}

/// Everything about a parsed line except its container prefix, for comparisons.
fn summary(line: &LogLine<'_>) -> String {
    let mut l = *line;
    l.docker_time = None;
    let fields: Vec<_> = line.fields().collect();
    format!("{l:?} {fields:?}")
}

/// Touches everything a consumer can ask of a parsed line and checks what must hold.
fn touch(line: &LogLine<'_>, data: &[u8], classifier: &Classifier) {
    assert_eq!(
        Level::from_bytes(line.level.as_str().as_bytes()),
        Some(line.level)
    );
    assert!(line.level.index() < Level::ALL.len());

    if let Some(ts) = line.docker_time {
        assert!(data.starts_with(ts.as_bytes()), "docker time is a prefix");
        assert_eq!(
            data.get(ts.len()),
            Some(&b' '),
            "docker time ends in a space"
        );
    }
    if let Some(t) = &line.time {
        check_time(t);
    }
    if let Some(source) = &line.source {
        check_token(source, data);
    }
    if let Some(message) = &line.message {
        check_token(message, data);
    }

    let mut region = None;
    for f in line.fields() {
        check_token(&f.key, data);
        check_token(&f.value, data);
        if region.is_none() && (f.key.eq_str("region_id") || f.key.eq_str("region-id")) {
            region = Some(f.value);
        }
    }
    assert_eq!(line.field(&["region_id", "region-id"]), region);

    let event = classifier.classify(line);
    if line.message.is_none() {
        assert_eq!(event, None, "an event needs a message");
    }
    if let Some(ev) = event {
        assert_eq!(EventKind::ALL[ev.kind.index()], ev.kind);
        std::hint::black_box(ev.kind.as_str());
    }
}

/// Checks a token's accessors against each other; `data` is the line it was parsed from.
fn check_token(tok: &Token<'_>, data: &[u8]) {
    let raw = tok.raw();
    if !raw.is_empty() {
        // Zero-copy: the token borrows from the line. (The empty message of `[]` is a static.)
        let start = raw.as_ptr() as usize;
        let begin = data.as_ptr() as usize;
        assert!(
            start >= begin && start + raw.len() <= begin + data.len(),
            "token {raw:?} does not borrow from the line"
        );
    }

    let decoded = tok.decode();
    let bytes = tok.bytes();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        decoded,
        "bytes() vs decode()"
    );
    if tok.is_escaped() {
        assert!(raw.contains(&b'\\'), "escaped token without a backslash");
    } else {
        assert_eq!(&*bytes, raw, "unescaped bytes() is the raw text");
    }
    if tok.is_escaped() || std::str::from_utf8(raw).is_ok() {
        assert!(tok.eq_str(&decoded), "eq_str(decode()) for {raw:?}");
    }

    let std_parse = std::str::from_utf8(&bytes)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());
    assert_eq!(tok.to_u64(), std_parse, "to_u64 of {bytes:?}");
}

/// Checks the time conversions against each other and against chrono's own parser.
fn check_time(t: &LogTime) {
    let dt = t.to_datetime();
    let rfc = t.to_rfc3339();
    let parsed = DateTime::parse_from_rfc3339(&rfc)
        .unwrap_or_else(|e| panic!("to_rfc3339 gave {rfc:?}, which does not parse: {e}"));
    assert_eq!(parsed, dt, "to_rfc3339 {rfc:?} vs to_datetime {dt:?}");
    assert_eq!(parsed.offset(), dt.offset(), "offset of {rfc:?}");
    assert_eq!(rfc, dt.to_rfc3339_opts(SecondsFormat::Millis, false));
    assert_eq!(t.timestamp_millis(), dt.timestamp_millis());

    // Formatting the time back into the log format gives the same time.
    let text = dt.format("%Y/%m/%d %H:%M:%S%.3f %:z").to_string();
    assert_eq!(
        LogTime::parse(text.as_bytes()),
        Ok(*t),
        "round trip via {text:?}"
    );
}

/// One line as the reader reports it: its bytes, or the length of an over-long line.
type Seen<'a> = Result<&'a [u8], u64>;

fn seen(line: RawLine<'_>) -> Seen<'_> {
    match line {
        RawLine::Line(b) => Ok(b),
        RawLine::TooLong(n) => Err(n),
    }
}

/// The lines of `data` split on `\n` (a final `\n` ends the last line rather than starting an
/// empty one), those longer than `max_line` reported by length.
fn expected_lines(data: &[u8], max_line: usize) -> impl Iterator<Item = Seen<'_>> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let lines = if data.is_empty() { 0 } else { usize::MAX };
    body.split(|&c| c == b'\n').take(lines).map(move |l| {
        if l.len() > max_line {
            Err(l.len() as u64)
        } else {
            Ok(l)
        }
    })
}

/// A reader that returns its data in pieces of at most `piece` bytes, like a pipe.
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

/// Reads `data` line-wise and chunk-wise; both must give exactly the plain split.
fn check_reader(data: &[u8], max_line: usize, piece: usize) {
    for chunked in [false, true] {
        // Compared line by line as they come, without copying them.
        let mut want = expected_lines(data, max_line);
        let mut index = 0usize;
        let mut check = |got: Seen<'_>| {
            assert_eq!(
                Some(got),
                want.next(),
                "line {index}, chunked {chunked}, max_line {max_line}, piece {piece}"
            );
            index += 1;
        };
        let mut r = LineReader::new(Pieces { data, piece }, max_line);
        let read = if chunked {
            r.read_chunks(|c| match c {
                Chunk::Lines(b) => {
                    assert_eq!(b.last(), Some(&b'\n'), "a chunk holds whole lines");
                    split_chunk(b, max_line, |l| check(seen(l)));
                }
                Chunk::TooLong(n) => check(Err(n)),
            })
        } else {
            r.read_available(|l| check(seen(l)))
        };
        read.expect("reading from memory cannot fail");
        r.finish(|l| check(seen(l)));
        assert_eq!(
            want.next(),
            None,
            "missing lines, chunked {chunked}, max_line {max_line}, piece {piece}"
        );
        assert!(!r.has_partial());
        assert_eq!(r.bytes_read(), data.len() as u64);
    }
}
