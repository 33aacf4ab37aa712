//! Zero-copy parser for the TiDB unified log format (RFC 0018) as TiKV (slog) and PD (zap) emit it.
//!
//! [`parse_line`] validates the whole structure of a line (header, message, every field bracket,
//! every escape sequence) in one pass over borrowed bytes without allocating. Decoding of JSON
//! escapes, UTF-8 validation and the conversion of the time to a chrono value happen only when a
//! consumer asks for them ([`Token::decode`], [`LogTime::to_datetime`], [`LogLine::fields`]).

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use memchr::{memchr, memchr2};

use super::timestamp::{self, DATE_TIME_LEN, PrefixError};

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

/// A validated `yyyy/MM/dd HH:mm:ss.SSS ±hh:mm` time with its own UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogTime {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    millis: u16,
    offset_seconds: i32,
}

impl LogTime {
    /// Parses and range-checks the 30-byte time text (without brackets).
    #[inline]
    pub fn parse(b: &[u8]) -> Result<LogTime, ErrorKind> {
        // 0123456789012345678901234567890
        // 2018/12/15 14:20:11.015 +08:00
        let b: &[u8; 30] = b.try_into().map_err(|_| ErrorKind::BadTime)?;
        const DIGITS: [usize; 21] = [
            0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 25, 26, 28, 29,
        ];
        let mut bad = false;
        for i in DIGITS {
            bad |= b[i].wrapping_sub(b'0') > 9;
        }
        bad |= b[4] != b'/'
            || b[7] != b'/'
            || b[10] != b' '
            || b[13] != b':'
            || b[16] != b':'
            || b[19] != b'.'
            || b[23] != b' '
            || b[27] != b':';
        if bad {
            return Err(ErrorKind::BadTime);
        }
        let d = |i: usize| u32::from(b[i] - b'0');
        let n2 = |i: usize| d(i) * 10 + d(i + 1);
        let year = n2(0) * 100 + n2(2);
        let month = n2(5);
        let day = n2(8);
        let hour = n2(11);
        let minute = n2(14);
        let second = n2(17);
        let millis = d(20) * 100 + n2(21);
        let sign: i32 = match b[24] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(ErrorKind::BadTime),
        };
        let oh = n2(25);
        let om = n2(28);
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
            || oh > 23
            || om > 59
        {
            return Err(ErrorKind::BadTime);
        }
        Ok(LogTime {
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            millis: millis as u16,
            offset_seconds: sign * (oh * 3600 + om * 60) as i32,
        })
    }

    /// The time as a chrono value that keeps the line's own offset.
    pub fn to_datetime(&self) -> DateTime<FixedOffset> {
        // Every component was range-checked in `parse`, so these conversions cannot fail; the
        // fallbacks only exist to keep this function total.
        let offset = FixedOffset::east_opt(self.offset_seconds)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
        let naive = NaiveDate::from_ymd_opt(
            i32::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        )
        .and_then(|d| {
            d.and_hms_milli_opt(
                u32::from(self.hour),
                u32::from(self.minute),
                u32::from(self.second),
                u32::from(self.millis),
            )
        })
        .unwrap_or_default();
        offset
            .from_local_datetime(&naive)
            .single()
            .unwrap_or_else(|| offset.from_utc_datetime(&naive))
    }

    /// RFC 3339 with milliseconds and the line's own offset (`2024-07-12T09:26:09.997+00:00`).
    pub fn to_rfc3339(&self) -> String {
        let (sign, off) = if self.offset_seconds < 0 {
            ('-', -self.offset_seconds)
        } else {
            ('+', self.offset_seconds)
        };
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.millis,
            sign,
            off / 3600,
            (off % 3600) / 60
        )
    }

    /// Milliseconds since the Unix epoch (UTC).
    pub fn timestamp_millis(&self) -> i64 {
        self.to_datetime().timestamp_millis()
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

/// A message, key or value borrowed from the line: bare text, or the inside of a JSON string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> Token<'a> {
    fn plain(raw: &'a [u8]) -> Self {
        Token {
            raw,
            escaped: false,
        }
    }

    /// The bytes as written (inside the quotes for a quoted token, escapes not decoded).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// True when the token contains JSON escapes that [`Token::decode`] must resolve.
    pub fn is_escaped(&self) -> bool {
        self.escaped
    }

    /// The decoded text; borrows when there is nothing to decode. Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self) -> Cow<'a, str> {
        if self.escaped {
            Cow::Owned(decode_escapes(self.raw))
        } else {
            String::from_utf8_lossy(self.raw)
        }
    }

    /// The decoded bytes, borrowing when there is nothing to decode: unescaped tokens as
    /// written (no UTF-8 check), escaped ones decoded to UTF-8 (invalid sequences as U+FFFD).
    pub fn bytes(&self) -> Cow<'a, [u8]> {
        if self.escaped {
            Cow::Owned(decode_escapes(self.raw).into_bytes())
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// Compares the decoded value with `s` without allocating for unescaped tokens.
    pub fn eq_str(&self, s: &str) -> bool {
        if self.escaped {
            decode_escapes(self.raw) == s
        } else {
            self.raw == s.as_bytes()
        }
    }

    /// Parses the decoded value as an unsigned integer.
    pub fn to_u64(&self) -> Option<u64> {
        parse_u64(&self.bytes())
    }
}

