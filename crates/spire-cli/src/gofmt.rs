//! Go formatting conventions the SPIRE CLI output depends on: `%q`,
//! `time.Time.String`, RFC 3339, `time.Parse` errors, `os` error texts and
//! gRPC status errors.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use spire_gocompat::strconv::quote;
pub(crate) use spire_gocompat::time::{
    civil_from_days, days_from_civil, quote as time_quote, rfc3339_utc, time_string, utc_string,
};

use crate::gotz;

/// `time.Unix(secs, 0).String()` in the process's local time zone.
pub(crate) fn local_string(secs: i64) -> String {
    let (offset, name) = gotz::local_zone(secs);
    time_string(secs, 0, offset, &name)
}

/// Seconds and nanoseconds since the Unix epoch, now.
pub(crate) fn now() -> (i64, u32) {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            (-i64::try_from(d.as_secs()).unwrap_or(i64::MAX), 0)
        }
    }
}

/// Nanoseconds since the Unix epoch, now (saturating).
pub(crate) fn now_nanos() -> i128 {
    let (s, n) = now();
    i128::from(s) * 1_000_000_000 + i128::from(n)
}

/// The layout SPIRE's `agent list|count -expiresBefore` accepts.
pub(crate) const EXPIRES_BEFORE_LAYOUT: &str = "2006-01-02 15:04:05 -0700 -07";

fn is_digit(v: &[u8], i: usize) -> bool {
    v.get(i).is_some_and(u8::is_ascii_digit)
}

/// Go's `getnum`.
fn getnum(v: &[u8], fixed: bool) -> Option<(i64, &[u8])> {
    if !is_digit(v, 0) {
        return None;
    }
    if !is_digit(v, 1) {
        if fixed {
            return None;
        }
        return Some((i64::from(v[0] - b'0'), &v[1..]));
    }
    Some((
        i64::from(v[0] - b'0') * 10 + i64::from(v[1] - b'0'),
        &v[2..],
    ))
}

fn cutspace(mut v: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = v {
        v = rest;
    }
    v
}

/// Go's `skip`.
fn skip<'a>(mut value: &'a [u8], mut prefix: &[u8]) -> Result<&'a [u8], &'a [u8]> {
    while let Some(&p) = prefix.first() {
        if p == b' ' {
            if value.first().is_some_and(|&b| b != b' ') {
                return Err(value);
            }
            prefix = cutspace(prefix);
            value = cutspace(value);
            continue;
        }
        if value.first() != Some(&p) {
            return Err(value);
        }
        prefix = &prefix[1..];
        value = &value[1..];
    }
    Ok(value)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in(month: i64, year: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Go's `time.Parse("2006-01-02 15:04:05 -0700 -07", value)`, returning only
/// whether it parses (and Go's error text when it does not).
pub(crate) fn parse_expires_before(avalue: &str) -> Result<(), String> {
    #[derive(Clone, Copy)]
    enum Std {
        LongYear,
        ZeroMonth,
        ZeroDay,
        Hour,
        ZeroMinute,
        ZeroSecond,
        NumTz,
        NumShortTz,
    }
    const CHUNKS: &[(&str, Std, &str)] = &[
        ("", Std::LongYear, "2006"),
        ("-", Std::ZeroMonth, "01"),
        ("-", Std::ZeroDay, "02"),
        (" ", Std::Hour, "15"),
        (":", Std::ZeroMinute, "04"),
        (":", Std::ZeroSecond, "05"),
        (" ", Std::NumTz, "-0700"),
        (" ", Std::NumShortTz, "-07"),
    ];
    let layout = EXPIRES_BEFORE_LAYOUT;
    let bad = |elem_value: &[u8], layout_elem: &str| {
        format!(
            "parsing time {} as {}: cannot parse {} as {}",
            time_quote(avalue.as_bytes()),
            time_quote(layout.as_bytes()),
            time_quote(elem_value),
            time_quote(layout_elem.as_bytes())
        )
    };
    let msg = |m: &str| format!("parsing time {}{m}", time_quote(avalue.as_bytes()));
    let mut value = avalue.as_bytes();
    let (mut year, mut month, mut day) = (0i64, -1i64, -1i64);
    for &(prefix, std, stdstr) in CHUNKS {
        value = match skip(value, prefix.as_bytes()) {
            Ok(v) => v,
            Err(v) => return Err(bad(v, prefix)),
        };
        let hold = value;
        let mut range_err: Option<&str> = None;
        let ok: Option<&[u8]> = match std {
            Std::LongYear => {
                if value.len() < 4 || !is_digit(value, 0) {
                    None
                } else {
                    let p = &value[..4];
                    if p.iter().all(u8::is_ascii_digit) {
                        year = p.iter().fold(0, |a, b| a * 10 + i64::from(b - b'0'));
                        Some(&value[4..])
                    } else {
                        None
                    }
                }
            }
            Std::ZeroMonth => getnum(value, true).map(|(n, rest)| {
                month = n;
                if !(1..=12).contains(&n) {
                    range_err = Some("month");
                }
                rest
            }),
            Std::ZeroDay => getnum(value, true).map(|(n, rest)| {
                day = n;
                rest
            }),
            Std::Hour => getnum(value, false).map(|(n, rest)| {
                if n >= 24 {
                    range_err = Some("hour");
                }
                rest
            }),
            Std::ZeroMinute => getnum(value, true).map(|(n, rest)| {
                if n >= 60 {
                    range_err = Some("minute");
                }
                rest
            }),
            Std::ZeroSecond => match getnum(value, true) {
                None => None,
                Some((n, rest)) if n >= 60 => {
                    range_err = Some("second");
                    Some(rest)
                }
                Some((_, rest)) => {
                    // A fractional second the layout does not mention.
                    if rest.len() >= 2 && matches!(rest[0], b'.' | b',') && is_digit(rest, 1) {
                        let mut n = 2;
                        while n < rest.len() && is_digit(rest, n) {
                            n += 1;
                        }
                        Some(&rest[n..])
                    } else {
                        Some(rest)
                    }
                }
            },
            Std::NumTz | Std::NumShortTz => {
                let need = if matches!(std, Std::NumTz) { 5 } else { 3 };
                if value.len() < need {
                    None
                } else {
                    let sign = value[0];
                    let hour = &value[1..3];
                    let min: &[u8] = if need == 5 { &value[3..5] } else { b"00" };
                    let rest = &value[need..];
                    let hm = getnum(hour, true)
                        .and_then(|(h, _)| getnum(min, true).map(|(m, _)| (h, m)));
                    match hm {
                        None => None,
                        Some((h, m)) => {
                            if h > 24 {
                                range_err = Some("time zone offset hour");
                            }
                            if m > 60 {
                                range_err = Some("time zone offset minute");
                            }
                            if sign == b'+' || sign == b'-' {
                                Some(rest)
                            } else {
                                None
                            }
                        }
                    }
                }
            }
        };
        if let Some(r) = range_err {
            return Err(msg(&format!(": {r} out of range")));
        }
        match ok {
            Some(rest) => value = rest,
            None => return Err(bad(hold, stdstr)),
        }
    }
    if !value.is_empty() {
        return Err(msg(&format!(": extra text: {}", time_quote(value))));
    }
    if day < 1 || day > days_in(month, year) {
        return Err(msg(": day out of range"));
    }
    Ok(())
}

pub(crate) use spire_gocompat::os::{errno_text, path_error};

/// Reads a whole file the way Go's `os.Open` + `io.ReadAll` (or
/// `os.ReadFile`) reports errors.
pub(crate) fn read_file(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(|e| path_error("open", path, &e))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| path_error("read", path, &e))?;
    Ok(buf)
}

/// Go's `diskutil.WritePrivateFile` / `WritePubliclyReadableFile`: creates or
/// truncates `path` with `mode` (for new files) and writes `data`.
pub(crate) fn write_file(path: &str, data: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| path_error("open", path, &e))?;
    f.write_all(data)
        .map_err(|e| path_error("write", path, &e))?;
    Ok(())
}

