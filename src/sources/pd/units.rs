//! PD's size and duration strings (`"311.7GiB"`, `"30m0s"`) and RFC 3339 timestamps.

use std::time::Duration;

/// Parses PD's byte sizes: `"311.7GiB"`, `"0B"`, `"290.7MiB"`, old `"937 GiB"`.
///
/// Case-insensitive, optional space before the unit, optional `i`, optional `B`. Like PD's own
/// parser (go-units `RAMInBytes`) every unit is binary (`K` = `KiB` = 1024). The decimal number is
/// multiplied exactly (no floating point) and rounded to the nearest byte, halves up:
/// `"311.7GiB"` = 311.7 × 2³⁰ = 334 685 326 540.8 → `334685326541`. PD prints only 4
/// significant digits, so the result is itself approximate. `None` for anything else, negative
/// numbers, or values above `u64::MAX`.
pub fn parse_byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(num_end);
    let (mantissa, scale) = parse_decimal(num, 30)?;
    let unit = rest.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        "e" => 6,
        "z" => 7,
        "y" => 8,
        _ => return None,
    };
    // "i" alone (no prefix) is not a unit: "5i" / "5iB" are rejected.
    if power == 0 && rest.trim_start().to_ascii_lowercase().starts_with('i') {
        return None;
    }
    let mult = 1024u128.checked_pow(power)?;
    let num = mantissa.checked_mul(mult)?;
    let bytes = num.checked_add(scale / 2)? / scale;
    u64::try_from(bytes).ok()
}

/// Parses `digits[.digits]` (at least one digit in all) into (mantissa, 10^fraction_digits).
/// Fraction digits beyond `max_frac` are dropped.
fn parse_decimal(s: &str, max_frac: usize) -> Option<(u128, u128)> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = &frac[..frac.len().min(max_frac)];
    let mut mantissa: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(u128::from(b - b'0'))?;
    }
    let scale = 10u128.checked_pow(frac.len() as u32)?;
    Some((mantissa, scale))
}

/// Parses a Go `time.Duration` string: `"30m0s"`, `"1h0m0s"`, `"36m20.480549971s"`, `"500ms"`,
/// `"1.5h"`, `"2h45m"`, `"0s"`, `"0"`, `"1µs"`/`"1us"`, `"100ns"`.
///
/// Fractions are exact to the nanosecond (truncated below). `None` for negative durations,
/// missing units, unknown units or overflow.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let mut rest = s;
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        let (mantissa, scale) = parse_decimal(num, 30)?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return None,
        };
        total_ns = total_ns.checked_add(mantissa.checked_mul(unit_ns)? / scale)?;
        rest = tail;
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (total_ns % 1_000_000_000) as u32))
}

/// Unix nanoseconds of an RFC 3339 timestamp (`2019-03-21T14:14:22.961171958+08:00`).
pub(super) fn rfc3339_to_unix_ns(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    u64::try_from(t.timestamp_nanos_opt()?).ok()
}

/// Unix seconds of an RFC 3339 timestamp.
pub(super) fn rfc3339_to_unix_secs(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    u64::try_from(t.timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("0B"), Some(0));
        assert_eq!(parse_byte_size("1B"), Some(1));
        assert_eq!(parse_byte_size("311.7GiB"), Some(334_685_326_541));
        assert_eq!(parse_byte_size("20 GiB"), Some(20 << 30));
        assert_eq!(parse_byte_size("1.5k"), Some(1536));
        assert_eq!(parse_byte_size("0.5B"), Some(1)); // halves round up
        assert_eq!(parse_byte_size("0.4B"), Some(0));
        assert_eq!(parse_byte_size("16EiB"), None); // 2^64 overflows u64
        for bad in [
            "", "B", "GiB", "-1B", "1.2.3GiB", "1 XB", "5i", "nan", "1e3B", ".",
        ] {
            assert_eq!(parse_byte_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30m0s"), Some(Duration::from_secs(1800)));
        assert_eq!(
            parse_go_duration("36m20.480549971s"),
            Some(Duration::new(2180, 480_549_971))
        );
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration(".5s"), Some(Duration::from_millis(500)));
        for bad in ["", "-1s", "5", "1d", "s", "1..5s", "1h-5m"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }
}
