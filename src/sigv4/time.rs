//! The two date forms SigV4 uses: `20150830T123600Z` (x-amz-date) and
//! `20150830` (credential scope).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A signing time, second precision, UTC, as carried in `x-amz-date`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AmzDate {
    unix_seconds: i64,
    // The broken-down form is kept so formatting never redoes calendar math.
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl AmzDate {
    /// Parses the ISO 8601 basic form `YYYYMMDDTHHMMSSZ`, rejecting anything
    /// else (S3 does not accept other forms in `x-amz-date`).
    pub fn parse(text: &str) -> Option<AmzDate> {
        let b = text.as_bytes();
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            let mut value = 0u32;
            for &c in &b[range] {
                if !c.is_ascii_digit() {
                    return None;
                }
                value = value * 10 + u32::from(c - b'0');
            }
            Some(value)
        };
        let year = digits(0..4)?;
        let month = digits(4..6)?;
        let day = digits(6..8)?;
        let hour = digits(9..11)?;
        let minute = digits(11..13)?;
        let second = digits(13..15)?;
        let month_enum = time::Month::try_from(month as u8).ok()?;
        let date = time::Date::from_calendar_date(year as i32, month_enum, day as u8).ok()?;
        let time_of_day = time::Time::from_hms(hour as u8, minute as u8, second as u8).ok()?;
        let unix_seconds = time::PrimitiveDateTime::new(date, time_of_day)
            .assume_utc()
            .unix_timestamp();
        Some(AmzDate {
            unix_seconds,
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
        })
    }

    /// The signing time of `when`, truncated to the second.
    pub fn from_system_time(when: SystemTime) -> AmzDate {
        let unix_seconds = match when.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_secs() as i64,
            Err(before) => -(before.duration().as_secs() as i64),
        };
        Self::from_unix_seconds(unix_seconds)
    }

    /// The signing time at `unix_seconds` since the epoch.
    pub fn from_unix_seconds(unix_seconds: i64) -> AmzDate {
        let moment = time::OffsetDateTime::from_unix_timestamp(unix_seconds)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        AmzDate {
            unix_seconds: moment.unix_timestamp(),
            year: moment.year().clamp(0, 9999) as u16,
            month: u8::from(moment.month()),
            day: moment.day(),
            hour: moment.hour(),
            minute: moment.minute(),
            second: moment.second(),
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.unix_seconds
    }

    /// This time as a [`SystemTime`].
    pub fn to_system_time(&self) -> SystemTime {
        if self.unix_seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.unix_seconds as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(self.unix_seconds.unsigned_abs())
        }
    }

    /// The scope date `YYYYMMDD` of this signing time.
    pub fn date_stamp(&self) -> String {
        self.basic_form().date_stamp().to_owned()
    }

    /// `YYYYMMDDTHHMMSSZ`, written digit by digit: both the verifier and
    /// the re-signer format a date on every request, and `fmt`'s padding
    /// machinery cost more than the rest of the date handling together.
    pub(crate) fn basic_form(&self) -> BasicForm {
        let mut text = *b"00000000T000000Z";
        let mut put = |at: usize, width: usize, mut value: u16| {
            for slot in text[at..at + width].iter_mut().rev() {
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, self.year);
        put(4, 2, self.month.into());
        put(6, 2, self.day.into());
        put(9, 2, self.hour.into());
        put(11, 2, self.minute.into());
        put(13, 2, self.second.into());
        BasicForm(text)
    }

    /// Whole seconds from `self` to `later` (negative when `later` is earlier).
    pub fn seconds_until(&self, later: &AmzDate) -> i64 {
        later.unix_seconds - self.unix_seconds
    }
}

impl fmt::Display for AmzDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.basic_form().as_str())
    }
}

/// An [`AmzDate`] in its basic form, on the stack.
pub(crate) struct BasicForm([u8; 16]);

impl BasicForm {
    pub(crate) fn as_str(&self) -> &str {
        // Digits, `T` and `Z` only.
        std::str::from_utf8(&self.0).expect("ASCII")
    }

    /// The scope date, `YYYYMMDD`.
    pub(crate) fn date_stamp(&self) -> &str {
        &self.as_str()[..8]
    }
}

impl fmt::Debug for AmzDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmzDate({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_basic_form() {
        let date = AmzDate::parse("20150830T123600Z").unwrap();
        assert_eq!(date.to_string(), "20150830T123600Z");
        assert_eq!(date.date_stamp(), "20150830");
        assert_eq!(date.unix_seconds(), 1_440_938_160);
        assert_eq!(AmzDate::from_unix_seconds(1_440_938_160), date);
        assert_eq!(AmzDate::from_system_time(date.to_system_time()), date);
    }

    #[test]
    fn the_basic_form_pads_every_field_as_iso_8601_does() {
        // Across single-digit fields, a leap day, the clamped extremes and
        // a spread of ordinary times, against the padded `format!` form.
        let mut moments = vec![
            0,
            951_782_400,     // 2000-02-29T00:00:00Z
            1_440_938_160,   // 2015-08-30T12:36:00Z
            253_402_300_799, // 9999-12-31T23:59:59Z
            -62_135_596_800, // 0001-01-01T00:00:00Z
        ];
        moments.extend((0..2_000).map(|i| 1_000_000_007_i64 * i % 4_102_444_800));
        for seconds in moments {
            let date = AmzDate::from_unix_seconds(seconds);
            let padded = format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
                date.year, date.month, date.day, date.hour, date.minute, date.second
            );
            assert_eq!(date.to_string(), padded, "{seconds}");
            assert_eq!(date.date_stamp(), padded[..8], "{seconds}");
            assert_eq!(date.basic_form().date_stamp(), &padded[..8], "{seconds}");
            assert_eq!(AmzDate::parse(&padded), Some(date), "{seconds}");
        }
    }

    #[test]
    fn rejects_other_forms_and_impossible_dates() {
        for bad in [
            "2015-08-30T12:36:00Z",
            "20150830T123600",
            "20150830t123600Z",
            "20151330T123600Z",
            "20150230T123600Z",
            "20150830T256000Z",
            "2015083OT123600Z",
            "",
        ] {
            assert!(AmzDate::parse(bad).is_none(), "{bad} must be rejected");
        }
    }
}
