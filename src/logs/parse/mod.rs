//! Zero-copy parser for the TiDB unified log format (RFC 0018) as TiKV (slog) and PD (zap) emit it.
//!
//! [`parse_line`] validates the whole structure of a line (header, message, every field bracket,
//! every escape sequence) in one pass over borrowed bytes without allocating. Decoding of JSON
//! escapes, UTF-8 validation and the conversion of the time to a chrono value happen only when a
//! consumer asks for them ([`Token::decode`], [`LogTime::to_datetime`], [`LogLine::fields`]).

mod json;
mod time;
mod token;

use std::fmt;

use memchr::{memchr, memchr2};

use super::cri::{self, Stream};
use super::timestamp::{self, DATE_TIME_LEN, PrefixError};
use json::{is_reserved_json_key, json_member, parse_json_line};
pub use time::LogTime;
use token::quoted;
pub use token::{Token, parse_u64};

pub use crate::domain::DEFAULT_MAX_LINE_BYTES;

/// Log level as written in the level bracket (TiKV and zap levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// `FATAL`
    Fatal,
    /// `PANIC` (zap)
    Panic,
    /// `DPANIC` (zap)
    Dpanic,
    /// `ERROR`
    Error,
    /// `WARN`
    Warn,
    /// `INFO`
    Info,
    /// `DEBUG`
    Debug,
    /// `TRACE` (TiKV)
    Trace,
}

impl Level {
    /// Every level, in the order of [`Level::index`].
    pub const ALL: [Level; 8] = [
        Level::Fatal,
        Level::Panic,
        Level::Dpanic,
        Level::Error,
        Level::Warn,
        Level::Info,
        Level::Debug,
        Level::Trace,
    ];

