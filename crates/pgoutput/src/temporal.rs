//! Parsing of PostgreSQL's ISO date and timestamp output (`DateStyle=ISO`)
//! into Unix-epoch day and microsecond counts, on the proleptic Gregorian
//! calendar PostgreSQL uses, BC years included.
//!
//! Errors are short reasons; the caller adds the type name and the text.

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// PostgreSQL accepts years up to 5874897 for dates; seven digits covers it.
const MAX_YEAR_DIGITS: usize = 7;
const MAX_FRACTION_DIGITS: usize = 6;

pub(crate) type Reason = &'static str;

/// `YYYY-MM-DD[ BC]` to days since 1970-01-01.
pub(crate) fn parse_date(text: &str) -> Result<i64, Reason> {
    let (body, before_christ) = split_era(text);
    let mut cursor = Cursor::new(body);
    let days = cursor.date(before_christ)?;
    cursor.end()?;
    Ok(days)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]` to microseconds since 1970-01-01,
/// reading the wall-clock time as if it were UTC. 128 bits: PostgreSQL's last years (after
/// 294247) do not fit 64-bit microseconds since 1970; the caller decides their form.
pub(crate) fn parse_timestamp(text: &str) -> Result<i128, Reason> {
    let (body, before_christ) = split_era(text);
    let mut cursor = Cursor::new(body);
    let micros = cursor.date_time(before_christ)?;
    cursor.end()?;
    Ok(micros)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]][ BC]` to microseconds since
/// 1970-01-01 UTC (128 bits, as [`parse_timestamp`]).
pub(crate) fn parse_timestamptz(text: &str) -> Result<i128, Reason> {
    let (body, before_christ) = split_era(text);
    let mut cursor = Cursor::new(body);
    let local_micros = cursor.date_time(before_christ)?;
    let offset_seconds = cursor.utc_offset_seconds()?;
    cursor.end()?;
    Ok(local_micros - i128::from(offset_seconds * MICROS_PER_SECOND))
}

/// `HH:MM:SS[.ffffff]` (time without time zone) to microseconds since
/// midnight, `24:00:00` included.
pub(crate) fn parse_time(text: &str) -> Result<i64, Reason> {
    let mut cursor = Cursor::new(text);
    let micros = cursor.time_of_day()?;
    cursor.end()?;
    Ok(micros)
}

/// `HH:MM:SS[.ffffff]±HH[:MM[:SS]]` (time with time zone) to the local time
/// of day in microseconds and the UTC offset in seconds east of Greenwich,
/// as printed (PostgreSQL stores the opposite sign internally).
pub(crate) fn parse_timetz(text: &str) -> Result<(i64, i32), Reason> {
    let mut cursor = Cursor::new(text);
    let micros = cursor.time_of_day()?;
    let offset_seconds = cursor.utc_offset_seconds()?;
    cursor.end()?;
    // Two-digit hours bound the offset far below i32.
    let offset_seconds = i32::try_from(offset_seconds).map_err(|_| "UTC offset out of range")?;
    Ok((micros, offset_seconds))
}

/// An interval exactly as PostgreSQL stores it: months, days and
/// microseconds are independent (a month is not 30 days, a day not always
/// 24 hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interval {
    pub(crate) months: i32,
    pub(crate) days: i32,
    pub(crate) micros: i64,
}

