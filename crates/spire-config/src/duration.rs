//! Go's `time.ParseDuration` and `Duration.String`, with Go's error messages.
//!
//! (`spire-goflag` has its own copy for flag values; this one is private to the
//! configuration loader so the two crates can change independently.)

use std::fmt;
use std::time::Duration;

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Go rejects the text; `message` is Go's, such as `time: invalid duration "x"`.
    Invalid {
        /// Go's full message.
        message: String,
    },
    /// Go accepts the text but the duration is negative, which a [`Duration`] cannot hold.
    Negative {
        /// The text.
        input: String,
    },
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Invalid { message } => f.write_str(message),
            DurationError::Negative { input } => write!(
                f,
                "time: negative duration {} is not supported",
                time_quote(input)
            ),
        }
    }
}

impl std::error::Error for DurationError {}

/// Go's `time` package quoting: non-ASCII and control bytes as `\xNN`.
fn time_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if (c as u32) >= 0x80 || (c as u32) < 0x20 {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

fn invalid(message: &str, orig: &str) -> DurationError {
    DurationError::Invalid {
        message: format!("time: {message} {}", time_quote(orig)),
    }
}

/// Go's `time.ParseDuration`, returning signed nanoseconds.
pub fn parse_go_duration_nanos(s: &str) -> Result<i64, DurationError> {
    let orig = s;
    let mut s = s;
    let mut neg = false;
    if let Some(c) = s.as_bytes().first()
        && (*c == b'-' || *c == b'+')
    {
        neg = *c == b'-';
        s = &s[1..];
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid("invalid duration", orig));
    }
    const LIMIT: u64 = 1 << 63;
    let mut d: u64 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid("invalid duration", orig));
        }
        // Leading integer.
        let mut i = 0;
        let mut v: u64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            if v > LIMIT / 10 {
                return Err(invalid("invalid duration", orig));
            }
            v = v * 10 + u64::from(b[i] - b'0');
            if v > LIMIT {
                return Err(invalid("invalid duration", orig));
            }
            i += 1;
        }
        let pre = i > 0;
        s = &s[i..];
        // Fraction.
        let mut f: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if s.as_bytes().first() == Some(&b'.') {
            s = &s[1..];
            let b = s.as_bytes();
            let mut j = 0;
            let mut overflow = false;
            while j < b.len() && b[j].is_ascii_digit() {
                if !overflow {
                    if f > (LIMIT - 1) / 10 {
                        overflow = true;
                    } else {
                        let y = f * 10 + u64::from(b[j] - b'0');
                        if y > LIMIT {
                            overflow = true;
                        } else {
                            f = y;
                            scale *= 10.0;
                        }
                    }
                }
                j += 1;
            }
            post = j > 0;
            s = &s[j..];
        }
        if !pre && !post {
            return Err(invalid("invalid duration", orig));
        }
        // Unit.
        let b = s.as_bytes();
        let mut u = 0;
        while u < b.len() && !(b[u] == b'.' || b[u].is_ascii_digit()) {
            u += 1;
        }
        if u == 0 {
            return Err(invalid("missing unit in duration", orig));
        }
        let unit_text = &s[..u];
        s = &s[u..];
        let unit: u64 = match unit_text {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ => {
                return Err(invalid(
                    &format!("unknown unit {} in duration", time_quote(unit_text)),
                    orig,
                ));
            }
        };
        if v > LIMIT / unit {
            return Err(invalid("invalid duration", orig));
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid("invalid duration", orig));
            }
        }
        d += v;
        if d > LIMIT {
            return Err(invalid("invalid duration", orig));
        }
    }
    if neg {
        // d <= 2^63 here.
        return Ok((d as i64).wrapping_neg());
    }
    if d > LIMIT - 1 {
        return Err(invalid("invalid duration", orig));
    }
    Ok(d as i64)
}

/// Go's `time.ParseDuration` into a [`Duration`]; negative durations are an error.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let nanos = parse_go_duration_nanos(s)?;
    if nanos < 0 {
        return Err(DurationError::Negative {
            input: s.to_owned(),
        });
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Go's `Duration.String()`, such as `24h0m0s`, `1m30s`, `1.5s`, `300ms`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos().min(i64::MAX as u128) as u64;
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("\u{b5}s", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", frac(nanos, div));
    }
    let secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let h = secs / 3600;
    let m = (secs % 3600) / 60;
    let s = secs % 60;
    let sec_text = frac(s * 1_000_000_000 + sub, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{sec_text}s")
    } else if m > 0 {
        format!("{m}m{sec_text}s")
    } else {
        format!("{sec_text}s")
    }
}

/// `v / div` with the fraction's trailing zeros removed.
fn frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rem = v % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        let ok = [
            ("1h", 3_600_000_000_000i64),
            ("30s", 30_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("0", 0),
            ("-0", 0),
            ("+5m", 300_000_000_000),
            ("-1s", -1_000_000_000),
            ("100ms", 100_000_000),
            ("1us", 1_000),
            ("1\u{b5}s", 1_000),
            ("1\u{3bc}s", 1_000),
            ("10ns", 10),
            (".5s", 500_000_000),
            ("5.s", 5_000_000_000),
            ("2562047h47m16.854775807s", i64::MAX),
        ];
        for (text, want) in ok {
            assert_eq!(parse_go_duration_nanos(text), Ok(want), "{text}");
        }
        let bad = [
            ("", r#"time: invalid duration """#),
            ("x", r#"time: invalid duration "x""#),
            ("1", r#"time: missing unit in duration "1""#),
            ("1d", r#"time: unknown unit "d" in duration "1d""#),
            (".s", r#"time: invalid duration ".s""#),
            ("1hh", r#"time: unknown unit "hh" in duration "1hh""#),
            ("3000000h", r#"time: invalid duration "3000000h""#),
            ("1h ", r#"time: unknown unit "h " in duration "1h ""#),
        ];
        for (text, want) in bad {
            assert_eq!(
                parse_go_duration_nanos(text).unwrap_err().to_string(),
                want,
                "{text}"
            );
        }
        assert!(matches!(
            parse_go_duration("-1h"),
            Err(DurationError::Negative { .. })
        ));
    }

    #[test]
    fn formats_like_go() {
        let cases = [
            (Duration::from_secs(86400), "24h0m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_secs(0), "0s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_nanos(1500), "1.5\u{b5}s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_go_duration(d), want);
        }
    }
}
