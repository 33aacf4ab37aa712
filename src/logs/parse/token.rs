//! Messages, keys and values as borrowed tokens: bare text, or the inside of a JSON string
//! whose escapes are validated when the line is parsed and decoded only on demand.

use std::borrow::Cow;

use memchr::{memchr, memchr2};

use super::{ErrorKind, ParseError, err};

/// A message, key or value borrowed from the line: bare text, or the inside of a JSON string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    pub(super) raw: &'a [u8],
    pub(super) escaped: bool,
}

impl<'a> Token<'a> {
    pub(super) fn plain(raw: &'a [u8]) -> Self {
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

/// Scans the JSON string whose opening quote is at `q`; returns it and the offset after its
/// closing quote. Escape sequences are validated here so decoding can never fail.
#[inline]
pub(super) fn quoted(b: &[u8], q: usize) -> Result<(Token<'_>, usize), ParseError> {
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