/// `IntervalStyle=iso_8601` output to its three stored fields:
/// `P1Y2M3DT4H5M6.5S`, `PT0S`, `P-1Y-2M3DT-4H-5M-6.5S` (each part carries
/// its own sign; the seconds' sign also covers the fraction). PostgreSQL 17
/// prints `infinity` and `-infinity`, stored as every field at its maximum
/// or minimum; they are accepted so a newer server does not stop the
/// connector.
pub(crate) fn parse_interval(text: &str) -> Result<Interval, Reason> {
    match text {
        "infinity" => {
            return Ok(Interval {
                months: i32::MAX,
                days: i32::MAX,
                micros: i64::MAX,
            });
        }
        "-infinity" => {
            return Ok(Interval {
                months: i32::MIN,
                days: i32::MIN,
                micros: i64::MIN,
            });
        }
        _ => {}
    }
    let mut cursor = Cursor::new(text);
    cursor.expect(b'P', "expected an ISO 8601 interval starting with P")?;
    let mut years: i64 = 0;
    let mut months: i64 = 0;
    let mut days: i64 = 0;
    let mut micros: i64 = 0;
    let mut parts = 0;
    // Units must come in this order, each at most once.
    let mut date_units: &[u8] = b"YMD";
    while cursor.peek().is_some() && cursor.peek() != Some(b'T') {
        let (value, fraction) = cursor.signed_interval_number()?;
        let unit = cursor.peek().ok_or("expected a unit after the number")?;
        let position = date_units
            .iter()
            .position(|&allowed| allowed == unit)
            .ok_or("expected Y, M or D in this order")?;
        if fraction.is_some() {
            return Err("only seconds may have a fraction");
        }
        cursor.position += 1;
        date_units = &date_units[position + 1..];
        match unit {
            b'Y' => years = value,
            b'M' => months = value,
            _ => days = value,
        }
        parts += 1;
    }
    if cursor.peek() == Some(b'T') {
        cursor.position += 1;
        let mut time_units: &[u8] = b"HMS";
        let mut time_parts = 0;
        while cursor.peek().is_some() {
            let (value, fraction) = cursor.signed_interval_number()?;
            let unit = cursor.peek().ok_or("expected a unit after the number")?;
            let position = time_units
                .iter()
                .position(|&allowed| allowed == unit)
                .ok_or("expected H, M or S in this order")?;
            cursor.position += 1;
            time_units = &time_units[position + 1..];
            let unit_micros = match unit {
                b'H' => 3_600 * MICROS_PER_SECOND,
                b'M' => 60 * MICROS_PER_SECOND,
                _ => MICROS_PER_SECOND,
            };
            if fraction.is_some() && unit != b'S' {
                return Err("only seconds may have a fraction");
            }
            let part = value
                .checked_mul(unit_micros)
                .and_then(|whole| whole.checked_add(fraction.unwrap_or(0)))
                .ok_or(INTERVAL_OUT_OF_RANGE)?;
            micros = micros.checked_add(part).ok_or(INTERVAL_OUT_OF_RANGE)?;
            time_parts += 1;
        }
        if time_parts == 0 {
            return Err("expected a time part after T");
        }
        parts += time_parts;
    }
    cursor.end()?;
    if parts == 0 {
        return Err("expected at least one part");
    }
    let months = years
        .checked_mul(12)
        .and_then(|year_months| year_months.checked_add(months))
        .and_then(|total| i32::try_from(total).ok())
        .ok_or(INTERVAL_OUT_OF_RANGE)?;
    let days = i32::try_from(days).map_err(|_| INTERVAL_OUT_OF_RANGE)?;
    Ok(Interval {
        months,
        days,
        micros,
    })
}

const INTERVAL_OUT_OF_RANGE: Reason = "interval field out of range";

/// Longest run of digits in an interval part: i64 has 19 digits.
const MAX_INTERVAL_DIGITS: usize = 18;

