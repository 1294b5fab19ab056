//! Go `strconv` behaviour that the decoder and SPIRE's messages depend on: string unquoting
//! (hcl's variant keeps `${...}` verbatim) here; `%q` quoting and `ParseInt(s, 0, 64)` from
//! `spire-gocompat`, with the decoder's error wording.

/// Unquotes a double-quoted string literal. With `hcl_interpolation`, text inside `${...}` is
/// copied verbatim, as hcl's own `strconv.Unquote` does; JSON strings use Go's
/// `strconv.Unquote`, which does not.
pub(crate) fn unquote(s: &str, hcl_interpolation: bool) -> Option<String> {
    let bytes = s.as_bytes();
    if bytes.len() < 2 || bytes[0] != b'"' || bytes[bytes.len() - 1] != b'"' {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    let has = |c: char| inner.contains(c);
    if hcl_interpolation {
        if !has('$') && !has('{') && has('\n') {
            return None;
        }
    } else if has('\n') {
        return None;
    }
    if !has('\\') && !has('"') && (!hcl_interpolation || !has('$')) {
        return Some(inner.to_owned());
    }
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut rest = inner;
    while !rest.is_empty() {
        if hcl_interpolation && rest.starts_with("${") {
            out.extend_from_slice(b"${");
            rest = &rest[2..];
            let mut braces = 1usize;
            let mut chars = rest.char_indices();
            let mut consumed = rest.len();
            for (i, c) in chars.by_ref() {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                match c {
                    '{' => braces += 1,
                    '}' => braces -= 1,
                    _ => {}
                }
                if braces == 0 {
                    consumed = i + c.len_utf8();
                    break;
                }
            }
            if braces != 0 {
                return None;
            }
            rest = &rest[consumed..];
            continue;
        }
        if rest.starts_with('\n') {
            return None;
        }
        let (bytes, tail) = unquote_char(rest)?;
        out.extend_from_slice(&bytes);
        rest = tail;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `strconv.UnquoteChar` for a double-quoted context: returns the bytes of one
/// (possibly escaped) character and the rest.
fn unquote_char(s: &str) -> Option<(Vec<u8>, &str)> {
    let mut chars = s.chars();
    let c = chars.next()?;
    if c == '"' {
        return None;
    }
    if c != '\\' {
        let mut buf = [0u8; 4];
        return Some((c.encode_utf8(&mut buf).as_bytes().to_vec(), chars.as_str()));
    }
    let b = s.as_bytes();
    if b.len() <= 1 {
        return None;
    }
    let esc = b[1];
    let rest = &s[2..];
    let simple = |v: u8| Some((vec![v], rest));
    match esc {
        b'a' => simple(0x07),
        b'b' => simple(0x08),
        b'f' => simple(0x0c),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'v' => simple(0x0b),
        b'\\' => simple(b'\\'),
        b'"' => simple(b'"'),
        b'x' | b'u' | b'U' => {
            let n = match esc {
                b'x' => 2,
                b'u' => 4,
                _ => 8,
            };
            let digits = rest.get(..n)?;
            let v = u32::from_str_radix(digits, 16).ok()?;
            if !digits.bytes().all(|d| d.is_ascii_hexdigit()) {
                return None;
            }
            let tail = &rest[n..];
            if esc == b'x' {
                return Some((vec![u8::try_from(v).ok()?], tail));
            }
            if v > 0x10FFFF {
                return None;
            }
            let ch = char::from_u32(v).unwrap_or('\u{FFFD}');
            let mut buf = [0u8; 4];
            Some((ch.encode_utf8(&mut buf).as_bytes().to_vec(), tail))
        }
        b'0'..=b'7' => {
            let digits = s.get(1..4)?;
            if !digits.bytes().all(|d| (b'0'..=b'7').contains(&d)) {
                return None;
            }
            let v = u32::from_str_radix(digits, 8).ok()?;
            Some((vec![u8::try_from(v).ok()?], &s[4..]))
        }
        _ => None,
    }
}

pub use spire_gocompat::strconv::quote as go_quote;

/// Why an integer did not parse, worded as Go's `strconv.ParseInt` errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseIntError {
    pub(crate) input: String,
    pub(crate) range: bool,
}

impl std::fmt::Display for ParseIntError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "strconv.ParseInt: parsing {}: {}",
            go_quote(&self.input),
            if self.range {
                "value out of range"
            } else {
                "invalid syntax"
            }
        )
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`/leading-`0` prefixes
/// and `_` digit separators.
pub(crate) fn parse_int(s: &str) -> Result<i64, ParseIntError> {
    spire_gocompat::strconv::parse_int(s).map_err(|e| ParseIntError {
        input: s.to_owned(),
        range: e == spire_gocompat::strconv::NumError::Range,
    })
}

/// hcl's `unindentHeredoc`: the value of a heredoc token (`<<EOF\n...\nEOF\n`).
pub(crate) fn unindent_heredoc(heredoc: &str) -> Option<String> {
    let idx = heredoc.find('\n')?;
    let b = heredoc.as_bytes();
    let unindent = *b.get(2)? == b'-';
    let len = heredoc.len();
    if !unindent {
        let end = (len + 1).checked_sub(idx)?;
        return heredoc.get(idx + 1..end).map(str::to_owned);
    }
    let end = (len + 2).checked_sub(idx)?;
    let body = heredoc.get(idx + 1..end)?;
    let lines: Vec<&str> = body.split('\n').collect();
    let prefix = lines.last().copied().unwrap_or("");
    let indented = lines.iter().all(|l| l.starts_with(prefix));
    if !indented {
        let end = (len + 1).checked_sub(idx)?;
        return heredoc
            .get(idx + 1..end)
            .map(|s| s.trim_end_matches([' ', '\t']).to_owned());
    }
    let last = lines.len() - 1;
    let out: Vec<&str> = lines
        .iter()
        .enumerate()
        .map(|(k, l)| {
            if k == last {
                ""
            } else {
                l.strip_prefix(prefix).unwrap_or(l)
            }
        })
        .collect();
    Some(out.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_like_go() {
        assert_eq!(parse_int("8081"), Ok(8081));
        assert_eq!(parse_int("-5"), Ok(-5));
        assert_eq!(parse_int("+5"), Ok(5));
        assert_eq!(parse_int("0x1F"), Ok(31));
        assert_eq!(parse_int("017"), Ok(15));
        assert_eq!(parse_int("0o17"), Ok(15));
        assert_eq!(parse_int("0b101"), Ok(5));
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("1_000"), Ok(1000));
        assert_eq!(parse_int("-9223372036854775808"), Ok(i64::MIN));
        assert!(parse_int("9223372036854775808").unwrap_err().range);
        assert!(!parse_int("1__0").unwrap_err().range);
        assert!(!parse_int("_1").unwrap_err().range);
        assert!(!parse_int("08").unwrap_err().range);
        assert!(!parse_int("0x").unwrap_err().range);
        assert!(!parse_int("").unwrap_err().range);
        assert_eq!(
            parse_int("abc").unwrap_err().to_string(),
            r#"strconv.ParseInt: parsing "abc": invalid syntax"#
        );
    }

    #[test]
    fn quote_like_go() {
        assert_eq!(go_quote("a\"b\\c\n\t"), r#""a\"b\\c\n\t""#);
        assert_eq!(go_quote("é"), "\"é\"");
        assert_eq!(go_quote("\u{1}"), r#""\x01""#);
    }

    #[test]
    fn unquote_variants() {
        assert_eq!(unquote(r#""a\nb""#, true).as_deref(), Some("a\nb"));
        assert_eq!(
            unquote(r#""${foo("\n")}""#, true).as_deref(),
            Some(r#"${foo("\n")}"#)
        );
        assert_eq!(
            unquote(r#""\u00e9\x41\101""#, false).as_deref(),
            Some("éAA")
        );
        assert_eq!(unquote(r#""\q""#, false), None);
    }

    #[test]
    fn heredocs() {
        assert_eq!(
            unindent_heredoc("<<EOF\nhello\nworld\nEOF\n").as_deref(),
            Some("hello\nworld\n")
        );
        assert_eq!(
            unindent_heredoc("<<-EOF\n    hello\n      x\n    EOF\n").as_deref(),
            Some("hello\n  x\n")
        );
    }
}
