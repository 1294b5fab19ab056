//! Go's local time zone (`time.Local`): `$TZ` or `/etc/localtime`, read
//! from TZif files with POSIX TZ footers, as `time.Unix(..).String()` uses
//! it (SPIRE prints agent expiration times in local time).

use std::sync::OnceLock;

use crate::gofmt::{civil_from_days, days_from_civil};

#[derive(Debug, Clone)]
struct ZoneType {
    offset: i64,
    is_dst: bool,
    name: String,
}

#[derive(Debug, Clone)]
struct Zone {
    types: Vec<ZoneType>,
    /// (transition time, type index), sorted.
    tx: Vec<(i64, usize)>,
    extend: String,
}

static LOCAL: OnceLock<Option<Zone>> = OnceLock::new();

const SOURCES: &[&str] = &[
    "/usr/share/zoneinfo/",
    "/usr/share/lib/zoneinfo/",
    "/usr/lib/locale/TZ/",
    "/etc/zoneinfo/",
];

fn load_from(dirs: &[&str], name: &str) -> Option<Zone> {
    for dir in dirs {
        let path = if dir.is_empty() {
            name.to_owned()
        } else {
            format!("{dir}{name}")
        };
        if let Ok(data) = std::fs::read(&path)
            && let Some(z) = parse_tzif(&data)
        {
            return Some(z);
        }
    }
    None
}

fn load_local() -> Option<Zone> {
    match std::env::var_os("TZ") {
        None => load_from(&["/etc/"], "localtime"),
        Some(tz) => {
            let tz = tz.to_string_lossy().into_owned();
            let tz = tz.strip_prefix(':').unwrap_or(&tz).to_owned();
            if tz.starts_with('/') {
                load_from(&[""], &tz)
            } else if !tz.is_empty() && tz != "UTC" {
                load_from(SOURCES, &tz)
            } else {
                None
            }
        }
    }
}

/// The offset (seconds east of UTC) and zone abbreviation of the local time
/// zone at `secs`.
pub(crate) fn local_zone(secs: i64) -> (i64, String) {
    match LOCAL.get_or_init(load_local) {
        Some(z) => z.lookup(secs),
        None => (0, "UTC".to_owned()),
    }
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (a, b) = self.data.split_at(n);
        self.data = b;
        Some(a)
    }

    fn u32(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok()
    }
}

fn parse_tzif(data: &[u8]) -> Option<Zone> {
    let mut r = Reader { data };
    if r.take(4)? != b"TZif" {
        return None;
    }
    let version = r.take(1)?[0];
    r.take(15)?;
    let mut counts = [0usize; 6];
    for c in &mut counts {
        *c = r.u32()?;
    }
    let mut time_size = 4;
    if version >= b'2' {
        // Skip the version 1 data block and use the 64-bit one.
        let [isut, isstd, leap, time, typ, chars] = counts;
        r.take(time * 4 + time + typ * 6 + chars + leap * 8 + isstd + isut)?;
        if r.take(4)? != b"TZif" {
            return None;
        }
        r.take(16)?;
        for c in &mut counts {
            *c = r.u32()?;
        }
        time_size = 8;
    }
    let [isut, isstd, leap, time, typ, chars] = counts;
    let times = r.take(time * time_size)?;
    let idx = r.take(time)?;
    let ttinfos = r.take(typ * 6)?;
    let abbrevs = r.take(chars)?;
    r.take(leap * (time_size + 4))?;
    r.take(isstd)?;
    r.take(isut)?;
    let extend = if version >= b'2' {
        let rest = r.data;
        let rest = rest.strip_prefix(b"\n").unwrap_or(rest);
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end]).into_owned()
    } else {
        String::new()
    };
    let mut types = Vec::with_capacity(typ);
    for t in ttinfos.chunks_exact(6) {
        let offset = i64::from(i32::from_be_bytes([t[0], t[1], t[2], t[3]]));
        let start = usize::from(t[5]);
        let name_bytes = abbrevs.get(start..).unwrap_or_default();
        let end = name_bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(name_bytes.len());
        types.push(ZoneType {
            offset,
            is_dst: t[4] != 0,
            name: String::from_utf8_lossy(&name_bytes[..end]).into_owned(),
        });
    }
    if types.is_empty() {
        return None;
    }
    let mut tx = Vec::with_capacity(time);
    for (i, chunk) in times.chunks_exact(time_size).enumerate() {
        let when = if time_size == 8 {
            i64::from_be_bytes([
                chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
            ])
        } else {
            i64::from(i32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        };
        let index = usize::from(*idx.get(i)?);
        if index >= types.len() {
            return None;
        }
        tx.push((when, index));
    }
    if tx.is_empty() {
        tx.push((i64::MIN, 0));
    }
    Some(Zone { types, tx, extend })
}

