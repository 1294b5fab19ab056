//! Go's `time.Duration`: `time.ParseDuration` and `Duration.String()`.

use std::fmt;
use std::str::FromStr;

/// A Go `time.Duration`: a signed count of nanoseconds.
///
/// Unlike [`std::time::Duration`] it can be negative, and its text form is
/// Go's (`1h30m0s`, `1.5s`, `-1m0s`, `0s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(i64);

impl GoDuration {
    /// The zero duration.
    pub const ZERO: GoDuration = GoDuration(0);
    /// Go's `time.Nanosecond`.
    pub const NANOSECOND: GoDuration = GoDuration(1);
    /// Go's `time.Microsecond`.
    pub const MICROSECOND: GoDuration = GoDuration(1_000);
    /// Go's `time.Millisecond`.
    pub const MILLISECOND: GoDuration = GoDuration(1_000_000);
    /// Go's `time.Second`.
    pub const SECOND: GoDuration = GoDuration(1_000_000_000);
    /// Go's `time.Minute`.
    pub const MINUTE: GoDuration = GoDuration(60_000_000_000);
    /// Go's `time.Hour`.
    pub const HOUR: GoDuration = GoDuration(3_600_000_000_000);

    /// A duration of `nanos` nanoseconds.
    pub const fn from_nanos(nanos: i64) -> GoDuration {
        GoDuration(nanos)
    }

    /// A duration of `secs` seconds, saturating at the bounds of Go's
    /// `time.Duration` (about ±292 years).
    pub const fn from_secs(secs: i64) -> GoDuration {
        GoDuration(secs.saturating_mul(1_000_000_000))
    }

    /// The duration in nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds, truncated toward zero (Go's `int64(d.Seconds())`).
    pub const fn as_secs(self) -> i64 {
        self.0 / 1_000_000_000
    }

    /// Whether the duration is negative.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// The duration as a [`std::time::Duration`], or `None` if negative.
    pub fn to_std(self) -> Option<std::time::Duration> {
        u64::try_from(self.0)
            .ok()
            .map(std::time::Duration::from_nanos)
    }

    /// Converts a [`std::time::Duration`], or `None` if it exceeds the
    /// largest Go duration (2562047h47m16.854775807s).
    pub fn from_std(d: std::time::Duration) -> Option<GoDuration> {
        i64::try_from(d.as_nanos()).ok().map(GoDuration)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go_duration(*self))
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_go_duration(s)
    }
}

impl From<GoDuration> for i64 {
    fn from(d: GoDuration) -> i64 {
        d.0
    }
}

/// Why [`parse_go_duration`] rejected its input. Its text is Go's
/// `time.ParseDuration` error text, e.g. `time: invalid duration "x"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Malformed or out of range.
    #[error("time: invalid duration {}", tq(.input))]
    Invalid {
        /// The whole input.
        input: String,
    },
    /// A number without a unit, e.g. `"1"`.
    #[error("time: missing unit in duration {}", tq(.input))]
    MissingUnit {
        /// The whole input.
        input: String,
    },
    /// A unit other than ns, us, µs, μs, ms, s, m, h.
    #[error("time: unknown unit {} in duration {}", tq(.unit), tq(.input))]
    UnknownUnit {
        /// The unrecognised unit.
        unit: String,
        /// The whole input.
        input: String,
    },
}

/// Go's `time` package quoting of a duration text.
fn tq(s: &str) -> String {
    crate::time::quote(s.as_bytes())
}

const TWO_63: u64 = 1 << 63;

