//! The RFC 3339 timestamp container runtimes put before every log line: Docker's
//! `docker logs --timestamps` frames and `--timestamps` output, and Kubernetes CRI log files
//! (`<time> <stdout|stderr> <F|P> <message>`).
//!
//! [`parse_prefix`] reads `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)` and the one space after it
//! from the start of a line, and returns the instant in nanoseconds since the Unix epoch and
//! the length of the prefix, so the caller goes on right after it. It is the only parser of
//! these prefixes: the Docker source uses the instant to resume exactly once, the line parser
//! ([`super::parse`]) keeps the prefix text as `docker_time`.

/// Nanoseconds in one second.
pub(crate) const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// The fixed-width `YYYY-MM-DDTHH:MM:SS` start of every prefix (`d`: an ASCII digit).
const DATE_TIME: &[u8] = b"dddd-dd-ddTdd:dd:dd";

/// Length of the fixed-width `YYYY-MM-DDTHH:MM:SS` start.
pub(crate) const DATE_TIME_LEN: usize = DATE_TIME.len();

/// Most fraction digits accepted: nanoseconds, as Go's RFC3339Nano (Docker, CRI) writes them.
const MAX_FRACTION_DIGITS: usize = 9;

/// A timestamp at the start of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimestampPrefix {
    /// The instant in nanoseconds since the Unix epoch (UTC); never `i64::MIN`.
    pub(crate) nanos: i64,
    /// Bytes taken by the timestamp and the space after it: the rest of the line starts here.
    pub(crate) len: usize,
}

/// Why a line does not start with a timestamp prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrefixError {
    /// The line does not start with `YYYY-MM-DDTHH:MM:SS`.
    NotATimestamp,
    /// It does, but a field is out of range, the fraction has no digit or more than nine, the
    /// zone is not `Z` or `±hh:mm`, no space follows, or the instant does not fit in `i64`
    /// nanoseconds.
    Malformed,
}

