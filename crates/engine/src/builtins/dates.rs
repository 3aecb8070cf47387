//! Dates between MoySklad's `"YYYY-MM-DD HH:MM:SS"` and the forms vendors use.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};

use super::BuiltinError;

const MS_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A MoySklad date-time `"YYYY-MM-DD HH:MM:SS"` (local time, no zone) as ISO-8601 with the
/// given UTC offset: `("2023-07-14 00:00:00", "+03:00") → "2023-07-14T00:00:00+03:00"`. The
/// clock time is kept, the offset only says where it was read.
///
/// `offset`: `"+HH:MM"`, `"-HH:MM"`, `"+HHMM"`, `"-HHMM"` or `"Z"`; always written as `±HH:MM`
/// (`"Z"` → `"+00:00"`). The date must be exactly the fixed-width MoySklad format.
pub fn ms_to_iso(s: &str, offset: &str) -> Result<String, BuiltinError> {
    let naive = (s.len() == 19)
        .then(|| NaiveDateTime::parse_from_str(s, MS_FORMAT).ok())
        .flatten()
        .ok_or_else(|| BuiltinError::InvalidDate {
            function: "ms_to_iso",
            argument: "date",
            input: s.to_string(),
            expected: "\"YYYY-MM-DD HH:MM:SS\"",
        })?;
    let minutes = parse_offset_minutes(offset).ok_or_else(|| BuiltinError::InvalidOffset {
        input: offset.to_string(),
    })?;
    let sign = if minutes < 0 { '-' } else { '+' };
    let minutes = minutes.abs();
    Ok(format!(
        "{}{sign}{:02}:{:02}",
        naive.format("%Y-%m-%dT%H:%M:%S"),
        minutes / 60,
        minutes % 60
    ))
}

/// An ISO-8601 date or date-time from a vendor in MoySklad's `"YYYY-MM-DD HH:MM:SS"`:
///
/// * with a zone (RFC 3339 `"2023-07-14T10:00:00+03:00"`, `"…Z"`, or `"+0300"`): converted to
///   UTC, `"2023-07-14 07:00:00"`;
/// * naive (`"2023-07-14T10:00:00"` or `"2023-07-14 10:00:00"`): the clock time is kept;
/// * a date `"2023-07-14"`: midnight, `"2023-07-14 00:00:00"`.
///
/// Fractions of a second are dropped (truncated), MoySklad's format has none.
pub fn iso_to_ms(s: &str) -> Result<String, BuiltinError> {
    let invalid = || BuiltinError::InvalidDate {
        function: "iso_to_ms",
        argument: "date",
        input: s.to_string(),
        expected: "ISO-8601 like \"2023-07-14T10:00:00+03:00\", \"2023-07-14T10:00:00\" or \
                   \"2023-07-14\"",
    };
    let zoned = DateTime::parse_from_rfc3339(s).ok().or_else(|| {
        ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"]
            .iter()
            .find_map(|format| DateTime::parse_from_str(s, format).ok())
    });
    let naive = match zoned {
        Some(zoned) => zoned.with_timezone(&Utc).naive_utc(),
        None => ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(s, format).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .and_then(|date| date.and_hms_opt(0, 0, 0))
            })
            .ok_or_else(invalid)?,
    };
    format_ms(naive).ok_or_else(invalid)
}

/// A calendar date from a vendor (a birthdate) as a MoySklad date-time at midnight:
/// `"14.07.2023"` or `"2023-07-14"` → `"2023-07-14 00:00:00"`. No zone conversion: a birthdate
/// is the same day everywhere.
pub fn date_to_ms(s: &str) -> Result<String, BuiltinError> {
    ["%d.%m.%Y", "%Y-%m-%d"]
        .iter()
        .find_map(|format| NaiveDate::parse_from_str(s, format).ok())
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .and_then(format_ms)
        .ok_or_else(|| BuiltinError::InvalidDate {
            function: "date_to_ms",
            argument: "date",
            input: s.to_string(),
            expected: "\"DD.MM.YYYY\" or \"YYYY-MM-DD\"",
        })
}

/// `"YYYY-MM-DD HH:MM:SS"`, for years that have four digits.
fn format_ms(naive: NaiveDateTime) -> Option<String> {
    (1..=9999)
        .contains(&naive.year())
        .then(|| naive.format(MS_FORMAT).to_string())
}

