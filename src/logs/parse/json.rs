//! JSON-format lines (`log.format = "json"`): one JSON object per line whose reserved members
//! (`time`, `level`, `caller`, `message`) give the header and the others the fields.

use super::time::LogTime;
use super::token::{Token, quoted};
use super::{ErrorKind, Format, Level, LogLine, ParseError, err};
use crate::logs::cri::Stream;

pub(super) fn is_reserved_json_key(key: &Token<'_>) -> bool {
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
pub(super) fn json_member(
    b: &[u8],
    i: usize,
) -> Result<Option<(Token<'_>, Token<'_>, usize)>, ParseError> {
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

pub(super) fn parse_json_line<'a>(
    b: &'a [u8],
    open: usize,
    docker_time: Option<&'a str>,
    stream: Option<Stream>,
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
        stream,
        time,
        level,
        source,
        message,
        format: Format::Json,
        fields_raw: &b[body..],
    })
}