/// Parses ASCII decimal digits into a `u64` (no sign, no whitespace, no overflow).
pub fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
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
    /// Container-runtime receive time prefix (`docker logs --timestamps`), as written.
    pub docker_time: Option<&'a str>,
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
    if b[0].is_ascii_digit() {
        let (ts, next) = docker_prefix(b)?;
        docker_time = Some(ts);
        pos = next;
    }
    match b.get(pos) {
        Some(b'{') => return parse_json_line(b, pos, docker_time),
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

/// Scans the JSON string whose opening quote is at `q`; returns it and the offset after its
/// closing quote. Escape sequences are validated here so decoding can never fail.
#[inline]
fn quoted(b: &[u8], q: usize) -> Result<(Token<'_>, usize), ParseError> {
    let start = q + 1;
    let mut i = start;
    let mut escaped = false;
    loop {
        let rest = b.get(i..).unwrap_or(&[]);
        match memchr2(b'"', b'\\', rest) {
            None => return err(ErrorKind::UnterminatedString, q),
            Some(k) if rest[k] == b'"' => {
                let end = i + k;
                return Ok((
                    Token {
                        raw: &b[start..end],
                        escaped,
                    },
                    end + 1,
                ));
            }
            Some(k) => {
                escaped = true;
                let e = i + k;
                match b.get(e + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i = e + 2,
                    Some(b'u') => {
                        let hex = b.get(e + 2..e + 6).ok_or(ParseError {
                            kind: ErrorKind::BadEscape,
                            at: e,
                        })?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return err(ErrorKind::BadEscape, e);
                        }
                        i = e + 6;
                    }
                    _ => return err(ErrorKind::BadEscape, e),
                }
            }
        }
    }
}

/// Decodes the JSON escapes of a validated quoted token. Lone surrogates and invalid UTF-8
/// become U+FFFD.
fn decode_escapes(raw: &[u8]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let Some(k) = memchr(b'\\', &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        out.extend_from_slice(&raw[i..i + k]);
        let e = i + k;
        let c = raw.get(e + 1).copied().unwrap_or(b'\\');
        i = e + 2;
        let simple = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = hex4(raw, e + 2);
                i = e + 6;
                let ch = match hi {
                    Some(h @ 0xD800..=0xDBFF) => {
                        // A high surrogate must be followed by `\uDC00`..`\uDFFF`.
                        let lo = if raw.get(e + 6) == Some(&b'\\') && raw.get(e + 7) == Some(&b'u')
                        {
                            hex4(raw, e + 8)
                        } else {
                            None
                        };
                        match lo {
                            Some(l @ 0xDC00..=0xDFFF) => {
                                i = e + 12;
                                char::from_u32(0x10000 + ((h - 0xD800) << 10) + (l - 0xDC00))
                            }
                            _ => None,
                        }
                    }
                    Some(cp) => char::from_u32(cp),
                    None => None,
                }
                .unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            other => other,
        };
        out.push(simple);
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let h = b.get(at..at + 4)?;
    let s = std::str::from_utf8(h).ok()?;
    u32::from_str_radix(s, 16).ok()
}

