//! Timestamps as gorm and go-sqlite3 write them in SQLite `datetime`
//! columns: Go's `2006-01-02 15:04:05.999999999-07:00` layout (fraction
//! trimmed of trailing zeros, omitted when zero). We always write UTC.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::error::{DataStoreError, Result};

/// Formats a timestamp as go-sqlite3 stores it, in UTC.
pub(crate) fn format_sqlite(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str("+00:00");
    s
}

/// Parses the layouts go-sqlite3 accepts in `datetime` columns (with `T`
/// or space, optional fraction, optional `Z`/`±hh:mm` offset, or a bare
/// date); values without an offset are UTC.
pub(crate) fn parse_sqlite(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let s = s.strip_suffix('Z').unwrap_or(s);
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let day = u8::try_from(num(8..10)?).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let mut rest = &s[10..];
    let mut time = Time::MIDNIGHT;
    if !rest.is_empty() {
        let sep = rest.as_bytes()[0];
        if sep != b' ' && sep != b'T' {
            return None;
        }
        rest = &rest[1..];
        let r = rest.as_bytes();
        if r.len() < 5 || r[2] != b':' {
            return None;
        }
        let hour: u8 = rest.get(0..2)?.parse().ok()?;
        let minute: u8 = rest.get(3..5)?.parse().ok()?;
        let mut second = 0u8;
        let mut nanos = 0u32;
        rest = &rest[5..];
        if rest.starts_with(':') {
            second = rest.get(1..3)?.parse().ok()?;
            rest = &rest[3..];
            if let Some(frac) = rest.strip_prefix('.') {
                let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
                if digits == 0 || digits > 9 {
                    return None;
                }
                let mut v: u32 = frac[..digits].parse().ok()?;
                for _ in digits..9 {
                    v *= 10;
                }
                nanos = v;
                rest = &frac[digits..];
            }
        }
        time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    }
    let offset = if rest.is_empty() {
        UtcOffset::UTC
    } else {
        let sign: i8 = match rest.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let oh: i8 = rest.get(1..3)?.parse().ok()?;
        let om: i8 = match rest.get(3..) {
            Some(m) if m.starts_with(':') => m.get(1..3)?.parse().ok()?,
            Some("") | None => 0,
            Some(m) => m.get(0..2)?.parse().ok()?,
        };
        UtcOffset::from_hms(sign * oh, sign * om, 0).ok()?
    };
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

/// An integer in a SQLite datetime column, read as go-sqlite3 does.
pub(crate) fn from_unix_or_millis(v: i64) -> Result<OffsetDateTime> {
    let nanos = if !(-1_000_000_000_000..=1_000_000_000_000).contains(&v) {
        i128::from(v) * 1_000_000
    } else {
        i128::from(v) * 1_000_000_000
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(DataStoreError::sql)
}

/// A Julian day number (SQLite's REAL datetime representation).
pub(crate) fn from_julian_day(v: f64) -> Result<OffsetDateTime> {
    let unix = (v - 2_440_587.5) * 86_400.0;
    #[allow(clippy::cast_possible_truncation)]
    let nanos = (unix * 1e9) as i128;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(DataStoreError::sql)
}

/// Unix seconds to a timestamp.
pub(crate) fn unix(secs: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| {
        DataStoreError::InvalidArgument(format!("datastore-sql: invalid time {secs}: {e}"))
    })
}

/// Go's `t.Round(time.Second).Unix()`.
pub(crate) fn round_to_secs(t: OffsetDateTime) -> i64 {
    let s = t.unix_timestamp();
    if t.nanosecond() >= 500_000_000 {
        s + 1
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_like_gorm() {
        assert_eq!(
            format_sqlite(datetime!(2026-11-28 17:10:01.947078474 UTC)),
            "2026-11-28 17:10:01.947078474+00:00"
        );
        assert_eq!(
            format_sqlite(datetime!(2026-11-28 18:15:17 UTC)),
            "2026-11-28 18:15:17+00:00"
        );
        assert_eq!(
            format_sqlite(datetime!(2026-11-28 17:15:14.1976643 UTC)),
            "2026-11-28 17:15:14.1976643+00:00"
        );
        assert_eq!(
            format_sqlite(datetime!(2026-11-28 19:15:17 +01:00)),
            "2026-11-28 18:15:17+00:00"
        );
    }

    #[test]
    fn parses_go_layouts() {
        for (s, want) in [
            (
                "2026-11-28 17:10:01.947078474+00:00",
                datetime!(2026-11-28 17:10:01.947078474 UTC),
            ),
            (
                "2026-11-28 18:15:17+00:00",
                datetime!(2026-11-28 18:15:17 UTC),
            ),
            ("2026-11-28T18:15:17Z", datetime!(2026-11-28 18:15:17 UTC)),
            (
                "2026-11-28 19:15:17.5+01:00",
                datetime!(2026-11-28 18:15:17.5 UTC),
            ),
            ("2026-11-28 18:15", datetime!(2026-11-28 18:15:00 UTC)),
            ("2026-11-28", datetime!(2026-11-28 0:00 UTC)),
        ] {
            assert_eq!(parse_sqlite(s), Some(want), "{s}");
        }
        assert_eq!(parse_sqlite("garbage"), None);
        let t = datetime!(2026-01-02 03:04:05.000000006 UTC);
        assert_eq!(parse_sqlite(&format_sqlite(t)), Some(t));
        assert_eq!(
            round_to_secs(datetime!(2026-01-02 03:04:05.5 UTC)),
            datetime!(2026-01-02 03:04:06 UTC).unix_timestamp()
        );
        assert_eq!(
            from_unix_or_millis(1_700_000_000_000)
                .unwrap()
                .unix_timestamp(),
            1_700_000_000
        );
    }
}