/// Parses the timestamp prefix `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm) ` at the start of `b`.
///
/// Accepted: `T` and `Z` in upper case only; month 1–12, day 1–31 (not checked against the
/// month: `02-31` is 3 March), hour 0–23, minute 0–59, second 0–60 (a leap second counts as
/// the next one); 1 to 9 fraction digits; any `±hh:mm` of two-digit numbers. Exactly one space
/// must follow; it is part of [`TimestampPrefix::len`]. The instant must fit in `i64`
/// nanoseconds (1677-09-21 to 2262-04-11).
pub(crate) fn parse_prefix(b: &[u8]) -> Result<TimestampPrefix, PrefixError> {
    use PrefixError::{Malformed, NotATimestamp};
    let head = b.get(..DATE_TIME_LEN).ok_or(NotATimestamp)?;
    let shaped = head.iter().zip(DATE_TIME).all(|(&c, &shape)| {
        if shape == b'd' {
            c.is_ascii_digit()
        } else {
            c == shape
        }
    });
    if !shaped {
        return Err(NotATimestamp);
    }
    // Only called on positions checked to hold digits.
    let digit = |i: usize| i64::from(b[i] - b'0');
    let two = |i: usize| digit(i) * 10 + digit(i + 1);
    let (year, month, day) = (two(0) * 100 + two(2), two(5), two(8));
    let (hour, minute, second) = (two(11), two(14), two(17));
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(Malformed);
    }
    let mut i = DATE_TIME_LEN;
    let mut fraction = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let digits = b[i..]
            .iter()
            .take(MAX_FRACTION_DIGITS + 1)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if !(1..=MAX_FRACTION_DIGITS).contains(&digits) {
            return Err(Malformed);
        }
        for k in 0..MAX_FRACTION_DIGITS {
            fraction = fraction * 10 + if k < digits { digit(i + k) } else { 0 };
        }
        i += digits;
    }
    let offset_seconds = match b.get(i) {
        Some(b'Z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let zone = b.get(i + 1..i + 6).ok_or(Malformed)?;
            let digits_ok = [0, 1, 3, 4].iter().all(|&k| zone[k].is_ascii_digit());
            if !digits_ok || zone[2] != b':' {
                return Err(Malformed);
            }
            let seconds = two(i + 1) * 3600 + two(i + 4) * 60;
            i += 6;
            if sign == b'-' { -seconds } else { seconds }
        }
        _ => return Err(Malformed),
    };
    if b.get(i) != Some(&b' ') {
        return Err(Malformed);
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_seconds;
    let nanos = seconds
        .checked_mul(NANOS_PER_SECOND)
        .and_then(|n| n.checked_add(fraction))
        .ok_or(Malformed)?;
    Ok(TimestampPrefix { nanos, len: i + 1 })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Tests, and [`tests::nanos`] for the tests of the Docker source.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const NANOS: i64 = NANOS_PER_SECOND;

    /// The instant of the timestamp `s` (written without the space after it).
    pub(crate) fn nanos(s: &str) -> i64 {
        parse_prefix(format!("{s} ").as_bytes()).unwrap().nanos
    }

    #[test]
    fn timestamps_parse_to_nanoseconds() {
        let p = parse_prefix(b"2023-01-07T08:49:18.857903341Z [x]").unwrap();
        assert_eq!(p.len, 31);
        assert_eq!(p.nanos, 1_673_081_358 * NANOS + 857_903_341);
        assert_eq!(nanos("1970-01-01T00:00:00Z"), 0);
        assert_eq!(
            nanos("2024-02-29T12:00:00.5Z"),
            1_709_208_000 * NANOS + 500_000_000
        );
        assert_eq!(
            nanos("2024-02-29T14:00:00.5+02:00"),
            nanos("2024-02-29T12:00:00.5Z")
        );
        assert_eq!(
            nanos("2024-02-29T10:30:00.5-01:30"),
            nanos("2024-02-29T12:00:00.5Z")
        );
        assert_eq!(nanos("1969-12-31T23:59:59.999999999Z"), -1);
        // A leap second and an unchecked day of month roll over, as they always did.
        assert_eq!(nanos("2016-12-31T23:59:60Z"), nanos("2017-01-01T00:00:00Z"));
        assert_eq!(nanos("2023-02-31T00:00:00Z"), nanos("2023-03-03T00:00:00Z"));
    }

    #[test]
    fn a_cri_line_goes_on_after_the_prefix() {
        let line = b"2016-10-06T00:17:09.669794202Z stdout F log message";
        let p = parse_prefix(line).unwrap();
        assert_eq!(&line[p.len..], b"stdout F log message");
        assert_eq!(p.nanos, 1_475_713_029 * NANOS + 669_794_202);
    }

    #[test]
    fn anything_else_is_rejected_with_the_reason() {
        use PrefixError::{Malformed, NotATimestamp};
        for (bad, why) in [
            (&b""[..], NotATimestamp),
            (b"2023-01-07", NotATimestamp),
            (b"2023-01-07 08:49:18Z ", NotATimestamp),
            (b"2023-01-07t08:49:18Z ", NotATimestamp),
            (b"[2024/07/12 09:26:10.005 +00:00] ", NotATimestamp),
            (b"2023-01-07T08:49:18.857Z", Malformed),
            (b"2023-01-07T08:49:18 [x]", Malformed),
            (b"2023-01-07T08:49:18z ", Malformed),
            (b"2023-13-07T08:49:18Z ", Malformed),
            (b"2023-00-07T08:49:18Z ", Malformed),
            (b"2023-01-32T08:49:18Z ", Malformed),
            (b"2023-01-07T24:49:18Z ", Malformed),
            (b"2023-01-07T08:60:18Z ", Malformed),
            (b"2023-01-07T08:49:61Z ", Malformed),
            (b"2023-01-07T08:49:18. ", Malformed),
            (b"2023-01-07T08:49:18.Z ", Malformed),
            (b"2023-01-07T08:49:18.1234567891Z ", Malformed),
            (b"2023-01-07T08:49:18+0100 ", Malformed),
            (b"2023-01-07T08:49:18+01:0 ", Malformed),
            (b"2023-01-07T08:49:18Z[INFO] ", Malformed),
            // Outside what i64 nanoseconds hold (1677-09-21 to 2262-04-11).
            (b"2263-01-01T00:00:00Z ", Malformed),
            (b"1677-01-01T00:00:00Z ", Malformed),
        ] {
            assert_eq!(
                parse_prefix(bad),
                Err(why),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