fn unit_nanos(unit: &[u8]) -> Option<u64> {
    Some(match unit {
        b"ns" => 1,
        b"us" => 1_000,
        // U+00B5 micro sign and U+03BC Greek small letter mu.
        b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
        b"ms" => 1_000_000,
        b"s" => 1_000_000_000,
        b"m" => 60_000_000_000,
        b"h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Go's `time.ParseDuration`: a possibly signed sequence of decimal numbers,
/// each with optional fraction and a unit suffix, such as `300ms`, `-1.5h`
/// or `2h45m`. Valid units are `ns`, `us` (or `µs`/`μs`), `ms`, `s`, `m`,
/// `h`. `0` alone needs no unit.
///
/// Reproduces Go's arithmetic exactly, including its float rounding of
/// fractions and its overflow limits.
pub fn parse_go_duration(input: &str) -> Result<GoDuration, DurationError> {
    let invalid = || DurationError::Invalid {
        input: input.to_owned(),
    };
    let mut s = input.as_bytes();
    let mut d: u64 = 0;
    let mut neg = false;

    if let Some(&c) = s.first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = &s[1..];
    }
    if s == b"0" {
        return Ok(GoDuration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    while !s.is_empty() {
        // The next character must be [0-9.].
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Consume [0-9]*.
        let before = s.len();
        let (mut v, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let pre = before != s.len();

        // Consume (\.[0-9]*)?.
        let mut post = false;
        let mut f: u64 = 0;
        let mut scale: f64 = 1.0;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let before = s.len();
            let (ff, sc, rest) = leading_fraction(s);
            f = ff;
            scale = sc;
            s = rest;
            post = before != s.len();
        }
        if !pre && !post {
            // No digits (e.g. ".s" or "-.s").
            return Err(invalid());
        }

        // Consume unit.
        let i = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if i == 0 {
            return Err(DurationError::MissingUnit {
                input: input.to_owned(),
            });
        }
        let (unit_bytes, rest) = s.split_at(i);
        s = rest;
        let unit = match unit_nanos(unit_bytes) {
            Some(u) => u,
            None => {
                return Err(DurationError::UnknownUnit {
                    unit: String::from_utf8_lossy(unit_bytes).into_owned(),
                    input: input.to_owned(),
                });
            }
        };
        if v > TWO_63 / unit {
            // Overflow.
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            // float64 is needed to be nanosecond accurate for fractions of
            // hours; v >= f for any unit, as in Go.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > TWO_63 {
                return Err(invalid());
            }
        }
        // Go adds in uint64 and may wrap here; keep the same result.
        d = d.wrapping_add(v);
        if d > TWO_63 {
            return Err(invalid());
        }
    }
    if neg {
        // d <= 2^63, so the negation is exact (2^63 becomes i64::MIN).
        return Ok(GoDuration((d as i64).wrapping_neg()));
    }
    if d > TWO_63 - 1 {
        return Err(invalid());
    }
    Ok(GoDuration(d as i64))
}

/// Go's `leadingInt`: consumes `[0-9]*`; `None` on overflow past 2^63.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if !c.is_ascii_digit() {
            break;
        }
        if x > TWO_63 / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > TWO_63 {
            return None;
        }
        i += 1;
    }
    Some((x, &s[i..]))
}

/// Go's `leadingFraction`: consumes `[0-9]*`, silently dropping precision
/// once the value would overflow.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let mut x: u64 = 0;
    let mut scale: f64 = 1.0;
    let mut overflow = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if !c.is_ascii_digit() {
            break;
        }
        i += 1;
        if overflow {
            continue;
        }
        if x > (TWO_63 - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > TWO_63 {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[i..])
}

/// Go's `Duration.String()`: `72h3m0.5s`, `1h0m0s`, `5m0s`, `1.5s`,
/// `300ms`, `1.001µs`, `12ns`, `0s`. The leading unit is the largest that
/// is non-zero; zero is `0s`.
pub fn format_go_duration(d: GoDuration) -> String {
    let neg = d.0 < 0;
    let u = d.0.unsigned_abs();
    let body = if u < 1_000_000_000 {
        // Less than a second: use a smaller unit, e.g. "1.2ms".
        if u == 0 {
            return "0s".to_owned();
        } else if u < 1_000 {
            format!("{u}ns")
        } else if u < 1_000_000 {
            let (int, frac) = split_frac(u, 3);
            format!("{int}{frac}µs")
        } else {
            let (int, frac) = split_frac(u, 6);
            format!("{int}{frac}ms")
        }
    } else {
        let (secs, frac) = split_frac(u, 9);
        let mins = secs / 60;
        let s = secs % 60;
        if mins == 0 {
            format!("{s}{frac}s")
        } else {
            let hours = mins / 60;
            let m = mins % 60;
            if hours == 0 {
                format!("{m}m{s}{frac}s")
            } else {
                format!("{hours}h{m}m{s}{frac}s")
            }
        }
    };
    if neg { format!("-{body}") } else { body }
}