/// Go's `filepath.Clean`.
pub(crate) fn clean_path(path: &str) -> String {
    spire_gocompat::path::clean(path)
}

/// Go's `filepath.Abs`.
pub(crate) fn abs_path(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        return Ok(clean_path(path));
    }
    let cwd = std::env::current_dir().map_err(|e| format!("getwd: {}", errno_text(&e)))?;
    Ok(clean_path(&format!("{}/{path}", cwd.to_string_lossy())))
}

/// Go's `path.Join` (slash paths; empty elements ignored).
pub(crate) fn join_path(parts: &[&str]) -> String {
    let nonempty: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    if nonempty.is_empty() {
        return String::new();
    }
    clean_path(&nonempty.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_strings() {
        assert_eq!(utc_string(1_900_000_000), "2030-03-17 17:46:40 +0000 UTC");
        assert_eq!(utc_string(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            time_string(0, 500_000_000, -3 * 3600 - 1800, "X"),
            "1969-12-31 20:30:00.5 -0330 X"
        );
        assert_eq!(rfc3339_utc(1_900_000_000), "2030-03-17T17:46:40Z");
        assert_eq!(days_from_civil(2030, 3, 17), 21_990);
        assert_eq!(civil_from_days(21_990), (2030, 3, 17));
    }

    #[test]
    fn expires_before_parsing() {
        assert_eq!(
            parse_expires_before("2024-01-02 15:04:05 +0000 +00"),
            Ok(())
        );
        assert_eq!(
            parse_expires_before("2024-01-02 5:04:05.123 -0100 -01"),
            Ok(())
        );
        assert_eq!(
            parse_expires_before("x").unwrap_err(),
            "parsing time \"x\" as \"2006-01-02 15:04:05 -0700 -07\": cannot parse \"x\" as \"2006\""
        );
        assert_eq!(
            parse_expires_before("2024-13-02 15:04:05 +0000 +00").unwrap_err(),
            "parsing time \"2024-13-02 15:04:05 +0000 +00\": month out of range"
        );
        assert_eq!(
            parse_expires_before("2024-02-30 15:04:05 +0000 +00").unwrap_err(),
            "parsing time \"2024-02-30 15:04:05 +0000 +00\": day out of range"
        );
        assert_eq!(
            parse_expires_before("2024-02-03 15:04:05 +0000 +00x").unwrap_err(),
            "parsing time \"2024-02-03 15:04:05 +0000 +00x\": extra text: \"x\""
        );
        assert_eq!(
            parse_expires_before("2024-02-03").unwrap_err(),
            "parsing time \"2024-02-03\" as \"2006-01-02 15:04:05 -0700 -07\": cannot parse \"\" as \"15\""
        );
    }

    #[test]
    fn paths() {
        assert_eq!(clean_path("/a//b/../c/."), "/a/c");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(join_path(&["dir", "svid.0.pem"]), "dir/svid.0.pem");
        assert_eq!(join_path(&["", "svid.0.pem"]), "svid.0.pem");
    }
}