/// PostgreSQL appends " BC" after everything else, time zone included.
fn split_era(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(body) => (body, true),
        None => (text, false),
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            bytes: text.as_bytes(),
            position: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn expect(&mut self, byte: u8, reason: Reason) -> Result<(), Reason> {
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            Err(reason)
        }
    }

    fn end(&self) -> Result<(), Reason> {
        if self.position == self.bytes.len() {
            Ok(())
        } else {
            Err("unexpected characters after the value")
        }
    }

    /// Between `min` and `max` ASCII digits (greedy) as a number, plus how
    /// many digits there were. `max` is small enough that i64 cannot overflow.
    fn digits(&mut self, min: usize, max: usize, reason: Reason) -> Result<(i64, usize), Reason> {
        let start = self.position;
        let mut value: i64 = 0;
        while self.position - start < max {
            match self.peek() {
                Some(byte @ b'0'..=b'9') => {
                    value = value * 10 + i64::from(byte - b'0');
                    self.position += 1;
                }
                _ => break,
            }
        }
        let count = self.position - start;
        if count < min {
            Err(reason)
        } else {
            Ok((value, count))
        }
    }

    fn two_digits(&mut self, reason: Reason) -> Result<i64, Reason> {
        Ok(self.digits(2, 2, reason)?.0)
    }

    fn date(&mut self, before_christ: bool) -> Result<i64, Reason> {
        let (year, _) = self.digits(1, MAX_YEAR_DIGITS, "expected a year")?;
        self.expect(b'-', "expected '-' after the year")?;
        let month = self.two_digits("expected a two-digit month")?;
        self.expect(b'-', "expected '-' after the month")?;
        let day = self.two_digits("expected a two-digit day")?;
        if year == 0 {
            return Err("year 0 does not exist (1 BC precedes 1 AD)");
        }
        // Astronomical numbering: 1 BC is year 0, 2 BC is year -1.
        let year = if before_christ { 1 - year } else { year };
        if !(1..=12).contains(&month) {
            return Err("month out of range");
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err("day out of range for the month");
        }
        Ok(days_from_civil(year, month, day))
    }

    fn date_time(&mut self, before_christ: bool) -> Result<i128, Reason> {
        let days = self.date(before_christ)?;
        self.expect(b' ', "expected a space between date and time")?;
        let time_micros = self.time_of_day()?;
        if time_micros >= MICROS_PER_DAY {
            return Err("time of day out of range");
        }
        // Seven-digit years keep this far inside 128 bits.
        Ok(i128::from(days) * i128::from(MICROS_PER_DAY) + i128::from(time_micros))
    }

    /// `HH:MM:SS[.ffffff]` to microseconds since midnight. `24:00:00` is
    /// accepted because the time types allow it; timestamps reject it.
    fn time_of_day(&mut self) -> Result<i64, Reason> {
        let hour = self.two_digits("expected a two-digit hour")?;
        self.expect(b':', "expected ':' after the hour")?;
        let minute = self.two_digits("expected two-digit minutes")?;
        self.expect(b':', "expected ':' after the minutes")?;
        let second = self.two_digits("expected two-digit seconds")?;
        if hour > 24 || minute > 59 || second > 59 {
            return Err("time of day out of range");
        }
        let fraction_micros = self.fraction_micros()?;
        let micros = ((hour * 60 + minute) * 60 + second) * MICROS_PER_SECOND + fraction_micros;
        if micros > MICROS_PER_DAY {
            return Err("time of day out of range");
        }
        Ok(micros)
    }

    /// An optional `.f` to `.ffffff` as microseconds.
    fn fraction_micros(&mut self) -> Result<i64, Reason> {
        if self.peek() != Some(b'.') {
            return Ok(0);
        }
        self.position += 1;
        let (fraction, digit_count) =
            self.digits(1, MAX_FRACTION_DIGITS, "expected 1 to 6 fractional digits")?;
        Ok(fraction * 10_i64.pow((MAX_FRACTION_DIGITS - digit_count) as u32))
    }

    /// `+HH`, `+HH:MM` or `+HH:MM:SS` (historical zones have odd offsets).
    fn utc_offset_seconds(&mut self) -> Result<i64, Reason> {
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err("expected a UTC offset such as +00"),
        };
        self.position += 1;
        let hours = self.two_digits("expected two-digit offset hours")?;
        let mut minutes = 0;
        let mut seconds = 0;
        if self.peek() == Some(b':') {
            self.position += 1;
            minutes = self.two_digits("expected two-digit offset minutes")?;
            if self.peek() == Some(b':') {
                self.position += 1;
                seconds = self.two_digits("expected two-digit offset seconds")?;
            }
        }
        if minutes > 59 || seconds > 59 {
            return Err("UTC offset out of range");
        }
        Ok(sign * ((hours * 60 + minutes) * 60 + seconds))
    }
}

impl Cursor<'_> {
    /// `-?digits(.fraction)?` of an interval part: the value and, if there
    /// was a fraction, its microseconds with the value's sign.
    fn signed_interval_number(&mut self) -> Result<(i64, Option<i64>), Reason> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.position += 1;
        }
        let (magnitude, _) = self.digits(1, MAX_INTERVAL_DIGITS, "expected a number")?;
        if matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(INTERVAL_OUT_OF_RANGE);
        }
        let fraction = if self.peek() == Some(b'.') {
            Some(self.fraction_micros()?)
        } else {
            None
        };
        let sign = if negative { -1 } else { 1 };
        Ok((sign * magnitude, fraction.map(|micros| sign * micros)))
    }
}

