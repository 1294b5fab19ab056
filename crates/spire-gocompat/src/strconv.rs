//! The parts of Go's `strconv` package that the `flag` package relies on:
//! `ParseInt`/`ParseUint` with base 0, `ParseBool`, `Quote` and
//! `FormatFloat`-free integer formatting.

use std::fmt;

/// Why a Go `strconv` integer or boolean conversion failed
/// (the `Err` field of Go's `*strconv.NumError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumError {
    /// `strconv.ErrSyntax`: the text is not a number in Go syntax.
    #[error("invalid syntax")]
    Syntax,
    /// `strconv.ErrRange`: the number does not fit in the target type.
    #[error("value out of range")]
    Range,
}

/// Go's `strconv.ParseBool`: accepts `1, t, T, TRUE, true, True` and
/// `0, f, F, FALSE, false, False`, nothing else.
pub fn parse_bool(s: &str) -> Result<bool, NumError> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(NumError::Syntax),
    }
}

/// Go's `strconv.FormatBool`.
pub fn format_bool(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Go's `strconv.ParseUint(s, 0, 64)`: decimal, or `0x`/`0o`/`0b`/leading
/// `0` prefixed, with `_` digit separators allowed only where Go allows them.
/// No sign is accepted.
pub fn parse_uint(s: &str) -> Result<u64, NumError> {
    parse_uint_base0(s.as_bytes())
}

/// Go's `strconv.ParseInt(s, 0, 64)`: an optional `+` or `-` sign followed by
/// what [`parse_uint`] accepts.
pub fn parse_int(s: &str) -> Result<i64, NumError> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(NumError::Syntax);
    }
    let (neg, rest) = match bytes[0] {
        b'+' => (false, &bytes[1..]),
        b'-' => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    let un = match parse_uint_base0(rest) {
        Ok(v) => v,
        // Go clamps and reports the range error below.
        Err(NumError::Range) => u64::MAX,
        Err(e) => return Err(e),
    };
    const CUTOFF: u64 = 1 << 63;
    if !neg && un >= CUTOFF {
        return Err(NumError::Range);
    }
    if neg && un > CUTOFF {
        return Err(NumError::Range);
    }
    if neg {
        // un <= 2^63, so this is exact (2^63 becomes i64::MIN).
        Ok((un as i64).wrapping_neg())
    } else {
        Ok(un as i64)
    }
}

fn lower(c: u8) -> u8 {
    c | 0x20
}

fn parse_uint_base0(s0: &[u8]) -> Result<u64, NumError> {
    if s0.is_empty() {
        return Err(NumError::Syntax);
    }
    let mut s = s0;
    let mut base: u64 = 10;
    if s[0] == b'0' {
        if s.len() >= 3 && lower(s[1]) == b'b' {
            base = 2;
            s = &s[2..];
        } else if s.len() >= 3 && lower(s[1]) == b'o' {
            base = 8;
            s = &s[2..];
        } else if s.len() >= 3 && lower(s[1]) == b'x' {
            base = 16;
            s = &s[2..];
        } else {
            base = 8;
            s = &s[1..];
        }
    }

    let cutoff = u64::MAX / base + 1;
    let mut underscores = false;
    let mut n: u64 = 0;
    for &c in s {
        let d: u64 = if c == b'_' {
            underscores = true;
            continue;
        } else if c.is_ascii_digit() {
            u64::from(c - b'0')
        } else if lower(c).is_ascii_lowercase() {
            u64::from(lower(c) - b'a') + 10
        } else {
            return Err(NumError::Syntax);
        };
        if d >= base {
            return Err(NumError::Syntax);
        }
        if n >= cutoff {
            return Err(NumError::Range);
        }
        n *= base;
        n = match n.checked_add(d) {
            Some(v) => v,
            None => return Err(NumError::Range),
        };
    }
    if underscores && !underscore_ok(s0) {
        return Err(NumError::Syntax);
    }
    Ok(n)
}

/// Go's `underscoreOK`: underscores may only separate digits (a base prefix
/// counts as a digit).
fn underscore_ok(s: &[u8]) -> bool {
    // b'^' beginning, b'0' digit or prefix, b'_' underscore, b'!' other.
    let mut saw = b'^';
    let mut s = s;
    if !s.is_empty() && (s[0] == b'-' || s[0] == b'+') {
        s = &s[1..];
    }
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(lower(s[1]), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = lower(s[1]) == b'x';
    }
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c.is_ascii_digit() || (hex && (b'a'..=b'f').contains(&lower(c))) {
            saw = b'0';
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
    }
    saw != b'_'
}