impl Zone {
    fn first_zone(&self) -> usize {
        let used = |i: usize| self.tx.iter().any(|t| t.1 == i);
        if !used(0) {
            return 0;
        }
        if let Some(&(_, first)) = self.tx.first()
            && self.types[first].is_dst
        {
            let mut zi = first;
            while zi > 0 {
                zi -= 1;
                if !self.types[zi].is_dst {
                    return zi;
                }
            }
        }
        self.types.iter().position(|t| !t.is_dst).unwrap_or(0)
    }

    fn lookup(&self, secs: i64) -> (i64, String) {
        if self.tx.first().is_none_or(|t| secs < t.0) {
            let z = &self.types[self.first_zone()];
            return (z.offset, z.name.clone());
        }
        let lo = self.tx.partition_point(|t| t.0 <= secs).saturating_sub(1);
        let z = &self.types[self.tx[lo].1];
        if lo == self.tx.len() - 1
            && !self.extend.is_empty()
            && let Some(r) = tzset(&self.extend, secs)
        {
            return r;
        }
        (z.offset, z.name.clone())
    }
}

enum RuleKind {
    Julian,
    Doy,
    MonthWeekDay,
}

struct Rule {
    kind: RuleKind,
    day: i64,
    week: i64,
    mon: i64,
    time: i64,
}

fn tz_name(s: &str) -> Option<(String, &str)> {
    if let Some(rest) = s.strip_prefix('<') {
        let end = rest.find('>')?;
        return Some((rest[..end].to_owned(), &rest[end + 1..]));
    }
    let end = s
        .find(|c: char| c.is_ascii_digit() || matches!(c, ',' | '-' | '+'))
        .unwrap_or(s.len());
    if end < 3 {
        return None;
    }
    Some((s[..end].to_owned(), &s[end..]))
}