fn is_leap_year(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's days_from_civil: days since 1970-01-01 for an
/// astronomical year on the proleptic Gregorian calendar. Works in 400-year
/// eras so negative years need no special casing.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Count years from March so the leap day is the last day of the year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_at_known_points() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1900, 3, 1), -25_508);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        // Julian day 0 is 4714-11-24 BC, i.e. astronomical year -4713.
        assert_eq!(days_from_civil(-4713, 11, 24), -2_440_588);
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("1969-12-31"), Ok(-1));
        assert_eq!(parse_date("1900-01-01"), Ok(-25_567));
        assert_eq!(parse_date("2024-02-29"), Ok(19_782));
        assert_eq!(parse_date("0001-01-01"), Ok(-719_162));
        assert_eq!(parse_date("0001-12-31 BC"), Ok(-719_163));
        assert_eq!(parse_date("0001-01-01 BC"), Ok(-719_528));
        assert_eq!(parse_date("4714-11-24 BC"), Ok(-2_440_588));
        assert_eq!(parse_date("5874897-12-31"), Ok(2_145_042_905));
        assert_eq!(parse_date("10000-01-01"), Ok(2_932_897));
    }

    #[test]
    fn invalid_dates() {
        for text in [
            "",
            "2024",
            "2024-1-01",
            "2024-01-1",
            "2024-13-01",
            "2024-00-10",
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "0000-01-01",
            "2024-01-01 AD",
            "2024-01-01 ",
            " BC",
            "2024/01/01",
            "12345678-01-01",
            "2024-01-01x",
        ] {
            assert!(parse_date(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Ok(0));
        assert_eq!(parse_timestamp("1970-01-01 00:00:00.5"), Ok(500_000));
        assert_eq!(parse_timestamp("1970-01-01 00:00:00.000001"), Ok(1));
        assert_eq!(parse_timestamp("1969-12-31 23:59:59.999999"), Ok(-1));
        assert_eq!(
            parse_timestamp("2024-03-01 12:34:56.789"),
            Ok(1_709_296_496_789_000)
        );
        assert_eq!(
            parse_timestamp("0001-01-01 00:00:00 BC"),
            Ok(i128::from(-719_528 * MICROS_PER_DAY))
        );
        for text in [
            "1970-01-01",
            "1970-01-01 24:00:00",
            "1970-01-01 00:60:00",
            "1970-01-01 00:00:60",
            "1970-01-01 00:00:00.",
            "1970-01-01 00:00:00.1234567",
            "1970-01-01T00:00:00",
            "1970-01-01 00:00:00+00",
            "1970-01-01 0:00:00",
        ] {
            assert!(parse_timestamp(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn timestamps_with_time_zone() {
        assert_eq!(
            parse_timestamptz("2024-03-01 12:34:56.789+00"),
            Ok(1_709_296_496_789_000)
        );
        assert_eq!(
            parse_timestamptz("2024-03-01 18:04:56.789+05:30"),
            Ok(1_709_296_496_789_000)
        );
        assert_eq!(
            parse_timestamptz("2024-03-01 02:34:56.789-10"),
            Ok(1_709_296_496_789_000)
        );
        // Amsterdam's local mean time before 1937 was +00:19:32.
        assert_eq!(
            parse_timestamptz("1900-01-01 00:19:32+00:19:32"),
            Ok(i128::from(-25_567 * MICROS_PER_DAY))
        );
        assert_eq!(
            parse_timestamptz("0044-03-15 12:00:00+00 BC"),
            Ok(i128::from(
                days_from_civil(-43, 3, 15) * MICROS_PER_DAY + 12 * 3_600 * MICROS_PER_SECOND
            ))
        );
        for text in [
            "2024-03-01 12:34:56",
            "2024-03-01 12:34:56+0",
            "2024-03-01 12:34:56+00:",
            "2024-03-01 12:34:56+00:60",
            "2024-03-01 12:34:56 +00",
            "2024-03-01 12:34:56+00 UTC",
        ] {
            assert!(parse_timestamptz(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn times_of_day() {
        assert_eq!(parse_time("00:00:00"), Ok(0));
        assert_eq!(parse_time("12:34:56.789"), Ok(45_296_789_000));
        assert_eq!(parse_time("23:59:59.999999"), Ok(MICROS_PER_DAY - 1));
        assert_eq!(parse_time("24:00:00"), Ok(MICROS_PER_DAY));
        for text in [
            "24:00:00.000001",
            "24:00:01",
            "25:00:00",
            "12:60:00",
            "12:00",
            "12:00:00+00",
            "1:00:00",
            "12:00:00.",
        ] {
            assert!(parse_time(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn times_with_time_zone_keep_the_offset_east_of_utc() {
        assert_eq!(
            parse_timetz("12:34:56.5+05:30"),
            Ok((45_296_500_000, 19_800))
        );
        assert_eq!(parse_timetz("00:00:00-10"), Ok((0, -36_000)));
        assert_eq!(
            parse_timetz("24:00:00-15:59"),
            Ok((MICROS_PER_DAY, -57_540))
        );
        assert_eq!(
            parse_timetz("01:02:03+00:19:32"),
            Ok((3_723_000_000, 1_172))
        );
        for text in ["12:00:00", "12:00:00+5", "12:00:00 +05", "12:00:00+05:60"] {
            assert!(parse_timetz(text).is_err(), "{text:?}");
        }
    }

    fn interval(months: i32, days: i32, micros: i64) -> Result<Interval, Reason> {
        Ok(Interval {
            months,
            days,
            micros,
        })
    }

    #[test]
    fn iso_8601_intervals() {
        assert_eq!(parse_interval("PT0S"), interval(0, 0, 0));
        assert_eq!(
            parse_interval("P1Y2M3DT4H5M6.5S"),
            interval(14, 3, ((4 * 60 + 5) * 60 + 6) * MICROS_PER_SECOND + 500_000)
        );
        assert_eq!(parse_interval("P-1D"), interval(0, -1, 0));
        assert_eq!(parse_interval("PT-1S"), interval(0, 0, -MICROS_PER_SECOND));
        assert_eq!(parse_interval("PT-0.000001S"), interval(0, 0, -1));
        assert_eq!(
            parse_interval("P-1Y-2M3DT-4H-5M-6.5S"),
            interval(
                -14,
                3,
                -(((4 * 60 + 5) * 60 + 6) * MICROS_PER_SECOND + 500_000)
            )
        );
        assert_eq!(parse_interval("P1Y-1M"), interval(11, 0, 0));
        assert_eq!(
            parse_interval("PT1M"),
            interval(0, 0, 60 * MICROS_PER_SECOND)
        );
        assert_eq!(parse_interval("P1M"), interval(1, 0, 0));
        // The extremes PostgreSQL can store.
        assert_eq!(
            parse_interval("P178956970Y7M2147483647DT2562047788H54.775807S"),
            interval(i32::MAX, i32::MAX, i64::MAX)
        );
        assert_eq!(
            parse_interval("P-178956970Y-8M-2147483648DT-2562047788H-54.775808S"),
            interval(i32::MIN, i32::MIN, i64::MIN)
        );
        assert_eq!(
            parse_interval("infinity"),
            interval(i32::MAX, i32::MAX, i64::MAX)
        );
        assert_eq!(
            parse_interval("-infinity"),
            interval(i32::MIN, i32::MIN, i64::MIN)
        );
    }

    #[test]
    fn invalid_intervals() {
        for text in [
            "",
            "P",
            "PT",
            "1 day",
            "P1DT",
            "P1D1Y",
            "P1Y1Y",
            "PT1S1M",
            "P1.5D",
            "PT1.5H",
            "P1W",
            "P--1D",
            "P-D",
            "P1",
            "P178956971Y",
            "P2147483648D",
            "PT2562047789H",
            "PT1234567890123456789S",
            "P1D ",
            "-P1D",
        ] {
            assert!(parse_interval(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn far_future_beyond_i64_micros_is_still_exact() {
        // PostgreSQL's own limit (294276 AD) fits its 2000-based epoch but
        // not 64-bit microseconds since 1970: 128 bits hold it exactly.
        assert_eq!(
            parse_timestamp("294276-12-31 23:59:59.999999"),
            Ok(9_224_318_015_999_999_999)
        );
        assert_eq!(
            parse_timestamptz("294247-01-10 04:00:54.775807+00"),
            Ok(i128::from(i64::MAX))
        );
        assert_eq!(
            parse_timestamptz("294247-01-10 04:00:54.775808+00"),
            Ok(i128::from(i64::MAX) + 1)
        );
    }
}