/// Go's `strconv.Quote` (what `%q` prints for a string): a double-quoted Go
/// string literal with `\"`, `\\`, the C escapes, `\xNN` for other ASCII
/// control characters and `\uNNNN`/`\UNNNNNNNN` for non-printable runes.
///
/// Go decides printability with Unicode tables (`unicode.IsPrint`); this
/// port treats control, separator, format, private-use and non-character
/// code points as non-printable and every other scalar value as printable,
/// so a code point unassigned in Go's Unicode version is printed as is
/// where Go would escape it.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out.push('"');
    out
}

fn push_escaped(out: &mut String, c: char) {
    use fmt::Write as _;
    if c == '"' || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        _ => {
            let r = u32::from(c);
            // Writing to a String cannot fail.
            let _ = if r < 0x20 || r == 0x7f {
                write!(out, "\\x{r:02x}")
            } else if r < 0x10000 {
                write!(out, "\\u{r:04x}")
            } else {
                write!(out, "\\U{r:08x}")
            };
        }
    }
}

/// An approximation of Go's `strconv.IsPrint` (see [`quote`]).
pub(crate) fn is_print(c: char) -> bool {
    let r = u32::from(c);
    if (0x20..0x7f).contains(&r) {
        return true;
    }
    if r < 0x20 || (0x7f..0xa0).contains(&r) {
        return false;
    }
    // Space separators other than U+0020, line and paragraph separators.
    if c.is_whitespace() {
        return false;
    }
    // Non-characters: U+FDD0..U+FDEF and the last two code points of each plane.
    if (0xfdd0..=0xfdef).contains(&r) || (r & 0xfffe) == 0xfffe {
        return false;
    }
    // Private use.
    if (0xe000..=0xf8ff).contains(&r) || r >= 0xf0000 {
        return false;
    }
    const FORMAT: &[(u32, u32)] = &[
        (0x00ad, 0x00ad),
        (0x0600, 0x0605),
        (0x061c, 0x061c),
        (0x06dd, 0x06dd),
        (0x070f, 0x070f),
        (0x0890, 0x0891),
        (0x08e2, 0x08e2),
        (0x180e, 0x180e),
        (0x200b, 0x200f),
        (0x202a, 0x202e),
        (0x2060, 0x2064),
        (0x2066, 0x206f),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x13430, 0x1343f),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
    ];
    !FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Observed with Go 1.26: strconv.ParseInt(s, 0, 64) and ParseUint(s, 0, 64).
    const INTS: &[(&str, Result<i64, NumError>)] = &[
        ("0", Ok(0)),
        ("10", Ok(10)),
        ("-10", Ok(-10)),
        ("+10", Ok(10)),
        ("0x1F", Ok(31)),
        ("0X1f", Ok(31)),
        ("0o17", Ok(15)),
        ("0O17", Ok(15)),
        ("017", Ok(15)),
        ("0b101", Ok(5)),
        ("0B101", Ok(5)),
        ("1_000", Ok(1000)),
        ("0x_1F", Ok(31)),
        ("_1", Err(NumError::Syntax)),
        ("1_", Err(NumError::Syntax)),
        ("1__0", Err(NumError::Syntax)),
        ("0_1", Ok(1)),
        ("-0x10", Ok(-16)),
        ("0x", Err(NumError::Syntax)),
        ("0b", Err(NumError::Syntax)),
        ("0o", Err(NumError::Syntax)),
        ("08", Err(NumError::Syntax)),
        ("0b2", Err(NumError::Syntax)),
        ("9223372036854775807", Ok(9223372036854775807)),
        ("9223372036854775808", Err(NumError::Range)),
        ("-9223372036854775808", Ok(-9223372036854775808)),
        ("-9223372036854775809", Err(NumError::Range)),
        ("99999999999999999999x", Err(NumError::Range)),
        ("", Err(NumError::Syntax)),
        ("-", Err(NumError::Syntax)),
        ("+", Err(NumError::Syntax)),
        ("1.0", Err(NumError::Syntax)),
        (" 1", Err(NumError::Syntax)),
        ("0x8000000000000000", Err(NumError::Range)),
        ("-0x8000000000000000", Ok(-9223372036854775808)),
        ("1_000_", Err(NumError::Syntax)),
        ("0_x1", Err(NumError::Syntax)),
        ("00", Ok(0)),
        ("0_0", Ok(0)),
        ("0x1_F", Ok(31)),
        ("+-1", Err(NumError::Syntax)),
        ("0xg", Err(NumError::Syntax)),
        ("0b_1", Ok(1)),
        ("0_b1", Err(NumError::Syntax)),
    ];

    const UINTS: &[(&str, Result<u64, NumError>)] = &[
        ("0", Ok(0)),
        ("10", Ok(10)),
        ("-10", Err(NumError::Syntax)),
        ("+10", Err(NumError::Syntax)),
        ("0x1F", Ok(31)),
        ("0X1f", Ok(31)),
        ("0o17", Ok(15)),
        ("017", Ok(15)),
        ("0b101", Ok(5)),
        ("1_000", Ok(1000)),
        ("0x_1F", Ok(31)),
        ("_1", Err(NumError::Syntax)),
        ("1_", Err(NumError::Syntax)),
        ("0_1", Ok(1)),
        ("-0x10", Err(NumError::Syntax)),
        ("0x", Err(NumError::Syntax)),
        ("08", Err(NumError::Syntax)),
        ("9223372036854775808", Ok(9223372036854775808)),
        ("-9223372036854775808", Err(NumError::Syntax)),
        ("99999999999999999999x", Err(NumError::Range)),
        ("", Err(NumError::Syntax)),
        ("0x8000000000000000", Ok(9223372036854775808)),
        ("0b_1", Ok(1)),
        ("0_b1", Err(NumError::Syntax)),
        ("18446744073709551615", Ok(18446744073709551615)),
        ("18446744073709551616", Err(NumError::Range)),
        ("0xFFFFFFFFFFFFFFFF", Ok(18446744073709551615)),
    ];

    proptest::proptest! {
        #[test]
        fn ints_round_trip_in_every_base(n in proptest::prelude::any::<i64>()) {
            let sign = if n < 0 { "-" } else { "" };
            let m = n.unsigned_abs();
            for text in [
                n.to_string(),
                format!("{sign}0x{m:x}"),
                format!("{sign}0X{m:X}"),
                format!("{sign}0o{m:o}"),
                format!("{sign}0{m:o}"),
                format!("{sign}0b{m:b}"),
            ] {
                proptest::prop_assert_eq!(parse_int(&text), Ok(n), "{}", text);
            }
        }

        #[test]
        fn uints_round_trip(n in proptest::prelude::any::<u64>()) {
            proptest::prop_assert_eq!(parse_uint(&n.to_string()), Ok(n));
            proptest::prop_assert_eq!(parse_uint(&format!("0x{n:x}")), Ok(n));
            proptest::prop_assert_eq!(parse_uint(&format!("+{n}")), Err(NumError::Syntax));
        }

        #[test]
        fn decimal_agrees_with_std(s in "[+-]?[1-9][0-9]{0,20}") {
            proptest::prop_assert_eq!(parse_int(&s).ok(), s.parse::<i64>().ok());
        }
    }

    #[test]
    fn parse_int_matches_go() {
        for (input, want) in INTS {
            assert_eq!(parse_int(input), *want, "ParseInt({input:?})");
        }
    }

    #[test]
    fn parse_uint_matches_go() {
        for (input, want) in UINTS {
            assert_eq!(parse_uint(input), *want, "ParseUint({input:?})");
        }
    }

    #[test]
    fn num_error_text_matches_go() {
        assert_eq!(NumError::Syntax.to_string(), "invalid syntax");
        assert_eq!(NumError::Range.to_string(), "value out of range");
    }

    #[test]
    fn parse_bool_matches_go() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        for bad in ["", "tRUE", "yes", "2", " true", "FaLse"] {
            assert_eq!(parse_bool(bad), Err(NumError::Syntax), "{bad:?}");
        }
        assert_eq!(format_bool(true), "true");
        assert_eq!(format_bool(false), "false");
    }

    // Observed with Go 1.26: strconv.Quote(s).
    #[test]
    fn quote_matches_go() {
        let cases: &[(&str, &str)] = &[
            ("", "\"\""),
            ("abc", "\"abc\""),
            ("a\"b", "\"a\\\"b\""),
            ("a\\b", "\"a\\\\b\""),
            ("\t\n\r\u{7}\u{8}\u{c}\u{b}", "\"\\t\\n\\r\\a\\b\\f\\v\""),
            ("\u{0}\u{1}\u{1f}\u{7f}", "\"\\x00\\x01\\x1f\\x7f\""),
            ("\u{e9}", "\"é\""),
            ("\u{65e5}\u{672c}", "\"日本\""),
            ("\u{a0}", "\"\\u00a0\""),
            ("\u{ad}", "\"\\u00ad\""),
            ("\u{200b}", "\"\\u200b\""),
            ("\u{feff}", "\"\\ufeff\""),
            ("\u{1f600}", "\"😀\""),
            ("\u{2028}", "\"\\u2028\""),
            ("\u{e000}", "\"\\ue000\""),
            ("\u{f0000}", "\"\\U000f0000\""),
            ("\u{fffd}", "\"�\""),
            ("\u{10ffff}", "\"\\U0010ffff\""),
            ("\u{85}", "\"\\u0085\""),
            ("\u{3000}", "\"\\u3000\""),
            ("\u{e0001}", "\"\\U000e0001\""),
            (
                "/tmp/spire-server/private/api.sock",
                "\"/tmp/spire-server/private/api.sock\"",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(quote(input), *want, "Quote({input:?})");
        }
    }
}