fn tz_num(s: &str) -> Option<(i64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// `[+-]hh[:mm[:ss]]` in seconds.
fn tz_offset(s: &str) -> Option<(i64, &str)> {
    let (neg, s) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let (h, mut s) = tz_num(s)?;
    let mut off = h * 3600;
    if let Some(rest) = s.strip_prefix(':') {
        let (m, rest) = tz_num(rest)?;
        off += m * 60;
        s = rest;
        if let Some(rest) = s.strip_prefix(':') {
            let (sec, rest) = tz_num(rest)?;
            off += sec;
            s = rest;
        }
    }
    Some((if neg { -off } else { off }, s))
}

fn tz_rule(s: &str) -> Option<(Rule, &str)> {
    let (mut rule, mut s) = if let Some(rest) = s.strip_prefix('J') {
        let (d, rest) = tz_num(rest)?;
        (
            Rule {
                kind: RuleKind::Julian,
                day: d,
                week: 0,
                mon: 0,
                time: 0,
            },
            rest,
        )
    } else if let Some(rest) = s.strip_prefix('M') {
        let (m, rest) = tz_num(rest)?;
        let rest = rest.strip_prefix('.')?;
        let (w, rest) = tz_num(rest)?;
        let rest = rest.strip_prefix('.')?;
        let (d, rest) = tz_num(rest)?;
        (
            Rule {
                kind: RuleKind::MonthWeekDay,
                day: d,
                week: w,
                mon: m,
                time: 0,
            },
            rest,
        )
    } else {
        let (d, rest) = tz_num(s)?;
        (
            Rule {
                kind: RuleKind::Doy,
                day: d,
                week: 0,
                mon: 0,
                time: 0,
            },
            rest,
        )
    };
    rule.time = 2 * 3600;
    if let Some(rest) = s.strip_prefix('/') {
        let (t, rest) = tz_offset(rest)?;
        rule.time = t;
        s = rest;
    }
    Some((rule, s))
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in(m: i64, y: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn rule_time(year: i64, r: &Rule, off: i64) -> i64 {
    let s = match r.kind {
        RuleKind::Julian => {
            let mut s = (r.day - 1) * 86_400;
            if is_leap(year) && r.day >= 60 {
                s += 86_400;
            }
            s
        }
        RuleKind::Doy => r.day * 86_400,
        RuleKind::MonthWeekDay => {
            let m1 = (r.mon + 9) % 12 + 1;
            let yy0 = if r.mon <= 2 { year - 1 } else { year };
            let yy1 = yy0 / 100;
            let yy2 = yy0 % 100;
            let mut dow = ((26 * m1 - 2) / 10 + 1 + yy2 + yy2 / 4 + yy1 / 4 - 2 * yy1) % 7;
            if dow < 0 {
                dow += 7;
            }
            let mut d = r.day - dow;
            if d < 0 {
                d += 7;
            }
            for _ in 1..r.week {
                if d + 7 >= days_in(r.mon, year) {
                    break;
                }
                d += 7;
            }
            d += days_from_civil(year, r.mon, 1) - days_from_civil(year, 1, 1);
            d * 86_400
        }
    };
    s + r.time - off
}

/// Go's `tzset`: the zone a POSIX TZ string gives at `sec`.
fn tzset(s: &str, sec: i64) -> Option<(i64, String)> {
    let (std_name, s) = tz_name(s)?;
    let (std_off, s) = tz_offset(s)?;
    let std_off = -std_off;
    if s.is_empty() || s.starts_with(',') {
        return Some((std_off, std_name));
    }
    let (dst_name, s) = tz_name(s)?;
    let (dst_off, s) = if s.is_empty() || s.starts_with(',') {
        (std_off + 3600, s)
    } else {
        let (o, rest) = tz_offset(s)?;
        (-o, rest)
    };
    let s = if s.is_empty() { ",M3.2.0,M11.1.0" } else { s };
    let s = s.strip_prefix(',')?;
    let (start, s) = tz_rule(s)?;
    let s = s.strip_prefix(',')?;
    let (end, s) = tz_rule(s)?;
    if !s.is_empty() {
        return None;
    }
    let days = sec.div_euclid(86_400);
    let (year, _, _) = civil_from_days(days);
    let year_start = days_from_civil(year, 1, 1) * 86_400;
    let ysec = sec - year_start;
    let (mut start_sec, mut end_sec) = (
        rule_time(year, &start, std_off),
        rule_time(year, &end, dst_off),
    );
    let (mut std_name, mut dst_name, mut std_off, mut dst_off) =
        (std_name, dst_name, std_off, dst_off);
    if end_sec < start_sec {
        std::mem::swap(&mut start_sec, &mut end_sec);
        std::mem::swap(&mut std_name, &mut dst_name);
        std::mem::swap(&mut std_off, &mut dst_off);
    }
    if ysec < start_sec || ysec >= end_sec {
        Some((std_off, std_name))
    } else {
        Some((dst_off, dst_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_rules() {
        let tz = "CET-1CEST,M3.5.0,M10.5.0/3";
        // 2024-07-01 12:00 UTC is summer time.
        let summer = days_from_civil(2024, 7, 1) * 86_400 + 12 * 3600;
        assert_eq!(tzset(tz, summer), Some((7200, "CEST".to_owned())));
        let winter = days_from_civil(2024, 1, 15) * 86_400;
        assert_eq!(tzset(tz, winter), Some((3600, "CET".to_owned())));
        assert_eq!(tzset("<+03>-3", winter), Some((10_800, "+03".to_owned())));
        let ny = "EST5EDT,M3.2.0,M11.1.0";
        assert_eq!(tzset(ny, summer), Some((-4 * 3600, "EDT".to_owned())));
    }

    /// `time.Unix(secs, 0).In(loc).Zone()` as Go 1.26 reports it from the
    /// system's zoneinfo files.
    const GO_ZONES: &[(&str, i64, i64, &str)] = &[
        ("America/New_York", -2000000000, -18000, "EST"),
        ("America/New_York", 0, -18000, "EST"),
        ("America/New_York", 1000000000, -14400, "EDT"),
        ("America/New_York", 1700000000, -18000, "EST"),
        ("America/New_York", 1900000000, -14400, "EDT"),
        ("America/New_York", 2200000000, -14400, "EDT"),
        ("America/New_York", 4000000000, -14400, "EDT"),
        ("America/New_York", 1711846800, -14400, "EDT"),
        ("America/New_York", 1729990800, -14400, "EDT"),
        ("Europe/Paris", -2000000000, 561, "PMT"),
        ("Europe/Paris", 0, 3600, "CET"),
        ("Europe/Paris", 1000000000, 7200, "CEST"),
        ("Europe/Paris", 1700000000, 3600, "CET"),
        ("Europe/Paris", 1900000000, 3600, "CET"),
        ("Europe/Paris", 2200000000, 7200, "CEST"),
        ("Europe/Paris", 4000000000, 7200, "CEST"),
        ("Europe/Paris", 1711846800, 7200, "CEST"),
        ("Europe/Paris", 1729990800, 3600, "CET"),
        ("Australia/Sydney", -2000000000, 36000, "AEST"),
        ("Australia/Sydney", 0, 36000, "AEST"),
        ("Australia/Sydney", 1000000000, 36000, "AEST"),
        ("Australia/Sydney", 1700000000, 39600, "AEDT"),
        ("Australia/Sydney", 1900000000, 39600, "AEDT"),
        ("Australia/Sydney", 2200000000, 36000, "AEST"),
        ("Australia/Sydney", 4000000000, 36000, "AEST"),
        ("Australia/Sydney", 1711846800, 39600, "AEDT"),
        ("Australia/Sydney", 1729990800, 39600, "AEDT"),
        ("Asia/Kolkata", -2000000000, 19800, "IST"),
        ("Asia/Kolkata", 0, 19800, "IST"),
        ("Asia/Kolkata", 1000000000, 19800, "IST"),
        ("Asia/Kolkata", 1700000000, 19800, "IST"),
        ("Asia/Kolkata", 1900000000, 19800, "IST"),
        ("Asia/Kolkata", 2200000000, 19800, "IST"),
        ("Asia/Kolkata", 4000000000, 19800, "IST"),
        ("Asia/Kolkata", 1711846800, 19800, "IST"),
        ("Asia/Kolkata", 1729990800, 19800, "IST"),
        ("America/Sao_Paulo", -2000000000, -11188, "LMT"),
        ("America/Sao_Paulo", 0, -10800, "-03"),
        ("America/Sao_Paulo", 1000000000, -10800, "-03"),
        ("America/Sao_Paulo", 1700000000, -10800, "-03"),
        ("America/Sao_Paulo", 1900000000, -10800, "-03"),
        ("America/Sao_Paulo", 2200000000, -10800, "-03"),
        ("America/Sao_Paulo", 4000000000, -10800, "-03"),
        ("America/Sao_Paulo", 1711846800, -10800, "-03"),
        ("America/Sao_Paulo", 1729990800, -10800, "-03"),
        ("Pacific/Chatham", -2000000000, 44100, "+1215"),
        ("Pacific/Chatham", 0, 45900, "+1245"),
        ("Pacific/Chatham", 1000000000, 45900, "+1245"),
        ("Pacific/Chatham", 1700000000, 49500, "+1345"),
        ("Pacific/Chatham", 1900000000, 49500, "+1345"),
        ("Pacific/Chatham", 2200000000, 45900, "+1245"),
        ("Pacific/Chatham", 4000000000, 49500, "+1345"),
        ("Pacific/Chatham", 1711846800, 49500, "+1345"),
        ("Pacific/Chatham", 1729990800, 49500, "+1345"),
        ("Europe/Dublin", -2000000000, -1521, "DMT"),
        ("Europe/Dublin", 0, 3600, "IST"),
        ("Europe/Dublin", 1000000000, 3600, "IST"),
        ("Europe/Dublin", 1700000000, 0, "GMT"),
        ("Europe/Dublin", 1900000000, 0, "GMT"),
        ("Europe/Dublin", 2200000000, 3600, "IST"),
        ("Europe/Dublin", 4000000000, 3600, "IST"),
        ("Europe/Dublin", 1711846800, 3600, "IST"),
        ("Europe/Dublin", 1729990800, 0, "GMT"),
        ("America/St_Johns", -2000000000, -12652, "NST"),
        ("America/St_Johns", 0, -12600, "NST"),
        ("America/St_Johns", 1000000000, -9000, "NDT"),
        ("America/St_Johns", 1700000000, -12600, "NST"),
        ("America/St_Johns", 1900000000, -9000, "NDT"),
        ("America/St_Johns", 2200000000, -9000, "NDT"),
        ("America/St_Johns", 4000000000, -9000, "NDT"),
        ("America/St_Johns", 1711846800, -9000, "NDT"),
        ("America/St_Johns", 1729990800, -9000, "NDT"),
    ];

    #[test]
    fn matches_go_zone_lookups() {
        for &(name, secs, offset, abbr) in GO_ZONES {
            let Some(z) = load_from(SOURCES, name) else {
                continue;
            };
            assert_eq!(
                z.lookup(secs),
                (offset, abbr.to_owned()),
                "{name} at {secs}"
            );
        }
    }

    #[test]
    fn reads_system_zones() {
        for name in ["Europe/Paris", "America/New_York", "UTC"] {
            if let Some(z) = load_from(SOURCES, name) {
                let summer = days_from_civil(2040, 7, 1) * 86_400;
                let (off, _) = z.lookup(summer);
                match name {
                    "Europe/Paris" => assert_eq!(off, 7200),
                    "America/New_York" => assert_eq!(off, -4 * 3600),
                    _ => assert_eq!(off, 0),
                }
            }
        }
    }
}
