//! The time bracket of a unified-format line: `yyyy/MM/dd HH:mm:ss.SSS ±hh:mm`, validated
//! without chrono and converted only on demand.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};

use super::ErrorKind;

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
