//! Go's `time.Time` text forms, computed from Unix seconds without a clock.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a day number (days since 1970-01-01).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Broken-down wall-clock fields of `secs` (already shifted by the zone offset).
fn fields(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Go prints years before 0 as `-001`, others with at least four digits.
fn year_text(y: i64) -> String {
    if y < 0 {
        format!("-{:03}", -y)
    } else {
        format!("{y:04}")
    }
}

/// Go's `Time.String()` for a time with the given zone offset (seconds east
/// of UTC) and zone name: `2006-01-02 15:04:05.999999999 -0700 MST`.
pub fn time_string(secs: i64, nanos: u32, offset: i64, zone: &str) -> String {
    let (y, mo, d, h, mi, s) = fields(secs + offset);
    let mut out = format!("{}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}", year_text(y));
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.abs();
    // Writing to a String cannot fail.
    let _ = write!(out, " {sign}{:02}{:02}", abs / 3600, (abs % 3600) / 60);
    if abs % 60 != 0 {
        let _ = write!(out, "{:02}", abs % 60);
    }
    out.push(' ');
    out.push_str(zone);
    out
}

/// `time.Unix(secs, 0).UTC().String()`: `2006-01-02 15:04:05 +0000 UTC`.
pub fn utc_string(secs: i64) -> String {
    time_string(secs, 0, 0, "UTC")
}

/// `t.UTC().String()` of a [`SystemTime`], to the second (how SPIRE's log
/// fields print CA expirations and issue times).
pub fn utc_string_of(t: SystemTime) -> String {
    utc_string(unix_secs(t))
}

/// `t.UTC().Format(time.RFC3339)`: `2006-01-02T15:04:05Z`.
pub fn rfc3339_utc(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = fields(secs);
    format!("{}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z", year_text(y))
}

/// Whole seconds since the Unix epoch, negative before it (saturating).
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            // -1.5 s is second -2.
            if d.subsec_nanos() > 0 {
                -whole - 1
            } else {
                -whole
            }
        }
    }
}

/// The `quote` helper of Go's `time` package (used in `ParseDuration` and
/// `time.ParseError` messages): unlike `strconv.Quote` it writes every byte
/// of a non-ASCII character or a control byte as `\xNN`, and bytes that are
/// not UTF-8 one at a time.
pub fn quote(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if !(0x20..0x80).contains(&b) {
            let width = if b < 0x20 { 1 } else { utf8_width_at(s, i) };
            for x in s.iter().skip(i).take(width) {
                let _ = write!(out, "\\x{x:02x}");
            }
            i += width;
        } else {
            if b == b'"' || b == b'\\' {
                out.push('\\');
            }
            out.push(char::from(b));
            i += 1;
        }
    }
    out.push('"');
    out
}

/// The byte length of the UTF-8 character at `s[i..]`, or 1 if none starts there.
fn utf8_width_at(s: &[u8], i: usize) -> usize {
    let rest = s.get(i..).unwrap_or_default();
    let valid = match std::str::from_utf8(rest) {
        Ok(r) => r,
        Err(e) => {
            std::str::from_utf8(rest.get(..e.valid_up_to()).unwrap_or_default()).unwrap_or_default()
        }
    };
    valid.chars().next().map_or(1, char::len_utf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_round_trip() {
        for z in [-719_468, -1, 0, 1, 10_957, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    // As Go prints time.Unix(s, n).In(time.FixedZone(zone, off)); UTC values checked with date(1).
    #[test]
    fn time_strings_as_go_prints_them() {
        assert_eq!(utc_string(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(utc_string(1_954_321_234), "2031-12-06 11:00:34 +0000 UTC");
        assert_eq!(
            time_string(1_700_000_000, 120_000_000, -25_200, "MST"),
            "2023-11-14 15:13:20.12 -0700 MST"
        );
        assert_eq!(
            time_string(0, 0, 19_800 + 30, "X"),
            "1970-01-01 05:30:30 +053030 X"
        );
        assert_eq!(utc_string(-62_198_755_200), "-001-01-01 00:00:00 +0000 UTC");
        assert_eq!(rfc3339_utc(1_954_321_234), "2031-12-06T11:00:34Z");
    }

    #[test]
    fn unix_secs_floors_before_the_epoch() {
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_millis(1500)), 1);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(1500)), -2);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(3)), -3);
        assert_eq!(
            utc_string_of(UNIX_EPOCH + Duration::from_secs(86_400)),
            "1970-01-02 00:00:00 +0000 UTC"
        );
    }

    #[test]
    fn time_quote_escapes_bytes() {
        assert_eq!(quote(b"1x"), r#""1x""#);
        assert_eq!(quote("µs\t\"\\".as_bytes()), r#""\xc2\xb5s\x09\"\\""#);
        assert_eq!(quote(b"\xff\x7f"), "\"\\xff\x7f\"");
    }
}