/// Go's `fmtFrac`: splits off the low `prec` decimal digits of `v` and
/// renders them as `.ddd` without trailing zeros (empty if all zero).
fn split_frac(v: u64, prec: u32) -> (u64, String) {
    let p = 10u64.pow(prec);
    let frac = v % p;
    if frac == 0 {
        return (v / p, String::new());
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (v / p, format!(".{}", digits.trim_end_matches('0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    enum Want {
        Ok(i64),
        Err(&'static str),
    }

    // Observed with Go 1.26: time.ParseDuration(s) and err.Error().
    const PARSE: &[(&str, Want)] = &[
        ("0", Want::Ok(0)),
        ("-0", Want::Ok(0)),
        ("+0", Want::Ok(0)),
        ("", Want::Err("time: invalid duration \"\"")),
        ("1h30m", Want::Ok(5400000000000)),
        ("300ms", Want::Ok(300000000)),
        ("1.5h", Want::Ok(5400000000000)),
        ("-1m", Want::Ok(-60000000000)),
        ("1", Want::Err("time: missing unit in duration \"1\"")),
        (
            "1x",
            Want::Err("time: unknown unit \"x\" in duration \"1x\""),
        ),
        ("1h1", Want::Err("time: missing unit in duration \"1h1\"")),
        (".5s", Want::Ok(500000000)),
        ("5.s", Want::Ok(5000000000)),
        (".s", Want::Err("time: invalid duration \".s\"")),
        ("1.0000000001s", Want::Ok(1000000000)),
        ("1µs", Want::Ok(1000)),
        ("1μs", Want::Ok(1000)),
        ("1us", Want::Ok(1000)),
        ("1ns", Want::Ok(1)),
        ("2h45m30.5s", Want::Ok(9930500000000)),
        ("+3s", Want::Ok(3000000000)),
        ("--1s", Want::Err("time: invalid duration \"--1s\"")),
        (
            "1e3s",
            Want::Err("time: unknown unit \"e\" in duration \"1e3s\""),
        ),
        (
            "1 s",
            Want::Err("time: unknown unit \" s\" in duration \"1 s\""),
        ),
        (" 1s", Want::Err("time: invalid duration \" 1s\"")),
        ("9223372036854775807ns", Want::Ok(9223372036854775807)),
        (
            "9223372036854775808ns",
            Want::Err("time: invalid duration \"9223372036854775808ns\""),
        ),
        ("-9223372036854775808ns", Want::Ok(-9223372036854775808)),
        (
            "-9223372036854775809ns",
            Want::Err("time: invalid duration \"-9223372036854775809ns\""),
        ),
        ("2562047h47m16.854775807s", Want::Ok(9223372036854775807)),
        ("2562048h", Want::Err("time: invalid duration \"2562048h\"")),
        ("0.000000001s", Want::Ok(1)),
        ("0.0000000009s", Want::Ok(0)),
        ("1.9999999999999s", Want::Ok(1999999999)),
        (
            "100000000000000000000ns",
            Want::Err("time: invalid duration \"100000000000000000000ns\""),
        ),
        (
            "1.3333333333333333333333333333333333s",
            Want::Ok(1333333333),
        ),
        (
            "3h-1m",
            Want::Err("time: unknown unit \"h-\" in duration \"3h-1m\""),
        ),
        (
            "1m\"x",
            Want::Err("time: unknown unit \"m\\\"x\" in duration \"1m\\\"x\""),
        ),
        (
            "1\u{1}",
            Want::Err("time: unknown unit \"\\x01\" in duration \"1\\x01\""),
        ),
        (
            "1é",
            Want::Err("time: unknown unit \"\\xc3\\xa9\" in duration \"1\\xc3\\xa9\""),
        ),
        ("0s", Want::Ok(0)),
        ("00h", Want::Ok(0)),
        ("1.h", Want::Ok(3600000000000)),
        (
            "0x1s",
            Want::Err("time: unknown unit \"x\" in duration \"0x1s\""),
        ),
        (
            "1_0s",
            Want::Err("time: unknown unit \"_\" in duration \"1_0s\""),
        ),
        ("-.5h", Want::Ok(-1800000000000)),
        ("1h1h1h", Want::Ok(10800000000000)),
        (
            "12345678901234567890123ns",
            Want::Err("time: invalid duration \"12345678901234567890123ns\""),
        ),
        ("0.1ns", Want::Ok(0)),
        ("1.5ns", Want::Ok(1)),
        ("-9223372036854775808ns9223372036854775808ns", Want::Ok(0)),
    ];

    #[test]
    fn parse_matches_go() {
        for (input, want) in PARSE {
            let got = parse_go_duration(input);
            match want {
                Want::Ok(n) => assert_eq!(got, Ok(GoDuration(*n)), "ParseDuration({input:?})"),
                Want::Err(msg) => match got {
                    Ok(d) => panic!("ParseDuration({input:?}) = {d:?}, want error {msg}"),
                    Err(e) => assert_eq!(e.to_string(), *msg, "ParseDuration({input:?})"),
                },
            }
        }
    }

    // Observed with Go 1.26: time.Duration(n).String().
    const FORMAT: &[(i64, &str)] = &[
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1000, "1µs"),
        (1001, "1.001µs"),
        (1500, "1.5µs"),
        (999999, "999.999µs"),
        (1000000, "1ms"),
        (1500000, "1.5ms"),
        (999999999, "999.999999ms"),
        (1000000000, "1s"),
        (1500000000, "1.5s"),
        (60000000000, "1m0s"),
        (3600000000000, "1h0m0s"),
        (5400000000000, "1h30m0s"),
        (90061000000001, "25h1m1.000000001s"),
        (-1, "-1ns"),
        (-1500000000, "-1.5s"),
        (-60000000000, "-1m0s"),
        (9223372036854775807, "2562047h47m16.854775807s"),
        (-9223372036854775808, "-2562047h47m16.854775808s"),
        (100, "100ns"),
        (123456789, "123.456789ms"),
        (1234567890, "1.23456789s"),
        (86400000000000, "24h0m0s"),
        (300000000000, "5m0s"),
    ];

    #[test]
    fn format_matches_go() {
        for (nanos, want) in FORMAT {
            assert_eq!(format_go_duration(GoDuration(*nanos)), *want, "{nanos}");
            assert_eq!(GoDuration(*nanos).to_string(), *want);
        }
    }

    #[test]
    fn conversions() {
        assert_eq!("1h".parse::<GoDuration>(), Ok(GoDuration::HOUR));
        assert_eq!(GoDuration::from_secs(90).to_string(), "1m30s");
        assert_eq!(GoDuration::from_secs(i64::MAX).as_nanos(), i64::MAX);
        assert_eq!(GoDuration::from_nanos(-1).to_std(), None);
        assert_eq!(
            GoDuration::SECOND.to_std(),
            Some(std::time::Duration::from_secs(1))
        );
        assert_eq!(
            GoDuration::from_std(std::time::Duration::from_millis(5)),
            Some(GoDuration::MILLISECOND.mul_for_test(5))
        );
        assert_eq!(GoDuration::from_std(std::time::Duration::MAX), None);
        assert_eq!(GoDuration::from_nanos(-1_500_000_000).as_secs(), -1);
        assert!(GoDuration::from_nanos(-1).is_negative());
        assert_eq!(i64::from(GoDuration::MINUTE), 60_000_000_000);
    }

    impl GoDuration {
        fn mul_for_test(self, n: i64) -> GoDuration {
            GoDuration(self.0 * n)
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(n in any::<i64>()) {
            let text = format_go_duration(GoDuration(n));
            prop_assert_eq!(parse_go_duration(&text), Ok(GoDuration(n)), "{}", text);
        }

        #[test]
        fn unit_sums_parse_exactly(h in 0i64..1000, m in 0i64..60, s in 0i64..60, ms in 0i64..1000, neg in any::<bool>()) {
            let text = format!("{}{h}h{m}m{s}s{ms}ms", if neg { "-" } else { "" });
            let nanos = h * 3_600_000_000_000 + m * 60_000_000_000 + s * 1_000_000_000 + ms * 1_000_000;
            let want = if neg { -nanos } else { nanos };
            prop_assert_eq!(parse_go_duration(&text), Ok(GoDuration(want)));
        }

        #[test]
        fn parse_never_panics(s in "[-+]?[0-9.]{0,25}(ns|us|µs|ms|s|m|h|x)?([0-9.]{0,5}[hms])?") {
            let _ = parse_go_duration(&s);
        }

        #[test]
        fn parsed_values_format_canonically(n in any::<i64>()) {
            // format(parse(format(n))) is a fixed point.
            let once = format_go_duration(GoDuration(n));
            let d = parse_go_duration(&once);
            prop_assert!(d.is_ok());
            if let Ok(d) = d {
                prop_assert_eq!(format_go_duration(d), once);
            }
        }
    }
}