// ---------------------------------------------------------------------------------------------
// JSON-format lines (`log.format = "json"`).

fn is_reserved_json_key(key: &Token<'_>) -> bool {
    !key.escaped
        && matches!(
            key.raw,
            b"time" | b"level" | b"caller" | b"message" | b"msg"
        )
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Parses one `"key": value` member starting at `i` (after `{` or `,`). Returns `None` at the
/// closing `}`; otherwise the key, the value and the offset after the following `,` or `}`.
#[allow(clippy::type_complexity)]
fn json_member(b: &[u8], i: usize) -> Result<Option<(Token<'_>, Token<'_>, usize)>, ParseError> {
    let bad = |at| ParseError {
        kind: ErrorKind::BadJson,
        at,
    };
    let mut i = skip_ws(b, i);
    match b.get(i) {
        Some(b'}') => return Ok(None),
        Some(b'"') => {}
        _ => return Err(bad(i)),
    }
    let (key, after) = quoted(b, i)?;
    i = skip_ws(b, after);
    if b.get(i) != Some(&b':') {
        return Err(bad(i));
    }
    i = skip_ws(b, i + 1);
    let value = match b.get(i) {
        Some(b'"') => {
            let (tok, after) = quoted(b, i)?;
            i = after;
            tok
        }
        Some(b'{' | b'[') => {
            let end = json_composite_end(b, i)?;
            let tok = Token::plain(&b[i..end]);
            i = end;
            tok
        }
        Some(_) => {
            let len = b[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.'))
                .count();
            if len == 0 {
                return Err(bad(i));
            }
            let tok = Token::plain(&b[i..i + len]);
            i += len;
            tok
        }
        None => return Err(bad(i)),
    };
    i = skip_ws(b, i);
    match b.get(i) {
        Some(b',') => Ok(Some((key, value, i + 1))),
        // Leave the `}` for the next call, which then reports the end.
        Some(b'}') => Ok(Some((key, value, i))),
        _ => Err(bad(i)),
    }
}

/// The offset after the `}` / `]` matching the bracket at `open`, skipping strings.
fn json_composite_end(b: &[u8], open: usize) -> Result<usize, ParseError> {
    let mut depth = 0usize;
    let mut i = open;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                i = quoted(b, i)?.1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    err(ErrorKind::BadJson, open)
}

fn parse_json_line<'a>(
    b: &'a [u8],
    open: usize,
    docker_time: Option<&'a str>,
) -> Result<LogLine<'a>, ParseError> {
    let mut i = open + 1;
    let body = i;
    let (mut time, mut level, mut source, mut message) = (None, None, None, None);
    while let Some((key, value, next)) = json_member(b, i)? {
        if !key.escaped {
            match key.raw {
                b"time" if time.is_none() => {
                    time = Some(
                        LogTime::parse(&value.bytes())
                            .map_err(|kind| ParseError { kind, at: i })?,
                    );
                }
                b"level" if level.is_none() => {
                    level = Some(
                        Level::from_bytes_any_case(&value.bytes()).ok_or(ParseError {
                            kind: ErrorKind::BadLevel,
                            at: i,
                        })?,
                    );
                }
                b"caller" if source.is_none() => source = Some(value),
                b"message" | b"msg" if message.is_none() => message = Some(value),
                _ => {}
            }
        }
        i = next;
    }
    // `i` now points at the closing `}` (after optional whitespace).
    let close = skip_ws(b, i);
    if skip_ws(b, close + 1) != b.len() {
        return err(ErrorKind::BadJson, close + 1);
    }
    let level = level.ok_or(ParseError {
        kind: ErrorKind::JsonWithoutLevel,
        at: open,
    })?;
    Ok(LogLine {
        docker_time,
        time,
        level,
        source,
        message,
        format: Format::Json,
        fields_raw: &b[body..],
    })
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