    /// The level as written in logs (`"INFO"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Fatal => "FATAL",
            Level::Panic => "PANIC",
            Level::Dpanic => "DPANIC",
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }

    /// Dense index in `0..Level::ALL.len()`, for per-level counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses an upper-case level name.
    pub fn from_bytes(b: &[u8]) -> Option<Level> {
        Some(match b {
            b"INFO" => Level::Info,
            b"WARN" => Level::Warn,
            b"ERROR" => Level::Error,
            b"DEBUG" => Level::Debug,
            b"FATAL" => Level::Fatal,
            b"TRACE" => Level::Trace,
            b"DPANIC" => Level::Dpanic,
            b"PANIC" => Level::Panic,
            _ => return None,
        })
    }

    /// Parses a level name in any case (zap's JSON encoder may write `"info"`).
    fn from_bytes_any_case(b: &[u8]) -> Option<Level> {
        if b.len() > 6 {
            return None;
        }
        let mut up = [0u8; 6];
        for (d, s) in up.iter_mut().zip(b) {
            *d = s.to_ascii_uppercase();
        }
        Level::from_bytes(&up[..b.len()])
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[key=value]` field (or one non-reserved member of a JSON-format line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field key.
    pub key: Token<'a>,
    /// The field value (for JSON-format lines: strings decoded, other JSON values as written).
    pub value: Token<'a>,
}

/// Which of the two TiDB log encodings a line used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `[time] [LEVEL] [source] [message] [k=v]...`
    Text,
    /// `log.format = "json"`: one JSON object per line.
    Json,
}

/// A structurally valid log line, borrowing from the input.
#[derive(Clone, Copy, Debug)]
pub struct LogLine<'a> {
    /// Container-runtime receive time prefix (`docker logs --timestamps`, or the time of a
    /// Kubernetes CRI record), as written.
    pub docker_time: Option<&'a str>,
    /// The stream of a Kubernetes CRI record (`<time> <stream> F <line>`); `None` otherwise.
    pub stream: Option<Stream>,
    /// The line's own time, absent when timestamps are disabled.
    pub time: Option<LogTime>,
    /// The level.
    pub level: Level,
    /// `file.rs:123` or `<unknown>`; absent when PD omits the caller.
    pub source: Option<Token<'a>>,
    /// The message; `Some("")` for TiKV's empty `[]`, `None` when PD omits it.
    pub message: Option<Token<'a>>,
    /// Which encoding the line used.
    pub format: Format,
    /// The validated remainder holding the fields.
    fields_raw: &'a [u8],
}

impl<'a> LogLine<'a> {
    /// Iterates the fields in order, duplicates kept, bare `[]` skipped.
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            rest: self.fields_raw,
            format: self.format,
        }
    }

    /// The first field whose decoded key equals one of `keys`.
    pub fn field(&self, keys: &[&str]) -> Option<Token<'a>> {
        self.fields()
            .find(|f| keys.iter().any(|k| f.key.eq_str(k)))
            .map(|f| f.value)
    }
}

/// Iterator over the fields of a [`LogLine`].
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    rest: &'a [u8],
    format: Format,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        match self.format {
            Format::Text => loop {
                // `rest` is the validated field section: "[..] [..] ..." (possibly empty).
                let (bracket, end) = parse_bracket(self.rest, 0).ok()?;
                // Skip the `]` and the single separating space.
                self.rest = self.rest.get(end + 2..).unwrap_or(&[]);
                match bracket {
                    Bracket::Field(key, value) => return Some(Field { key, value }),
                    Bracket::Empty => continue,
                    Bracket::Bare(_) => return None,
                }
            },
            Format::Json => loop {
                let (key, value, end) = json_member(self.rest, 0).ok()??;
                self.rest = self.rest.get(end..).unwrap_or(&[]);
                if !is_reserved_json_key(&key) {
                    return Some(Field { key, value });
                }
            },
        }
    }
}

/// Why a line is not a unified-format log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The line is empty (or only whitespace).
    Empty,
    /// The line does not start with a time, level bracket or JSON object.
    NoHeader,
    /// The time bracket is not `[yyyy/MM/dd HH:mm:ss.SSS ±hh:mm]`.
    BadTime,
    /// The container-runtime timestamp prefix is malformed.
    BadDockerTime,
    /// The level bracket is missing or names an unknown level.
    BadLevel,
    /// A bracket is not closed.
    UnclosedBracket,
    /// A JSON string is not terminated.
    UnterminatedString,
    /// A JSON escape sequence is invalid.
    BadEscape,
    /// Sections are not separated by exactly one space followed by `[`.
    BadSeparator,
    /// A bracket in the field section has no `=`.
    FieldWithoutEquals,
    /// A quoted key is not followed by `=` or a quoted value by `]`.
    BadQuotedToken,
    /// A JSON-format line is not a valid JSON object.
    BadJson,
    /// A JSON-format line has no `level` member.
    JsonWithoutLevel,
    /// The physical line exceeds the configured maximum length.
    TooLong,
    /// A Kubernetes CRI `P` record: a piece of a line, joined with the rest by the log sources
    /// ([`crate::logs::cri::CriJoiner`]), never parsed alone.
    CriPartial,
}

impl ErrorKind {
    /// A short, stable description.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Empty => "empty line",
            ErrorKind::NoHeader => "not a unified log line: no [time] or [LEVEL] header",
            ErrorKind::BadTime => "invalid time bracket",
            ErrorKind::BadDockerTime => "invalid container timestamp prefix",
            ErrorKind::BadLevel => "missing or unknown level",
            ErrorKind::UnclosedBracket => "unclosed bracket",
            ErrorKind::UnterminatedString => "unterminated quoted string",
            ErrorKind::BadEscape => "invalid escape sequence in quoted string",
            ErrorKind::BadSeparator => "sections must be separated by one space",
            ErrorKind::FieldWithoutEquals => "field without '='",
            ErrorKind::BadQuotedToken => "unexpected character after quoted string",
            ErrorKind::BadJson => "invalid JSON log line",
            ErrorKind::JsonWithoutLevel => "JSON log line without \"level\"",
            ErrorKind::TooLong => "line exceeds the maximum length",
            ErrorKind::CriPartial => "partial CRI record (a piece of a longer line)",
        }
    }
}

/// A malformed line: what is wrong and at which byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Byte offset in the line where the problem was found.
    pub at: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind.as_str(), self.at)
    }
}

impl std::error::Error for ParseError {}

fn err<T>(kind: ErrorKind, at: usize) -> Result<T, ParseError> {
    Err(ParseError { kind, at })
}

/// Parses one physical line (a trailing `\n` / `\r\n` is ignored).
pub fn parse_line(line: &[u8]) -> Result<LogLine<'_>, ParseError> {
    let mut b = line;
    if let [rest @ .., b'\n'] = b {
        b = rest;
    }
    if let [rest @ .., b'\r'] = b {
        b = rest;
    }
    // Trailing blanks carry no information; tolerate them.
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    if b.is_empty() {
        return err(ErrorKind::Empty, 0);
    }
    let mut pos = 0;
    let mut docker_time = None;
    let mut stream = None;
    if b[0].is_ascii_digit() {
        let (ts, next) = docker_prefix(b)?;
        docker_time = Some(ts);
        pos = next;
        if let Some(rec) = cri::split_after_time(b, next) {
            if rec.partial {
                return err(ErrorKind::CriPartial, next);
            }
            stream = Some(rec.stream);
            pos = rec.content_at;
            if pos >= b.len() {
                return err(ErrorKind::Empty, pos);
            }
        }
    }
    match b.get(pos) {
        Some(b'{') => return parse_json_line(b, pos, docker_time, stream),
        // TiKV with `log.enable-timestamp = false` keeps the separating space.
        Some(b' ') if b.get(pos + 1) == Some(&b'[') => pos += 1,
        Some(b'[') => {}
        _ => return err(ErrorKind::NoHeader, pos),
    }
    let mut time = None;
    if b.get(pos + 1).is_some_and(u8::is_ascii_digit) {
        let t = b.get(pos + 1..pos + 31).ok_or(ParseError {
            kind: ErrorKind::BadTime,
            at: pos,
        })?;
        time = Some(LogTime::parse(t).map_err(|kind| ParseError { kind, at: pos })?);
        if b.get(pos + 31) != Some(&b']') {
            return err(ErrorKind::BadTime, pos + 31);
        }
        pos += 32;
        if b.get(pos) != Some(&b' ') || b.get(pos + 1) != Some(&b'[') {
            return err(ErrorKind::BadLevel, pos);
        }
        pos += 1;
    }
    // Level bracket at `pos`.
    let close = b
        .get(pos + 1..)
        .and_then(|r| r.iter().take(8).position(|&c| c == b']'))
        .ok_or(ParseError {
            kind: ErrorKind::BadLevel,
            at: pos,
        })?;
    let level = Level::from_bytes(&b[pos + 1..pos + 1 + close]).ok_or(ParseError {
        kind: ErrorKind::BadLevel,
        at: pos,
    })?;
    pos += close + 2;

    let mut source = None;
    let mut message = None;
    let mut fields_start = b.len();
    // `pos` is just past a closing bracket; each loop iteration consumes " [...]".
    let mut section = 0;
    while pos < b.len() {
        if b[pos] != b' ' || b.get(pos + 1) != Some(&b'[') {
            return err(ErrorKind::BadSeparator, pos);
        }
        let open = pos + 1;
        if section == 0
            && let Some(end) = source_bracket(b, open)
        {
            source = Some(Token::plain(&b[open + 1..end]));
            pos = end + 1;
            section = 1;
            continue;
        }
        let (bracket, end) = parse_bracket(b, open)?;
        match bracket {
            Bracket::Bare(tok) if section < 2 => message = Some(tok),
            Bracket::Empty if section < 2 => message = Some(Token::plain(&[])),
            Bracket::Bare(_) => return err(ErrorKind::FieldWithoutEquals, open),
            Bracket::Field(..) | Bracket::Empty => {
                if fields_start == b.len() {
                    fields_start = open;
                }
            }
        }
        section = 2;
        pos = end + 1;
    }
    Ok(LogLine {
        docker_time,
        stream,
        time,
        level,
        source,
        message,
        format: Format::Text,
        fields_raw: &b[fields_start..],
    })
}

/// Recognises a container-runtime timestamp prefix ([`timestamp::parse_prefix`]) and returns
/// its text and the offset after its space.
fn docker_prefix(b: &[u8]) -> Result<(&str, usize), ParseError> {
    match timestamp::parse_prefix(b) {
        Ok(prefix) => {
            let text = &b[..prefix.len - 1];
            // The prefix is ASCII by construction.
            let text = std::str::from_utf8(text).map_err(|_| ParseError {
                kind: ErrorKind::BadDockerTime,
                at: 0,
            })?;
            Ok((text, prefix.len))
        }
        Err(e) => {
            // The would-be prefix ends at the first space (in the first 48 bytes). Only one
            // holding the date, the time and more (a fraction or zone) is a malformed prefix;
            // anything else starting with a digit is not a log line at all (e.g. a pre-3.0
            // `2018/02/24 16:25:56.782 raft.rs:732: ...` line).
            let space = memchr(b' ', &b[..b.len().min(48)]);
            let kind = match (e, space) {
                (PrefixError::Malformed, Some(at)) if at > DATE_TIME_LEN => {
                    ErrorKind::BadDockerTime
                }
                _ => ErrorKind::NoHeader,
            };
            err(kind, 0)
        }
    }
}

/// Bytes allowed in a source file name: `[A-Za-z0-9._-]`.
static SOURCE_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_';
        c += 1;
    }
    t
};

/// Position of the first `a` or `b` in `hay`; a plain loop for the short tokens that dominate
/// (keys, bare values), SIMD `memchr2` past the first 16 bytes.
#[inline]
fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    for (i, &c) in hay.iter().take(16).enumerate() {
        if c == a || c == b {
            return Some(i);
        }
    }
    if hay.len() <= 16 {
        return None;
    }
    memchr2(a, b, &hay[16..]).map(|i| i + 16)
}

/// If the bracket opening at `open` is a source (`[file.rs:12]` or `[<unknown>]`), its `]` offset.
#[inline]
fn source_bracket(b: &[u8], open: usize) -> Option<usize> {
    let r = b.get(open + 1..)?;
    if r.starts_with(b"<unknown>]") {
        return Some(open + 10);
    }
    let name = r
        .iter()
        .take_while(|&&c| SOURCE_NAME[usize::from(c)])
        .count();
    if name == 0 || r.get(name) != Some(&b':') {
        return None;
    }
    let digits = r[name + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 || r.get(name + 1 + digits) != Some(&b']') {
        return None;
    }
    Some(open + 1 + name + 1 + digits)
}

/// What one `[...]` section held.
enum Bracket<'a> {
    /// `[]`
    Empty,
    /// `[text]` or `["text"]` without `=`: a message.
    Bare(Token<'a>),
    /// `[key=value]`
    Field(Token<'a>, Token<'a>),
}

/// Parses the bracket opening at `open`; returns it and the offset of its closing `]`.
#[inline]
fn parse_bracket(b: &[u8], open: usize) -> Result<(Bracket<'_>, usize), ParseError> {
    if b.get(open) != Some(&b'[') {
        return err(ErrorKind::BadSeparator, open);
    }
    let start = open + 1;
    let key = match b.get(start) {
        None => return err(ErrorKind::UnclosedBracket, open),
        Some(b']') => return Ok((Bracket::Empty, start)),
        Some(b'"') => {
            let (tok, after) = quoted(b, start)?;
            match b.get(after) {
                Some(b']') => return Ok((Bracket::Bare(tok), after)),
                Some(b'=') => (tok, after),
                _ => return err(ErrorKind::BadQuotedToken, after),
            }
        }
        Some(_) => {
            let r = &b[start..];
            match find2(r, b'=', b']') {
                None => return err(ErrorKind::UnclosedBracket, open),
                Some(i) if r[i] == b']' => {
                    return Ok((Bracket::Bare(Token::plain(&r[..i])), start + i));
                }
                Some(i) => (Token::plain(&r[..i]), start + i),
            }
        }
    };
    // `key.1` is the offset of '='.
    let vstart = key.1 + 1;
    match b.get(vstart) {
        Some(b'"') => {
            let (tok, after) = quoted(b, vstart)?;
            if b.get(after) != Some(&b']') {
                return err(ErrorKind::BadQuotedToken, after);
            }
            Ok((Bracket::Field(key.0, tok), after))
        }
        Some(_) => match find2(&b[vstart..], b']', b']') {
            Some(i) => Ok((
                Bracket::Field(key.0, Token::plain(&b[vstart..vstart + i])),
                vstart + i,
            )),
            None => err(ErrorKind::UnclosedBracket, open),
        },
        None => err(ErrorKind::UnclosedBracket, open),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &str) -> Result<&str, ErrorKind> {
        parse_line(line.as_bytes())
            .map(|l| l.docker_time.unwrap_or_default())
            .map_err(|e| e.kind)
    }

    #[test]
    fn a_container_prefix_is_malformed_only_past_its_date_and_time() {
        let tail = " [INFO] [a.rs:1] [x]";
        assert_eq!(
            kind(&format!("2023-01-07T08:49:18.5+01:00{tail}")),
            Ok("2023-01-07T08:49:18.5+01:00")
        );
        for (prefix, want) in [
            // Not a prefix at all: no date and time, nothing after them, or no space.
            ("2018/02/24 16:25:56.782", ErrorKind::NoHeader),
            ("2023-01-07 08:49:18Z", ErrorKind::NoHeader),
            ("2023-01-07T08:49:18", ErrorKind::NoHeader),
            (
                "2023-01-07T08:49:18Z-no-space-within-the-first-48-bytes-at-all",
                ErrorKind::NoHeader,
            ),
            // A malformed prefix: bad fraction or zone, fields out of range.
            ("2023-01-07T08:49:18.", ErrorKind::BadDockerTime),
            ("2023-01-07T08:49:18+0100", ErrorKind::BadDockerTime),
            ("2023-01-07T08:49:18Z[INFO]", ErrorKind::BadDockerTime),
            ("2023-13-07T08:49:18Z", ErrorKind::BadDockerTime),
            ("2023-01-07T08:49:61Z", ErrorKind::BadDockerTime),
        ] {
            assert_eq!(kind(&format!("{prefix}{tail}")), Err(want), "{prefix}");
        }
    }
}
