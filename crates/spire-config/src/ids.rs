//! go-spiffe's validation messages, so that trust domain and SPIFFE ID errors read exactly
//! as SPIRE's. The values themselves are parsed by `spiffe-core`.

use spiffe_core::{SpiffeId, TrustDomain};

const BAD_TD_CHAR: &str = "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores";
const BAD_PATH_CHAR: &str =
    "path segment characters are limited to letters, numbers, dots, dashes, and underscores";

fn td_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

fn path_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_')
}

/// go-spiffe's `ValidatePath` message for `path`, if it is invalid.
fn path_error(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return None;
    }
    if !path.starts_with('/') {
        return Some("path must have a leading slash");
    }
    let b = path.as_bytes();
    let mut seg_start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' {
            match &path[seg_start..i] {
                "/" => return Some("path cannot contain empty segments"),
                "/." | "/.." => return Some("path cannot contain dot segments"),
                _ => {}
            }
            seg_start = i;
            i += 1;
            continue;
        }
        if !path_char(c) {
            return Some(BAD_PATH_CHAR);
        }
        i += 1;
    }
    match &path[seg_start..] {
        "/" => Some("path cannot have a trailing slash"),
        "/." | "/.." => Some("path cannot contain dot segments"),
        _ => None,
    }
}

/// go-spiffe's `FromString` message for `id`, if it is invalid.
fn id_error(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        return Some("cannot be empty");
    }
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return Some("scheme is missing or invalid");
    };
    let td_len = rest.find('/').unwrap_or(rest.len());
    if rest.as_bytes()[..td_len].iter().any(|c| !td_char(*c)) {
        return Some(BAD_TD_CHAR);
    }
    if td_len == 0 {
        return Some("trust domain is missing");
    }
    path_error(&rest[td_len..])
}

/// Parses a trust domain name or ID (go-spiffe's `TrustDomainFromString`), with go-spiffe's
/// message on failure.
pub(crate) fn parse_trust_domain(s: &str) -> Result<TrustDomain, String> {
    let go_err = if s.is_empty() {
        Some("trust domain is missing")
    } else if s.contains(":/") {
        id_error(s)
    } else if s.bytes().any(|c| !td_char(c)) {
        Some(BAD_TD_CHAR)
    } else {
        None
    };
    if let Some(msg) = go_err {
        return Err(msg.to_owned());
    }
    TrustDomain::from_name_or_id(s).map_err(|e| e.to_string())
}

/// Parses a SPIFFE ID (go-spiffe's `FromString`), with go-spiffe's message on failure.
pub(crate) fn parse_spiffe_id(s: &str) -> Result<SpiffeId, String> {
    if let Some(msg) = id_error(s) {
        return Err(msg.to_owned());
    }
    SpiffeId::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_spiffe_messages() {
        assert_eq!(parse_trust_domain("Example.org").unwrap_err(), BAD_TD_CHAR);
        assert_eq!(
            parse_trust_domain("").unwrap_err(),
            "trust domain is missing"
        );
        assert_eq!(
            parse_trust_domain("spiffe://example.org/x").unwrap().name(),
            "example.org"
        );
        assert_eq!(
            parse_trust_domain("spiffe:/x").unwrap_err(),
            "scheme is missing or invalid"
        );
        assert_eq!(
            parse_spiffe_id("bad id").unwrap_err(),
            "scheme is missing or invalid"
        );
        assert_eq!(
            parse_spiffe_id("spiffe://td/a//b").unwrap_err(),
            "path cannot contain empty segments"
        );
        assert_eq!(
            parse_spiffe_id("spiffe://td/a/").unwrap_err(),
            "path cannot have a trailing slash"
        );
        assert_eq!(
            parse_spiffe_id("spiffe://td/./a").unwrap_err(),
            "path cannot contain dot segments"
        );
        assert_eq!(
            parse_spiffe_id("spiffe://td/a b").unwrap_err(),
            BAD_PATH_CHAR
        );
        assert_eq!(
            parse_spiffe_id("spiffe:///a").unwrap_err(),
            "trust domain is missing"
        );
        assert!(parse_spiffe_id("spiffe://td/a/b").is_ok());
    }
}
