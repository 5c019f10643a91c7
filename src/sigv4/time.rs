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
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// Whole seconds from `self` to `later` (negative when `later` is earlier).
    pub fn seconds_until(&self, later: &AmzDate) -> i64 {
        later.unix_seconds - self.unix_seconds
    }
}

impl fmt::Display for AmzDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
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