/// `"Z"`, `"±HH:MM"` or `"±HHMM"` → minutes east of UTC.
fn parse_offset_minutes(offset: &str) -> Option<i32> {
    if offset == "Z" || offset == "z" {
        return Some(0);
    }
    let (sign, rest) = match offset.as_bytes().first()? {
        b'+' => (1, &offset[1..]),
        b'-' => (-1, &offset[1..]),
        _ => return None,
    };
    let (hours, minutes) = match rest.len() {
        5 if rest.as_bytes()[2] == b':' => (&rest[..2], &rest[3..]),
        4 => (&rest[..2], &rest[2..]),
        _ => return None,
    };
    let two_digits = |text: &str| -> Option<i32> {
        text.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| text.parse().ok())
            .flatten()
    };
    let (hours, minutes) = (two_digits(hours)?, two_digits(minutes)?);
    (hours <= 23 && minutes <= 59).then_some(sign * (hours * 60 + minutes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_to_iso_attaches_the_offset() {
        assert_eq!(
            ms_to_iso("2023-07-14 00:00:00", "+03:00").unwrap(),
            "2023-07-14T00:00:00+03:00"
        );
        assert_eq!(
            ms_to_iso("2023-07-14 23:59:59", "-0530").unwrap(),
            "2023-07-14T23:59:59-05:30"
        );
        assert_eq!(
            ms_to_iso("2023-07-14 10:00:00", "Z").unwrap(),
            "2023-07-14T10:00:00+00:00"
        );
        assert_eq!(
            ms_to_iso("2023-07-14 10:00:00", "+00:00").unwrap(),
            "2023-07-14T10:00:00+00:00"
        );
    }

    #[test]
    fn ms_to_iso_errors() {
        for bad in [
            "2023-07-14T00:00:00",
            "2023-07-14",
            "2023-7-14 00:00:00",
            "2023-02-30 00:00:00",
            "",
        ] {
            assert!(
                matches!(
                    ms_to_iso(bad, "+03:00"),
                    Err(BuiltinError::InvalidDate {
                        argument: "date",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        for bad in [
            "03:00",
            "+3:00",
            "+24:00",
            "+03:60",
            "+03-00",
            "UTC",
            "",
            "+030",
            "+０３:00",
        ] {
            assert_eq!(
                ms_to_iso("2023-07-14 00:00:00", bad),
                Err(BuiltinError::InvalidOffset {
                    input: bad.to_string()
                }),
                "{bad}"
            );
        }
        assert_eq!(
            ms_to_iso("14.07.2023", "+03:00").unwrap_err().to_string(),
            "ms_to_iso: date \"14.07.2023\" is not a valid date; expected \"YYYY-MM-DD HH:MM:SS\""
        );
    }

    #[test]
    fn iso_to_ms_converts_zoned_times_to_utc() {
        assert_eq!(
            iso_to_ms("2023-07-14T10:00:00+03:00").unwrap(),
            "2023-07-14 07:00:00"
        );
        assert_eq!(
            iso_to_ms("2023-07-14T01:00:00+03:00").unwrap(),
            "2023-07-13 22:00:00"
        );
        assert_eq!(
            iso_to_ms("2026-11-29T10:15:00.123Z").unwrap(),
            "2026-11-29 10:15:00"
        );
        assert_eq!(
            iso_to_ms("2023-07-14T10:00:00-0130").unwrap(),
            "2023-07-14 11:30:00"
        );
        assert_eq!(
            iso_to_ms("2023-07-14 10:00:00+03:00").unwrap(),
            "2023-07-14 07:00:00"
        );
    }

    #[test]
    fn iso_to_ms_keeps_naive_times_and_dates() {
        assert_eq!(
            iso_to_ms("2023-07-14T10:00:00").unwrap(),
            "2023-07-14 10:00:00"
        );
        assert_eq!(
            iso_to_ms("2023-07-14 10:00:00").unwrap(),
            "2023-07-14 10:00:00"
        );
        assert_eq!(
            iso_to_ms("2023-07-14T10:00:00.999").unwrap(),
            "2023-07-14 10:00:00"
        );
        assert_eq!(iso_to_ms("2023-07-14").unwrap(), "2023-07-14 00:00:00");
    }

    #[test]
    fn iso_to_ms_errors() {
        for bad in [
            "",
            "14.07.2023",
            "2023-07-14T25:00:00",
            "2023-13-01",
            "yesterday",
            "2023-07-14T10:00",
        ] {
            assert!(
                matches!(
                    iso_to_ms(bad),
                    Err(BuiltinError::InvalidDate {
                        function: "iso_to_ms",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn date_to_ms_reads_birthdates() {
        assert_eq!(date_to_ms("14.07.2023").unwrap(), "2023-07-14 00:00:00");
        assert_eq!(date_to_ms("2023-07-14").unwrap(), "2023-07-14 00:00:00");
        assert_eq!(date_to_ms("06.05.1990").unwrap(), "1990-05-06 00:00:00");
        for bad in [
            "",
            "1990-05-06T00:00:00",
            "31.02.2023",
            "07/14/2023",
            "2023-07-14 ",
        ] {
            assert!(
                matches!(
                    date_to_ms(bad),
                    Err(BuiltinError::InvalidDate {
                        function: "date_to_ms",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            date_to_ms("31.02.2023").unwrap_err().to_string(),
            "date_to_ms: date \"31.02.2023\" is not a valid date; expected \"DD.MM.YYYY\" or \"YYYY-MM-DD\""
        );
    }
}
